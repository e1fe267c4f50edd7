"""ULX3S-85F (ECP5 LFE5U-85F, 25 MHz): the example network behind the FTDI UART.

Run ``python -m bnnhw.boards.ulx3s [--model M] [--out DIR] [--target-mhz F]``: builds
``build/boards/ulx3s/top.bit`` with YoWASP (Yosys, nextpnr-ecp5, ecppack) and prints
Fmax and utilisation. Pins: FTDI UART rx M1 / tx L4 (115200 8N1), LED 0 toggles per image, LED 1
lights while input bytes wait.
"""

from .common import build as _build
from .common import main as _main

BOARD = "ulx3s"


def build(model=None, out_dir=None, **kwargs):
    """:func:`bnnhw.boards.common.build` for the ULX3S-85F."""
    return _build(BOARD, model, out_dir, **kwargs)


if __name__ == "__main__":
    _main(BOARD)
