"""iCEBreaker (iCE40UP5K-SG48, 12 MHz): the example network behind the FTDI UART.

Run ``python -m bnnhw.boards.icebreaker [--model M] [--out DIR] [--target-mhz F]``: builds
``build/boards/icebreaker/top.bin`` with YoWASP (Yosys, nextpnr-ice40, icepack) and prints
Fmax and utilisation. Pins: UART rx 6 / tx 9 (115200 8N1), LED 0 toggles per image, LED 1
lights while input bytes wait.
"""

from .common import build as _build
from .common import main as _main

BOARD = "icebreaker"


def build(model=None, out_dir=None, **kwargs):
    """:func:`bnnhw.boards.common.build` for the iCEBreaker."""
    return _build(BOARD, model, out_dir, **kwargs)


if __name__ == "__main__":
    _main(BOARD)
