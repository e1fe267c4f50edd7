"""The ``bnnhw`` command line: thin commands that parse, call the library and print.

Each module of this package adds its commands with ``register(subparsers)``; the library
(:mod:`bnnhw.model`, :mod:`bnnhw.plan`, :mod:`bnnhw.flow`, :mod:`bnnhw.gen`) does the work.
Every command exits with status 2 and a one-line ``bnnhw: error: ...`` on bad input (argument
errors too) and leaves no partial output behind: output paths are checked before any work and
written atomically (:mod:`bnnhw.outputs`); SIGINT, SIGTERM and SIGHUP clean up temporary
files and child processes (:mod:`bnnhw.procs`).
"""

import argparse
import os
import sys
import warnings

from ..errors import BnnhwError
from ..procs import Interrupted, handle_signals
from . import asic, boards, demo, firmware, hardware, interop, model, share

__all__ = ["main", "build_parser", "ArgumentParser"]

#: The command modules, in the order their commands are listed by ``bnnhw --help``.
COMMAND_MODULES = (model, demo, firmware, hardware, boards, asic, interop, share)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with bnnhw's error form: one line ``bnnhw: error: ...`` and exit status 2
    (argparse's own prints the usage block first)."""

    def error(self, message):
        message = " ".join(str(message).split())
        sys.stderr.write(f"bnnhw: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def build_parser():
    """The ``bnnhw`` argument parser with every command registered."""
    parser = ArgumentParser(
        prog="bnnhw",
        description="Hardware and firmware for binarized neural networks, verified bit for bit "
                    "against a NumPy golden model.")
    parser.add_argument("--build-root", metavar="DIR", default=None,
                        help="folder of every build (default $BNNHW_BUILD_ROOT, else "
                             "~/.cache/bnnhw)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=ArgumentParser)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _quiet_unfinished_hardware():
    """After an error or an interruption half-way through elaboration, Amaranth would warn
    once per component left unelaborated (when it is garbage-collected); those warnings say
    nothing about the error and would break the one-line rule."""
    hdl = sys.modules.get("amaranth.hdl")
    if hdl is not None and hasattr(hdl, "UnusedElaboratable"):
        warnings.simplefilter("ignore", hdl.UnusedElaboratable)


def _error(message):
    _quiet_unfinished_hardware()
    print(f"bnnhw: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv=None):
    """Run one ``bnnhw`` command; returns the exit status.

    0 on success, 2 on bad input (one line ``bnnhw: error: ...``), 128 + the signal number
    when interrupted (130 for ^C, 143 for SIGTERM: temporary files and child processes are
    cleaned up first, see :mod:`bnnhw.procs`), 1 on an internal error (a bug: one line, the
    traceback with ``BNNHW_DEBUG=1``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..flow.config import ROOT_VARIABLE
    previous_root = os.environ.get(ROOT_VARIABLE)
    try:
        with handle_signals():
            if args.build_root is not None:
                from ..flow.config import build_root
                # Through the environment, so that the tools and children see it too.
                os.environ[ROOT_VARIABLE] = str(build_root(args.build_root))
            args.func(args)
    except BnnhwError as e:
        return _error(e)
    except OSError as e:
        # A path the user named that cannot be used (a file where a folder is wanted, no
        # permission, a full disk): name it, in one line, like any other bad input.
        where = f"{str(e.filename)!r}: " if e.filename else ""
        return _error(f"{where}{e.strerror or e}")
    except Interrupted as e:
        _quiet_unfinished_hardware()
        print(f"bnnhw: interrupted by {e.name}", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        _quiet_unfinished_hardware()
        print("bnnhw: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        return _error("out of memory (the limits of bnnhw.limits can be lowered to refuse "
                      "such inputs up front)")
    except Exception as e:           # a bug: one line, the traceback on request
        if os.environ.get("BNNHW_DEBUG"):
            raise
        _quiet_unfinished_hardware()
        print(f"bnnhw: internal error: {type(e).__name__}: {' '.join(str(e).split())} "
              f"(set BNNHW_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    finally:
        # main() is also a library call (tests, the demo): --build-root lasts one command.
        if previous_root is None:
            os.environ.pop(ROOT_VARIABLE, None)
        else:
            os.environ[ROOT_VARIABLE] = previous_root
    return 0
