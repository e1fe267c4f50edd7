"""``bnnhw simulate`` interrupted, and a damaged simulator build.

* SIGTERM while the simulator runs: exit 143 and one line, the simulator (``vvp``, a
  grandchild in bnnhw's child process group) and the cocotb runner stop, the run folder in the
  build root is removed, and no score file is written.
* A simulator build whose binary was cut short or changed after its stamp was written is
  rebuilt (the stamp records the binary's digest), and the scores stay the golden model's.
"""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from bnnhw import golden
from bnnhw.model.io import save_model
from support.networks import random_dense_net
from support.procs import descendants, running, wait_for

pytestmark = pytest.mark.cocotb


@pytest.fixture
def small_model(tmp_path):
    net = random_dense_net(np.random.default_rng(12), sizes=(6, 4), shape=(1, 4, 4),
                           name="sig_dense")
    path = tmp_path / "m.npz"
    save_model(net, path)
    return net, path


def test_interrupted_simulation_stops_the_simulator(small_model, tmp_path):
    net, path = small_model
    # Many images: the Icarus run takes long enough to be interrupted half-way.
    x = np.random.default_rng(3).integers(0, 256, size=(20000, 16), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    root = tmp_path / "root"
    env = dict(os.environ, BNNHW_BUILD_ROOT=str(root))
    proc = subprocess.Popen([sys.executable, "-m", "bnnhw", "simulate", str(path),
                             str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.npy"),
                             "--sim", "icarus"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "vvp" in descendants(proc.pid).values(), 300, "the simulator")
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert err == "bnnhw: interrupted by SIGTERM\n"
    assert "vvp" in tree.values() and "python" in " ".join(tree.values())
    wait_for(lambda: not running(tree), 10, "the simulator and the cocotb runner to stop")
    assert not (tmp_path / "s.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "root", "x.npy"]
    runs = [p for p in root.rglob("run.*")]
    assert runs == [], runs                        # the run folder was removed
    leftovers = [p for p in root.rglob("*") if ".tmp" in p.name]
    assert leftovers == [], leftovers


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_damaged_simulator_build_is_rebuilt(small_model, tmp_path, damage):
    from bnnhw.gen import generate
    from bnnhw.gen.cocotb_run import run_testbench
    net, _ = small_model
    generate(net, tmp_path / "core", folding={"fc0": {"PE": 2, "SIMD": 4},
                                              "fc1": {"PE": 1, "SIMD": 6}})
    build_dir = tmp_path / "sim"
    first = run_testbench(tmp_path / "core", simulator="icarus", build_dir=build_dir)
    assert first["passed"] and first["build"]["rebuilt"]
    again = run_testbench(tmp_path / "core", simulator="icarus", build_dir=build_dir)
    assert again["passed"] and not again["build"]["rebuilt"]
    binary = build_dir / "sim.vvp"
    good = binary.read_bytes()
    damaged = good[:len(good) // 2] if damage == "truncate" else \
        good.replace(b"module", b"MODULE")
    assert damaged != good
    binary.write_bytes(damaged)
    healed = run_testbench(tmp_path / "core", simulator="icarus", build_dir=build_dir)
    assert healed["build"]["rebuilt"] and healed["passed"], healed.get("errors")
    with np.load(tmp_path / "core" / "vectors.npz") as v:
        expected = golden.forward(net, v["inputs"])
    scores = np.asarray(healed["phases"][0]["scores"], np.int64)
    assert np.array_equal(scores, expected)
    assert binary.read_bytes() != damaged
