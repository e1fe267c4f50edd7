"""``bnnhw asic``: the network core on a standard-cell library (area, timing, power, and a
gate-level simulation against the golden model with ``--verify``).

A command module with ``register(subparsers)`` (the layout of ``bnnhw/cli/``); the work is
done by :mod:`bnnhw.gen.asic`.
"""

import json
import sys
import time
from pathlib import Path

from ..errors import InputError, ToolError
from ._common import positive_number

__all__ = ["register", "cmd_asic"]


def _progress(step, stage, result):
    if step == "synthesis":
        how = "cached" if result.get("cached") else f"{result['seconds']:.1f} s"
        print(f"  synthesized {stage}: {result['area_um2']:,.0f} um², "
              f"{result['flip_flops']:,} FFs ({how})", file=sys.stderr, flush=True)
    elif stage == "(whole core)":
        f = result["fmax_mhz"]
        print(f"  timed the whole core: Fmax {f:,.1f} MHz ({result['seconds']:.1f} s)"
              if f else "  timed the whole core: no constrained path", file=sys.stderr,
              flush=True)


def _print_summary(report):
    t = report["total"]
    s = report["settings"]
    header = ("layer", "cell um²", "seq um²", "cells", "FFs", "mem bits", "mapped", "Fmax MHz")
    rows = [header]
    for r in report["layers"]:
        mapped = "macro" if r["memory_bits_macro"] else "logic"
        rows.append((r["layer"], f"{r['area_um2']:,.0f}", f"{r['sequential_area_um2']:,.0f}",
                     f"{r['cell_count']:,}", f"{r['flip_flops']:,}",
                     f"{r['memory_bits_logic'] + r['memory_bits_macro']:,}", mapped,
                     f"{r['fmax_mhz']:,.1f}" if r["fmax_mhz"] else "-"))
    rows.append(("total", f"{t['area_um2']:,.0f}", f"{t['sequential_area_um2']:,.0f}",
                 f"{t['cell_count']:,}", f"{t['flip_flops']:,}", f"{t['memory_bits']:,}", "",
                 f"{t['fmax_mhz']:,.1f}" if t["fmax_mhz"] else "-"))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    lib = report["library"]
    print(f"{report['model']['name']} on {lib['name']} ({lib['node_um']} um), memories "
          f"{s['memories']}: cell area {t['area_um2'] / 1e6:,.3f} mm², die "
          f"{t['die_area_mm2']:,.3f} mm² at {100 * s['utilization']:.0f} % utilisation"
          + (f" (+ {t['memory_bits_macro']:,} macro bits, estimated)"
             if t["memory_bits_macro"] else ""))
    if t["fmax_mhz"]:
        print(f"Fmax {t['fmax_mhz']:,.1f} MHz ({t['fmax_source']}, pre-layout): "
              f"{t['cycles_per_image']:,} cycles/image = {t['images_per_second']:,.0f} images/s, "
              f"{t['images_per_second_per_mm2']:,.0f} images/s per mm²")
    pw = t.get("power_w_at_clock")
    if pw:
        print(f"power at {s['clock_mhz']:g} MHz (vectorless): {pw['total'] * 1e3:,.2f} mW")


def cmd_asic(args):
    from ..flow import Build
    from ..flow.steps import asic_variant
    from ..gen import asic
    from ._common import load_net
    if not 0 < args.utilization <= 1:
        raise InputError(f"--utilization must be in (0, 1], not {args.utilization:g}")
    if not 1 <= args.jobs <= 256:
        raise InputError(f"--jobs must be between 1 and 256, not {args.jobs}")
    if args.macro_min_bits < 1:
        raise InputError(f"--macro-min-bits must be at least 1, not {args.macro_min_bits}")
    from ..outputs import check_output_file, check_output_folder
    if args.json:
        check_output_file(args.json, "--json output")
    if args.output is not None:
        check_output_folder(args.output, "asic")
    net = load_net(args.model)
    build = Build.of(net, args.folding)
    # Fail on a missing library or OpenSTA before minutes of synthesis.
    asic.find_library(args.library)
    asic.opensta()
    params = {"library": args.library, "clock_mhz": args.clock_mhz,
              "memories": args.memories, "macro_min_bits": args.macro_min_bits,
              "utilization": args.utilization, "jobs": args.jobs}
    start = time.monotonic()
    record = build.run("asic", **params)
    report = json.loads(build.path(record["outputs"][0]).read_text())
    out_dir = build.path("asic", asic_variant(params))
    if args.verify:
        print("  simulating the gate-level core (Icarus, library cell models)...",
              file=sys.stderr, flush=True)
        v = asic.verify_gate_level(net, build.config.folding, library=args.library,
                                   memories=args.memories, macro_min_bits=args.macro_min_bits,
                                   clock_mhz=args.clock_mhz, jobs=args.jobs,
                                   out_dir=out_dir / "verify")
        report["verify"] = v
    report["seconds"]["command"] = round(time.monotonic() - start, 1)
    if args.output is not None:
        asic.write_report(report, args.output)
    if args.json:
        from ..model.io import atomic_write
        text = json.dumps(report, indent=1, sort_keys=True, allow_nan=False) + "\n"
        atomic_write(args.json, lambda p: Path(p).write_text(text))
    _print_summary(report)
    where = Path(args.output) if args.output is not None else out_dir
    print(f"report: {where / 'report.md'}" + (f", {args.json}" if args.json else "")
          + f" ({report['seconds']['command']:.0f} s"
          + (", synthesis reused from the build folder" if record["skipped"] else "") + ")")
    if args.verify:
        v = report["verify"]
        if not v["passed"]:
            raise ToolError(f"gate-level simulation of the {args.library} netlist differs from "
                            f"the golden model: " + "; ".join(v["errors"][:3]))
        print(f"verify: gate-level netlist bit-exact with the golden model on {v['images']} "
              f"images, clean and with random stalls ({v['cycles_per_image']} cycles/image, "
              f"{v['seconds']:.0f} s)")


def register(subparsers):
    """Add ``bnnhw asic`` to the ``bnnhw`` command parser."""
    from ..gen.asic import DEFAULT_MACRO_MIN_BITS, DEFAULT_UTILIZATION, LIBRARIES, MEMORY_MODES
    p = subparsers.add_parser(
        "asic", help="standard-cell synthesis, static timing and power of the core",
        description="bnnhw asic MODEL: synthesize every stage of the core to a standard-cell "
                    "library (YoWASP Yosys + ABC), time it with OpenSTA, report area, "
                    "flip-flops, memories, Fmax, images/s and power per layer and in total; "
                    "--verify simulates the gate-level netlist against the golden model.")
    p.add_argument("model")
    p.add_argument("--folding", metavar="FILE", default=None,
                   help="JSON {layer: {PE, SIMD}} (default: the model's, e.g. FINN's)")
    p.add_argument("--library", default="osu018", choices=LIBRARIES,
                   help="standard cells (Debian qflow-tech-<library>; default osu018)")
    p.add_argument("--clock-mhz", type=positive_number, default=100.0,
                   help="timing constraint and power clock (default 100)")
    p.add_argument("--memories", default="logic", choices=MEMORY_MODES,
                   help="logic: memories (ROM weights too) become gates and flip-flops; "
                        "macro: memories of at least --macro-min-bits stay black boxes with "
                        "timing stubs, reported separately")
    p.add_argument("--macro-min-bits", type=int, default=DEFAULT_MACRO_MIN_BITS, metavar="N",
                   help=f"smallest macro memory (default {DEFAULT_MACRO_MIN_BITS})")
    p.add_argument("--utilization", type=float, default=DEFAULT_UTILIZATION,
                   help=f"placement utilisation of the die estimate (default "
                        f"{DEFAULT_UTILIZATION})")
    p.add_argument("--verify", action="store_true",
                   help="simulate the gate-level netlist (library cell models, Icarus) in the "
                        "cocotb bench against the golden model, clean and with stalls")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the report as JSON")
    p.add_argument("-o", "--output", metavar="DIR", default=None,
                   help="also write report.md / report.json here (the build folder under the "
                        "build root always has them, in asic/<library>-<memories>-...)")
    p.add_argument("--jobs", type=int, default=2, help="parallel synthesis runs (default 2)")
    p.set_defaults(func=cmd_asic)
    return p
