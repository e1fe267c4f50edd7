"""Helpers of the whole-network cocotb tests: flow builds, the command line, stimuli, lint.

Everything builds under the test session's build root (``$BNNHW_BUILD_ROOT``, set by
``tests/conftest.py``). Cores of the shared models come from the build flow's ``generate``
step, in the build folder that ``bnnhw simulate --build-dir`` reuses, so the command-line runs
and the testbench runs share one core and one simulator build; simulator builds of other cores
are cached by Verilog hash under ``<build root>/test-sim``.
"""

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from bnnhw import golden
from bnnhw.cli import main
from bnnhw.gen.cocotb_run import run_testbench
from bnnhw.gen.lint import WAIVERS, lint
from bnnhw.gen.verilog import input_beats
from bnnhw.flow import build_root
from bnnhw.simulate import hardware_build

CLEAN = [{"name": "clean", "valid_prob": 1.0, "ready_prob": 1.0}]
#: Verilator C++ optimisation of every build here (quickest build; see VERILATOR_OPT).
VERILATOR_OPT = "fast-build"


def sim_build_dir(gen_dir, simulator):
    """Where the testbench builds ``gen_dir``: beside the core in a flow build folder (where
    the flow's simulate step builds it), else in the session's cache, one folder per design."""
    gen_dir = Path(gen_dir).resolve()
    if (gen_dir.parent / "build.json").exists():
        return str(gen_dir.parent / "sim" / simulator / "build")
    manifest = json.loads((gen_dir / "manifest.json").read_text())
    fp = manifest.get("model", {}).get("fingerprint", manifest["top"])
    fold = hashlib.sha256(json.dumps(manifest.get("folding"), sort_keys=True).encode())\
        .hexdigest()[:8]
    return os.path.join(build_root(), "test-sim", f"{manifest['top']}-{fp}-{fold}", simulator)


def run(gen_dir, simulator, **kw):
    """The testbench on ``gen_dir``; builds live in the persistent cache (or, for a core
    generated inside it, next to the core, where ``bnnhw simulate`` looks for them)."""
    start = time.monotonic()
    build_dir = sim_build_dir(gen_dir, simulator)
    r = run_testbench(gen_dir, simulator=simulator, build_dir=build_dir,
                      verilator_opt=VERILATOR_OPT, **kw)
    print(f"{simulator}: build {r['build']['seconds']:.1f} s, run {r['run_seconds']:.1f} s, "
          f"{r['sim_cycles']} cycles, total {time.monotonic() - start:.1f} s")
    return r


def check_lint(path, top):
    code, counts, out = lint(path, top)
    assert code == 0, out
    # Everything -Wall reports (but the final "Exiting due to N warnings") is waived.
    assert set(counts) - {"ERROR"} <= set(WAIVERS), counts


def assert_exact(r, net, x):
    assert r["passed"], r["errors"]
    expected = golden.forward(net, x).tolist()
    for phase in r["phases"]:
        assert phase["scores"] == expected, phase["name"]


LFC_FILE = "lfcW1A1_mnist.npz"
CNV_FILE = "cnvW1A1_cifar10.npz"


def cli(*argv):
    """Run ``bnnhw`` in-process; it must succeed."""
    assert main([str(a) for a in argv]) == 0, argv


def flow_core(net):
    """The core of ``net`` at its own folding, from the build flow's ``generate`` step.

    Its folder is the one ``bnnhw simulate --build-dir`` reuses (and ``bnnhw simulate``
    without it finds under the build root), so the command-line runs and the testbench runs
    share one core and one simulator build.
    """
    build = hardware_build(net)
    build.run("generate")
    return build.folder, json.loads(build.path("core", "manifest.json").read_text())


def stimulus_for(manifest, net, x):
    core = manifest["core"]
    raw = golden.check_input(net, x)
    return {"input_beats": input_beats(raw, core["input_bytes_per_beat"],
                                       core["input_beats_per_image"]),
            "scores": golden.forward(net, raw)}


def cli_simulate_equals_run(model_path, folder, x, simulator, tmp_path, *extra):
    """``bnnhw simulate`` gives exactly ``bnnhw run``'s scores (SPEC §10)."""
    np.save(tmp_path / "x.npy", x)
    cli("run", model_path, tmp_path / "x.npy", "-o", tmp_path / "run.npy")
    cli("simulate", model_path, tmp_path / "x.npy", "-o", tmp_path / "sim.npy",
         "--sim", simulator, "--build-dir", folder, "--verilator-opt", VERILATOR_OPT, *extra)
    run, sim = np.load(tmp_path / "run.npy"), np.load(tmp_path / "sim.npy")
    assert sim.dtype == np.int64 and sim.shape == run.shape
    assert np.array_equal(sim, run)
