"""``bnnhw firmware``: generate and build the C runner, or run it on inputs."""

from pathlib import Path

import numpy as np

from ..errors import InputError
from ._common import check_output_file, load_input, load_net, preview, save_scores

__all__ = ["register"]


def cmd_firmware(args):
    from ..gen import firmware as fw
    words = args.args
    if words[0] == "run":
        if len(words) != 3:
            raise InputError("usage: bnnhw firmware run MODEL INPUT.npy -o SCORES.npy "
                             "[--target host|aarch64|armv7]")
        check_output_file(args.output)
        net = load_net(words[1])
        x = load_input(words[2])
        scores = fw.run(net, x, target=args.target, impl=args.impl)
        save_scores(args.output, scores)
        kernel = fw.chosen_kernel(net, target=args.target, impl=args.impl)
        print(f"{scores.shape[0]} images -> {args.output} (firmware, {args.target}, {kernel} "
              f"kernels, predicted: {preview(np.argmax(scores, axis=1))})")
        return
    if len(words) != 1:
        raise InputError("usage: bnnhw firmware MODEL -o DIR [--target host|aarch64|armv7] "
                         "(or: bnnhw firmware run MODEL INPUT.npy -o SCORES.npy)")
    from ..outputs import OutputFolder, check_output_folder
    check_output_folder(args.output, "firmware")
    net = load_net(words[0])
    out = Path(args.output)
    # Built in a temporary sibling folder and swapped in: an error or ^C leaves no half
    # folder, and a previous output stays as it was.
    with OutputFolder(out, "firmware") as tmp:
        runner = fw.generate_folder(net, tmp, target=args.target, impl=args.impl)
    print(f"{net.name} (id {net.fingerprint()}): {out / 'generated'} and runner "
          f"{out / runner.relative_to(tmp)} ({args.target}, {args.impl})")


def register(sub):
    """Add ``firmware`` to the ``bnnhw`` subparsers."""
    p = sub.add_parser("firmware", help="C/NEON firmware: generate + build a runner, or run it",
                       description="bnnhw firmware MODEL -o DIR: write DIR/generated (C headers) "
                                   "and build the runner; bnnhw firmware run MODEL INPUT.npy -o "
                                   "SCORES.npy: scores from the firmware (ARM under qemu-user)")
    p.add_argument("args", nargs="+", metavar="[run] MODEL [INPUT.npy]")
    p.add_argument("-o", "--output", required=True,
                   help="output folder (created, or replaced when empty or a previous "
                        "`bnnhw firmware` output), or the scores .npy for run")
    p.add_argument("--target", default="host", choices=("host", "aarch64", "armv7"))
    p.add_argument("--impl", default="neon", choices=("neon", "scalar"),
                   help="NEON kernels (through SIMDe on the host) or the scalar twin only")
    p.set_defaults(func=cmd_firmware)
