"""Board targets: each module wraps a network core in pins (UART, LEDs) for one FPGA board.

``python -m bnnhw.boards.icebreaker`` / ``python -m bnnhw.boards.ulx3s`` build a bitstream with YoWASP
and print Fmax and utilisation; :func:`build` does the same from Python. Core components
(:mod:`bnnhw.hw`) never touch pins; only this package does.
"""

from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .common import DEFAULT_MODEL, StreamBridge, UartNetwork, UartRx, UartTx, build

__all__ = ["BOARDS", "build", "UartNetwork", "StreamBridge", "UartRx", "UartTx",
           "DEFAULT_MODEL"]

#: Per board: its amaranth-boards platform, the clock constraint used to measure Fmax (a
#: later constraint overrides the board file's, see TOOLCHAIN.md) and its default target.
BOARDS = {
    "icebreaker": {
        "platform": ICEBreakerPlatform,
        "constraint": lambda mhz: {"add_constraints": f"set_frequency clk12_0__io {mhz}"},
        "target_mhz": 100,
        "bitstream": "top.bin",
    },
    "ulx3s": {
        "platform": ULX3S_85F_Platform,
        "constraint": lambda mhz: {"add_preferences": f'FREQUENCY PORT "clk25_0__io" {mhz} MHZ;'},
        "target_mhz": 250,
        "bitstream": "top.bit",
    },
}
