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

No ARM core is measured here; the firmware benchmark (BENCHMARKS.md "Firmware") gives
instruction counts and llvm-mca estimates for Cortex-A53/A72.

``extra_columns`` is the hook for other engines (e.g. the ASIC estimate of
:mod:`bnnhw.gen.asic`): ``{name: {"total_us": float, "layers": {layer: us}}}``, drawn and
tabled beside the CPU and the FPGA.
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
            "latency_us": total / clock, "latency_us_at_fmax": total / fmax if fmax else None,
            "images_per_second": clock * 1e6 / cpi,
            "images_per_second_at_fmax": fmax * 1e6 / cpi if fmax else None,
            "layers": layers, "build_folder": str(bb.folder), "sim_folder": str(sim.folder)}


def _bench_binary(out, impl, cflags):
    from .gen.firmware import _make, firmware_dir
    build = Path(out) / f"bench-{impl}{'-' + re.sub(r'[^a-z0-9]', '', cflags) if cflags else ''}"
    args = ["-f", str(firmware_dir() / "Makefile"), "TARGET=host", f"IMPL={impl}",
            f"BUILD={build.resolve()}", f"LIBBUILD={(build / 'lib').resolve()}"]
    if cflags:
        args.append(f"EXTRA_CFLAGS={cflags}")
    _make(args + ["bench"])
    return build / "bnn_bench"


def _bench_args(info):
    from .model.layers import BinaryDense, MultibitConv2d
    layer = info.layer
    if isinstance(layer, BinaryDense):
        return ["bconv", layer.fan_in, 1, 1, layer.out_channels, 1, 1, 1, 0, 1]
    c, h, w = info.input_shape
    kh, kw = layer.kernel
    op = "mbconv" if isinstance(layer, MultibitConv2d) else "bconv"
    return [op, c, h, w, layer.out_channels, kh, kw, layer.stride, layer.pad, layer.pad_value]


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
    with tempfile.TemporaryDirectory(prefix="bnnhw-cpu-") as tmp:
        inp = Path(tmp) / "in.bin"
        fw.write_input(net, x, inp)
        for name, impl, kernel, cflags in HOST_BUILDS:
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
        args = ["-k", b["kernel"], "-r", str(repeats), *map(str, _bench_args(info))]
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
    fpga = [r["fpga_us"] for r in rows]
    extra = result.get("extra_columns", {})
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 1]})
    n = 2 + len(extra)
    w = 0.8 / n
    xs = np.arange(len(names))
    f = result["fpga"]
    ax.bar(xs - w / 2 * (n - 1), cpu, w, label=f"CPU: {result['cpu']['host'][:32]} "
           f"({result['cpu']['build']}, measured)", color="#4c72b0")
    ax.bar(xs - w / 2 * (n - 1) + w, fpga, w, label=f"FPGA: {f['board']} at "
           f"{f['clock_mhz']:.1f} MHz (simulated cycles)", color="#dd8452")
    for i, (name, col) in enumerate(extra.items()):
        ax.bar(xs - w / 2 * (n - 1) + (2 + i) * w,
               [col["layers"].get(r["layer"], np.nan) for r in rows], w, label=name)
    ax.set_yscale("log")
    ax.set_xticks(xs, names, rotation=30)
    ax.set_ylabel("latency per image, µs (log scale)")
    ax.set_title(f"{result['model']}: latency per layer (FPGA: share of the pipeline's "
                 f"single-image latency)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    labels = ["CPU", "FPGA"] + list(extra)
    totals = [result["cpu"]["total_us"], f["latency_us"]] + [c["total_us"]
                                                            for c in extra.values()]
    bars = ax2.bar(labels, totals, color=["#4c72b0", "#dd8452"] + ["#55a868"] * len(extra))
    for b_, v in zip(bars, totals):
        ax2.annotate(f"{v:,.0f} µs", (b_.get_x() + b_.get_width() / 2, v), ha="center",
                     va="bottom", fontsize=9)
    ax2.set_yscale("log")
    ax2.set_title(f"one image, whole network\nstreaming: FPGA {f['images_per_second']:,.0f} "
                  f"/s, CPU {1e6 / result['cpu']['total_us']:,.0f}/s", fontsize=9)
    ax2.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name("." + path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def compare(net, board, out_dir, *, folding=None, freq_mhz=None, repeats=11, images=3,
            root=None, extra_columns=None):
    """Run the comparison; write ``compare.json``, ``compare.md`` and ``compare.png`` into
    ``out_dir`` and return the result dict."""
    from .plan.folding import load_folding
    folding = load_folding(net, folding)
    fpga = fpga_latency(net, folding, board, freq_mhz=freq_mhz, images=images, root=root)
    cpu = cpu_latency(net, repeats=repeats)
    rows = []
    for layer in fpga["layers"]:
        c = cpu["layers"].get(layer["layer"])
        rows.append({"layer": layer["layer"], "cpu_us": c, "fpga_us": layer["latency_us"],
                     "fpga_us_at_fmax": layer["latency_us_at_fmax"],
                     "fpga_latency_cycles": layer["latency_cycles"],
                     "fpga_interval_cycles": layer["interval_cycles"],
                     "ratio_cpu_over_fpga": (c / layer["latency_us"])
                     if c and layer["latency_us"] else None})
    result = {"model": net.name, "fingerprint": net.fingerprint(), "board": board,
              "folding": folding, "fpga": fpga, "cpu": cpu, "layers": rows,
              "ratio_latency_cpu_over_fpga": cpu["total_us"] / fpga["latency_us"],
              "ratio_throughput_fpga_over_cpu":
                  fpga["images_per_second"] / (1e6 / cpu["total_us"]),
              "extra_columns": extra_columns or {},
              "notes": ["CPU: measured on this host (fastest host build); per-layer CPU "
                        "times are the layer's kernel alone (pool, quantisation and flatten "
                        "only in the total)",
                        "FPGA: simulated cycles (cocotb + Verilator, bit-exact) at the "
                        "board build's clock; '@Fmax' at its post-route Fmax",
                        "no ARM core measured: see BENCHMARKS.md 'Firmware' for AArch64 "
                        "instruction counts and llvm-mca estimates"]}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "compare.json", result)
    _markdown(out / "compare.md", result)
    plot(result, out / "compare.png")
    return result


def _us(v):
    if v is None:
        return "-"
    return f"{v:,.1f} µs" if v < 1000 else f"{v / 1000:,.2f} ms"


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
