"""Simulated cycles per image and latency of the generated cores, beside the manifest estimates.

For LFC (``lfcW1A1_mnist``, MNIST test images) and CNV (``cnvW1A1_cifar10``, the reference
images) at FINN's folding (``net.meta["folding"]``) and at a faster folding
(:func:`bnnhw.plan.folding.auto_folding` for FINN's *published* image rate at 100 MHz), the
generated Verilog is simulated with cocotb under Verilator, images streamed back to back
without gaps or backpressure. Every score is checked against the golden model. Reported:

* cycles per image: interval between the last score beats of successive images (steady
  state, must equal the manifest's ``cycles_per_image``), and images/s at 100 MHz;
* latency: first input beat to last score beat of the first image (empty pipeline);
* per stage: simulated frame interval and latency from per-stage frame probes, beside the
  manifest's cycles per image of every stage (the slowest one sets the rate);
* Verilator speed: simulated cycles per wall-clock second (cocotb driving the streams), and
  the build time (C++ compile, cached by Verilog hash under ``build/hw_cycles``).

Run::

    .venv/bin/python benchmarks/hw_cycles.py [--images 3] [--only lfc|cnv]

Writes ``build/hw_cycles/results.json`` and the "Hardware" section of BENCHMARKS.md.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bnnhw  # noqa: E402
from bnnhw import golden  # noqa: E402
from bnnhw.flow import Build, build_root  # noqa: E402
from bnnhw.flow.steps import simulation_results  # noqa: E402
from bnnhw.model.datasets import load_mnist  # noqa: E402
from bnnhw.plan.folding import auto_folding, load_folding  # noqa: E402
from report import SHARED_DATA, markdown_table, update_section  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/hw_cycles.py"
#: The measured figures (the builds themselves live in the build flow's folders).
OUT = build_root() / "benchmarks" / "hw_cycles"
CLOCK_HZ = 100e6
FINN = {
    "lfc": {"file": "lfcW1A1_mnist.npz", "lut": 28360, "images_per_second": 356633},
    "cnv": {"file": "cnvW1A1_cifar10.npz", "lut": 26072, "images_per_second": 9150,
            "latency_us": 527},
}
CLEAN = [{"name": "clean", "valid_prob": 1.0, "ready_prob": 1.0}]


def mnist(count):
    images, _ = load_mnist(SHARED_DATA / "mnist")
    return images[:count].copy()


def cifar(count):
    v = np.load(SHARED_DATA / "bnn-pynq" / "vectors" / "vectors_cnvW1A1_cifar10.npz")
    x = v["images_hwc_u8"].transpose(0, 3, 1, 2)
    reps = -(-count // x.shape[0])
    return np.concatenate([x] * reps)[:count].copy()


def measure(key, fold_name, folding, images, opt):
    net = bnnhw.load_model(SHARED_DATA / "bnn-pynq" / FINN[key]["file"])
    x = mnist(images) if key == "lfc" else cifar(images)
    # Probes: a frame-end pulse per stage (beat counters beside the streams; they do not
    # touch any handshake, so the cycles are those of the core without them).
    build = Build.of(net, folding, probes=True, simulator="verilator")
    t = time.monotonic()
    generated = build.run("generate")
    gen_seconds = 0.0 if generated["skipped"] else time.monotonic() - t
    manifest = json.loads(build.path("core", "manifest.json").read_text())
    scores, stats = simulation_results(build, build.run("simulate", inputs=x,
                                                        verilator_opt=opt))
    if not np.array_equal(scores, golden.forward(net, x)):
        raise SystemExit(f"{key} {fold_name}: scores differ from the golden model")
    r = {"build": {"seconds": stats["build_seconds"]}, "run_seconds": stats["sim_seconds"],
         "sim_cycles": stats["sim_cycles"]}
    clean = {"intervals": stats["intervals"], "latency": [stats["latency_cycles"]],
             "first_in": stats["first_in"], "stage_frame_ends": stats["stage_frame_ends"]}
    core = manifest["core"]
    return {
        "model": key, "folding_name": fold_name, "folding": manifest["folding"],
        "images": images, "generate_seconds": round(gen_seconds, 1),
        "build_seconds": round(r["build"]["seconds"], 1), "run_seconds": round(r["run_seconds"], 1),
        "sim_cycles": r["sim_cycles"],
        "cycles_per_second": r["sim_cycles"] / r["run_seconds"],
        "intervals": clean["intervals"], "latency": clean["latency"][0],
        "cycles_per_image_estimate": core["cycles_per_image"],
        "latency_estimate": core["latency_cycles_estimate"],
        "bottleneck": core["bottleneck"], "stage_cycles": core["stage_cycles_per_image"],
        "layers": [{k: layer[k] for k in ("name", "PE", "SIMD", "K", "O", "cycles_per_image")}
                   for layer in core["layers"]],
        "first_in": clean["first_in"],
        "stage_frame_ends": clean["stage_frame_ends"],
    }


def render(results):
    rows = []
    for r in results:
        cpi = r["intervals"][-1] if r["intervals"] else None
        finn = FINN[r["model"]]
        rows.append([
            r["model"].upper(), r["folding_name"], r["images"], cpi,
            r["cycles_per_image_estimate"], "yes" if cpi == r["cycles_per_image_estimate"]
            else "**no**", f"{CLOCK_HZ / cpi:,.0f}" if cpi else "-",
            f"{finn['images_per_second']:,}", r["latency"], r["latency_estimate"],
            f"{r['latency'] / CLOCK_HZ * 1e6:,.1f}",
        ])
    body = [
        "Generated Verilog simulated with cocotb under Verilator (images back to back, no "
        "valid gaps or backpressure), every score checked against the golden model. "
        "Cycles per image = interval between successive images' last score beats; latency = "
        "first input beat to last score beat of the first image. FINN figures: BNN-PYNQ on "
        "xc7z020 at 100 MHz (published).",
        "",
        f"Command: `{COMMAND} --images {results[0]['images'] if results else 3}`  ",
        f"Host: {platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "",
        markdown_table(["model", "folding", "images", "cycles/image (sim)",
                        "cycles/image (manifest)", "equal", "images/s @100 MHz",
                        "FINN images/s", "latency cycles (sim)", "latency (manifest est.)",
                        "latency µs @100 MHz"], rows),
        "",
        "Per stage, measured in the same simulations: every stage of the core has a frame "
        "probe (a pulse when its output stream has passed an image's worth of beats; "
        "`generate(..., probes=True)`), so *cycles/image (sim)* is the interval between the "
        "last two images' frame ends at that stage and *latency (sim)* the cycles from the "
        "first image's first input beat to that stage's first frame end. The manifest "
        "column is each stage's own rate (`stage_cycles_per_image`; FIFOs, pools and width "
        "converters have none). Downstream of the bottleneck every stage runs at the "
        "bottleneck's interval; upstream, stages run at the pace of the slowest stage "
        "above the bottleneck until the buffers in between fill (with a few images, CNV's "
        "conv0 at 32,400 cycles above fc6's 32,768), so the sim column equals the manifest "
        "where a stage sets the pace. The latency column shows where the time goes.",
        "",
    ]
    for r in results:
        stage_rows = []
        first_in = r["first_in"][0]
        for name, ends in r["stage_frame_ends"].items():
            est = r["stage_cycles"].get(name)
            stage_rows.append([
                name, "-" if est is None else est,
                ends[-1] - ends[-2] if len(ends) >= 2 else "-",
                ends[0] - first_in if ends else "-",
                "**bottleneck**" if name == r["bottleneck"] else ""])
        fold = ", ".join(f"{n} {f['PE']}x{f['SIMD']}" for n, f in r["folding"].items())
        body += [f"**{r['model'].upper()}, {r['folding_name']} folding** (PE x SIMD: {fold})",
                 "", markdown_table(["stage", "cycles/image (manifest, own rate)",
                                     "cycles/image (sim)", "latency (sim)", ""], stage_rows),
                 ""]
    finn_rows = [r for r in results if r["folding_name"] == "finn" and r["intervals"]]
    if finn_rows:
        parts = [f"{r['model'].upper()} {CLOCK_HZ / r['intervals'][-1]:,.0f} images/s "
                 f"(bottleneck {r['bottleneck']}, {r['intervals'][-1]} cycles) against "
                 f"{FINN[r['model']]['images_per_second']:,} published" for r in finn_rows]
        body += ["Note: at the folding recorded in the BNN-PYNQ model files, the contract's "
                 "cycle count `ceil(O/PE) * ceil(K/SIMD) * pixels` per layer gives "
                 + "; ".join(parts) + " at 100 MHz, so FINN's published rates are not "
                 "reachable with that folding at 100 MHz (they were presumably measured with "
                 "another folding or clock). The \"fast\" rows use the cheapest folding that "
                 "meets the published rate (`bnnhw.plan.folding.auto_folding`). Resources of "
                 "these cores: see the hardware resources section.", ""]
    body += ["Verilator simulation speed (cocotb drives and checks every stream beat):", "",
             markdown_table(["model", "folding", "simulated cycles", "run s", "cycles/s",
                             "C++ build s (0 = cached)", "generate s"],
                            [[r["model"].upper(), r["folding_name"], r["sim_cycles"],
                              r["run_seconds"], f"{r['cycles_per_second']:,.0f}",
                              r["build_seconds"], r["generate_seconds"]] for r in results])]
    return "\n".join(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--only", choices=["lfc", "cnv"])
    ap.add_argument("--opt", default="balanced", help="Verilator C++ optimisation")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report from build/hw_cycles/results.json")
    args = ap.parse_args()
    if args.report_only:
        update_section("Hardware", render(json.loads((OUT / "results.json").read_text())))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    results = []
    for key in ("lfc", "cnv"):
        if args.only and key != args.only:
            continue
        net = bnnhw.load_model(SHARED_DATA / "bnn-pynq" / FINN[key]["file"])
        foldings = {"finn": load_folding(net, None),
                    "fast": auto_folding(net, images_per_second=FINN[key]["images_per_second"],
                                         clock_hz=CLOCK_HZ)}
        for name, folding in foldings.items():
            t = time.monotonic()
            r = measure(key, name, folding, args.images, args.opt)
            print(f"{key} {name}: cycles/image {r['intervals']} (manifest "
                  f"{r['cycles_per_image_estimate']}), latency {r['latency']} (est. "
                  f"{r['latency_estimate']}), {r['cycles_per_second']:,.0f} cycles/s, "
                  f"{time.monotonic() - t:.0f} s", flush=True)
            results.append(r)
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    if not args.no_report:
        update_section("Hardware", render(results))


if __name__ == "__main__":
    main()
