"""Hardwired result sharing in hardware: YoWASP Yosys LUTs of the hardwired layer per adder form.

For slices of every CNV conv layer (``cnvW1A1_cifar10`` conv1..conv5), the hardwired datapath
(:class:`bnnhw.hw.hardwired.HardwiredConv`: every output channel of one whole window vector per
cycle, constant weights, registered outputs, no pipeline ranks) is synthesized out of context
for ECP5 (``synth_ecp5``, LUT4 equivalents: LUT4 + 2 x CCU2C) and xc7 (``synth_xilinx``, LUT6)
in each adder form (:data:`bnnhw.plan.hardwired.ADDER_FORMS`):

* ``naive``: one popcount per output channel over all K bits (unshared baseline);
* ``grouped``: a popcount per 2-D kernel, summed (unshared baseline);
* ``kernels/exact``: the exact sharing plan's entries as they are (repeats and inverses);
* ``rows``: kernel-row popcounts shared per channel, kernels used twice as nodes;
* ``auto/similar:1``: per kernel class the cheapest of rows / node / derived, by the
  family's cost model.

Every variant computes the same function at the same throughput (one window per cycle); the
plans are proved against the kernels (:meth:`bnnhw.plan.adder_graph.AdderGraph.check`) before
synthesis. Two slice kinds: ``in8`` (input channels 0-7, all output channels: where sharing
across output channels can act; zero thresholds) and ``out8`` (output channels 0-7, all input
channels, the real thresholds). Results are cached under the build root.

Run (niced, one Yosys at a time)::

    nice -n 10 .venv/bin/python benchmarks/hardwired_bench.py [--slices in8,out8] [--layers conv1,...]
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bnnhw  # noqa: E402
from bnnhw.errors import ToolError  # noqa: E402
from bnnhw.flow import build_root  # noqa: E402
from bnnhw.gen import resources  # noqa: E402
from bnnhw.plan.hardwired import conv_slice, hardwired_plan  # noqa: E402
from bnnhw.sharing import make_plan  # noqa: E402
from report import SHARED_DATA, markdown_table, update_section  # noqa: E402

warnings.filterwarnings("ignore", message=".*created but never used")

OUT = build_root() / "benchmarks" / "hardwired"
CACHE = OUT / "cache"
RESULTS = OUT / "results.json"
COMMAND = "nice -n 10 .venv/bin/python benchmarks/hardwired_bench.py"
FAMILIES = {"ecp5": "lut4_equiv", "xc7": "lut"}
#: (label, adder form, sharing mode or None)
VARIANTS = (("naive", "naive", None), ("grouped", "grouped", None),
            ("kernels/exact", "kernels", "exact"), ("rows", "rows", None),
            ("auto/similar:1", "auto", "similar:1"))
LAYERS = ("conv1", "conv5", "conv3", "conv2", "conv4")


def slice_net(cnv, layer, kind):
    if kind == "in8":
        return conv_slice(cnv, layer, inputs=range(8))
    return conv_slice(cnv, layer, outputs=range(8))


def load(path):
    return json.loads(path.read_text()) if path.exists() else {}


def save(results):
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
    tmp.replace(RESULTS)


def measure(cnv, layer, kind, variant, family, timeout):
    label, form, mode = variant
    net = slice_net(cnv, layer, kind)
    plan = make_plan(net, mode) if mode else None
    hp = hardwired_plan(net, layer, sharing=plan, adders=form, family=family)
    stats = hp.graph.stats()
    start = time.monotonic()
    try:
        r = resources.synthesize(hp.create(), family, timeout=timeout, cache_dir=CACHE)
    except ToolError as e:
        return {"error": str(e)[:300], "seconds": round(time.monotonic() - start, 1),
                "graph": stats}
    return {"luts": r["total"][FAMILIES[family]], "total": r["total"],
            "seconds": r.get("seconds"), "graph": stats}


def fmt_pct(v, base):
    if v is None or base is None:
        return "-"
    return f"{100.0 * (v - base) / base:+.1f} %"


def report(results, kinds, layers):
    parts = []
    for kind in kinds:
        what = {"in8": "input channels 0-7, all output channels (zero thresholds)",
                "out8": "output channels 0-7, all input channels (real thresholds)"}[kind]
        parts.append(f"### Slices `{kind}`: {what}\n")
        for family, unit in FAMILIES.items():
            header = ["layer", "K x O"] + [v[0] for v in VARIANTS] + \
                     ["best shared vs grouped", "best shared vs naive"]
            rows = []
            for layer in sorted(layers):
                cells, vals = [], {}
                shape = "-"
                for v in VARIANTS:
                    r = results.get(f"{kind}/{layer}/{v[0]}/{family}")
                    if r is None:
                        cells.append("not run")
                        continue
                    shape = f"{r['graph']['inputs']} x {r['graph']['outputs']}"
                    if "error" in r:
                        cells.append(f"failed ({r['seconds']:.0f} s)")
                        continue
                    vals[v[0]] = r["luts"]
                    cells.append(str(r["luts"]))
                shared = {k: x for k, x in vals.items() if k not in ("naive", "grouped")}
                best = min(shared.values()) if shared else None
                rows.append([layer, shape, *cells, fmt_pct(best, vals.get("grouped")),
                             fmt_pct(best, vals.get("naive"))])
            parts.append(f"{family} ({unit}):\n\n" + markdown_table(header, rows) + "\n")
    return "\n".join(parts)


def mvtu_rows():
    """Per CNV layer ``(cycles/image, xc7 LUT6 of the MVTU alone, ecp5 LUT4 eq. of the layer)``
    at FINN's folding, as measured by ``benchmarks/hw_resources.py`` (its table in
    BENCHMARKS.md, "cnvW1A1_cifar10, FINN's folding")."""
    from report import REPORT
    text = REPORT.read_text() if REPORT.exists() else ""
    start = text.find("#### cnvW1A1_cifar10, FINN's folding")
    if start < 0:
        return {}
    out = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("####") or line.startswith("## "):
            break
        cells = [c.strip().replace(",", "").rstrip("*").replace("\\", "")
                 for c in line.strip("|").split("|")]
        if len(cells) > 11 and cells[0] in LAYERS:
            out[cells[0]] = (int(cells[5]), int(cells[10]), int(cells[11]))
    return out


def lut_cycles(results, cnv, layers):
    """Hardwired layer vs folded MVTU in LUT-cycles per image (see the table's note)."""
    mvtu = mvtu_rows()
    rows = []
    blocks = {b.name: b for b in cnv.blocks()}
    for layer in sorted(layers):
        if layer not in mvtu:
            continue
        b = blocks[layer]
        cin = b.compute.layer.in_channels
        pixels = b.compute.output_shape[1] * b.compute.output_shape[2]
        cyc, x_lut, e_lut = mvtu[layer]
        cells = [layer, f"{cyc:,}", f"{x_lut * cyc / 1e6:.1f}", f"{e_lut * cyc / 1e6:.1f}"]
        for family in FAMILIES:
            best = [r["luts"] for k, r in results.items()
                    if k.startswith(f"in8/{layer}/") and k.endswith(f"/{family}") and "luts" in r]
            if not best:
                cells += ["-", "-"]
                continue
            lut = min(best) * cin // 8
            cells += [f"{lut:,}", f"{lut * pixels / 1e6:.1f}"]
        cells.insert(2, f"{pixels:,}")
        rows.append(cells)
    if not rows:
        return ""
    header = ["layer", "MVTU cycles/image (FINN folding)", "hardwired cycles/image",
              "MVTU xc7 M LUT-cycles", "MVTU layer ecp5 M LUT-cycles",
              "hardwired ecp5 LUT4 eq. (extrapolated)", "hardwired ecp5 M LUT-cycles",
              "hardwired xc7 LUT6 (extrapolated)", "hardwired xc7 M LUT-cycles"]
    return ("### Hardwired layer vs folded MVTU, LUT-cycles per image\n\n"
            "MVTU: `benchmarks/hw_resources.py`'s measured table above (xc7: the MVTU alone; "
            "ECP5: the whole layer with window and pool), times its cycles per image. "
            "Hardwired: **an extrapolation, not a measurement**: the best `in8` variant's LUTs "
            "times C/8 slices (the adders that sum the slices' partial counts are not "
            "counted, so it is low), at one output pixel per cycle (the datapath's rate; "
            "inside a core today the sliding window feeds one pixel per beat, k*k = 9 times "
            "slower). Block RAM: the MVTU's weights sit in block RAM or LUT ROM, the "
            "hardwired layer has none.\n\n" + markdown_table(header, rows) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", default="in8")
    ap.add_argument("--layers", default=",".join(LAYERS))
    ap.add_argument("--families", default="ecp5,xc7")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    kinds = args.slices.split(",")
    layers = args.layers.split(",")
    families = args.families.split(",")
    cnv = bnnhw.load_model(SHARED_DATA / "bnn-pynq" / "cnvW1A1_cifar10.npz")
    results = load(RESULTS)
    if not args.report_only:
        for kind in kinds:
            for layer in layers:
                for family in families:
                    for v in VARIANTS:
                        key = f"{kind}/{layer}/{v[0]}/{family}"
                        if key in results:
                            continue
                        t = time.monotonic()
                        results[key] = measure(cnv, layer, kind, v, family, args.timeout)
                        save(results)
                        r = results[key]
                        print(f"{key}: {r.get('luts', r.get('error'))} "
                              f"({time.monotonic() - t:.0f} s)", flush=True)
    body = report(results, kinds, layers) + "\n" + lut_cycles(results, cnv, layers)
    print(body)
    update_section("Hardwired result sharing", f"""
Hardwired (constant-weight, fully unrolled) convolution datapath per adder form, YoWASP Yosys
out of context, at equal throughput (every variant: one whole window vector per cycle, all
output channels, registered outputs). Lower is better; "best shared" is the smallest of the
sharing forms (kernels, rows, auto). Every variant computes the same outputs (the graphs are
proved against the kernels before synthesis; simulation against the golden model:
`tests/hw/test_hardwired.py`). Variants that are larger than a baseline are listed as measured.
"not run": no result yet (the runs are cached; rerunning the command adds them). The `out8`
slices (8 output channels, all input channels) can be run with `--slices out8`; one of them
(conv5, K = 2,304, naive, ECP5) had not finished after 15 min, and with 8 output channels per
input channel there is little to share, so `in8` slices are the measured ones.

```sh
{COMMAND} --slices {args.slices}
```

{body}
""")


if __name__ == "__main__":
    main()
