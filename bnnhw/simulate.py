"""``bnnhw simulate``: run raw inputs through the generated Verilog in a cocotb simulation.

The core is generated once per model fingerprint and folding into a build folder
(``<build root>/<model>-<fingerprint>-<folding hash>/``, build root ``$BNNHW_BUILD_DIR`` or
``./build``) and reused afterwards; the simulator build is cached next to it. The scores come
from the simulated hardware's output stream, and are the same as
:func:`bnnhw.golden.forward` bit for bit when the hardware is right (the tests check that).
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import golden
from .errors import InputError, ToolError

__all__ = ["simulate", "build_folder", "ensure_generated"]


def _folding_hash(folding):
    return hashlib.sha256(json.dumps(folding, sort_keys=True).encode()).hexdigest()[:8]


def build_folder(net, folding, root=None):
    """The build folder of ``net`` at the resolved ``folding``."""
    root = Path(root if root is not None else os.environ.get("BNNHW_BUILD_DIR", "build"))
    return root / f"{net.name}-{net.fingerprint()}-{_folding_hash(folding)}"


def ensure_generated(net, folding=None, build_dir=None):
    """Generate the core into ``<build folder>/core`` unless an identical one is there.

    Returns
    -------
    (pathlib.Path, dict)
        The generated folder and its manifest.
    """
    from .gen.verilog import generate
    from .plan.folding import load_folding
    folding = load_folding(net, folding)
    folder = Path(build_dir) if build_dir is not None else build_folder(net, folding)
    gen_dir = folder / "core"
    manifest_path = gen_dir / "manifest.json"
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("model", {}).get("fingerprint") == net.fingerprint() and \
                    manifest.get("folding") == folding and \
                    (gen_dir / manifest["verilog"]).exists():
                return gen_dir, manifest
        except (json.JSONDecodeError, KeyError):
            pass   # regenerate below
    return gen_dir, generate(net, gen_dir, folding=folding)


def simulate(net, x, *, simulator="icarus", folding=None, build_dir=None, stress=False,
             seed=0, verilator_opt="balanced"):
    """Scores of the generated hardware for raw inputs ``x``, by cocotb simulation.

    Parameters
    ----------
    net : bnnhw.model.Network
    x : numpy.ndarray of uint8
        Raw inputs, as :func:`bnnhw.golden.forward` takes them.
    simulator : {"icarus", "verilator"}
    folding : dict, optional
        ``{layer: {"PE", "SIMD"}}`` or a JSON file; default as
        :func:`bnnhw.plan.folding.load_folding`.
    build_dir : path-like, optional
        Build folder (default: named by the model fingerprint and folding).
    stress : bool
        Also stream the images a second time with random valid gaps and backpressure, and
        check that the scores do not change.
    seed : int
        Seed of the stress phase.
    verilator_opt : {"balanced", "fast-build", "default"}
        C++ optimisation of a Verilator build
        (:data:`bnnhw.gen.cocotb_run.VERILATOR_OPT`); part of the build cache key.

    Returns
    -------
    scores : numpy.ndarray of int64, ``[N, classes]``
    stats : dict
        ``cycles_per_image`` (interval between the last output beats of the last two images,
        streamed back to back; ``None`` for one image), ``latency_cycles`` (first input beat to
        last output beat of the first image), the manifest's estimates, ``sim_cycles``,
        ``sim_seconds`` and the simulator.

    Raises
    ------
    InputError
        Bad input bytes or folding.
    ToolError
        Missing simulator, failed build, or a simulation that stalls or breaks the stream
        protocol.
    """
    from .gen.cocotb_run import DEFAULT_PHASES, SIMULATORS, run_testbench
    from .gen.verilog import input_beats
    if simulator not in SIMULATORS:
        raise InputError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    raw = golden.check_input(net, x)
    gen_dir, manifest = ensure_generated(net, folding, build_dir)
    core = manifest["core"]
    beats = input_beats(raw, core["input_bytes_per_beat"], core["input_beats_per_image"])
    phases = DEFAULT_PHASES if stress else DEFAULT_PHASES[:1]
    results = run_testbench(gen_dir, simulator=simulator, stimulus={"input_beats": beats},
                            phases=phases, seed=seed, verilator_opt=verilator_opt)
    if not results["passed"]:
        raise ToolError(f"{simulator} simulation of {manifest['top']} failed: "
                        + "; ".join(results["errors"][:3]))
    scores = np.asarray(results["phases"][0]["scores"], dtype=np.int64)
    for phase in results["phases"][1:]:
        if not np.array_equal(np.asarray(phase["scores"], dtype=np.int64), scores):
            raise ToolError(f"{simulator} simulation of {manifest['top']}: scores change "
                            f"under random valid gaps / backpressure (phase {phase['name']!r})")
    clean = results["phases"][0]
    stats = {
        "simulator": simulator,
        "images": int(raw.shape[0]),
        "cycles_per_image": clean["intervals"][-1] if clean["intervals"] else None,
        "intervals": clean["intervals"],
        "latency_cycles": clean["latency"][0],
        "cycles_per_image_estimate": core.get("cycles_per_image"),
        "latency_cycles_estimate": core.get("latency_cycles_estimate"),
        "sim_cycles": results["sim_cycles"],
        "sim_seconds": results["run_seconds"],
        "build_seconds": results["build"]["seconds"],
        "generated": str(gen_dir),
    }
    return scores, stats
