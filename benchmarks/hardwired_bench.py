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
import dataclasses
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bnnhw  # noqa: E402
from bnnhw.errors import ToolError  # noqa: E402
from bnnhw.flow import build_root  # noqa: E402
from bnnhw.gen import asic, resources  # noqa: E402
from bnnhw.gen.verilog import to_rtlil  # noqa: E402
from bnnhw.plan.hardwired import LOWERINGS, conv_slice, hardwired_plan  # noqa: E402
from bnnhw.sharing import make_plan  # noqa: E402
from report import SHARED_DATA, markdown_table, update_section  # noqa: E402

warnings.filterwarnings("ignore", message=".*created but never used")

OUT = build_root() / "benchmarks" / "hardwired"
CACHE = OUT / "cache"
RESULTS = OUT / "results.json"
COMMAND = "nice -n 10 .venv/bin/python benchmarks/hardwired_bench.py"
FAMILIES = {"ecp5": "lut4_equiv", "xc7": "lut", "osu018": "area_um2"}
UNITS = {"ecp5": "LUT4 eq.", "xc7": "LUT6", "osu018": "um² of OSU 0.18 um cells"}
#: (label, adder form, sharing mode or None)
VARIANTS = (("naive", "naive", None), ("grouped", "grouped", None),
            ("kernels/exact", "kernels", "exact"), ("rows", "rows", None),
            ("auto/similar:1", "auto", "similar:1"), ("cse/exact", "cse", "exact"),
            ("cse/similar:1", "cse", "similar:1"), ("minority", "minority", None),
            ("split", "split", None), ("filters", "filters", None))
#: Forms that share within an input channel (what the output-sum floor bounds).
WITHIN_CHANNEL = ("kernels", "rows", "auto", "cse")
LAYERS = ("conv1", "conv5", "conv3", "conv2", "conv4")


def slice_net(cnv, layer, kind):
    if kind == "in8":
        return conv_slice(cnv, layer, inputs=range(8))
    if kind == "all":
        return conv_slice(cnv, layer)
    return conv_slice(cnv, layer, outputs=range(8))


def load(path):
    return json.loads(path.read_text()) if path.exists() else {}


def save(key, result):
    """Add one result to the file, under a lock: runs for different families may share it,
    and each writes only what it measured."""
    import fcntl
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = load(RESULTS)
        results[key] = result
        tmp = RESULTS.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
        tmp.replace(RESULTS)


def with_lowering(variant, lowering):
    """``(label, form, mode, lowering)``: ``variant`` elaborated with a
    :data:`~bnnhw.plan.hardwired.LOWERINGS` entry (label ``"form@lowering"``, except for the
    default, ``"chains"``)."""
    label, form, mode = variant
    return (label if lowering == "chains" else f"{label}@{lowering}", form, mode, lowering)


#: The output-sum floor: the slice with only four kernels per input channel (two of the
#: layer's own and their inverses, one of them at random for every output channel), built
#: like ``grouped``. What it costs is the per-output-channel sums and compares, which no
#: sharing of kernels within a channel can remove.
FLOOR = ("floor", "grouped", None, "chains")


def floor_weight(weight, seed=0):
    """``[O, C, kh, kw]`` weights with every ``(o, c)`` kernel one of ``+-weight[0, c]``,
    ``+-weight[1, c]`` (at random), so that output channels stay distinct."""
    rng = np.random.default_rng(seed)
    o, c = weight.shape[:2]
    pick = rng.integers(0, 2, (o, c))
    sign = rng.choice(np.array([-1, 1], weight.dtype), (o, c))
    base = weight[pick, np.arange(c)[None, :]]
    return (base * sign[:, :, None, None]).astype(weight.dtype)


def measure(cnv, layer, kind, variant, family, timeout):
    label, form, mode, lowering = variant
    net = slice_net(cnv, layer, kind)
    plan = make_plan(net, mode) if mode else None
    # The ASIC flow's graphs are chosen by ECP5's cost model; lowered to full adders and
    # two-operand adders as for the FPGAs (as plain multi-operand sums, Yosys + ABC had not
    # mapped conv1's naive slice to the cells after 9 min; grouped took 15 s either way).
    hp = hardwired_plan(net, layer, sharing=plan, adders=form,
                        family="ecp5" if family == "osu018" else family,
                        lowering=lowering)
    if label == "floor":
        hp = dataclasses.replace(hp, layer=dataclasses.replace(
            hp.layer, weight=floor_weight(np.asarray(hp.layer.weight))))
    stats = hp.graph.stats()
    start = time.monotonic()
    try:
        if family == "osu018":
            r = asic.synthesize_stage(to_rtlil(hp.create(), "top"), asic.find_library(family),
                                      module="hardwired", cache_dir=CACHE / "osu018",
                                      timeout=timeout)
            total = {k: r[k] for k in ("area_um2", "sequential_area_um2", "cell_count",
                                       "flip_flops")}
            total["area_um2"] = round(total["area_um2"])
        else:
            r = resources.synthesize(hp.create(), family, timeout=timeout, cache_dir=CACHE)
            total = r["total"]
    except ToolError as e:
        return {"error": str(e)[:300], "seconds": round(time.monotonic() - start, 1),
                "graph": stats}
    return {"luts": total[FAMILIES[family]], "total": total, "ranks": list(hp.ranks),
            "seconds": r.get("seconds"), "graph": stats}


def fmt_pct(v, base):
    if v is None or base is None:
        return "-"
    return f"{100.0 * (v - base) / base:+.1f} %"


def best_lowering(results, kind, layer, label, family):
    """``(result, lowering)``: the variant's smallest measured lowering (a failure only when
    no lowering finished), or ``(None, None)``."""
    found = []
    for lowering in LOWERINGS:
        suffix = "" if lowering == "chains" else f"@{lowering}"
        r = results.get(f"{kind}/{layer}/{label}{suffix}/{family}")
        if r is not None:
            found.append((r, lowering))
    done = [f for f in found if "error" not in f[0]]
    if done:
        return min(done, key=lambda f: f[0]["luts"])
    return found[0] if found else (None, None)


def report(results, kinds, layers):
    parts = []
    for kind in kinds:
        what = {"in8": "input channels 0-7, all output channels (zero thresholds)",
                "out8": "output channels 0-7, all input channels (real thresholds)",
                "all": "the whole layer (real thresholds)"}[kind]
        parts.append(f"### Slices `{kind}`: {what}\n")
        for family, unit in FAMILIES.items():
            if not any(k.startswith(f"{kind}/") and k.endswith(f"/{family}") for k in results):
                continue
            header = ["layer", "K x O"] + [v[0] for v in VARIANTS] + \
                     ["best shared vs grouped", "best shared vs naive",
                      "output-sum floor", "kernel part removed"]
            rows = []
            for layer in sorted(layers):
                cells, vals = [], {}
                shape = "-"
                for v in VARIANTS:
                    r, lowering = best_lowering(results, kind, layer, v[0], family)
                    if r is None:
                        cells.append("not run")
                        continue
                    shape = f"{r['graph']['inputs']} x {r['graph']['outputs']}"
                    if "error" in r:
                        cells.append(f"failed ({r['seconds']:.0f} s)")
                        continue
                    vals[v[0]] = r["luts"]
                    cells.append(str(r["luts"]) + ("" if lowering == "chains"
                                                   else f" ({lowering})"))
                shared = {k: x for k, x in vals.items() if k not in ("naive", "grouped")}
                best = min(shared.values()) if shared else None
                within = [x for k, x in shared.items() if k.split("/")[0] in WITHIN_CHANNEL]
                best_within = min(within) if within else None
                fl = results.get(f"{kind}/{layer}/floor/{family}", {}).get("luts")
                grouped = vals.get("grouped")
                kernel_cut = "-"
                if fl is not None and grouped is not None and best_within is not None \
                        and grouped > fl:
                    kernel_cut = f"{100.0 * (grouped - best_within) / (grouped - fl):.0f} %"
                rows.append([layer, shape, *cells, fmt_pct(best, grouped),
                             fmt_pct(best, vals.get("naive")),
                             "-" if fl is None else str(fl), kernel_cut])
            parts.append(f"{family} ({UNITS[family]}, `{unit}`):\n\n"
                         + markdown_table(header, rows) + "\n")
    return "\n".join(parts)


def lowerings_table(results):
    """Every variant measured in more than one lowering, per slice, layer and family."""
    from bnnhw.plan.hardwired import LOWERINGS
    groups = {}
    for key, r in results.items():
        kind, layer, *label, family = key.split("/")
        label = "/".join(label)
        base, _, lowering = label.partition("@")
        groups.setdefault((kind, layer, family), {}).setdefault(base, {})[
            lowering or "chains"] = r
    rows = []
    chains_best = True
    for (kind, layer, family), forms in sorted(groups.items()):
        if not any(len(by) > 1 for by in forms.values()):
            continue
        for base, by in forms.items():
            if len(by) < 2:
                continue
            luts = {lw: r["luts"] for lw, r in by.items() if "luts" in r}
            chains_best &= luts.get("chains") == min(luts.values(), default=None)
            cells = []
            for lw in LOWERINGS:
                r = by.get(lw)
                cells.append("-" if r is None else
                             f"failed ({r['seconds']:.0f} s)" if "error" in r else
                             f"{r['luts']:,}")
            rows.append([f"{kind}/{layer}", family, base, *cells])
    if not rows:
        return ""
    return ("### Lowerings tried\n\nThe same graphs elaborated in several ways "
            "(`bnnhw.plan.hardwired.LOWERINGS`): `chains` (full adders in LUTs, two-operand "
            "carry chains, intermediate results kept), `counters` (the same with 6:3 counters "
            "first: one LUT6 per output bit), `csa` (each sum node a carry-save tree "
            "of kept full adders and one chain), `yosys` (each sum node one multi-operand `+`, "
            "Yosys' `alumacc` and ABC choose). The tables above give each variant at its "
            "smallest measured lowering (named when it is not `chains`)"
            + ("; `chains` is the smallest on every row below." if chains_best else
               ".") + "\n\n"
            + markdown_table(["slice", "family", "variant", *LOWERINGS], rows) + "\n")


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
        for family in ("ecp5", "xc7"):
            best = [results[f"in8/{layer}/{v[0]}/{family}"]["luts"] for v in VARIANTS
                    if "luts" in results.get(f"in8/{layer}/{v[0]}/{family}", {})]
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
    ap.add_argument("--variants", default=None,
                    help="comma-separated variant labels to run (default: all)")
    ap.add_argument("--lowerings", default="chains",
                    help="comma-separated lowerings (chains, csa, yosys) to run each variant in")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    kinds = args.slices.split(",")
    layers = args.layers.split(",")
    families = args.families.split(",")
    lowerings = args.lowerings.split(",")
    cnv = bnnhw.load_model(SHARED_DATA / "bnn-pynq" / "cnvW1A1_cifar10.npz")
    results = load(RESULTS)
    if not args.report_only:
        for kind in kinds:
            for layer in layers:
                for family in families:
                    todo = [with_lowering(v, lw) for lw in lowerings for v in VARIANTS]
                    if family != "osu018":
                        todo.append(FLOOR)
                    for v in todo:
                        key = f"{kind}/{layer}/{v[0]}/{family}"
                        if key in results or (args.variants and
                                              v[0] not in args.variants.split(",")):
                            continue
                        t = time.monotonic()
                        results[key] = measure(cnv, layer, kind, v, family, args.timeout)
                        save(key, results[key])
                        r = results[key]
                        print(f"{key}: {r.get('luts', r.get('error'))} "
                              f"({time.monotonic() - t:.0f} s)", flush=True)
    body = (report(results, kinds, layers) + "\n" + lowerings_table(results)
            + "\n" + lut_cycles(results, cnv, layers))
    print(body)
    update_section("Hardwired result sharing", f"""
Hardwired (constant-weight, fully unrolled) convolution datapath per adder form, synthesized
out of context with YoWASP Yosys (ECP5: `synth_ecp5`, LUT4 equivalents = LUT4 + 2 x CCU2C;
xc7: `synth_xilinx`, LUT6, CARRY4 not counted) and on the OSU 0.18 um standard cells
(`bnnhw.gen.asic`, Yosys + ABC, cell area), at equal throughput: every variant takes one whole
window vector per cycle and gives all output channels, registered (`split` and `filters` with
a pipeline register rank every three adder levels, their default: more flip-flops, the same
rate). Lower is better; each variant at its smallest measured lowering (see "Lowerings
tried"). "best shared" is the smallest sharing form (every form but the two baselines).
Every variant computes the
same outputs: the graphs are proved against the kernels for all inputs before synthesis
(`AdderGraph.check`), and simulation compares the hardware with the golden model
(`tests/hw/test_hardwired.py`, `tests/hw/test_hardwired_core.py`, cocotb:
`tests/sim/test_hardwired_sim.py`). Variants larger than a baseline are listed as measured. "failed (N s)": Yosys did not finish within the timeout.

"output-sum floor": the same slice with only four kernels per input channel (two of the
layer's, and their inverses, one picked at random per output channel), built as `grouped`:
the per-output-channel sums and compares, which no sharing of kernels within a channel
removes. "kernel part removed": (grouped - best 2-D form) / (grouped - floor), the share of the
kernel popcounts' LUTs that sharing within channels saved (the whole-filter forms restructure
the sums themselves, which the floor does not bound).

Variants: `naive` and `grouped` are the two unshared baselines (one popcount per output
channel over all K bits; a popcount per 2-D kernel, summed). `kernels/exact`: the exact plan's
repeated and inverse kernels computed once per input channel (inverses as complements, the
constants in the thresholds). `rows`: kernel rows shared per channel (a row popcount per row
class), kernels read by two or more outputs as nodes. `auto/similar:1`: per kernel class the
cheapest of rows / own node / derived from a kernel at Hamming distance 1 with an exact
correction, chosen by the cost model. `cse/*`: `auto` followed by greedy two-term common
subexpressions across input channels (da4ml's idea).

Whole-filter forms (no sharing plan; they share results between 3-D filters, where the 2-D
forms share within one input channel): `minority`: the window's popcount `T` once for all
output channels, each output `T` (or `K - T`) plus twice the popcount of its minority-sign
literals (at most K/2 bits instead of K). `split`: the same with each minority count split
per 2-D kernel, a count per input channel and tap set shared by every output that needs it.
`filters`: every output channel derived from `T` or from an output channel already computed
(or its inverse) plus twice the popcount of the literals where the two filters differ, along a
minimum spanning tree by Hamming distance at most four derivations deep
(`bnnhw.plan.hardwired.filter_tree`). On xc7, `counters` lowers these popcounts with 6:3
counters (one LUT6 per result bit) where `chains` uses full adders (two LUTs per three bits).
The `in8` slices are 8-channel slices of
every CNV conv layer (input channels 0-7, all output channels: where sharing between output
channels can act); `all` is a whole layer. The `out8` slices (8 output channels, all input
channels) share almost nothing and one of them (conv5, K = 2,304, naive, ECP5) had not
finished after 15 min in an earlier session, so they are not in the tables.

```sh
{COMMAND} --slices in8 --families ecp5,xc7                     # ~45 min
{COMMAND} --slices in8 --families osu018 --timeout 600         # naive and cse/exact: see below
{COMMAND} --slices all --layers conv1 --timeout 1200 --variants grouped,kernels/exact,rows,naive
{COMMAND} --slices in8 --layers conv1 --lowerings chains,csa,yosys
{COMMAND} --slices in8 --families ecp5,xc7 --variants minority,split,filters   # ~15 min
{COMMAND} --slices in8,all --layers conv1,conv2,conv3,conv4,conv5 --families xc7 --lowerings counters --variants naive@counters,grouped@counters,filters@counters    # stop it after all/conv1
{COMMAND} --slices all --layers conv1 --families ecp5,xc7 --variants filters
{COMMAND} --slices in8,all --families ecp5,xc7,osu018 --report-only   # these tables
```

Measured: `filters` is the smallest form on ECP5 on every layer, 31-34 % below `grouped` and
44-47 % below `naive` on the slices, 39 % below `grouped` on the whole conv1 (30,160 vs 49,448
LUT4 eq.); the 2-D forms reached 5-13 %. On xc7 `filters` with 6:3 counters is 31 % below
`grouped` on conv1's slice, 20 % on the whole conv1 (20,915 vs 26,048), 19.5 % on conv3,
10 % on conv2, but on conv4 and conv5 (256 outputs) it is 2 % above `grouped` and the exact
2-D plan (`kernels/exact`, -7 %) stays the best there: with 256 outputs per slice the
`grouped` baseline's 9-bit kernel popcounts repeat most, and a LUT6 counts a 9-bit popcount
in about 3.6 LUTs, as cheap as a derivation. Deeper trees (unlimited depth) took conv4 to
8,771 LUT6 (-4.7 %), still above `kernels/exact`, with 9,755 flip-flops. On the OSU cells
`minority` is the smallest (26-30 % below `grouped`): there the pipeline registers of
`filters` are area (conv1: 1,309 flip-flops, 125,664 um² of its 523,378; its logic alone,
397,714 um², is about `minority`'s), and unpipelined Yosys + ABC did not map it in 10 min.
`split` (conv1 only) is no better than `minority` on ECP5 (4,633 vs 4,785) and worse on xc7.
The flip-flops of the pipelined forms on the FPGAs: conv1's slice 1,308 (ECP5) against 65
for the unpipelined forms.

OSU 0.18 um: the `naive` slice of conv1 did not finish Yosys + ABC within 600 s and
`cse/exact` of conv5 neither (conv1's took 258 s), so on the other layers those two were not
run (`--variants`). Whole layers take 12-16 min of Yosys per variant on this machine; conv1
is the one measured.

{body}
""")


if __name__ == "__main__":
    main()
