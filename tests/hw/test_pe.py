"""XNOR-popcount PE, chunk stages and accumulators against slow references (SPEC §2-3, §6)."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from bnnhw.hw.pe import ChunkDot, ChunkPopcount, KernelPopcount, XnorPopcountPE

from support.streams import StreamDriver, StreamMonitor, compare_beats, run_streams

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def pe_reference(xs, ws, k, acc_bits):
    p = sum(1 for a, b in zip(xs[:k], ws[:k]) if a == b)
    return min(p, (1 << acc_bits) - 1)


def pe_beats(x, w, simd, rng):
    beats = []
    for s in range(0, len(x), simd):
        xs, ws = list(x[s:s + simd]), list(w[s:s + simd])
        # Lanes past K carry random garbage: the PE must ignore them.
        while len(xs) < simd:
            xs.append(int(rng.integers(0, 2)))
            ws.append(int(rng.integers(0, 2)))
        beats.append({"x": sum(int(b) << j for j, b in enumerate(xs)),
                      "w": sum(int(b) << j for j, b in enumerate(ws))})
    return beats


@pytest.mark.parametrize("simd,k,acc_bits,overflow,stages", [
    (8, 20, None, "error", 1), (8, 20, 7, "error", 2), (5, 17, 3, "saturate", 0),
    (4, 4, None, "error", 3), (16, 40, 4, "saturate", None)])
def test_pe(simd, k, acc_bits, overflow, stages):
    rng = np.random.default_rng(simd * k)
    dut = XnorPopcountPE(simd=simd, fan_in=k, acc_bits=acc_bits, overflow=overflow,
                         stages=stages)
    vecs = [(rng.integers(0, 2, k), rng.integers(0, 2, k)) for _ in range(6)]
    w0 = rng.integers(0, 2, k)
    vecs += [(w0, w0), (w0, 1 - w0)]                 # all match, all mismatch
    beats = [b for x, w in vecs for b in pe_beats(x, w, simd, rng)]
    exp = [pe_reference(x, w, k, dut.acc_bits) for x, w in vecs]
    drv = StreamDriver(dut.i_stream, beats, valid_prob=0.7)
    mon = StreamMonitor(dut.o_stream, len(exp), ready_prob=0.5)
    run_streams(dut, [drv], [mon])
    compare_beats(mon.beats, exp)
    bad = list(exp)
    bad[2] ^= 1
    with pytest.raises(AssertionError, match="beat 2"):
        compare_beats(mon.beats, bad)


def test_pe_validation():
    with pytest.raises(ValueError, match=r"^accumulator width must be at least 10 for K=576, "
                                         r"not 8$"):
        XnorPopcountPE(simd=64, fan_in=576, acc_bits=8)
    with pytest.raises(ValueError, match=r"^overflow must be 'error' or 'saturate', not 'wrap'$"):
        XnorPopcountPE(simd=64, fan_in=576, overflow="wrap")
    with pytest.raises(TypeError, match=r"^SIMD width must be an integer, not '8'$"):
        XnorPopcountPE(simd="8", fan_in=576)
    with pytest.raises(ValueError, match=r"^Pipeline stage count must be at least 0, not -1$"):
        XnorPopcountPE(simd=8, fan_in=16, stages=-1)
    assert XnorPopcountPE(simd=64, fan_in=576, acc_bits=8, overflow="saturate").acc_bits == 8
    assert XnorPopcountPE(simd=64, fan_in=576, acc_bits=16).acc_bits == 16


def run_comb_stage(dut, cases):
    """Feed (x, w) pairs with en=1 each cycle; collect p after the stage's latency."""
    out = []

    async def tb(ctx):
        ctx.set(dut.en, 1)
        results = []
        for i in range(len(cases) + dut.latency):
            if i < len(cases):
                ctx.set(dut.x, cases[i][0])
                ctx.set(dut.w, cases[i][1])
            if i >= dut.latency:
                results.append([int(v) for v in ctx.get(dut.p)])
            await ctx.tick()
        out.extend(results)

    top = Module()
    top.submodules.dut = dut
    top.domains.sync = ClockDomain()     # a combinational stage (latency 0) has none
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out


def chunk_popcount_run(pe, simd, stages):
    """Random chunks through a ChunkPopcount: (per-case lane outputs, reference)."""
    rng = np.random.default_rng(pe * simd)
    dut = ChunkPopcount(pe=pe, simd=simd, stages=stages)
    cases = [(int(rng.integers(0, 1 << simd)), int(rng.integers(0, 1 << (pe * simd))))
             for _ in range(10)]
    exp = [[sum(1 for j in range(simd) if (x >> j) & 1 == (w >> (r * simd + j)) & 1)
            for r in range(pe)] for x, w in cases]
    return run_comb_stage(dut, cases), exp


@pytest.mark.parametrize("pe,simd,stages", [(3, 7, 0), (2, 16, 1), (4, 9, 2), (1, 32, 5)])
def test_chunk_popcount(pe, simd, stages):
    got, exp = chunk_popcount_run(pe, simd, stages)
    compare_beats(got, exp, "case")


def chunk_dot_run(in_bits, stages):
    """Random multi-bit chunks through a ChunkDot: (per-case lane outputs, reference)."""
    pe, simd = 3, 5
    rng = np.random.default_rng(in_bits)
    dut = ChunkDot(pe=pe, simd=simd, in_bits=in_bits, stages=stages)
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    cases, exp = [], []
    for i in range(10):
        q = rng.integers(lo, hi + 1, simd) if i else np.full(simd, lo)   # -128 corner
        w = rng.choice([-1, 1], (pe, simd))
        x = sum((int(v) & ((1 << in_bits) - 1)) << (j * in_bits) for j, v in enumerate(q))
        wb = sum(int(b == 1) << (r * simd + j) for r in range(pe) for j, b in enumerate(w[r]))
        cases.append((x, wb))
        exp.append([int(np.dot(w[r], q)) for r in range(pe)])
    return run_comb_stage(dut, cases), exp


@pytest.mark.parametrize("in_bits,stages", [(8, 1), (4, 0), (3, 2)])
def test_chunk_dot(in_bits, stages):
    got, exp = chunk_dot_run(in_bits, stages)
    compare_beats(got, exp, "case")


@pytest.mark.parametrize("run,args", [(chunk_popcount_run, (4, 9, 2)),
                                      (chunk_popcount_run, (3, 7, 0)),
                                      (chunk_dot_run, (8, 1)), (chunk_dot_run, (3, 2))])
def test_chunk_stage_corrupted_expectation_fails(run, args):
    """The chunk-stage comparisons catch one flipped bit of one lane's expected result, also
    in the last case (the one that leaves the pipeline last)."""
    got, exp = run(*args)
    compare_beats(got, exp, "case")
    for case, lane in ((0, 0), (len(exp) - 1, len(exp[0]) - 1)):
        bad = [list(e) for e in exp]
        bad[case][lane] ^= 1
        with pytest.raises(AssertionError, match=f"^case {case}: got"):
            compare_beats(got, bad, "case")


@pytest.mark.parametrize("make", [lambda: ChunkPopcount(pe=2, simd=96),
                                  lambda: KernelPopcount(pe=2, simd=18, kernel_elements=9)])
def test_popcount_leaves_are_single_bit_xnors(make):
    # A wide XNOR sliced into leaves makes Yosys' `check` quadratic in the width (YoWASP Yosys
    # ran out of memory on the whole LFC); every XNOR must stay one bit wide.
    import re

    from amaranth.back import rtlil
    text = rtlil.convert(make())
    widths = [int(w) for w in re.findall(r"cell \$xor \S+\n(?:\s+parameter .*\n)*?"
                                         r"\s+parameter \\Y_WIDTH (\d+)", text)]
    assert widths and max(widths) == 1, sorted(set(widths))
