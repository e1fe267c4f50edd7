"""Board commands: ``build`` (bitstream), ``board run`` (UART client), ``compare`` (CPU vs FPGA)."""

import argparse
import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._common import load_input, load_net, positive_number, preview, save_scores

__all__ = ["register"]


def _boards():
    from ..boards import BOARDS
    return BOARDS


def _folding(net, args, board):
    """The folding of ``build``/``compare``: a file, the model's, or a target rate that fits."""
    if args.folding is not None and getattr(args, "target_fps", None) is not None:
        raise InputError("give either --folding or --target-fps, not both")
    if getattr(args, "target_fps", None) is None:
        return args.folding
    from ..plan.devices import device
    from ..plan.estimate import search_folding
    spec = _boards()[board]
    freq = args.freq or spec["default_mhz"]
    fold, plan, est = search_folding(net, device(spec["device"]),
                                     images_per_second=args.target_fps, clock_hz=freq * 1e6)
    print(f"folding for {args.target_fps:,g} images/s at {freq:g} MHz that fits the "
          f"{spec['device']}: " + ", ".join(f"{k} {v['PE']}x{v['SIMD']}"
                                           for k, v in fold.items())
          + f" ({plan.cycles_per_image:,} cycles/image; estimate LUT {est['lut']:,}, "
            f"FF {est['ff']:,}, BRAM {est['bram']})")
    return fold


def _check_board(board):
    boards = _boards()
    if board not in boards:
        raise InputError(f"board must be one of {', '.join(boards)}, not {board!r}")
    return boards[board]


def _check_freq(freq):
    if freq is not None and not (freq > 0 and freq < 1000):
        raise InputError(f"--freq must be a clock in MHz between 0 and 1000, not {freq:g}")


def _check_rate(args):
    fps = getattr(args, "target_fps", None)
    if fps is not None and not (fps > 0 and fps < 1e12):
        raise InputError(f"--target-fps must be a positive number of images/s, not {fps:g}")


def cmd_build(args):
    from ..boards import bitstream as board_build
    from ..flow import Build
    spec = _check_board(args.board)
    _check_freq(args.freq)
    _check_rate(args)
    net = load_net(args.model)
    folding = _folding(net, args, args.board)
    freq = float(args.freq or spec["default_mhz"])
    build = Build.of(net, folding, board=args.board, clock_mhz=freq)
    board_build.SHOW_PROGRESS = not args.quiet
    rec = build.run("bitstream")
    build.run("report")
    r = json.loads(build.path("board", "board_report.json").read_text())
    u = r["utilization"]
    how = "reused" if rec["skipped"] else f"{r['seconds']:.0f} s"
    print(f"{net.name} on {args.board}: {build.path('board', spec['bitstream'])} ({how})")
    print(f"  clock {r['clock_mhz']:.2f} MHz, Fmax {r['fmax_mhz']} MHz: timing "
          f"{'met' if r['timing_met'] else 'NOT met'}; {r['images_per_second']:,.0f} images/s, "
          f"latency {r['latency_us_estimate']:,} µs (estimate)")
    print("  " + ", ".join(f"{k.upper()} {v['used']:,}/{v['available']:,}"
                           for k, v in u.items() if v["available"]))
    print(f"  report: {build.path('board', 'board_report.md')}")


def _board_run_parser():
    p = argparse.ArgumentParser(prog="bnnhw board run", exit_on_error=False,
                                description="scores from a programmed board over its UART")
    p.add_argument("args", nargs="*", metavar="MODEL INPUT.npy")
    p.add_argument("--board", required=True)
    p.add_argument("--port", required=True, help="serial device or pyserial URL")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--timeout", type=float, default=5.0,
                   help="seconds any one answer may take (default 5)")
    p.add_argument("-o", "--output", default=None, help="scores .npy (int64 [N, classes])")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def cmd_board(args):
    if args.action != "run":
        raise InputError(f"board: unknown action {args.action!r} (use: bnnhw board run ...)")
    parser = _board_run_parser()
    if "-h" in args.rest or "--help" in args.rest:
        parser.print_help()
        return
    try:
        # Options and the two file names in any order, as the other commands take them.
        args = parser.parse_intermixed_args(args.rest)
    except argparse.ArgumentError as e:
        raise InputError(f"board run: {e}") from None
    if len(args.args) != 2:
        raise InputError("usage: bnnhw board run --board B --port DEV MODEL INPUT.npy "
                         "-o SCORES.npy")
    if args.output is None:
        raise InputError("board run needs -o SCORES.npy")
    _check_board(args.board)
    if not (args.baud > 0 and args.baud <= 100_000_000):
        raise InputError(f"--baud must be a positive rate in bit/s, not {args.baud}")
    if not (args.timeout > 0 and args.timeout <= 3600):
        raise InputError(f"--timeout must be seconds between 0 and 3600, not {args.timeout:g}")
    from ..outputs import check_output_file
    check_output_file(args.output, "scores output")
    from ..boards.client import BoardClient
    net = load_net(args.args[0])
    x = load_input(args.args[1])
    from ..golden import check_input
    check_input(net, x)
    with BoardClient(args.port, baud=args.baud, timeout=args.timeout) as client:
        scores = client.run(net, x, progress=not args.quiet)
    save_scores(args.output, scores)
    print(f"{scores.shape[0]} images -> {args.output} (board {args.board} on {args.port}; "
          f"predicted: {preview(np.argmax(scores, axis=1))})")


def cmd_compare(args):
    from ..boards import bitstream as board_build
    from ..compare import compare
    from ..arm_estimate import ARM_CORES
    from ..flow.config import build_root
    from ..outputs import check_output_folder
    _check_board(args.board)
    _check_freq(args.freq)
    _check_rate(args)
    if not 1 <= args.repeats <= 10_000:
        raise InputError(f"--repeats must be between 1 and 10000, not {args.repeats}")
    cpus = [c.strip() for c in (args.cpu or "").split(",") if c.strip() and c != "host"]
    bad = [c for c in cpus if c not in ARM_CORES]
    if bad:
        raise InputError(f"--cpu: ARM core must be one of {', '.join(ARM_CORES)}, "
                         f"not {bad[0]!r}")
    if args.cpu_clock is not None and not 0 < args.cpu_clock < 10:
        raise InputError(f"--cpu-clock must be in GHz between 0 and 10, not {args.cpu_clock:g}")
    if args.output:
        check_output_folder(args.output, "compare")
    net = load_net(args.model)
    out = Path(args.output) if args.output else build_root() / "compare" / \
        f"{net.name}-{args.board}"
    folding = _folding(net, args, args.board)
    board_build.SHOW_PROGRESS = not args.quiet
    r = compare(net, args.board, out, folding=folding, freq_mhz=args.freq,
                repeats=args.repeats, cpus=cpus, cpu_clock_ghz=args.cpu_clock,
                asic=True if args.asic else None)
    f, c = r["fpga"], r["cpu"]
    print(f"{net.name}: CPU {c['total_us']:,.1f} µs/image ({c['build']}), FPGA "
          f"{f['latency_us']:,.1f} µs at {f['clock_mhz']:.1f} MHz "
          f"({r['ratio_latency_cpu_over_fpga']:.2f}x); throughput FPGA "
          f"{f['images_per_second']:,.0f} images/s vs CPU {1e6 / c['total_us']:,.0f}")
    if not f["timing_met"] and f["fmax_mhz"]:
        print(f"  timing NOT met at {f['clock_mhz']:.1f} MHz: at its Fmax {f['fmax_mhz']} MHz "
              f"the FPGA takes {f['latency_us_at_fmax']:,.1f} µs "
              f"({r['ratio_latency_cpu_over_fpga_at_fmax']:.2f}x), "
              f"{f['images_per_second_at_fmax']:,.0f} images/s")
    for name, col in r["extra_columns"].items():
        print(f"  {name}: {col['total_us']:,.1f} µs/image")
    if r["asic"] is None:
        print("  no ASIC column (no asic step in the build folder; --asic runs it)")
    print(f"table {out / 'compare.md'}, JSON {out / 'compare.json'}, plot {out / 'compare.png'}")


def register(sub):
    """Add ``build``, ``board`` and ``compare`` to the ``bnnhw`` subparsers."""
    boards = "icebreaker, ulx3s, tangnano9k"
    p = sub.add_parser("build", help="bitstream for a board: whole network, placed and routed",
                       description="bnnhw build MODEL --board B: fit estimate, synthesis, "
                                   "place and route and bitstream of the whole network behind "
                                   "a UART, with a report (build folder: board/)")
    p.add_argument("model")
    p.add_argument("--board", required=True, help=f"one of {boards}")
    p.add_argument("--freq", type=positive_number, default=None, metavar="MHZ",
                   help="design clock (PLL); default per board (icebreaker 24, ulx3s 50, "
                        "tangnano9k 27)")
    p.add_argument("--folding", metavar="FILE", default=None)
    p.add_argument("--target-fps", type=positive_number, default=None, metavar="N",
                   help="cheapest folding that reaches N images/s at --freq and fits the board")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("board", help="talk to a board: board run sends images, gets scores",
                       description="bnnhw board run --board B --port DEV MODEL INPUT.npy -o "
                                   "SCORES.npy: scores from a programmed board over its UART "
                                   "(bnnhw board run --help: its options)")
    p.add_argument("action", metavar="run", choices=("run",))
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_board)

    p = sub.add_parser("compare", help="CPU vs FPGA latency per layer: table, JSON, plot",
                       description="bnnhw compare MODEL --board B: host CPU (measured) beside "
                                   "the FPGA (simulated cycles at the build's clock and Fmax)")
    p.add_argument("model")
    p.add_argument("--board", required=True, help=f"one of {boards}")
    p.add_argument("--freq", type=positive_number, default=None, metavar="MHZ")
    p.add_argument("--folding", metavar="FILE", default=None)
    p.add_argument("--target-fps", type=positive_number, default=None, metavar="N")
    p.add_argument("--repeats", type=int, default=11, help="CPU timing repeats (median)")
    p.add_argument("--cpu", default="host", metavar="LIST",
                   help="CPUs beside the FPGA, comma-separated: host (always measured) and "
                        "ARM cores without hardware here, estimated from AArch64 instruction "
                        "counts (qemu) and llvm-mca: cortex-a53, cortex-a72")
    p.add_argument("--cpu-clock", type=float, default=None, metavar="GHZ",
                   help="clock assumed for the ARM estimates (default cortex-a53 1.2, "
                        "cortex-a72 1.5)")
    p.add_argument("--asic", action="store_true",
                   help="run the flow's asic step (OSU 0.18 um) for an ASIC column and report "
                        "(without it, an asic step already in the build folder is used)")
    p.add_argument("-o", "--output", default=None,
                   help="folder for compare.md/.json/.png (default <build root>/compare/MODEL-BOARD; "
                        "an existing folder is replaced only if it is a previous compare)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_compare)
