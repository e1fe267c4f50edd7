"""``bnnhw compare``: CPU against FPGA latency, per layer and in total, as table, JSON and plot.

* **FPGA**: the board build's post-route Fmax and clock (the flow's ``bitstream`` step) and the
  cycles of every stage measured in a cocotb + Verilator simulation of the same core with
  frame probes (``simulate`` step of a ``probes=True`` build; the board's memory map changes
  where weights live, not one cycle). A layer's latency is the time from the previous layer's
  first frame end to its own (its share of the single-image latency); its throughput is its
  own interval between images.
* **CPU**: the C firmware on this host, the fastest of the host builds (NEON through SIMDe,
  the scalar twin, the scalar twin with ``-march=native``), measured: the whole network with
  the runner's timing mode (``-r``), each compute layer with ``bnn_bench`` on the layer's
  shape (median of repeated calls).

* **ARM cores** named with ``cpus`` (``cortex-a53``, ``cortex-a72``): an **estimate**
  (:mod:`bnnhw.arm_estimate`: AArch64 instructions counted under qemu-user times the cycles
  per instruction of llvm-mca's model of the core, at an assumed clock), labelled as such in
  the table, the JSON and the plot. No ARM core is measured here.
* **ASIC**: when the model's build folder at this folding has an ``asic`` step (``bnnhw asic
  MODEL``, or ``asic=True`` here, which runs it), each layer's simulated cycles at the ASIC's
  pre-layout Fmax (the same core, so the same cycles), and the ASIC report (area, Fmax,
  power) beside the FPGA's (LUT, FF, BRAM, Fmax).

``extra_columns`` is the hook for other engines: ``{name: {"total_us": float, "layers":
{layer: us}}}``, drawn and tabled beside the CPU and the FPGA (the ARM and ASIC columns are
such columns).
"""

import json
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .errors import ToolError
from .flow.build import write_json

__all__ = ["compare", "HOST_BUILDS", "cpu_latency", "fpga_latency", "plot"]

#: Host firmware builds tried, fastest kept: (name, impl, kernel, extra C flags).
HOST_BUILDS = (("neon-simde", "neon", "neon", ""), ("scalar", "scalar", "scalar", ""),
               ("scalar-native", "scalar", "scalar", "-march=native"))


def _layer_groups(plan):
    """``[(layer, [stage names])]``: a block's stages (FIFO, window, MVTU, pool) by layer."""
    pool_owner = {b.pool.name: b.name for b in plan.net.blocks() if b.pool is not None}
    groups = []
    for s in plan.stages:
        head = s.name.split(".")[0]
        head = pool_owner.get(head, head)
        if head == "output" and groups:
            head = groups[-1][0]
        if not groups or groups[-1][0] != head:
            groups.append((head, []))
        groups[-1][1].append(s.name)
    return groups


def fpga_latency(net, folding, board, *, freq_mhz=None, images=3, root=None):
    """Per layer and total FPGA latency and throughput (see the module docstring)."""
    from . import golden
    from .flow import Build
    from .flow.steps import simulation_results
    from .plan.core import CorePlan
    import bnnhw.boards  # noqa: F401  (registers the bitstream step)
    from bnnhw.boards import BOARDS
    spec = BOARDS[board]
    freq = float(freq_mhz or spec["default_mhz"])
    bb = Build.of(net, folding, board=board, clock_mhz=freq, root=root)
    rec = bb.run("bitstream")
    report = json.loads(bb.path("board", "board_report.json").read_text())
    sim = Build.of(net, folding, probes=True, simulator="verilator", root=root)
    from .gen.verilog import default_vector_input
    x = default_vector_input(net)
    x = np.concatenate([x] * -(-images // len(x)))[:max(2, images)]
    scores, stats = simulation_results(sim, sim.run("simulate", inputs=x))
    if not np.array_equal(scores, golden.forward(net, x)):
        raise ToolError("the simulated core's scores differ from the golden model")
    plan = CorePlan(net, folding)
    ends = stats["stage_frame_ends"]
    first_in = stats["first_in"][0]
    clock, fmax = report["clock_mhz"], report["fmax_mhz"]
    layers, prev = [], first_in
    for name, stages in _layer_groups(plan):
        last = stages[-1]
        end = ends[last][0]
        own = [plan.stage(s).cycles for s in stages if plan.stage(s).cycles is not None]
        interval = ends[last][-1] - ends[last][-2] if len(ends[last]) >= 2 else None
        layers.append({"layer": name, "stages": stages, "latency_cycles": end - prev,
                       "own_cycles_per_image": max(own) if own else None,
                       "interval_cycles": interval,
                       "latency_us": (end - prev) / clock,
                       "latency_us_at_fmax": (end - prev) / fmax if fmax else None})
        prev = end
    total = stats["latency_cycles"]
    cpi = stats["cycles_per_image"]
    return {"board": board, "device": report["device"], "clock_mhz": clock, "fmax_mhz": fmax,
            "timing_met": report["timing_met"], "bitstream_seconds": rec["seconds"],
            "latency_cycles": total, "cycles_per_image": cpi,
            "plan_cycles_per_image": plan.cycles_per_image,
            "utilization": report["utilization"],
            "latency_us": total / clock, "latency_us_at_fmax": total / fmax if fmax else None,
            "images_per_second": clock * 1e6 / cpi,
            "images_per_second_at_fmax": fmax * 1e6 / cpi if fmax else None,
            "layers": layers, "build_folder": str(bb.folder), "sim_folder": str(sim.folder)}


def _bench_binary(out, impl, cflags):
    from .gen.firmware import build_bench
    return build_bench(out, target="host", impl=impl, extra_cflags=cflags)




def cpu_latency(net, *, repeats=11, work=None):
    """Host CPU latency: whole network (runner ``-r``) and per compute layer (``bnn_bench``),
    with the fastest of :data:`HOST_BUILDS` (all measured, all reported)."""
    from .gen import firmware as fw
    from .model.layers import COMPUTE_TYPES
    from .flow import Build
    from .flow.steps import runner_path
    x = np.random.default_rng(0).integers(0, 256, (16, *net.input_shape), dtype=np.uint8)
    builds = {}
    build = Build.of(net)
    # The SIMD build's x86 kernel paths this CPU runs (AVX2, AVX-512), each timed by name.
    simd = runner_path(build, build.run("firmware", impl="neon"))
    paths = [k for k in fw.runner_kernels(simd) if k not in ("neon", "scalar")]
    tried = list(HOST_BUILDS) + [(k, "neon", k, "") for k in paths]
    with tempfile.TemporaryDirectory(prefix="bnnhw-cpu-") as tmp:
        inp = Path(tmp) / "in.bin"
        fw.write_input(net, x, inp)
        for name, impl, kernel, cflags in tried:
            runner = runner_path(build, build.run("firmware", impl=impl, extra_cflags=cflags))
            proc = fw.run_runner(runner, "host", ["-k", kernel, "-r", str(repeats), inp,
                                                  Path(tmp) / "out.bin"])
            line = [l for l in proc.stderr.splitlines()
                    if l.startswith("time_per_image_ns_median")]
            if proc.returncode or not line:
                raise ToolError(f"firmware timing run ({name}) failed: "
                                f"{proc.stderr.strip()[-200:]}")
            builds[name] = {"impl": impl, "kernel": kernel, "cflags": cflags,
                            "total_us": float(line[0].split()[1]) / 1000}
    best = min(builds, key=lambda k: builds[k]["total_us"])
    b = builds[best]
    work = Path(work) if work else build.path("cpu")
    bench = _bench_binary(work, b["impl"], b["cflags"])
    layers = {}
    for info in net.infos:
        if not isinstance(info.layer, COMPUTE_TYPES):
            continue
        args = ["-k", b["kernel"], "-r", str(repeats), *map(str, fw.bench_args(info))]
        proc = subprocess.run([str(bench), *args], capture_output=True, text=True)
        m = re.search(r"ns_median ([0-9.]+)", proc.stdout)
        if proc.returncode or not m:
            raise ToolError(f"bnn_bench on layer {info.name!r} failed: "
                            f"{proc.stderr.strip()[-200:]}")
        layers[info.name] = float(m.group(1)) / 1000
    cpu = "unknown CPU"
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    return {"host": cpu, "build": best, "builds": builds, "total_us": b["total_us"],
            "layers": layers, "repeats": repeats}


def plot(result, path):
    """Latency per layer, CPU against FPGA (log scale), and the totals; a PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = result["layers"]
    names = [r["layer"] for r in rows]
    cpu = [r["cpu_us"] if r["cpu_us"] is not None else np.nan for r in rows]
    f = result["fpga"]
    # A design that misses timing at its clock only runs at its Fmax: plot that.
    at_fmax = not f["timing_met"] and f["fmax_mhz"]
    fpga = [r["fpga_us_at_fmax" if at_fmax else "fpga_us"] for r in rows]
    fpga_total = f["latency_us_at_fmax"] if at_fmax else f["latency_us"]
    fpga_rate = f["images_per_second_at_fmax"] if at_fmax else f["images_per_second"]
    fpga_label = (f"FPGA: {f['board']} at its Fmax {f['fmax_mhz']:.1f} MHz (timing not met at "
                  f"{f['clock_mhz']:.1f}; simulated cycles)" if at_fmax else
                  f"FPGA: {f['board']} at {f['clock_mhz']:.1f} MHz (simulated cycles)")
    extra = result.get("extra_columns", {})
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 1]})
    n = 2 + len(extra)
    w = 0.8 / n
    xs = np.arange(len(names))
    ax.bar(xs - w / 2 * (n - 1), cpu, w, label=f"CPU: {result['cpu']['host'][:32]} "
           f"({result['cpu']['build']}, measured)", color="#4c72b0")
    ax.bar(xs - w / 2 * (n - 1) + w, fpga, w, label=fpga_label, color="#dd8452")
    colors = ["#55a868", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
    for i, (name, col) in enumerate(extra.items()):
        # Estimates (ARM cores, ASIC) are hatched: not measured, not simulated.
        ax.bar(xs - w / 2 * (n - 1) + (2 + i) * w,
               [col["layers"].get(r["layer"], np.nan) for r in rows], w, label=name,
               color=colors[i % len(colors)], hatch="//" if col.get("estimate") else None,
               edgecolor="white" if col.get("estimate") else None)
    ax.set_yscale("log")
    ax.set_xticks(xs, names, rotation=30)
    ax.set_ylabel("latency per image, µs (log scale)")
    ax.set_title(f"{result['model']}: latency per layer (FPGA: share of the pipeline's "
                 f"single-image latency)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    # Short labels, one word per line: four bars share a quarter of the figure.
    labels = ["CPU", "FPGA"] + ["\n".join(k.split(" @")[0].replace(" (estimate)", "")
                                          .split(" ")[:2]) + ("\n(est.)" if c.get("estimate")
                                                               else "")
                                for k, c in extra.items()]
    totals = [result["cpu"]["total_us"], fpga_total] + [c["total_us"]
                                                            for c in extra.values()]
    bars = ax2.bar(labels, totals, color=["#4c72b0", "#dd8452"]
                   + [colors[i % len(colors)] for i in range(len(extra))])
    for b_, c in zip(bars[2:], extra.values()):
        if c.get("estimate"):
            b_.set_hatch("//")
            b_.set_edgecolor("white")
    ax2.tick_params(axis="x", labelsize=8)
    for b_, v in zip(bars, totals):
        ax2.annotate(f"{v:,.0f} µs", (b_.get_x() + b_.get_width() / 2, v), ha="center",
                     va="bottom", fontsize=9)
    ax2.set_yscale("log")
    ax2.set_title(f"one image, whole network\nstreaming: FPGA {fpga_rate:,.0f} "
                  f"/s, CPU {1e6 / result['cpu']['total_us']:,.0f}/s", fontsize=9)
    ax2.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name("." + path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def asic_column(net, folding, fpga, *, run=False, root=None):
    """The ASIC column from the ``asic`` step of ``net``'s build at ``folding``: per layer the
    FPGA simulation's cycles (the same core) at the ASIC's Fmax, and its report's headline.

    ``run=True`` runs the step (default settings: OSU 0.18 um, memories as logic, the cache
    makes a rerun free); otherwise the most recent ``asic`` record of the build folder is used
    when there is one (``None`` when there is none).
    """
    from .flow import Build
    build = Build.of(net, folding, root=root)
    if run:
        rec = build.run("asic")
        name = None
    else:
        steps = {k: r for k, r in build.record()["steps"].items() if k.startswith("asic:")
                 and all(build.path(o).exists() for o in r.get("outputs", []))}
        if not steps:
            return None
        name = max(steps, key=lambda k: steps[k].get("finished", ""))
        rec = steps[name]
    rep = json.loads(build.path(rec["outputs"][0]).read_text())
    t, lib = rep["total"], rep["library"]
    fmax = t["fmax_mhz"]
    if not fmax:
        return None
    if t["cycles_per_image"] != fpga["plan_cycles_per_image"]:
        raise ToolError(f"the ASIC report is for {t['cycles_per_image']:,} cycles per image, "
                        f"the FPGA core for {fpga['plan_cycles_per_image']:,}: not the same "
                        f"folding")
    label = f"ASIC {lib['name']} ({lib['node_um']} um) @ Fmax {fmax:,.0f} MHz (pre-layout)"
    return {"label": label, "total_us": fpga["latency_cycles"] / fmax,
            "layers": {r["layer"]: r["latency_cycles"] / fmax for r in fpga["layers"]},
            "estimate": True,
            "report": {"library": lib["name"], "node_um": lib["node_um"],
                       "memories": rep["settings"]["memories"],
                       "cell_area_mm2": t["area_um2"] / 1e6, "die_area_mm2": t["die_area_mm2"],
                       "flip_flops": t["flip_flops"], "cells": t["cell_count"],
                       "fmax_mhz": fmax, "fmax_source": t["fmax_source"],
                       "images_per_second_at_fmax": t["images_per_second"],
                       "power_mw_at_clock": (t.get("power_w_at_clock") or {}).get("total", 0)
                       * 1e3, "power_clock_mhz": rep["settings"]["clock_mhz"],
                       "record": rec.get("finished"),
                       "folder": str(build.path(rec["outputs"][0]).parent)}}


def compare(net, board, out_dir, *, folding=None, freq_mhz=None, repeats=11, images=3,
            root=None, extra_columns=None, cpus=(), cpu_clock_ghz=None, asic=None):
    """Run the comparison; write ``compare.json``, ``compare.md`` and ``compare.png`` into
    ``out_dir`` and return the result dict.

    ``cpus`` names ARM cores to estimate (:data:`bnnhw.arm_estimate.ARM_CORES`; the host CPU is
    always measured), at ``cpu_clock_ghz`` (default each core's). ``asic``: ``True`` runs the
    build's ``asic`` step, ``None`` uses one already run, ``False`` leaves the ASIC out.
    """
    from .arm_estimate import ARM_CORES, arm_estimate
    from .errors import InputError
    from .outputs import OutputFolder
    from .plan.folding import load_folding
    # Checked before any work; written into a temporary folder swapped in at the end.
    output = OutputFolder(out_dir, "compare")
    cpus = list(cpus)
    bad = [c for c in cpus if c not in ARM_CORES]
    if bad:
        raise InputError(f"ARM core must be one of {', '.join(ARM_CORES)}, not {bad[0]!r}")
    folding = load_folding(net, folding)
    fpga = fpga_latency(net, folding, board, freq_mhz=freq_mhz, images=images, root=root)
    cpu = cpu_latency(net, repeats=repeats)
    extra = dict(extra_columns or {})
    arm = {}
    for core in cpus:
        est = arm_estimate(net, core, clock_ghz=cpu_clock_ghz, root=root)
        arm[core] = est
        extra[f"{core} @ {est['clock_ghz']:g} GHz (estimate)"] = {
            "total_us": est["total_us"], "layers": est["layers"], "estimate": True}
    asic_col = None if asic is False else asic_column(net, folding, fpga, run=bool(asic),
                                                       root=root)
    if asic_col is not None:
        extra[asic_col["label"]] = {k: asic_col[k] for k in ("total_us", "layers", "estimate")}
    rows = []
    for layer in fpga["layers"]:
        c = cpu["layers"].get(layer["layer"])
        rows.append({"layer": layer["layer"], "cpu_us": c, "fpga_us": layer["latency_us"],
                     "fpga_us_at_fmax": layer["latency_us_at_fmax"],
                     "fpga_latency_cycles": layer["latency_cycles"],
                     "fpga_interval_cycles": layer["interval_cycles"],
                     "ratio_cpu_over_fpga": (c / layer["latency_us"])
                     if c and layer["latency_us"] else None})
    notes = ["CPU: measured on this host (fastest host build); per-layer CPU times are the "
             "layer's kernel alone (pool, quantisation and flatten only in the total)",
             "FPGA: simulated cycles (cocotb + Verilator, bit-exact) at the board build's "
             "clock; '@Fmax' at its post-route Fmax"]
    if arm:
        e = next(iter(arm.values()))
        notes.append(f"ARM columns are ESTIMATES, not measurements: {e['method']} "
                     f"({e['llvm_mca']}); per layer the kernel call, the whole network one "
                     f"image through the AArch64 runner ({e['instructions_per_image']:,} "
                     f"instructions)")
    else:
        notes.append("no ARM core measured or estimated here (bnnhw compare --cpu "
                     "cortex-a53,cortex-a72 adds estimates)")
    if asic_col is not None:
        notes.append("ASIC column: the FPGA simulation's cycles per layer at the ASIC's "
                     "pre-layout Fmax (same core and folding; an estimate: ideal clock, no "
                     "wire load)")
    result = {"format": "bnnhw-compare", "model": net.name, "fingerprint": net.fingerprint(), "board": board,
              "folding": folding, "fpga": fpga, "cpu": cpu, "layers": rows,
              "arm": arm, "asic": asic_col["report"] if asic_col else None,
              "ratio_latency_cpu_over_fpga": cpu["total_us"] / fpga["latency_us"],
              "ratio_latency_cpu_over_fpga_at_fmax":
                  cpu["total_us"] / fpga["latency_us_at_fmax"]
                  if fpga["latency_us_at_fmax"] else None,
              "ratio_throughput_fpga_over_cpu":
                  fpga["images_per_second"] / (1e6 / cpu["total_us"]),
              "extra_columns": extra, "notes": notes}
    with output as out:
        write_json(out / "compare.json", result)
        _markdown(out / "compare.md", result)
        plot(result, out / "compare.png")
    return result


def _us(v):
    if v is None:
        return "-"
    return f"{v:,.1f} µs" if v < 1000 else f"{v / 1000:,.2f} ms"


def _implementations(r):
    """The FPGA build's report beside the ASIC's (when there is one), as Markdown lines."""
    f, a = r["fpga"], r.get("asic")
    u = f.get("utilization", {})

    def used(key):
        v = u.get(key)
        return f"{v['used']:,}/{v['available']:,}" if v and v.get("available") else "-"
    ips = f"{f['images_per_second']:,.0f} at {f['clock_mhz']:.1f} MHz"
    rows = [("device", f"{f['board']} ({f['device']})",
             f"{a['library']} standard cells, {a['node_um']} um" if a else ""),
            ("logic", f"LUT {used('lut')}, FF {used('ff')}",
             f"cell area {a['cell_area_mm2']:.2f} mm², die {a['die_area_mm2']:.2f} mm² (70 %), "
             f"{a['flip_flops']:,} FFs" if a else ""),
            ("memories", f"BRAM {used('bram')}", f"as {a['memories']}" if a else ""),
            ("Fmax", f"{f['fmax_mhz']} MHz post-route (timing "
                     f"{'met' if f['timing_met'] else 'NOT met'} at {f['clock_mhz']:.1f})",
             f"{a['fmax_mhz']:,.0f} MHz ({a['fmax_source']}, pre-layout)" if a else ""),
            ("images/s", ips, f"{a['images_per_second_at_fmax']:,.0f} at Fmax" if a else ""),
            ("power", "-", f"{a['power_mw_at_clock']:,.0f} mW at {a['power_clock_mhz']:g} MHz "
                           f"(vectorless)" if a else "")]
    head = "| | FPGA (post-route) |" + (" ASIC (pre-layout estimate) |" if a else "")
    lines = ["", "Implementations:", "", head, "|---|---|" + ("---|" if a else "")]
    for name, fv, av in rows:
        lines.append(f"| {name} | {fv} |" + (f" {av} |" if a else ""))
    if a is None:
        lines.append("")
        lines.append("No ASIC report in this model's build folder at this folding "
                     "(`bnnhw asic MODEL`, or `bnnhw compare --asic`, adds one).")
    return lines


def _markdown(path, r):
    f, c = r["fpga"], r["cpu"]
    extra = r.get("extra_columns", {})
    head = ["layer", f"CPU ({c['build']}, measured)",
            f"FPGA @ {f['clock_mhz']:.1f} MHz", f"FPGA @ Fmax {f['fmax_mhz']} MHz",
            "FPGA cycles (latency share)", "FPGA cycles/image (interval)", "CPU / FPGA",
            *extra]
    lines = [f"# {r['model']}: CPU vs FPGA ({f['board']}, {f['device']})", "",
             f"CPU: {c['host']}, build {c['build']} (median of {c['repeats']}). FPGA: "
             f"post-route Fmax {f['fmax_mhz']} MHz, design clock {f['clock_mhz']:.2f} MHz "
             f"(timing {'met' if f['timing_met'] else 'NOT met'}), simulated cycles.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in r["layers"]:
        ratio = row["ratio_cpu_over_fpga"]
        lines.append("| " + " | ".join([
            row["layer"], _us(row["cpu_us"]), _us(row["fpga_us"]), _us(row["fpga_us_at_fmax"]),
            f"{row['fpga_latency_cycles']:,}", f"{row['fpga_interval_cycles'] or '-'}",
            f"{ratio:.2f}x" if ratio else "-",
            *[_us(col["layers"].get(row["layer"])) for col in extra.values()]]) + " |")
    lines.append("| " + " | ".join([
        "**whole network, one image**", _us(c["total_us"]), _us(f["latency_us"]),
        _us(f["latency_us_at_fmax"]), f"{f['latency_cycles']:,}", f"{f['cycles_per_image']:,}",
        f"{r['ratio_latency_cpu_over_fpga']:.2f}x",
        *[_us(col["total_us"]) for col in extra.values()]]) + " |")
    for name, col in extra.items():
        lines.append(f"\n{name}: whole network {_us(col['total_us'])} per image, "
                     f"{col['total_us'] / f['latency_us']:.2f}x the FPGA's single-image "
                     f"latency" + (" (an estimate)" if col.get("estimate") else "") + ".")
    lines += _implementations(r)
    lines += ["", f"Throughput: FPGA {f['images_per_second']:,.0f} images/s at the design "
                  f"clock ({f['images_per_second_at_fmax'] or 0:,.0f} at Fmax); CPU "
                  f"{1e6 / c['total_us']:,.0f} images/s (one core, one image at a time): "
                  f"{r['ratio_throughput_fpga_over_cpu']:.2f}x.", "",
              "Host builds measured (whole network, per image): "
              + ", ".join(f"{k} {_us(v['total_us'])}" for k, v in c["builds"].items()) + ".",
              ""] + [f"- {n}" for n in r["notes"]]
    text = "\n".join(lines) + "\n"
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
