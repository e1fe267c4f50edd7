"""The main job: the project's own example model, end to end.

Runs on data and a model that the project itself produced (scikit-learn's 8x8 digits and
``bnnhw/examples/digits_bnn.npz``), so it needs nothing from outside the repository.
"""

import json
import time
from importlib import resources
from pathlib import Path

import numpy as np

from . import golden
from .errors import BnnhwError, ModelError
from .model import load_model

__all__ = ["example_model_path", "run_demo"]


def example_model_path():
    """Path of the committed example model."""
    return Path(resources.files("bnnhw") / "examples" / "digits_bnn.npz")


def _heading(text):
    print(f"\n== {text} " + "=" * max(0, 70 - len(text)))


def _held_out():
    from .model.datasets import digits_split
    _, _, x_test, y_test = digits_split()
    return x_test, y_test


def step_model(ctx):
    path = example_model_path()
    if not path.exists():
        raise ModelError(f"example model {str(path)!r} is missing (run `bnnhw train-example`)")
    net = load_model(path)
    ctx["net"] = net
    recorded = json.loads(path.with_suffix(".json").read_text())
    ctx["recorded"] = recorded
    _heading("example model")
    from .model.summary import model_summary
    s = model_summary(net)
    print(f"{net.name} (id {net.fingerprint()}): {len(net.layers)} layers, "
          f"{s['total_operations']:,} binary ops and {s['total_weight_bits']:,} weight bits "
          f"per image; trained by bnnhw.examples.train_digits")
    for r in s["layers"]:
        extra = f" K={r['K']} acc={r['acc_bits']} bits" if r["K"] else ""
        print(f"  {r['name']:<7} {r['kind']:<16} {'x'.join(map(str, r['input_shape'])):>8} -> "
              f"{'x'.join(map(str, r['output_shape'])):<8}{extra}")


def step_golden(ctx):
    net = ctx["net"]
    x, y = _held_out()
    ctx["x"], ctx["y"] = x, y
    _heading("golden model (NumPy, bit-exact reference)")
    golden.forward(net, x[:16])
    times = []
    for _ in range(5):
        start = time.perf_counter()
        scores = golden.forward(net, x)
        times.append(time.perf_counter() - start)
    ctx["scores"] = scores
    pred = np.argmax(scores, axis=1)
    correct = int((pred == y).sum())
    accuracy = correct / len(y)
    print(f"held-out accuracy: {correct}/{len(y)} = {100 * accuracy:.2f} % "
          f"(recorded at training: "
          f"{100 * ctx['recorded']['accuracy']['golden_test']:.2f} %)")
    print(f"throughput: {len(y) / np.median(times):,.0f} images/s (median of 5 batches of "
          f"{len(y)})")
    if abs(accuracy - ctx["recorded"]["accuracy"]["golden_test"]) > 1e-9:
        raise BnnhwError("golden accuracy differs from the recorded accuracy of the example "
                         "model")
    ctx["results"]["golden"] = {"accuracy": accuracy,
                                "images_per_s": len(y) / float(np.median(times))}


def _same_or_fail(what, got, expected):
    if not np.array_equal(got, expected):
        bad = int(np.argmax(np.any(got != expected, axis=1)))
        raise BnnhwError(f"{what} differs from the golden model (first at image {bad})")


def step_firmware(ctx):
    """C firmware on the host: bit-exact check on every held-out image, then CPU latency."""
    import tempfile

    from .gen import firmware as fw
    net, x = ctx["net"], ctx["x"]
    _heading("firmware (C, host build: every kernel path this CPU runs)")
    runner = fw.host_runner(net, target="host")
    kernels = fw.runner_kernels(runner)
    for kernel in kernels:
        scores = fw.run(net, x, target="host", kernel=kernel)
        _same_or_fail(f"firmware ({kernel} kernels)", scores, ctx["scores"])
        print(f"{kernel:>13} kernels: {len(x)}/{len(x)} images bit-identical to the golden "
              f"model")
    fastest = fw.chosen_kernel(net, target="host")
    with tempfile.TemporaryDirectory(prefix="bnnhw-demo-") as tmp:
        inp = Path(tmp) / "in.bin"
        fw.write_input(net, x[:64], inp)
        proc = fw.run_runner(runner, "host", ["-k", fastest, "-r", "21", inp,
                                              Path(tmp) / "out.bin"])
    line = [l for l in proc.stderr.splitlines() if l.startswith("time_per_image_ns_median")]
    if proc.returncode or not line:
        raise BnnhwError(f"firmware timing run failed: {proc.stderr.strip()[-200:]}")
    ns = float(line[0].split()[1])
    print(f"host CPU latency ({fastest} kernels, the fastest here; median of 21 runs of 64 "
          f"images): {ns / 1000:.1f} us per image")
    ctx["fw_kernel"] = fastest
    ctx["results"]["firmware"] = {"bit_exact_images": int(len(x)), "host_us_per_image": ns / 1000,
                                  "kernel": fastest, "kernels_checked": kernels}


#: Images per second the demo's hardware folding is chosen for, at :data:`DEMO_CLOCK_MHZ`.
DEMO_IMAGES_PER_SECOND = 50_000
DEMO_CLOCK_MHZ = 100.0
#: Held-out images streamed through the simulated hardware.
DEMO_HW_IMAGES = 16


def step_hardware(ctx):
    """Generate the core, simulate it with cocotb + Verilator, place and route it for Fmax.

    The FPGA latency is measured, not estimated: cycles from the simulation of the generated
    Verilog, Fmax from nextpnr's timing analysis of the placed and routed core (``--quick``
    skips place and route and says which clock it assumes instead).
    """
    from .gen.cocotb_run import simulator_env
    from .plan.folding import auto_folding
    from .simulate import hardware_build, simulate
    net, x = ctx["net"], ctx["x"][:DEMO_HW_IMAGES]
    _heading("hardware (Amaranth -> Verilog; cocotb + Verilator; ECP5 place and route)")
    simulator_env("verilator")       # fail here, with the tool's name, if it is missing
    folding = auto_folding(net, images_per_second=DEMO_IMAGES_PER_SECOND,
                           clock_hz=DEMO_CLOCK_MHZ * 1e6)
    print("folding (auto, for "
          f"{DEMO_IMAGES_PER_SECOND:,} images/s at {DEMO_CLOCK_MHZ:g} MHz): "
          + ", ".join(f"{k} {v['PE']}x{v['SIMD']}" for k, v in folding.items()))
    build = hardware_build(net, folding, simulator="verilator")
    ctx["build"] = build
    start = time.monotonic()
    scores, stats = simulate(net, x, simulator="verilator", folding=folding, stress=True)
    _same_or_fail("simulated hardware", scores, ctx["scores"][:len(x)])
    print(f"generated {stats['generated']}; Verilator build {stats['build_seconds']:.0f} s, "
          f"simulation {stats['sim_seconds']:.1f} s ({stats['sim_cycles']:,} cycles)")
    print(f"{len(x)}/{len(x)} images bit-identical to the golden model, streamed back to back "
          f"and again with random valid gaps and backpressure")
    cpi, lat = stats["cycles_per_image"], stats["latency_cycles"]
    print(f"cycles per image {cpi} (manifest estimate {stats['cycles_per_image_estimate']}), "
          f"latency {lat} cycles (first input beat to last score)")
    hw = {"bit_exact_images": len(x), "cycles_per_image": cpi, "latency_cycles": lat,
          "folding": folding, "simulate_seconds": time.monotonic() - start}
    fmax = None
    if not getattr(ctx["args"], "quick", False):
        start = time.monotonic()
        record = build.run("pnr", family="ecp5", freq_mhz=200)
        pnr = json.loads(build.path(record["outputs"][0]).read_text())
        if not pnr["fmax_mhz"]:
            raise BnnhwError("nextpnr reported no Fmax for the demo core")
        fmax = min(pnr["fmax_mhz"].values())      # one clock domain: `sync`
        used = pnr.get("utilization", {})
        how = "reused from the build folder" if record["skipped"] else \
            f"{time.monotonic() - start:.0f} s"
        print(f"ECP5-85F out of context (yowasp yosys + nextpnr, {how}): Fmax {fmax:.1f} MHz; "
              + ", ".join(f"{k} {v['used']}" for k, v in sorted(used.items())
                          if isinstance(v, dict) and v.get("used")))
        hw.update({"fmax_mhz": fmax, "utilization": used})
    ctx["results"]["hardware"] = hw

    _heading("CPU vs FPGA latency, one image")
    rows = []
    cpu = ctx["results"].get("firmware", {}).get("host_us_per_image")
    if cpu is not None:
        rows.append((f"host CPU, firmware ({ctx.get('fw_kernel')} kernels)", f"{cpu:.1f} us",
                     "measured"))
    clock = fmax if fmax is not None else DEMO_CLOCK_MHZ
    how = ("simulated cycles / Fmax from place and route" if fmax is not None
           else f"simulated cycles at an assumed {DEMO_CLOCK_MHZ:g} MHz (--quick: no P&R)")
    rows.append((f"FPGA core at {clock:.1f} MHz", f"{lat / clock:.1f} us", how))
    rows.append((f"FPGA core at {clock:.1f} MHz, streaming", f"{clock * 1e6 / cpi:,.0f} images/s",
                 "one image every cycles_per_image cycles"))
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>16}  ({note})")
    hw["latency_us"] = lat / clock


#: The board the demo builds for, and its design clock (MHz).
DEMO_BOARD = "ulx3s"


def step_boards(ctx):
    """The board flow on the example model: fit estimate, bitstream, CPU vs FPGA comparison.

    ``--quick`` stops after the fit estimate (no place and route, no comparison)."""
    import bnnhw.boards  # noqa: F401  (registers the bitstream step)
    from bnnhw.boards import BOARDS
    from .plan.core import CorePlan
    from .plan.devices import device
    from .plan.estimate import check_fit, estimate
    net = ctx["net"]
    folding = ctx["results"].get("hardware", {}).get("folding")
    spec = BOARDS[DEMO_BOARD]
    dev = device(spec["device"])
    _heading(f"board: {DEMO_BOARD} ({dev.name}), build and CPU vs FPGA comparison")
    plan, mm = CorePlan.for_device(net, folding, dev)
    est = estimate(plan, dev, memory_map=mm)
    check_fit(est, dev)
    print(f"fit estimate: LUT {est['lut']:,}/{dev.luts:,}, FF {est['ff']:,}/{dev.ffs:,}, "
          f"{dev.fam.bram} {est['bram']}/{dev.brams}: fits")
    out = Path(ctx["out"]) / "compare"
    if getattr(ctx["args"], "quick", False):
        print(f"--quick: no bitstream and no comparison (run `bnnhw build "
              f"{example_model_path()} --board {DEMO_BOARD}` and `bnnhw compare ...`)")
        return
    from .compare import compare
    r = compare(net, DEMO_BOARD, out, folding=folding)
    f, c = r["fpga"], r["cpu"]
    print(f"bitstream: {f['build_folder']}/board ({f['board']}, clock {f['clock_mhz']:.1f} MHz, "
          f"Fmax {f['fmax_mhz']} MHz, timing {'met' if f['timing_met'] else 'NOT met'})")
    print(f"one image: CPU {c['total_us']:,.1f} µs ({c['build']}), FPGA "
          f"{f['latency_us']:,.1f} µs; streaming: FPGA {f['images_per_second']:,.0f} "
          f"images/s, CPU {1e6 / c['total_us']:,.0f}")
    print(f"table {out / 'compare.md'}; plot {out / 'compare.png'}")
    ctx["results"]["boards"] = {"board": DEMO_BOARD, "compare": str(out / "compare.json"),
                                "plot": str(out / "compare.png"),
                                "fpga_latency_us": f["latency_us"],
                                "cpu_latency_us": c["total_us"]}


STEPS = [("model", step_model), ("golden", step_golden), ("firmware", step_firmware),
         ("hardware", step_hardware), ("boards", step_boards)]


def run_demo(args):
    """Run every demo step in order; write a JSON summary into ``args.output``."""
    from .outputs import check_output_file
    out = Path(getattr(args, "output", "build/demo"))
    check_output_file(out / "summary.json", "demo summary")    # before the work, not after
    out.mkdir(parents=True, exist_ok=True)
    ctx = {"args": args, "out": out, "results": {}}
    for name, step in STEPS:
        step(ctx)
    if "build" in ctx:
        ctx["build"].run("report")
        ctx["results"]["build_folder"] = str(ctx["build"].folder)
    from .flow.build import write_json
    write_json(out / "summary.json", ctx["results"])
    _heading("done")
    print(f"summary: {out / 'summary.json'}")
    if "build" in ctx:
        print(f"build folder: {ctx['build'].folder} (build.json, report.md)")
