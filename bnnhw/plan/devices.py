"""FPGA device families and devices: logic, flip-flops, memories, as the fit estimate sees them.

Pure Python (no Amaranth): :mod:`bnnhw.plan.memory` maps a core's memories onto a family's
primitives, :mod:`bnnhw.plan.estimate` estimates LUTs and flip-flops and checks that a design
fits a :class:`Device` before place and route.

Block RAM configurations are the ``(depth, width)`` shapes that Yosys' memory mapper uses for
a read-only or simple dual-port memory:

* ECP5 ``DP16KD`` (18 kbit): 16384x1, 8192x2, 4096x4, 2048x9, 1024x18 and, as the
  pseudo-dual-port ``PDPW16KD``, 512x36;
* iCE40 ``SB_RAM40_4K`` (4 kbit): 2048x2, 1024x4, 512x8, 256x16;
* Gowin: ``SDPB`` 18 kbit block RAM exists in the silicon, but the legacy ``nextpnr-gowin``
  (YoWASP 0.7) could not place it; the board is now built with nextpnr-himbaechel, which can,
  but its block-RAM mapping has not been verified here, so the Gowin device still counts none
  and every memory goes to LUT RAM or logic (``synth_gowin -nobram``).

LUT RAM: ECP5 ``TRELLIS_DPR16X4`` (16 x 4 bits, the four LUT4s of two slices), Gowin
``RAM16SDP4`` (16 x 4); iCE40 has none.
"""

from dataclasses import dataclass, field

__all__ = ["Family", "Device", "FAMILIES", "DEVICES", "device"]


@dataclass(frozen=True)
class Family:
    """What an FPGA family offers to the memory mapper and the LUT estimate.

    ``bram_configs`` are ``(depth, width)`` shapes of one block RAM; ``lutram`` is the
    ``(depth, width, luts)`` of one LUT RAM cell, or ``None``; ``mux_free`` says whether the
    slices have free wide multiplexers (ECP5 ``PFUMX``/``L6MUX21``, Gowin ``MUX2_LUT5..8``),
    so that a ROM deeper than 16 words costs one LUT4 per 16 words and bit.
    """
    name: str
    lut: str
    bram: str | None
    bram_bits: int
    bram_configs: tuple
    lutram: tuple | None
    mux_free: bool
    #: Synthesis cost model per compute lane / accumulator bit (fitted, see estimate.py).
    coefficients: dict = field(default_factory=dict, hash=False)


FAMILIES = {
    "ecp5": Family("ecp5", "LUT4", "DP16KD", 18432,
                   ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)),
                   (16, 4, 4), True),
    "ice40": Family("ice40", "LUT4", "SB_RAM40_4K", 4096,
                    ((2048, 2), (1024, 4), (512, 8), (256, 16)), None, False),
    "gowin": Family("gowin", "LUT4", None, 0, (), (16, 4, 4), True),
}


@dataclass(frozen=True)
class Device:
    """One FPGA part: its family and what it has (``luts``, ``ffs``, ``brams``, ``dsps``,
    ``ios`` on the board's package), and the nextpnr cell types that hold each."""
    name: str
    family: str
    luts: int
    ffs: int
    brams: int
    dsps: int
    #: nextpnr ``--report`` utilisation keys: resource -> bel types summed for it.
    report_keys: dict = field(default_factory=dict, hash=False)

    @property
    def fam(self):
        return FAMILIES[self.family]

    def available(self):
        return {"lut": self.luts, "ff": self.ffs, "bram": self.brams, "dsp": self.dsps}


DEVICES = {
    # iCE40UP5K: 5280 logic cells (LUT4 + FF each), 30 SB_RAM40_4K, 8 SB_MAC16 (the four
    # 256-kbit SPRAMs cannot be initialised, so weights cannot live there).
    "ice40up5k": Device("ice40up5k", "ice40", 5280, 5280, 30, 8,
                        {"lut": ("ICESTORM_LC",), "ff": ("ICESTORM_LC",),
                         "bram": ("ICESTORM_RAM",), "dsp": ("ICESTORM_DSP",),
                         "io": ("SB_IO",)}),
    # LFE5U-85F: 83,640 LUT4 and FF (41,820 slices), 208 DP16KD, 156 MULT18X18D.
    "lfe5u-85f": Device("lfe5u-85f", "ecp5", 83640, 83640, 208, 156,
                        {"lut": ("TRELLIS_COMB",), "ff": ("TRELLIS_FF",),
                         "bram": ("DP16KD",), "dsp": ("MULT18X18D",),
                         "io": ("TRELLIS_IO",)}),
    # GW1NR-9 (Tang Nano 9K): 8,640 LUT4, 6,480 FF; block RAM not used (see above). nextpnr-
    # himbaechel reports carry cells (ALU) apart from LUT4 bels.
    "gw1nr-9": Device("gw1nr-9", "gowin", 8640, 6480, 0, 0,
                      {"lut": ("LUT4",), "ff": ("DFF",), "bram": ("BSRAM",),
                       "dsp": ("MULT18X18",), "io": ("IOB",)}),
}


def device(name):
    """The :class:`Device` called ``name``."""
    try:
        return DEVICES[name]
    except KeyError:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {name!r}") from None
