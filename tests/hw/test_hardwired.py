"""HardwiredConv (bnnhw.hw.hardwired) simulated with amaranth.sim, bit-exact against the golden
model (with the sharing plan; exact modes also unshared) on the example model's conv1 and on
8-output-channel slices of real CNV conv layers, for every adder form, with input gaps and
output stalls."""

import numpy as np
import pytest

import bnnhw
from bnnhw.examples import EXAMPLE_MODEL, digits_split
from bnnhw.plan.hardwired import LOWERINGS, hardwired_plan
from bnnhw.sharing import make_plan

from support.hardwired import SIM_FORMS, UNSHARED_FORMS, Case, cnv_maps, cnv_slice_case, pack
from support.streams import compare_beats, run_stream

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.fixture(scope="module")
def example():
    return Case(bnnhw.load_model(EXAMPLE_MODEL), "conv1", digits_split()[2][:2])


@pytest.fixture(scope="module")
def cnv_traces(cnv):
    return cnv_maps(cnv)


def simulate(case, mode, form, count, ranks=(), p_gap=0.2, p_stall=0.3, seed=0):
    """Simulated output beats and the golden model's (with the plan; exact modes: checked
    equal to the unshared network's first)."""
    plan = make_plan(case.net, mode)
    picked, vectors = case.vectors(count, seed=seed)
    want = case.expected(picked, sharing=plan)
    if not mode.startswith("approx"):
        assert want == case.expected(picked)
    hp = hardwired_plan(case.net, case.layer,
                        sharing=None if form in UNSHARED_FORMS else plan, adders=form,
                        ranks=ranks)
    got, out_cycles, in_cycles = run_stream(hp.create(), pack(vectors), len(vectors),
                                            p_gap=p_gap, p_stall=p_stall, seed=seed)
    return got, want, hp


@pytest.mark.parametrize("form,mode,ranks", [
    ("naive", "exact", ()), ("grouped", "exact", (2,)), ("kernels", "exact", ()),
    ("kernels", "similar:1", (1, 3)), ("rows", "similar:1", ()), ("auto", "similar:1", (2,)),
    ("auto", "approx:1", ()), ("cse", "similar:2", (2,)), ("minority", "exact", (1,)),
    ("split", "exact", ()), ("filters", "exact", (2, 5))])
def test_example_conv1(example, form, mode, ranks):
    got, want, hp = simulate(example, mode, form, 24, ranks=ranks)
    compare_beats(got, want, "output pixel")


@pytest.mark.parametrize("lowering", LOWERINGS)
def test_lowerings(example, lowering):
    """Every way of turning the graph into adders computes the golden model's outputs."""
    plan = make_plan(example.net, "exact")
    picked, vectors = example.vectors(16)
    want = example.expected(picked)
    for form, sharing in (("filters", None), ("kernels", plan)):
        hp = hardwired_plan(example.net, "conv1", sharing=sharing, adders=form,
                            lowering=lowering, ranks=(2,))
        assert hp.reference(vectors) == want
        got, _, _ = run_stream(hp.create(), pack(vectors), len(vectors), p_gap=0.2,
                               p_stall=0.2)
        compare_beats(got, want, f"{form}@{lowering} output pixel")


def test_one_pixel_per_cycle(example):
    """No gaps, no stalls: one output pixel per cycle after the pipeline's latency."""
    plan = make_plan(example.net, "similar:1")
    picked, vectors = example.vectors(20)
    hp = hardwired_plan(example.net, "conv1", sharing=plan, adders="auto", ranks=(2, 4))
    got, out_cycles, in_cycles = run_stream(hp.create(), pack(vectors), len(vectors))
    compare_beats(got, example.expected(picked, sharing=plan), "output pixel")
    assert hp.latency == 3
    assert np.all(np.diff(out_cycles) == 1) and np.all(np.diff(in_cycles) == 1)
    assert out_cycles[0] - in_cycles[0] == hp.latency


def test_corrupted_expectation_fails(example):
    """The simulated comparison sees one wrong expected bit."""
    got, want, _ = simulate(example, "similar:1", "auto", 12)
    compare_beats(got, want, "output pixel")
    bad = list(want)
    bad[7] ^= 1 << 3
    with pytest.raises(AssertionError, match="output pixel 7"):
        compare_beats(got, bad, "output pixel")


CNV_LAYERS = ["conv1"] + [pytest.param(f"conv{i}", marks=pytest.mark.slow) for i in (2, 3, 4, 5)]


@pytest.mark.parametrize("layer", CNV_LAYERS)
@pytest.mark.parametrize("form", SIM_FORMS)
def test_cnv_slice(cnv, cnv_traces, layer, form):
    """Output channels 8..15 of a real CNV layer, on real and random input maps; exact
    modes also against the full unshared CNV's outputs at the real windows."""
    maps, tr = cnv_traces
    outputs = list(range(8, 16))
    case, real = cnv_slice_case(cnv, maps, layer, outputs)
    modes = ["exact"] if form in UNSHARED_FORMS else ["exact", "similar:1"]
    if form == "auto":
        modes.append("approx:1")
    thr = case.block.threshold.layer.name
    full = np.moveaxis(tr[thr][:, outputs], 1, -1)
    per_map = full.shape[1] * full.shape[2]
    for mode in modes:
        got, want, _ = simulate(case, mode, form, 16, ranks=(3,), seed=len(mode))
        compare_beats(got, want, "output pixel")
        if not mode.startswith("approx"):
            picked, _ = case.vectors(16, seed=len(mode))
            real_idx = picked[picked < real * per_map]
            flat = pack(full.reshape(-1, full.shape[-1])[real_idx])
            assert [g for g, i in zip(got, picked) if i < real * per_map] == flat


def test_keyword_constructor(example):
    """HardwiredConv(layer=..., threshold=...) builds the same plan as the planner."""
    from bnnhw.hw.hardwired import HardwiredConv
    block = example.block
    dut = HardwiredConv(layer=block.compute.layer, threshold=block.threshold.layer,
                        clip=block.clip.layer)
    assert dut.plan.adders == "naive" and dut.fan_in == 144 and dut.out_channels == 32
    picked, vectors = example.vectors(8)
    got, _, _ = run_stream(dut, pack(vectors), len(vectors))
    compare_beats(got, example.expected(picked), "output pixel")
