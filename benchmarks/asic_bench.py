"""ASIC flow (``bnnhw asic``) on the OSU 0.18 um standard cells: area, flip-flops, Fmax,
images/s and images/s per mm² of the example model, LFC and CNV, at FINN's folding and at a
faster one, with the time the flow takes.

Foldings: the model's own (FINN's for the BNN-PYNQ networks, the default for the example
model) and a faster one: :func:`bnnhw.plan.folding.auto_folding` for FINN's published image rate
at 100 MHz (LFC 356,633, CNV 9,150 images/s, as in benchmarks/hw_resources.py), for the
example model ten times its default rate. Every row is one :func:`bnnhw.gen.asic.asic_report`
call with an empty stage cache (``--jobs 2``), so "flow s" is the full time of the flow on
this machine; finished rows are kept in ``build/asic_bench/results.json`` (``--redo`` reruns).

Run (about 30-40 min on 2 cores; ``--verify``: the gate-level simulation of the example core,
4-9 min; ``--placement``: a qflow place-and-route trial of one small stage)::

    .venv/bin/python benchmarks/asic_bench.py [--verify] [--placement]

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
from bnnhw.plan.folding import auto_folding, folding_cycles, load_folding  # noqa: E402
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
        ps = subprocess.run(["ps", "-eo", "pid,ppid,pcpu,args", "--sort=-pcpu"],
                            capture_output=True, text=True).stdout.splitlines()[1:]
    except OSError:
        ps = []
    mine = {os.getpid()}
    busy = []
    for line in ps:
        pid, ppid, cpu, comm = line.split(None, 3)
        if int(pid) in mine or int(ppid) in mine or float(cpu) < 20:
            continue
        busy.append(f"`{comm[:60]}` {float(cpu):.0f}%")
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


def run_verify(jobs):
    """Gate-level simulation of the example core (Icarus, osu018 cell models), as
    ``bnnhw asic --verify`` runs it."""
    net = bnnhw.load_model(MODELS["example"]["path"])
    before = machine_note()
    with tempfile.TemporaryDirectory(prefix="bnnhw-asic-verify-") as tmp:
        r = asic.verify_gate_level(net, cache_dir=Path(tmp) / "cache", out_dir=Path(tmp) / "v",
                                   jobs=jobs)
    return dict(r, machine_before=before, machine_after=machine_note())


def run_placement():
    """qflow (Debian; its own Yosys synthesis, graywolf placement, qrouter routing, vesta
    timing with the routed parasitics) on one small stage, a StreamFIFO(width=8, depth=16),
    beside this flow's pre-layout figure of the same stage."""
    import re
    import shutil
    from bnnhw.gen.verilog import to_rtlil, to_verilog
    from bnnhw.hw.convert import StreamFIFO
    if shutil.which("qflow") is None:
        raise RuntimeError("qflow is not installed (apt-get install qflow)")
    lib = asic.find_library("osu018")
    fifo = StreamFIFO(width=8, depth=16)
    with tempfile.TemporaryDirectory(prefix="bnnhw-qflow-") as tmp:
        tmp = Path(tmp)
        r = asic.synthesize_stage(to_rtlil(fifo, "top"), lib, module="fifo",
                                  cache_dir=tmp / "cache")
        t = asic.run_sta(liberties=[lib.liberty], netlists=[r["netlist"]], top="fifo",
                         clock_mhz=100.0, ports=r["ports"], library=lib)
        (tmp / "q" / "source").mkdir(parents=True)
        (tmp / "q" / "source" / "fifo.v").write_text(to_verilog(StreamFIFO(width=8, depth=16),
                                                                "fifo"))
        start = time.monotonic()
        proc = subprocess.run(["qflow", "synthesize", "place", "route", "backanno", "-T",
                               "osu018", "fifo"], cwd=tmp / "q", capture_output=True,
                              text=True, timeout=1800)
        seconds = time.monotonic() - start
        logs = {n: (tmp / "q" / "log" / f"{n}.log").read_text(errors="replace")
                if (tmp / "q" / "log" / f"{n}.log").exists() else ""
                for n in ("synth", "place", "route", "post_sta")}
    fmax = re.search(r"Computed maximum clock frequency \(zero margin\) = ([0-9.]+) MHz",
                     logs["post_sta"])
    routed = "Final: No failed routes!" in logs["route"]
    cells = re.search(r"Other cells = (\d+)", logs["route"])
    return {"stage": "StreamFIFO(width=8, depth=16)", "qflow_exit": proc.returncode,
            "qflow_seconds": round(seconds, 1), "routed": routed,
            "post_route_fmax_mhz": float(fmax.group(1)) if fmax else None,
            "qflow_cells": int(cells.group(1)) if cells else None,
            "bnnhw_cells": r["cell_count"], "bnnhw_area_um2": r["area_um2"],
            "bnnhw_prelayout_fmax_mhz": t["fmax_mhz"]}


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
        if "error" in r or k.startswith(("verify/", "placement/")):
            continue
        b, a = r["machine_before"], r["machine_after"]
        notes.append(f"`{k}`: load {b['load'][0]:.1f} before / {a['load'][0]:.1f} after"
                     + (f"; also running: {', '.join(b['busy'])}" if b["busy"] else ""))
    v = store.get("verify/example")
    extra = []
    if v and "error" not in v:
        extra += ["", f"Gate-level simulation (`bnnhw asic --verify`) of the example core: the "
                  f"stitched osu018 netlist with the library's UDP cell models under Icarus, "
                  f"{v['images']} images streamed clean and with random stalls: "
                  f"{'bit-exact with the golden model' if v['passed'] else 'FAILED'}, "
                  f"{v['cycles_per_image']:,} cycles/image as the RTL, {v['sim_cycles']:,} "
                  f"cycles simulated in {v['run_seconds']:.0f} s ({v['seconds']:.0f} s with "
                  f"synthesis; load {v['machine_before']['load'][0]:.1f}). Verilator 5.048 "
                  f"does not compile the cell models (their specify/specparam blocks)."]
    q = store.get("placement/fifo")
    if q and "error" not in q:
        ratio = q["bnnhw_prelayout_fmax_mhz"] / q["post_route_fmax_mhz"]
        extra += ["", f"Placement trial (`--placement`): qflow 1.3 (Debian: its own Yosys "
                  f"synthesis, graywolf placement, qrouter routing, vesta with the routed "
                  f"parasitics) on one small stage, {q['stage']}: {q['qflow_cells']} "
                  f"components, routed: {q['routed']}, post-route Fmax "
                  f"{q['post_route_fmax_mhz']} MHz, {q['qflow_seconds']:.0f} s wall; this "
                  f"flow's pre-layout figure for the same stage: {q['bnnhw_cells']} cells, "
                  f"{q['bnnhw_area_um2']:,.0f} um², {q['bnnhw_prelayout_fmax_mhz']:.0f} MHz "
                  f"(pre-layout Fmax {ratio:.2f}x the routed one here; qflow maps the RTL "
                  f"itself, so the netlists differ). Larger stages were not placed."]
    header = ["model", "folding", "memories", "PE x SIMD", "cell area mm²", "sequential",
              "FFs", "die mm² (70 %)", "Fmax MHz", "cycles/image", "images/s at Fmax",
              "images/s per mm²", "power mW at 100 MHz", "flow s"]
    body = [
        f"Command: `{COMMAND}` (each row is one `bnnhw asic MODEL [--folding FILE] "
        "[--memories M]` run, from an empty cache). Every stage of the core synthesized "
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
    missing = [f"`{k}/{f}/{m}`" for k in MODELS for f in ("finn", "fast")
               for m in ("logic", "macro") if f"{k}/{f}/{m}" not in store]
    if missing:
        body += ["", "Not run yet (the session ran out of time; rerun the command, finished "
                 "rows are kept): " + ", ".join(missing) + "."]
    body += extra
    return "\n".join(body)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--foldings", nargs="+", default=["finn", "fast"], choices=["finn", "fast"])
    p.add_argument("--memories", nargs="+", default=["logic", "macro"],
                   choices=list(asic.MEMORY_MODES))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--redo", action="store_true", help="rerun rows that have results")
    p.add_argument("--verify", action="store_true",
                   help="also the gate-level simulation of the example core")
    p.add_argument("--placement", action="store_true",
                   help="also the qflow placement and routing trial of one small stage")
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
        extras = ([("verify/example", lambda: run_verify(args.jobs))] if args.verify else []) \
            + ([("placement/fifo", run_placement)] if args.placement else [])
        for k, fn in extras:
            if k in store and "error" not in store[k] and not args.redo:
                continue
            print(f"{k} ...", flush=True)
            try:
                store[k] = fn()
            except Exception as e:  # noqa: BLE001
                store[k] = {"error": f"{type(e).__name__}: {e}"[:400]}
            save_store(store)
    body = report(store)
    print(body)
    if not args.no_write:
        update_section("ASIC", body)


if __name__ == "__main__":
    main()
