"""The ``bnnhw`` command line: thin commands that parse, call the library and print.

Each module of this package adds its commands with ``register(subparsers)``; the library
(:mod:`bnnhw.model`, :mod:`bnnhw.plan`, :mod:`bnnhw.flow`, :mod:`bnnhw.gen`) does the work.
Every command exits with status 2 and a one-line ``bnnhw: error: ...`` on bad input and leaves
no partial output file behind (outputs are written to a temporary file and renamed).
"""

import argparse
import os
import sys

from ..errors import BnnhwError
from . import demo, firmware, hardware, model, share

__all__ = ["main", "build_parser"]

#: The command modules, in the order their commands are listed by ``bnnhw --help``.
COMMAND_MODULES = (model, demo, firmware, hardware, share)


def build_parser():
    """The ``bnnhw`` argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="bnnhw",
        description="Hardware and firmware for binarized neural networks, verified bit for bit "
                    "against a NumPy golden model.")
    parser.add_argument("--build-root", metavar="DIR", default=None,
                        help="folder of every build (default $BNNHW_BUILD_ROOT, else "
                             "~/.cache/bnnhw)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv=None):
    """Run one ``bnnhw`` command; returns the exit status (0, 2 on bad input, 130 on ^C)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.build_root is not None:
            from ..flow.config import ROOT_VARIABLE, build_root
            os.environ[ROOT_VARIABLE] = str(build_root(args.build_root))
        args.func(args)
    except BnnhwError as e:
        print(f"bnnhw: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # A path the user named that cannot be used (a file where a folder is wanted, no
        # permission, a full disk): name it, in one line, like any other bad input.
        where = f"{str(e.filename)!r}: " if e.filename else ""
        print(f"bnnhw: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bnnhw: interrupted", file=sys.stderr)
        return 130
    return 0
