"""ASIC flow (``bnnhw asic``) on the OSU 0.18 um standard cells: area, flip-flops, Fmax,
images/s and images/s per mm² of the example model, LFC and CNV, at FINN's folding and at a
faster one, with the time the flow takes.

Foldings: the model's own (FINN's for the BNN-PYNQ networks, the default for the example
model) and a faster one: :func:`bnnhw.hw.folding.auto_folding` for FINN's published image rate
at 100 MHz (LFC 356,633, CNV 9,150 images/s, as in benchmarks/hw_resources.py), for the
example model ten times its default rate. Every row is one :func:`bnnhw.gen.asic.asic_report`
call with an empty stage cache (``--jobs 2``), so "flow s" is the full time of the flow on
this machine; finished rows are kept in ``build/asic_bench/results.json`` (``--redo`` reruns).

Run (about 30-40 min on 2 cores)::

    .venv/bin/python benchmarks/asic_bench.py

Prints the table and writes the "ASIC" section of BENCHMARKS.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bnnhw  # noqa: E402
from bnnhw.gen import asic  # noqa: E402
from bnnhw.hw.folding import auto_folding, folding_cycles, load_folding  # noqa: E402
from report import ROOT, SHARED_DATA, markdown_table, update_section  # noqa: E402

OUT = ROOT / "build" / "asic_bench"
RESULTS = OUT / "results.json"
COMMAND = ".venv/bin/python benchmarks/asic_bench.py"
CLOCK_HZ = 100e6

MODELS = {
    "example": {"path": ROOT / "bnnhw" / "examples" / "digits_bnn.npz", "fast_rate": None},
    "lfc": {"path": SHARED_DATA / "bnn-pynq" / "lfcW1A1_mnist.npz", "fast_rate": 356633},
    "cnv": {"path": SHARED_DATA / "bnn-pynq" / "cnvW1A1_cifar10.npz", "fast_rate": 9150},
}


def foldings(key, net):
    own = load_folding(net, None)
    rate = MODELS[key]["fast_rate"]
    if rate is None:
        cycles = max(folding_cycles(net, own).values())
        rate = 10 * CLOCK_HZ / cycles
    return {"finn": own, "fast": auto_folding(net, images_per_second=rate, clock_hz=CLOCK_HZ)}


def machine_note():
    """Load average and the busiest processes that are not this benchmark (shared machine)."""
    load = os.getloadavg()
    try:
        ps = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,comm", "--sort=-pcpu"],
                            capture_output=True, text=True).stdout.splitlines()[1:]
    except OSError:
        ps = []
    mine = {os.getpid()}
    busy = []
    for line in ps:
        pid, ppid, cpu, comm = line.split(None, 3)
        if int(pid) in mine or int(ppid) in mine or float(cpu) < 20:
            continue
        busy.append(f"{comm} {float(cpu):.0f}%")
    return {"load": [round(x, 2) for x in load], "busy": busy[:6]}


def run_one(key, fname, memories, jobs):
    net = bnnhw.load_model(MODELS[key]["path"])
    fold = foldings(key, net)[fname]
    before = machine_note()
    with tempfile.TemporaryDirectory(prefix="bnnhw-asic-bench-") as cache:
        start = time.monotonic()
        report = asic.asic_report(net, fold, library="osu018", clock_mhz=100.0,
                                  memories=memories, cache_dir=cache, jobs=jobs)
        seconds = time.monotonic() - start
    t = report["total"]
    return {"model": net.name, "folding": fold, "memories": memories,
            "flow_seconds": round(seconds, 1), "machine_before": before,
            "machine_after": machine_note(), "total": t, "seconds": report["seconds"],
            "layers": report["layers"],
            "whole_core_path": report["whole_core_timing"]["critical_path"]}


def load_store():
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save_store(store):
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(store, indent=1, sort_keys=True))
    tmp.replace(RESULTS)


def report(store):
    rows = []
    for key in MODELS:
        for fname in ("finn", "fast"):
            for memories in ("logic", "macro"):
                r = store.get(f"{key}/{fname}/{memories}")
                if not r:
                    continue
                if "error" in r:
                    rows.append([key, fname, memories, "failed: " + r["error"][:80]]
                                + [""] * 10)
                    continue
                t = r["total"]
                fold = ", ".join(f"{v['PE']}x{v['SIMD']}" for v in r["folding"].values())
                rows.append([
                    r["model"], ("own (FINN's)" if key != "example" else "own (default)")
                    if fname == "finn" else "faster", memories, fold,
                    f"{t['area_um2'] / 1e6:,.2f}", f"{100 * t['sequential_fraction']:.0f} %",
                    f"{t['flip_flops']:,}", f"{t['die_area_mm2']:,.2f}",
                    f"{t['fmax_mhz']:,.0f}", f"{t['cycles_per_image']:,}",
                    f"{t['images_per_second']:,.0f}", f"{t['images_per_second_per_mm2']:,.0f}",
                    f"{t['power_w_at_clock']['total'] * 1e3:,.0f}",
                    f"{r['flow_seconds']:,.0f}"])
    notes = []
    for k, r in store.items():
        if "error" in r:
            continue
        b, a = r["machine_before"], r["machine_after"]
        notes.append(f"`{k}`: load {b['load'][0]:.1f} before / {a['load'][0]:.1f} after"
                     + (f"; also running: {', '.join(b['busy'])}" if b["busy"] else ""))
    header = ["model", "folding", "memories", "PE x SIMD", "cell area mm²", "sequential",
              "FFs", "die mm² (70 %)", "Fmax MHz", "cycles/image", "images/s at Fmax",
              "images/s per mm²", "power mW at 100 MHz", "flow s"]
    body = [
        f"`bnnhw asic MODEL` (equivalently: `{COMMAND}`): every stage of the core synthesized "
        "on its own to the OSU 0.18 um standard cells (Debian `qflow-tech-osu018`) with YoWASP "
        "Yosys (`synth -flatten -noabc; dfflibmap; abc -liberty -constr -D 10000`), in "
        "parallel (2 jobs), then OpenSTA (Debian `opensta` 2.0.17) on every stage and on the "
        "stitched core (Fmax from the whole core's worst setup slack at a 100 MHz "
        "constraint). Pre-layout figures: the library has no wire-load model, the clock is "
        "ideal, so Fmax is optimistic. `logic`: every memory is flip-flops and gates (ROM "
        "weights become decoding logic); `macro`: memories of at least 4,096 bits are black "
        "boxes with timing stubs (2.0 ns clock-to-data, 0.3 ns setup, assumed), not in the "
        "cell area; the die estimate adds them at an assumed 9 um²/bit. Die = cell area / 0.7 "
        "(+ macros), no I/O ring. Power: OpenSTA, vectorless (every net's activity 0.1 per "
        "cycle) at 100 MHz. Flow s: wall time of the whole flow from an empty cache on the "
        "shared 2-core machine.", "",
        markdown_table(header, rows), "",
        "Machine load during each run (the machine is shared with other sessions):", ""]
    body += [f"- {n}" for n in notes]
    return "\n".join(body)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--foldings", nargs="+", default=["finn", "fast"], choices=["finn", "fast"])
    p.add_argument("--memories", nargs="+", default=["logic", "macro"],
                   choices=list(asic.MEMORY_MODES))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--redo", action="store_true", help="rerun rows that have results")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = p.parse_args(argv)
    store = load_store()
    if not args.report_only:
        # The comparisons that matter first: logic at the model's folding, small to large.
        plan = [(m, f, mem) for mem in args.memories for f in args.foldings
                for m in args.models]
        for key, fname, memories in plan:
            k = f"{key}/{fname}/{memories}"
            if k in store and "error" not in store[k] and not args.redo:
                continue
            print(f"{k} ...", flush=True)
            try:
                store[k] = run_one(key, fname, memories, args.jobs)
            except Exception as e:  # noqa: BLE001 - recorded in the table, not hidden
                store[k] = {"error": f"{type(e).__name__}: {e}"[:400]}
            save_store(store)
            r = store[k]
            print(f"  {r.get('flow_seconds', 'failed')} s "
                  f"{r.get('total', {}).get('area_um2', r.get('error'))}", flush=True)
    body = report(store)
    print(body)
    if not args.no_write:
        update_section("ASIC", body)


if __name__ == "__main__":
    main()
