"""Whole-network board builds of every shared model and the example model, on every board.

For each model and board: the fit estimate first (a model that does not fit is listed with
its numbers and not built), then ``bnnhw build`` through the flow (``bitstream`` step:
synthesis, place and route, bitstream; cached in the build root) and, unless ``--no-compare``,
``bnnhw compare`` (CPU on this host vs FPGA simulated cycles). Prints the table and writes the
"Boards" section of BENCHMARKS.md.

    .venv/bin/python benchmarks/boards_bench.py [--models example,lfc,cnv] [--boards ...]
        [--freq ulx3s=75,cnv:ulx3s=75] [--target-fps cnv=9150,lfc=195000] [--cached-only]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bnnhw  # noqa: E402
import bnnhw.boards  # noqa: E402,F401
from bnnhw.boards import BOARDS  # noqa: E402
from bnnhw.demo import example_model_path  # noqa: E402
from bnnhw.errors import BnnhwError  # noqa: E402
from bnnhw.flow import Build  # noqa: E402
from bnnhw.plan.core import CorePlan  # noqa: E402
from bnnhw.plan.devices import device  # noqa: E402
from bnnhw.plan.estimate import estimate, over, search_folding  # noqa: E402
from report import SHARED_DATA, markdown_table, update_section  # noqa: E402

MODELS = {"example": example_model_path(),
          "lfc": SHARED_DATA / "bnn-pynq" / "lfcW1A1_mnist.npz",
          "lfc_chars": SHARED_DATA / "bnn-pynq" / "lfcW1A1_chars_merged.npz",
          "cnv": SHARED_DATA / "bnn-pynq" / "cnvW1A1_cifar10.npz",
          "cnv_svhn": SHARED_DATA / "bnn-pynq" / "cnvW1A1_streetview.npz",
          "cnv_gtsrb": SHARED_DATA / "bnn-pynq" / "cnvW1A1_road_signs.npz"}
GOALS = {("cnv", "ulx3s"): "CNV on ULX3S >= 9,150 images/s, timing met, latency <= 283 µs",
         ("lfc", "ulx3s"): "LFC on ULX3S >= 195,000 images/s"}


def kv(text, conv=float):
    out = {}
    for part in filter(None, (text or "").split(",")):
        k, v = part.split("=")
        out[k] = conv(v)
    return out


def dev_family(board):
    return device(BOARDS[board]["device"]).family


def _cached(build, board, row):
    """The recorded bitstream step's report (and a compare.json made for the same build), read
    without running anything; ``row["stale"]`` when the sources changed since it was built."""
    from bnnhw.flow.config import build_root, source_digest
    from bnnhw.flow.steps import STEPS
    rec = build.record()["steps"].get(f"bitstream:{board}")
    path = build.path("board", "board_report.json")
    if not rec or not path.exists():
        row["not_built"] = "--cached-only: no recorded build in the build root"
        stat = build.path("board", "synth_stat.json")
        if stat.exists():
            # An attempt that stopped after synthesis (place and route failed or was stopped).
            from bnnhw.boards.bitstream import synth_counts
            cells = json.loads(stat.read_text())["design"]["num_cells_by_type"]
            n = synth_counts(dev_family(board), cells)
            row["not_built"] = (f"no bitstream: synthesized {n['lut']:,} LUT4 eq., "
                                f"{n['ff']:,} FF, {n['bram']} BRAM, then place and route "
                                f"did not finish (notes)")
        return row
    row["report"] = json.loads(path.read_text())
    row["seconds"] = row["report"]["seconds"]
    row["built"] = rec.get("finished")
    if rec["inputs"].get("sources") != source_digest(STEPS["bitstream"].sources):
        row["stale"] = True
    # `bnnhw compare MODEL --board B` writes <build root>/compare/<model>-<board>/ by default.
    cmp = build_root() / "compare" / f"{build.net.name}-{board}" / "compare.json"
    if cmp.exists():
        c = json.loads(cmp.read_text())
        f = c.get("fpga", {})
        same = (c.get("fingerprint") == build.net.fingerprint() and c.get("board") == board
                and f.get("build_folder") == str(build.folder))
        if same:
            row["compare"] = _compare_row(c, cmp.with_name("compare.png"))
    return row


def _compare_row(c, plot):
    """CPU and FPGA single-image latency of a compare result; the FPGA at its Fmax when it
    misses timing at the design clock (it cannot run faster)."""
    f = c["fpga"]
    at_fmax = not f["timing_met"] and f.get("latency_us_at_fmax")
    fpga_us = f["latency_us_at_fmax"] if at_fmax else f["latency_us"]
    return {"cpu_us": c["cpu"]["total_us"], "cpu_build": c["cpu"]["build"],
            "fpga_us": fpga_us, "at_fmax": bool(at_fmax),
            "ratio": c["cpu"]["total_us"] / fpga_us, "plot": str(plot)}


def one(key, board, freq, fps, do_compare, build_only_cached):
    net = bnnhw.load_model(MODELS[key])
    spec = BOARDS[board]
    dev = device(spec["device"])
    freq = freq or spec["default_mhz"]
    row = {"model": key, "name": net.name, "board": board, "freq": freq}
    try:
        folding = None
        if fps:
            folding, _, _ = search_folding(net, dev, images_per_second=fps, clock_hz=freq * 1e6)
        plan, mm = CorePlan.for_device(net, folding, dev)
        est = estimate(plan, dev, memory_map=mm)
        row["estimate"] = {k: est[k] for k in ("lut", "ff", "bram")}
        row["cycles_per_image"] = plan.cycles_per_image
        bad = over(est, dev)
        if bad:
            row["refused"] = ", ".join(f"{k.upper()} {n:,} needed / {a:,}" for k, n, a in bad)
            return row
        build = Build.of(net, folding, board=board, clock_mhz=float(freq))
        if build_only_cached:
            return _cached(build, board, row)
        build.run("bitstream")
        row["report"] = json.loads(build.path("board", "board_report.json").read_text())
        row["seconds"] = row["report"]["seconds"]
        if do_compare:
            from bnnhw.compare import compare
            out = build.path("compare")
            r = compare(net, board, out, folding=folding, freq_mhz=freq)
            row["compare"] = _compare_row(r, out / "compare.png")
    except BnnhwError as e:
        row["refused"] = str(e)
    return row


def render(rows, command, other):
    table = []
    for r in rows:
        e = r.get("estimate", {})
        if "report" not in r:
            if e and not r.get("refused"):
                # Fits by the estimate but not built: the estimate in the columns, marked.
                ips = r["freq"] * 1e6 / r["cycles_per_image"]
                table.append([r["name"], r["board"], f"{e['lut']:,} (est.)",
                              f"{e['ff']:,} (est.)", f"{e['bram']} (est.)",
                              f"{r['freq']:.1f}", "-", f"{ips:,.0f} (plan)", "-", "-",
                              f"not built: {r.get('not_built')}"])
            else:
                table.append([r["name"], r["board"], "-", "-", "-", "-", "-", "-", "-",
                              "-", f"not built: {r.get('refused') or r.get('not_built')}"])
            continue
        rep = r["report"]
        u = rep["utilization"]
        c = r.get("compare", {})
        err = rep["estimate_error_percent"]
        bram_err = "-" if err["bram"] is None else f"{err['bram']:+.0f} %"
        table.append([
            r["name"], r["board"],
            f"{u['lut']['used']:,}/{u['lut']['available']:,}",
            f"{u['ff']['used']:,}", f"{u['bram']['used']}/{u['bram']['available']}",
            f"{rep['clock_mhz']:.1f}", f"{rep['fmax_mhz']} ({'met' if rep['timing_met'] else 'NOT met'})",
            (f"{rep['images_per_second']:,.0f}" if rep["timing_met"] or not rep["fmax_mhz"]
             else f"{rep['images_per_second']:,.0f} at the clock, "
                  f"{rep['fmax_mhz'] * 1e6 / rep['cycles_per_image']:,.0f} at Fmax"),
            (f"{c['fpga_us']:,.1f} (sim{', at Fmax' if c['at_fmax'] else ''})" if c
             else f"{rep['latency_us_estimate']:,} (est.)"),
            f"{c['ratio']:.3g}x" if c else "-",
            f"{rep['seconds']:.0f} s{' †' if r.get('stale') else ''}; estimate error LUT "
            f"{err['lut']:+.0f} %, "
            f"FF {err['ff']:+.0f} %, BRAM {bram_err}"])
    body = [f"Command: `{command}`  ",
            "Whole network + UART wrapper + clock (PLL on the iCEBreaker and ULX3S, the 27 MHz "
            "oscillator on the Tang Nano 9K) placed and routed as one design with YoWASP "
            "(Yosys 0.70, nextpnr-ice40/-ecp5 0.11 (ECP5 with router2), "
            "nextpnr-himbaechel-gowin 0.11 + Apicula). "
            "LUT = ICESTORM_LC / TRELLIS_COMB / Gowin LUT4 bels placed (Gowin carry cells "
            "apart); Fmax from nextpnr's report for the design clock; images/s at the design clock from the plan's cycles per "
            "image; latency: simulated (cocotb + Verilator, first input beat to last score) "
            "when compared, else the plan's upper estimate; CPU vs FPGA: `bnnhw compare` "
            "(host CPU, fastest host firmware build, one image). Estimate error = (estimate - "
            "synthesized) / synthesized.", "",
            markdown_table(["model", "board", "LUT used/avail", "FF", "BRAM used/avail",
                            "clock MHz", "Fmax MHz (timing)", "images/s", "latency µs",
                            "CPU/FPGA latency", "build time; fit estimate error"], table),
            ""] + other
    return "\n".join(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--boards", default=",".join(BOARDS))
    ap.add_argument("--freq", default="",
                    help="MHz per board or per model:board, e.g. ulx3s=75,cnv:ulx3s=75")
    ap.add_argument("--target-fps", default="",
                    help="images/s per model or model:board, e.g. cnv=9150")
    ap.add_argument("--no-compare", action="store_true")
    ap.add_argument("--cached-only", action="store_true",
                    help="report only builds already in the build root (no new P&R)")
    ap.add_argument("--note", action="append", default=[], help="a line for the report")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    freq, fps = kv(args.freq), kv(args.target_fps)
    rows = []
    for key in args.models.split(","):
        for board in args.boards.split(","):
            r = one(key, board, freq.get(f"{key}:{board}", freq.get(board)),
                    fps.get(f"{key}:{board}", fps.get(key)), not args.no_compare,
                    args.cached_only)
            rows.append(r)
            print(json.dumps({k: v for k, v in r.items() if k != "report"}), flush=True)
    # The notes are the lines under the table; the command names them, not their text.
    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a == "--note":
            skip = True
            continue
        argv.append(a)
    cmd = ".venv/bin/python benchmarks/boards_bench.py " + " ".join(argv) + \
        (" --note ... (the notes below)" if args.note else "")
    if any(r.get("stale") for r in rows):
        args.note.append("†: built (and its report read) before a later change of the "
                         "flow's sources; --cached-only reads recorded reports, it never "
                         "rebuilds")
    load = Path("/proc/loadavg").read_text().split()[0]
    text = render(rows, cmd.strip(), [f"- {n}" for n in args.note]
                  + [f"- load average at the end of the run: {load} (2 cores, shared with "
                     f"other sessions' synthesis jobs)"])
    print(text)
    if not args.no_write:
        update_section("Boards", text)


if __name__ == "__main__":
    main()
