"""Board clocks: the PLL that turns a board's oscillator into the design clock.

Each function returns ``(module, achieved_hz)``: a module that drives the ``sync`` domain
(clock from the PLL, reset held until the PLL locks) and the frequency the PLL really makes,
which the UART divisor, the timing constraint and the report use. The PLL parameters follow
the vendors' documented ranges (the same searches as ``icepll`` and ``ecppll``):

* iCE40 ``SB_PLL40_CORE``: ``f = fin * (DIVF+1) / ((DIVR+1) * 2**DIVQ)``,
  PFD ``fin/(DIVR+1)`` in [10, 133] MHz, VCO in [533, 1066] MHz;
* ECP5 ``EHXPLLL`` (feedback from CLKOP): ``f = fin * CLKFB_DIV / CLKI_DIV``,
  PFD in [3.125, 400] MHz, VCO ``f * CLKOP_DIV`` in [400, 800] MHz.

nextpnr derives the PLL's output clock from the oscillator's constraint, so its Fmax report
names the design clock.
"""

from amaranth.hdl import ClockDomain, ClockSignal, Const, Instance, Module, ResetSignal, Signal
from amaranth.lib.cdc import ResetSynchronizer

__all__ = ["ice40_pll_params", "ecp5_pll_params", "make_clock"]


def ice40_pll_params(fin_hz, fout_hz):
    """Closest ``{"DIVR", "DIVF", "DIVQ", "FILTER_RANGE"}`` and the achieved frequency."""
    best = None
    for divr in range(16):
        pfd = fin_hz / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f = vco / (1 << divq)
                if best is None or abs(f - fout_hz) < abs(best[0] - fout_hz):
                    best = (f, divr, divf, divq, pfd)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting makes {fout_hz / 1e6:g} MHz from "
                         f"{fin_hz / 1e6:g} MHz")
    f, divr, divf, divq, pfd = best
    filt = next(i for i, top in enumerate((17e6, 26e6, 44e6, 66e6, 101e6, 1e12), 1)
                if pfd < top)
    return {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filt}, f


def ecp5_pll_params(fin_hz, fout_hz):
    """Closest ``{"CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV"}`` and the achieved frequency."""
    best = None
    for clki in range(1, 129):
        pfd = fin_hz / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            f = pfd * clkfb
            for clkop in range(1, 129):
                vco = f * clkop
                if 400e6 <= vco <= 800e6:
                    break
            else:
                continue
            if best is None or abs(f - fout_hz) < abs(best[0] - fout_hz):
                best = (f, clki, clkfb, clkop)
    if best is None:
        raise ValueError(f"no ECP5 PLL setting makes {fout_hz / 1e6:g} MHz from "
                         f"{fin_hz / 1e6:g} MHz")
    f, clki, clkfb, clkop = best
    return {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop}, f


def make_clock(platform, family, fout_hz):
    """The ``sync`` domain at (close to) ``fout_hz`` from ``platform``'s default clock.

    ``family`` ``"ice40"`` or ``"ecp5"`` instantiates the PLL; any other family (Gowin here)
    runs ``sync`` from the oscillator itself and returns its frequency.
    """
    m = Module()
    fin = platform.default_clk_frequency
    m.domains.sync = cd = ClockDomain("sync")
    if family == "ice40":
        # The iCE40UP5K's PLL sits on the clock pin's own site: it takes the pad directly
        # (SB_PLL40_PAD), not through an input buffer.
        pad = platform.request(platform.default_clk, 0, dir="-")
        params, f = ice40_pll_params(fin, fout_hz)
        locked = Signal()
        m.submodules.pll = Instance(
            "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE",
            p_DIVR=Const(params["DIVR"], 4), p_DIVF=Const(params["DIVF"], 7),
            p_DIVQ=Const(params["DIVQ"], 3), p_FILTER_RANGE=Const(params["FILTER_RANGE"], 3),
            i_PACKAGEPIN=pad.io, i_RESETB=Const(1), i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=cd.clk, o_LOCK=locked)
    elif family == "ecp5":
        clk = platform.request(platform.default_clk, 0)
        params, f = ecp5_pll_params(fin, fout_hz)
        locked = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{fin / 1e6:.6f}", a_FREQUENCY_PIN_CLKOP=f"{f / 1e6:.6f}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=params["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=params["CLKOP_DIV"], p_CLKOP_CPHASE=params["CLKOP_DIV"] - 1,
            p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=params["CLKFB_DIV"],
            i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk.i, o_CLKOP=cd.clk,
            i_CLKFB=cd.clk, i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
            i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0), o_LOCK=locked)
    else:
        clk = platform.request(platform.default_clk, 0)
        params, f = {}, fin
        locked = Const(1)
        m.d.comb += cd.clk.eq(clk.i)
    # Hold the design in reset until the PLL locks, released in step with the new clock.
    m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
    return m, f, params
