"""``bnnhw demo``: the main job, the example model end to end."""

__all__ = ["register"]


def cmd_demo(args):
    from ..demo import run_demo
    run_demo(args)


def register(sub):
    """Add ``demo`` to the ``bnnhw`` subparsers."""
    p = sub.add_parser("demo", help="the main job: example model end to end")
    p.add_argument("-o", "--output", default="build/demo", help="folder for the demo's outputs")
    p.add_argument("--quick", action="store_true",
                   help="skip place and route (FPGA latency at an assumed 100 MHz clock)")
    p.set_defaults(func=cmd_demo)
