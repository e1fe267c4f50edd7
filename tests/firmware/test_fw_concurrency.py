"""The firmware under concurrent use, damaged caches, odd folder names and interruption.

* Two ``bnnhw firmware run`` of the same model at once on a cold build root both succeed
  (one build folder lock, unique temporaries, runners linked to a temporary name and renamed),
  with the golden model's scores, again and again.
* A cached runner that was cut short (or overwritten) is detected from ``build.json``'s digest
  and rebuilt; the next run gives the right scores.
* ``bnnhw firmware -o 'dir with space'`` builds (make sees relative paths without spaces).
* SIGTERM to ``bnnhw firmware -o DIR`` while the compilers run: exit 143, no compiler left
  running, no half folder, a previous output intact.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from bnnhw import golden
from bnnhw.demo import example_model_path
from bnnhw.model import load_model
from support.procs import descendants, running, wait_for

pytestmark = pytest.mark.firmware

MODEL = example_model_path()


def _bnnhw(args, cwd, root, **kwargs):
    env = dict(os.environ, BNNHW_BUILD_ROOT=str(root))
    return subprocess.Popen([sys.executable, "-m", "bnnhw", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fwconc")
    x = np.random.default_rng(4).integers(0, 256, (24, 1, 8, 8), dtype=np.uint8)
    np.save(folder / "x.npy", x)
    return folder / "x.npy", golden.forward(load_model(MODEL), x)


def _pair(tmp_path, inputs, index):
    x_path, expected = inputs
    root = tmp_path / f"root{index}"
    procs = [_bnnhw(["firmware", "run", MODEL, x_path, "-o", tmp_path / f"s{index}{w}.npy",
                     "--impl", "scalar"], tmp_path, root) for w in "ab"]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err), w in zip(procs, results, "ab"):
        assert p.returncode == 0, f"pair {index} process {w}: {err}"
        assert np.array_equal(np.load(tmp_path / f"s{index}{w}.npy"), expected)
    leftovers = [p for p in root.rglob("*") if ".tmp" in p.name]
    assert leftovers == [], leftovers


def test_two_firmware_runs_at_once_on_a_cold_root(tmp_path, inputs):
    for index in range(3):
        _pair(tmp_path, inputs, index)


@pytest.mark.slow
def test_two_firmware_runs_at_once_repeated(tmp_path, inputs):
    for index in range(10):
        _pair(tmp_path, inputs, index)


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_damaged_cached_runner_is_rebuilt(tmp_path, inputs, damage):
    from bnnhw.cli import main
    x_path, expected = inputs
    root = tmp_path / "root"
    argv = ["--build-root", str(root), "firmware", "run", str(MODEL), str(x_path), "-o",
            str(tmp_path / "s.npy"), "--impl", "scalar"]
    assert main(argv) == 0
    (runner,) = root.rglob("build-host-scalar/bnn_runner")
    good = runner.read_bytes()
    if damage == "truncate":
        runner.write_bytes(good[:len(good) // 3])
    else:
        runner.write_bytes(b"\0" * len(good))          # same size: only the digest differs
    os.chmod(runner, 0o755)
    assert main(argv) == 0
    assert np.array_equal(np.load(tmp_path / "s.npy"), expected)
    assert runner.read_bytes() != (good[:len(good) // 3] if damage == "truncate"
                                   else b"\0" * len(good))
    record = json.loads(next(root.glob("*/build.json")).read_text())
    step = record["steps"]["firmware:host-scalar"]
    assert step["digests"][step["outputs"][1]][0] == runner.stat().st_size


def test_firmware_output_folder_with_spaces(tmp_path, inputs, capsys):
    from bnnhw.cli import main
    out = tmp_path / "dir with 'quotes' and spaces"
    assert main(["firmware", str(MODEL), "-o", str(out), "--impl", "scalar"]) == 0
    marker = json.loads((out / "firmware.json").read_text())
    runner = out / marker["runner"]
    assert runner.exists() and "build-host-scalar/bnn_runner" == marker["runner"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]     # nothing beside it
    # and it runs
    from bnnhw.gen import firmware as fw
    x_path, expected = inputs
    net = load_model(MODEL)
    fw.write_input(net, np.load(x_path), tmp_path / "in.bin")
    proc = fw.run_runner(runner, "host", [tmp_path / "in.bin", tmp_path / "out.bin"])
    assert proc.returncode == 0, proc.stderr
    scores = fw.read_scores(tmp_path / "out.bin", len(expected), net.num_classes)
    assert np.array_equal(scores, expected)
    # A second run replaces the folder it wrote (its marker lists every file).
    assert main(["firmware", str(MODEL), "-o", str(out), "--impl", "scalar"]) == 0


def test_interrupted_firmware_build_leaves_nothing(tmp_path):
    out = tmp_path / "fw"
    from bnnhw.cli import main
    assert main(["firmware", str(MODEL), "-o", str(out), "--impl", "scalar"]) == 0
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
              if p.is_file()}
    proc = _bnnhw(["firmware", MODEL, "-o", out], tmp_path, tmp_path / "root")
    try:
        # Wait until a compiler runs (a descendant: make and cc in their own process group).
        compilers = wait_for(lambda: {k: v for k, v in descendants(proc.pid).items()
                                      if v in ("cc1", "gcc", "as", "make")}, 120,
                             "the firmware compiler")
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert compilers
    assert proc.returncode == 143, err
    assert err == "bnnhw: interrupted by SIGTERM\n"
    wait_for(lambda: not running(tree), 10, "the compilers to stop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fw"]          # no temporary folder
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
             if p.is_file()}
    assert after == before


def test_header_folder_with_spaces_outside_the_build_folder(tmp_path, inputs):
    """A path make cannot take as it is (spaces, quotes) reaches it through a link."""
    from bnnhw.gen import firmware as fw
    net = load_model(MODEL)
    gen = fw.generate(net, tmp_path / "head ers; 'x'", build=False)
    runner = fw.build_runner(gen, tmp_path / "out", impl="scalar")
    links = [p for p in (tmp_path / "out").iterdir() if p.is_symlink()]
    assert [os.readlink(p) for p in links] == [str(gen.resolve())]
    x_path, expected = inputs
    fw.write_input(net, np.load(x_path), tmp_path / "in.bin")
    proc = fw.run_runner(runner, "host", [tmp_path / "in.bin", tmp_path / "out.bin"])
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(fw.read_scores(tmp_path / "out.bin", len(expected),
                                         net.num_classes), expected)
