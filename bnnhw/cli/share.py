"""``bnnhw share``: result sharing of a model's binary convolutions (SPEC §9)."""

import json

from ..errors import InputError
from ._common import load_net

__all__ = ["register", "cmd_share"]


def _distance(text):
    """``--max-distance``: an integer >= 0, with a one-line error otherwise."""
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        raise InputError(f"--max-distance must be an integer >= 0, not {text!r}") from None
    if value < 0:
        raise InputError(f"--max-distance must be an integer >= 0, not {value}")
    return value


def cmd_share(args):
    from ..model.io import atomic_write
    from ..sharing.planner import binary_convolutions
    from ..sharing.report import format_table, plot_reductions, share_report
    distance = _distance(args.max_distance)
    if args.approximate and distance < 1:
        raise InputError("--approximate needs --max-distance >= 1 (the largest distance at "
                         "which a kernel reuses another's popcount unchanged)")
    from ..outputs import check_output_file
    if args.json:
        check_output_file(args.json, "--json output")
    if args.plot:
        check_output_file(args.plot, "--plot output")
    net = load_net(args.model)
    binary_convolutions(net)                      # a model without any: say so, early
    report = share_report(net, distance, args.approximate)
    print(format_table(report))
    plans = report.pop("_plans")
    if args.json:
        text = json.dumps(report, sort_keys=True, separators=(",", ":"))

        def write(tmp):
            with open(tmp, "w") as f:
                f.write(text + "\n")
        atomic_write(args.json, write)
        print(f"report and {report['plan_mode']} plan -> {args.json}")
    if args.plot:
        plot_reductions(report, args.plot)
        print(f"plot -> {args.plot}")
    return plans


def register(sub):
    """Add ``share`` to the ``bnnhw`` subparsers."""
    p = sub.add_parser(
        "share", help="result sharing of 2-D kernels: plans and operation counts (SPEC §9)",
        description="Per binary convolution and input channel, share the 2-D popcounts of "
                    "repeated, inverse and similar kernels (Chang et al., DATE 2020); print "
                    "the 2-D operations per layer unshared, with exact repeat + inverse "
                    "sharing, with similar kernels corrected exactly (--max-distance D) and, "
                    "with --approximate, reusing popcounts of kernels up to D positions apart "
                    "unchanged (this changes the network's results).")
    p.add_argument("model", help="model file (bnnhw format or BNN-PYNQ .npz)")
    p.add_argument("--max-distance", default="1", metavar="D",
                   help="largest Hamming distance (to a kernel or its inverse) of one "
                        "derivation step, integer >= 0; 0: exact repeat + inverse only "
                        "(default 1)")
    p.add_argument("--approximate", action="store_true",
                   help="also plan the approximate mode approx:D")
    p.add_argument("--json", metavar="FILE",
                   help="write the counts of every mode and the plan of the last one "
                        "(approx:D, else similar:D, else exact) as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw the per-layer reductions")
    p.set_defaults(func=cmd_share)
