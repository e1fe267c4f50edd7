"""Board targets: each board wraps a network core in pins (UART, LEDs) and its clock.

``bnnhw build MODEL --board B`` builds a board's bitstream through the build flow (the
``bitstream`` step registered here, :mod:`bnnhw.boards.bitstream`); ``bnnhw board run`` talks to
the board (:mod:`bnnhw.boards.client`). ``python -m bnnhw.boards.icebreaker`` /
``python -m bnnhw.boards.ulx3s`` are the older entry points (:func:`build`). Core components
(:mod:`bnnhw.hw`) never touch pins; only this package does.
"""

from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.tang_nano_9k import TangNano9kPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .common import DEFAULT_MODEL, StreamBridge, UartNetwork, UartRx, UartTx, build

__all__ = ["BOARDS", "build", "UartNetwork", "StreamBridge", "UartRx", "UartTx",
           "DEFAULT_MODEL"]

#: Per board: its amaranth-boards platform, the device the fit estimate uses, the clock
#: constraint used to measure Fmax by the older :func:`build` (a later constraint overrides
#: the board file's, see TOOLCHAIN.md), the design clock ``bnnhw build`` uses by default
#: (``default_mhz``, made by a PLL where ``pll`` is true), the YoWASP tools and bitstream.
BOARDS = {
    "icebreaker": {
        "platform": ICEBreakerPlatform,
        "device": "ice40up5k",
        "constraint": lambda mhz: {"add_constraints": f"set_frequency clk12_0__io {mhz}"},
        "target_mhz": 100,
        "default_mhz": 24,
        "pll": True,
        "tools": ("YOSYS", "NEXTPNR_ICE40", "ICEPACK"),
        "bitstream": "top.bin",
    },
    "ulx3s": {
        "platform": ULX3S_85F_Platform,
        "device": "lfe5u-85f",
        "constraint": lambda mhz: {"add_preferences": f'FREQUENCY PORT "clk25_0__io" {mhz} MHZ;'},
        "target_mhz": 250,
        "default_mhz": 50,
        "pll": True,
        "tools": ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"),
        # router1 (nextpnr's default) did not converge on CNV's 211k arcs in 10 minutes
        # (re-queued arcs as fast as it routed them); router2 did (BENCHMARKS, Boards).
        "nextpnr_extra": "--router router2",
        "bitstream": "top.bit",
    },
    # Gowin GW1NR-9 through YoWASP's nextpnr-himbaechel-gowin and Apicula's gowin_pack: no PLL
    # (the design runs at the board's 27 MHz; --freq only sets the timing target) and no
    # block RAM (the device lists none, so every memory is LUT RAM or logic).
    "tangnano9k": {
        "platform": TangNano9kPlatform,
        "device": "gw1nr-9",
        "default_mhz": 27,
        "pll": False,
        "freq_opt": True,
        "overrides": {"synth_opts": "-nobram"},
        "tools": ("YOSYS", "NEXTPNR_GOWIN", "GOWIN_PACK"),
        "bitstream": "top.fs",
    },
}

from . import steps  # noqa: E402,F401  (registers the flow's "bitstream" step)
