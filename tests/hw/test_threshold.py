"""Threshold unit, clipping block and their tables against SPEC §4-5 written out directly."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module, signed, unsigned
from amaranth.sim import Simulator

from bnnhw.hw.layouts import to_shape
from bnnhw.hw.threshold import ClipUnit, ThresholdUnit
from bnnhw.plan.tables import accumulator_range, shape_for, threshold_table
from bnnhw.model import BinaryDense, Clip, MultibitConv2d, Threshold

from support.streams import compare_beats

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def test_table_matches_spec_closed_form():
    """y >= T <=> P >= ceil((T + K) / 2); y <= T <=> P <= floor((T + K) / 2) (SPEC §5)."""
    k = 11
    layer = BinaryDense("fc", np.ones((1, k), np.int8))
    ts = np.arange(-k - 4, k + 5)
    for neg in (False, True):
        thr = Threshold("t", ts, np.full(ts.size, neg))
        compare, negs = threshold_table(layer, thr)
        assert (negs == neg).all()
        for t, c in zip(ts, compare):
            if neg:
                want = (t + k) // 2 + 1
            else:
                want = -(-(t + k) // 2)
            assert c == min(max(want, 0), k + 1), (t, neg, c)


def test_table_with_saturation_and_clip_by_enumeration():
    """Every reachable P: the table's step equals SPEC §3-5 applied literally."""
    rng = np.random.default_rng(0)
    k, acc = 20, 4                                    # P saturates at 15
    layer = BinaryDense("fc", np.ones((1, k), np.int8), acc_bits=acc, overflow="saturate")
    clip = Clip("c", bits=4)                          # z in [-7, 7]
    ts = rng.integers(-30, 30, 40)
    negs = rng.random(40) < 0.5
    thr = Threshold("t", ts, negs)
    compare, _ = threshold_table(layer, thr, clip)
    lo, hi = accumulator_range(layer)
    assert (lo, hi) == (0, 15)
    for p in range(lo, hi + 1):
        z = max(-7, min(7, 2 * p - k))
        want = np.where(negs, z <= ts, z >= ts)
        got = (p >= compare) ^ negs
        assert (got == want).all(), p


def test_table_multibit():
    layer = MultibitConv2d("c0", np.ones((3, 1, 1, 1), np.int8), input_bits=3)  # y in [-4, 4]
    thr = Threshold("t", np.array([-9, 0, 9]), np.array([False, True, True]))
    compare, _ = threshold_table(layer, thr)
    assert list(compare) == [-4, 1, 5]


def run_exhaustive(dut, drive, read, cases):
    top = Module()
    top.submodules.dut = dut
    top.domains.sync = ClockDomain()
    sim = Simulator(top)
    sim.add_clock(1e-8)
    got = []

    async def tb(ctx):
        for case in cases:
            drive(ctx, case)
            await ctx.delay(1e-9)
            got.append(read(ctx))

    sim.add_testbench(tb)
    sim.run()
    return got


def threshold_unit_run():
    """Every (value, compare, negate) through a ThresholdUnit: (outputs, SPEC §5 reference)."""
    vs, cs = range(0, 8), range(-2, 10)
    dut = ThresholdUnit(lanes=1, value_shape=unsigned(3), compare_shape=signed(5))
    cases = [(v, c, n) for v in vs for c in cs for n in (0, 1)]

    def drive(ctx, case):
        ctx.set(dut.value[0], case[0])
        ctx.set(dut.compare[0], case[1])
        ctx.set(dut.negate, case[2])

    got = run_exhaustive(dut, drive, lambda ctx: ctx.get(dut.o), cases)
    return got, [int((v >= c) != bool(n)) for v, c, n in cases]


def clip_unit_run():
    """Every 6-bit input through a 3-bit ClipUnit: (outputs, SPEC §4 reference)."""
    dut = ClipUnit(in_shape=signed(6), bits=3)
    cases = list(range(-32, 32))

    def drive(ctx, v):
        ctx.set(dut.i, v)

    got = run_exhaustive(dut, drive, lambda ctx: ctx.get(dut.o), cases)
    return got, [max(-3, min(3, v)) for v in cases]


def test_threshold_unit_exhaustive():
    got, exp = threshold_unit_run()
    compare_beats(got, exp, "case")


def test_clip_unit_exhaustive():
    got, exp = clip_unit_run()
    compare_beats(got, exp, "case")
    with pytest.raises(ValueError, match=r"^Clip width must be at least 2, not 1$"):
        ClipUnit(in_shape=signed(6), bits=1)


def test_shape_for():
    assert to_shape(shape_for(0, 12)) == unsigned(4)
    assert to_shape(shape_for(-1, 12)) == signed(5)
    assert to_shape(shape_for(-8, 7)) == signed(4)


@pytest.mark.parametrize("run,index,bit", [(threshold_unit_run, 0, 0),
                                           (threshold_unit_run, 101, 0),
                                           (clip_unit_run, 5, 1), (clip_unit_run, 63, 0)])
def test_corrupted_expectation_fails(run, index, bit):
    """The exhaustive comparisons above catch one flipped expected bit, at its case."""
    got, exp = run()
    compare_beats(got, exp, "case")
    bad = list(exp)
    bad[index] ^= 1 << bit
    with pytest.raises(AssertionError, match=f"^case {index}: got"):
        compare_beats(got, bad, "case")
