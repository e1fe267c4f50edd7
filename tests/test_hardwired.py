"""The hardwired datapath's plan (bnnhw.plan.hardwired): every adder form's graph, proved by
AdderGraph.check and evaluated on real window vectors, against the golden model (with the
sharing plan, and for exact modes also unshared) on the example model and on slices of every
CNV conv layer. The simulated hardware: tests/hw/test_hardwired.py."""

import dataclasses

import numpy as np
import pytest

import bnnhw
from bnnhw.examples import EXAMPLE_MODEL, digits_split
from bnnhw.plan.adder_graph import AdderGraph, Term
from bnnhw.plan.hardwired import (ADDER_FORMS, HardwiredPlan, conv_slice, filter_tree,
                                  hardwired_plan)
from bnnhw.sharing import make_plan

from support.hardwired import UNSHARED_FORMS, Case, cnv_maps, cnv_slice_case

MODES = ("exact", "similar:1", "similar:2", "approx:1")


@pytest.fixture(scope="module")
def example():
    net = bnnhw.load_model(EXAMPLE_MODEL)
    return Case(net, "conv1", digits_split()[2][:3])


@pytest.fixture(scope="module")
def cnv_traces(cnv):
    return cnv_maps(cnv)


def forms_of(mode):
    return [f for f in ADDER_FORMS if mode == "exact" or f not in UNSHARED_FORMS]


def check_case(case, mode, forms, count=None, full=None):
    plan = make_plan(case.net, mode)
    picked, vectors = case.vectors(count)
    want = case.expected(picked, sharing=plan)
    if mode != "approx:1":
        # Exact modes: the shared golden model is the unshared network bit for bit.
        assert want == case.expected(picked)
        if full is not None:
            assert want == full(picked)
    for form in forms:
        hp = hardwired_plan(case.net, case.layer,
                            sharing=None if form in UNSHARED_FORMS else plan, adders=form)
        got = hp.reference(vectors)
        assert got == want, f"{case.layer} {mode} {form}"


@pytest.mark.parametrize("mode", MODES)
def test_example_every_form(example, mode):
    check_case(example, mode, forms_of(mode))


def _full(tr, layer, thr, real, outputs):
    """The full CNV's unshared threshold output at the picked windows of the real maps."""
    from support.hardwired import pack
    bits = np.moveaxis(tr[thr][:, list(outputs)], 1, -1)
    flat = bits.reshape(-1, bits.shape[-1])

    def get(picked):
        assert picked.max() < len(flat)
        return pack(flat[picked])
    return get


@pytest.mark.parametrize("layer", ["conv1", pytest.param("conv2", marks=pytest.mark.slow),
                                   pytest.param("conv3", marks=pytest.mark.slow),
                                   pytest.param("conv4", marks=pytest.mark.slow),
                                   pytest.param("conv5", marks=pytest.mark.slow)])
def test_cnv_slices_every_form(cnv, cnv_traces, layer):
    maps, tr = cnv_traces
    outputs = range(8, 16)
    case, _ = cnv_slice_case(cnv, maps, layer, outputs, random_maps=0)
    thr = case.block.threshold.layer.name
    full = _full(tr, layer, thr, None, outputs)
    for mode in ("exact", "similar:1", "approx:1"):
        # The cross-channel form's greedy pairing takes a minute on the big layers.
        forms = [f for f in forms_of(mode) if f != "cse" or layer == "conv1"]
        check_case(case, mode, forms, count=64, full=full)


def test_corrupted_expectation_fails(example):
    """The comparison above sees one wrong bit."""
    plan = make_plan(example.net, "similar:1")
    picked, vectors = example.vectors(16)
    want = example.expected(picked, sharing=plan)
    got = hardwired_plan(example.net, "conv1", sharing=plan, adders="auto").reference(vectors)
    assert got == want
    bad = list(want)
    bad[5] ^= 1 << 17
    assert got != bad


def test_check_rejects_a_wrong_graph(example):
    """AdderGraph.check proves the function: one term's inversion flipped is caught."""
    plan = make_plan(example.net, "exact")
    hp = hardwired_plan(example.net, "conv1", sharing=plan, adders="kernels")
    g = hp.graph
    from bnnhw.model.packing import conv_weight_rows
    rows = conv_weight_rows(hp.effective_weight, "hwc")
    g.check(rows)
    i = next(i for i, k in enumerate(g.kinds) if k == "kernel")
    terms = list(g.sums[i])
    terms[0] = dataclasses.replace(terms[0], invert=not terms[0].invert)
    sums = list(g.sums)
    sums[i] = tuple(terms)
    bad = AdderGraph(g.inputs, sums, g.outputs, g.kinds)
    with pytest.raises(ValueError, match="coefficient of input"):
        bad.check(rows)


def test_graph_errors():
    with pytest.raises(ValueError, match="not an earlier node"):
        AdderGraph(2, [[Term(0), Term(2)]], [2])
    with pytest.raises(ValueError, match="has no terms"):
        AdderGraph(2, [[]], [2])


def test_plan_errors(example, cnv):
    block = example.block
    conv, thr = block.compute.layer, block.threshold.layer
    with pytest.raises(ValueError, match="needs a sharing plan"):
        HardwiredPlan(layer=conv, threshold=thr, adders="kernels")
    with pytest.raises(ValueError, match="Adder form must be .naive.*not .fast."):
        HardwiredPlan(layer=conv, threshold=thr, adders="fast")
    other = make_plan(conv_slice(cnv, "conv1", range(4)), "exact").layer("conv1")
    with pytest.raises(ValueError, match="sharing plan is for layer"):
        HardwiredPlan(layer=conv, threshold=thr, sharing=other)
    with pytest.raises(ValueError, match="is not a binary convolution"):
        conv_slice(cnv, "fc6", range(8))
    with pytest.raises(ValueError, match="output channels must be in 0..63"):
        conv_slice(cnv, "conv1", [60, 64])


def test_describe_and_figures(example):
    plan = make_plan(example.net, "similar:1")
    hp = hardwired_plan(example.net, "conv1", sharing=plan, adders="auto", ranks=(3,))
    d = hp.describe()
    assert d["kind"] == "hardwired" and d["adders"] == "auto" and d["sharing"] == "similar:1"
    assert d["K"] == 144 and d["O"] == 32 and d["latency"] == 2 and d["cycles_per_vector"] == 1
    assert d["graph"]["outputs"] == 32


def test_filter_tree():
    """Parents come first, no chain is deeper than asked, every output's derivation adds
    its distance to the parent (a filter or its inverse), never more than from the window."""
    rng = np.random.default_rng(3)
    base = rng.choice([-1, 1], (4, 40))
    # Outputs near four seeds (and their inverses): derivations from each other pay.
    near = np.repeat(base, 2, axis=0) * np.where(rng.random((8, 40)) < 0.05, -1, 1)
    rows = np.concatenate([base, -base, near])
    k = rows.shape[1]
    for depth in (1, 2, 4, 100):
        order, parent = filter_tree(rows, depth)
        assert sorted(order) == list(range(len(rows)))
        seen, level = set(), {}
        for q in order:
            p, inv = parent[q]
            if p < 0:
                filt = np.full(k, -1 if inv else 1)
                level[q] = 1
            else:
                assert p in seen
                filt = -rows[p] if inv else rows[p]
                level[q] = level[p] + 1
            assert level[q] <= depth
            ones = int((rows[q] > 0).sum())
            assert int((rows[q] != filt).sum()) <= min(ones, k - ones)
            seen.add(q)
        if depth == 1:
            assert all(p < 0 for p, _ in parent)
    # Unlimited depth is the minimum spanning tree: in each cluster of a seed, its inverse
    # and two near copies, one member joins at a random filter's distance, the others at a
    # few bits from it.
    cost = [int((rows[q] != (np.full(k, -1 if i else 1) if p < 0 else
                             (-rows[p] if i else rows[p]))).sum()) for q, (p, i) in
            enumerate(parent)]
    assert sum(c > 6 for c in cost) <= 4


def test_whole_filter_forms(example):
    """minority / filters: the window popcount shared by every output, each output at most
    half the literals plus a word add; filters pipelined by default; the counters lowering
    proves the same function with 6:3 counters."""
    from bnnhw.model.packing import conv_weight_rows
    from bnnhw.plan.adder_graph import lower
    from bnnhw.plan.hardwired import RANK_EVERY, build_graph
    block = example.block
    conv, thr = block.compute.layer, block.threshold.layer
    rows = conv_weight_rows(conv.weight, "hwc")
    k = conv.fan_in
    g = build_graph(conv.weight, "minority")
    assert g.kinds.count("window") == 1
    assert all(len(ts) <= k // 2 for ts, kind in zip(g.sums, g.kinds) if kind == "diff")
    g.check(rows)
    for form in ("filters", "split"):
        hp = HardwiredPlan(layer=conv, threshold=thr, adders=form)
        depth = hp.hardware_graph.max_depth
        assert hp.ranks == tuple(range(RANK_EVERY, depth, RANK_EVERY)) and hp.ranks
        assert hp.latency == len(hp.ranks) + 1
    assert HardwiredPlan(layer=conv, threshold=thr, adders="filters", ranks=()).ranks == ()
    assert HardwiredPlan(layer=conv, threshold=thr, adders="minority").ranks == ()
    low = lower(build_graph(conv.weight, "filters"), counters=True)
    assert "c6" in low.kinds
    low.check(rows)
