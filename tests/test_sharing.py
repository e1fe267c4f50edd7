"""Result sharing (SPEC §9): plan invariants, optimality, counts, JSON, and the golden model
running plans, against the independent slow reference (tests/sharing_reference.py)."""

import dataclasses
import itertools
import json
import math
import weakref

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from bnnhw.errors import InputError, ModelError
from bnnhw.model import (BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer, MaxPool,
                         MultibitConv2d, Network, Output, Threshold, ThresholdQuantizer)
from bnnhw.sharing import (ChannelPlan, KernelEntry, LayerPlan, SharingPlan, bits_to_kernel,
                           kernel_bits, layer_counts, make_plan, parse_mode, plan_channel,
                           plan_counts)
from bnnhw.sharing.execute import _compile, apply_affine, compile_layer, run_steps
from bnnhw.sharing.planner import cover_lower_bound, kernel_classes, lower_bound_bits
from reference import forward_reference
from sharing_reference import forward_sharing_reference, popcount_2d_sum
from support.data import shared_file

MODES = ["exact", "similar:1", "similar:2", "approx:1", "approx:2"]


# -- helpers -----------------------------------------------------------------------------------

def pm1(rng, shape):
    return rng.choice(np.array([-1, 1], np.int8), size=shape)


def clustered_weight(rng, o, c, kh, kw, bases=3, flips=2):
    """Kernels built from a few base kernels per channel: random 0..flips bit flips and
    inversions, so that repeats, inverses and near kernels all occur."""
    n = kh * kw
    w = np.empty((o, c, n), np.int8)
    for ch in range(c):
        base = pm1(rng, (bases, n))
        for i in range(o):
            k = base[rng.integers(bases)].copy()
            for p in rng.choice(n, size=min(n, int(rng.integers(0, flips + 1))), replace=False):
                k[p] = -k[p]
            w[i, ch] = -k if rng.integers(2) else k
    return w.reshape(o, c, kh, kw)


def random_shared_net(rng, *, multibit=False, saturate=False, clip=False, last="popcount"):
    """A random network with two or three binary convolutions of varied kernels."""
    c, h, w = 3, 9, 8
    layers = []
    if multibit:
        quantizer = FixedPointQuantizer(8)
        layers += [MultibitConv2d("conv0", pm1(rng, (5, c, 3, 3)), pad=1),
                   Threshold("thr0", rng.integers(-200, 200, 5), rng.integers(0, 2, 5) > 0)]
    else:
        quantizer = ThresholdQuantizer(int(rng.integers(1, 255)))
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        layers += [BinaryConv2d("conv0", clustered_weight(rng, 5, c, kh, kw), pad=1,
                                pad_value=int(rng.choice([1, -1]))),
                   Threshold("thr0", rng.integers(-3 * kh * kw, 3 * kh * kw + 1, 5),
                             rng.integers(0, 2, 5) > 0)]
    acc = {"acc_bits": 5, "overflow": "saturate"} if saturate else {}
    k = int(rng.choice([2, 3]))
    conv1 = BinaryConv2d("conv1", clustered_weight(rng, 9, 5, k, k), stride=int(rng.choice([1, 2])),
                         pad=int(rng.integers(0, 2)), pad_value=int(rng.choice([1, -1])), **acc)
    layers.append(conv1)
    if clip:
        layers.append(Clip("clip1", bits=4))
    layers += [Threshold("thr1", rng.integers(-20, 21, 9), rng.integers(0, 2, 9) > 0)]
    conv2 = BinaryConv2d("conv2", clustered_weight(rng, 7, 9, 2, 3), pad=1)
    layers += [conv2, Threshold("thr2", rng.integers(-20, 21, 7), rng.integers(0, 2, 7) > 0),
               MaxPool("pool2", 2)]
    shape = (c, h, w)
    for layer in layers:
        shape = layer.output_shape(shape)
    fan_in = int(np.prod(shape))
    layers.append(BinaryDense("fc3", pm1(rng, (4, fan_in)), **acc))
    if last == "margin":
        layers.append(Threshold("thr3", rng.integers(-fan_in, fan_in, 4),
                                rng.integers(0, 2, 4) > 0))
    elif last == "clipped":
        layers.append(Clip("clip3", bits=3))
    layers.append(Output())
    return Network("random_shared", (c, h, w), quantizer, tuple(layers))


def channel_bits(plan_channel_obj, n):
    return sum(e.cost_bits(n) for e in plan_channel_obj.entries)


def replace_channel(plan, layer_name, c, channel):
    """The plan's layers with one channel plan replaced (no validation: a LayerPlan only)."""
    layers = []
    for lp in plan.layers:
        if lp.name == layer_name:
            chans = list(lp.channels)
            chans[c] = channel
            lp = dataclasses.replace(lp, channels=tuple(chans))
        layers.append(lp)
    return tuple(layers)


def unchecked_plan(plan, layers):
    """A plan whose layers are replaced without any validation (to corrupt it on purpose)."""
    bad = object.__new__(SharingPlan)
    for f in dataclasses.fields(SharingPlan):
        object.__setattr__(bad, f.name, getattr(plan, f.name))
    object.__setattr__(bad, "layers", layers)
    object.__setattr__(bad, "_cache", {})
    return bad


def derived_entry(plan, layer_name):
    """``(channel, entry index)`` of the first derived entry with corrections that has an
    earlier entry other than its source with a different kernel."""
    lp = plan.layer(layer_name)
    for c, ch in enumerate(lp.channels):
        for i, e in enumerate(ch.entries):
            if e.corrections and any(ch.entries[k].bits != ch.entries[e.source].bits
                                     for k in range(i)):
                return c, i
    raise AssertionError("no derived entry")


@pytest.fixture(scope="module")
def cnv_plans(cnv):
    return {mode: make_plan(cnv, mode) for mode in ("exact", "similar:1", "approx:1")}


# -- modes, bits -------------------------------------------------------------------------------

def test_parse_mode():
    assert parse_mode("exact") == ("exact", 0)
    assert parse_mode("similar:3") == ("similar", 3)
    assert parse_mode("approx:1") == ("approx", 1)
    for bad in ("similar", "similar:0", "similar:-1", "approx:x", "approx:1.5", "fuzzy:1",
                "similar:01", "", 3):
        with pytest.raises(InputError, match="mode"):
            parse_mode(bad)


def test_kernel_bits_convention():
    w = -np.ones((1, 1, 3, 3), np.int8)
    w[0, 0, 0, 0] = 1                       # tap 0: bit 0
    w[0, 0, 1, 2] = 1                       # tap 1 * 3 + 2 = 5: bit 5
    assert kernel_bits(w)[0, 0] == (1 << 0) | (1 << 5)
    rng = np.random.default_rng(0)
    w = pm1(rng, (6, 4, 2, 3))
    assert np.array_equal(bits_to_kernel(kernel_bits(w), 2, 3), w)


def test_kernel_classes_pair_inverses():
    classes, of = kernel_classes([0b000000101, 0b111111010, 0b000000101, 3], 9)
    assert list(classes) == [3, 5] and list(of) == [1, 1, 1, 0]


# -- plan invariants on the real networks ------------------------------------------------------

@pytest.mark.parametrize("mode", ["exact", "similar:1", "approx:1"])
def test_plan_invariants_real_cnv(cnv, cnv_plans, mode):
    plan = cnv_plans[mode]
    kind, d = parse_mode(mode)
    plan.check(cnv)                         # same network; kernels reproduced (or within d)
    names = [lp.name for lp in plan.layers]
    assert names == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    mask = (1 << 9) - 1
    for lp in plan.layers:
        weight_bits = kernel_bits(cnv.layers[lp.index].weight)
        got = lp.output_bits()
        dist = np.bitwise_count((got ^ weight_bits).astype(np.uint64))
        if kind == "approx":
            assert dist.max() <= d and dist.max() > 0
        else:
            assert not dist.any()
        for c, ch in enumerate(lp.channels):
            classes, _ = kernel_classes(weight_bits[:, c], 9)
            scratch = [e for e in ch.entries if e.source is None]
            if kind == "exact":
                assert len(ch.entries) == len(scratch) == len(classes)
            else:
                assert len(scratch) == 1    # intermediates: one popcount per channel
            for i, e in enumerate(ch.entries):
                if e.source is not None:
                    assert e.source < i and len(e.corrections) <= d
                    base = ch.entries[e.source].bits ^ (mask if e.invert else 0)
                    assert base ^ sum(1 << p for p in e.corrections) == e.bits
            if kind == "similar":
                # Never below the bound of any exact plan (n + m - 1 bits).
                assert channel_bits(ch, 9) >= lower_bound_bits(len(classes), 9)


def test_plans_are_deterministic(cnv, cnv_plans):
    again = make_plan(cnv, "similar:1")
    assert again.to_json() == cnv_plans["similar:1"].to_json()
    assert again == cnv_plans["similar:1"]


def test_make_plan_bad_input(cnv, lfc):
    with pytest.raises(ModelError, match="no binary convolution"):
        make_plan(lfc, "exact")
    with pytest.raises(InputError, match="mode"):
        make_plan(cnv, "similar:0")
    with pytest.raises(InputError, match="max_depth"):
        make_plan(cnv, "similar:1", max_depth=0)
    with pytest.raises(InputError, match="'fc6' is not a binary convolution"):
        make_plan(cnv, "exact", layers=["fc6"])


def test_max_depth_is_respected(cnv):
    plan = make_plan(cnv, "similar:1", max_depth=3, layers=["conv2"])
    lp = plan.layer("conv2")
    assert max(max(ch.depths()) for ch in lp.channels) <= 3
    plan.check(cnv)
    free = make_plan(cnv, "similar:1", layers=["conv2"])
    assert layer_counts(lp).shared >= layer_counts(free.layer("conv2")).shared


# -- the constructor and check() refuse broken plans -------------------------------------------

def _small_plan():
    # One layer, one channel, three outputs: w, NOT w, w with bit 0 flipped.
    w = 0b101100110
    entries = (KernelEntry(w), KernelEntry(w ^ 1, 0, False, (0,)))
    ch = ChannelPlan(entries, (0, 0, 1), (False, True, False))
    lp = LayerPlan("conv", 0, (3, 3), 1, 3, (4, 4), (ch,))
    return lp, ch


@pytest.mark.parametrize("change, message", [
    (lambda ch: dataclasses.replace(ch, entries=(ch.entries[0], dataclasses.replace(
        ch.entries[1], corrections=(1,)))), "is not source entry 0's kernel"),
    (lambda ch: dataclasses.replace(ch, entries=(ch.entries[0], dataclasses.replace(
        ch.entries[1], source=1))), "must be an earlier entry"),
    (lambda ch: dataclasses.replace(ch, entries=(ch.entries[0], dataclasses.replace(
        ch.entries[1], corrections=(0, 0)))), "increasing positions"),
    (lambda ch: dataclasses.replace(ch, entries=(ch.entries[0], dataclasses.replace(
        ch.entries[1], corrections=(9,)))), "increasing positions in 0..8"),
    (lambda ch: dataclasses.replace(ch, entry=(0, 0, 0)), "computed but never read"),
    (lambda ch: dataclasses.replace(ch, entry=(0, 0, 2)), "reads entry 2, which does not"),
    (lambda ch: dataclasses.replace(ch, entry=(0, 0)), "one value per output channel"),
    (lambda ch: dataclasses.replace(ch, entries=(dataclasses.replace(
        ch.entries[0], bits=1 << 9), ch.entries[1])), "do not fit 9 positions"),
])
def test_constructor_rejects(change, message):
    lp, ch = _small_plan()
    SharingPlan("similar:1", "id", "t", (lp,))                 # the unbroken plan is fine
    broken = dataclasses.replace(lp, channels=(change(ch),))
    with pytest.raises(ModelError, match=message) as e:
        SharingPlan("similar:1", "id", "t", (broken,))
    assert "layer 'conv' channel 0" in str(e.value)


def test_constructor_rejects_mode_violations():
    lp, ch = _small_plan()
    with pytest.raises(ModelError, match="'exact' allows no corrections"):
        SharingPlan("exact", "id", "t", (lp,))
    two = ChannelPlan((KernelEntry(0), KernelEntry(3, 0, False, (0, 1))), (0, 1, 1),
                      (False, False, False))
    with pytest.raises(ModelError, match="at most 1"):
        SharingPlan("similar:1", "id", "t", (dataclasses.replace(lp, channels=(two,)),))
    SharingPlan("similar:2", "id", "t", (dataclasses.replace(lp, channels=(two,)),))
    with pytest.raises(ModelError, match="no layers"):
        SharingPlan("exact", "id", "t", ())


def test_check_rejects_other_network_and_weights(cnv, cnv_plans):
    other = bnnhw.load_model(shared_file("bnn-pynq", "cnvW1A1_streetview.npz"))
    with pytest.raises(InputError, match="is for network 'cnvW1A1_cifar10'"):
        cnv_plans["exact"].check(other)
    with pytest.raises(InputError, match="is for network"):
        golden.forward(other, np.zeros((1, 3, 32, 32), np.uint8), sharing=cnv_plans["exact"])
    # An approximate plan's kernels are not the network's: exact modes must not accept them.
    plan = cnv_plans["approx:1"]
    relabelled = SharingPlan("similar:1", plan.network, plan.network_name, plan.layers)
    with pytest.raises(InputError, match="channel .*: output channel .* reads kernel"):
        relabelled.check(cnv)
    with pytest.raises(InputError, match="sharing must be a"):
        golden.forward(cnv, np.zeros((1, 3, 32, 32), np.uint8), sharing="similar:1")


# -- optimality: brute force on small cases ----------------------------------------------------

def _delta(a, b, n):
    h = bin(a ^ b).count("1")
    return min(h, n - h)


def _brute_arborescence(classes, n, d):
    """Minimum bits over every parent assignment (root or a class within ``d``), acyclic."""
    m = len(classes)
    best = math.inf
    for parents in itertools.product(range(-1, m), repeat=m):
        if any(p == i for i, p in enumerate(parents)):
            continue
        cost = 0
        for i, p in enumerate(parents):
            if p < 0:
                cost += n
            elif _delta(classes[i], classes[p], n) <= d:
                cost += _delta(classes[i], classes[p], n)
            else:
                cost = math.inf
                break
        if cost >= best:
            continue
        ok = True
        for i in range(m):                    # every chain must reach the root
            seen, j = set(), i
            while j >= 0 and j not in seen:
                seen.add(j)
                j = parents[j]
            ok &= j < 0
        if ok:
            best = cost
    return best


def _mst_bits(nodes, n, d):
    """Prim over nodes plus a scratch root (cost n), arcs within d (independent code)."""
    nodes = list(nodes)
    key = {v: n for v in nodes}
    total = 0
    while key:
        v = min(key, key=key.get)
        total += key.pop(v)
        for u in key:
            dd = _delta(u, v, n)
            if dd <= d and dd < key[u]:
                key[u] = dd
    return total


def _brute_steiner(classes, n, d):
    """The optimum with intermediates: the best MST over classes plus any set of other
    kernel classes (every class of the n-bit space up to inversion)."""
    space = sorted({min(v, v ^ ((1 << n) - 1)) for v in range(1 << n)})
    others = [v for v in space if v not in classes]
    best = math.inf
    for r in range(len(others) + 1):
        for extra in itertools.combinations(others, r):
            best = min(best, _mst_bits(list(classes) + list(extra), n, d))
    return best


@pytest.mark.parametrize("seed", range(25))
def test_mst_is_the_optimum_without_intermediates(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([4, 6, 9]))
    d = int(rng.integers(1, 3))
    kernels = rng.integers(0, 1 << n, int(rng.integers(1, 9)))
    classes, _ = kernel_classes(kernels, n)
    if len(classes) > 5:
        classes = classes[:5]
        kernels = classes
    ch = plan_channel(kernels, n, f"similar:{d}", intermediates=False)
    assert channel_bits(ch, n) == _brute_arborescence([int(c) for c in classes], n, d)


@pytest.mark.parametrize("seed", range(15))
def test_intermediates_between_steiner_optimum_and_mst(seed):
    rng = np.random.default_rng(100 + seed)
    n, d = 4, 1                                  # 2x2 kernels: 8 classes, all subsets
    kernels = rng.integers(0, 16, int(rng.integers(1, 7)))
    classes = [int(c) for c in kernel_classes(kernels, n)[0]]
    with_aux = channel_bits(plan_channel(kernels, n, "similar:1"), n)
    without = channel_bits(plan_channel(kernels, n, "similar:1", intermediates=False), n)
    optimum = _brute_steiner(classes, n, d)
    assert lower_bound_bits(len(classes), n) <= optimum <= with_aux <= without


def test_steiner_gap_example():
    # Three 4-bit classes pairwise 2 apart around a centre no output uses: the optimum
    # computes the centre (4 bits) and corrects 1 bit each (7); the MST with chains pays
    # 4 + 2 + 2 = 8 (it does not share intermediates).
    classes = [0b0011, 0b0101, 0b0110]
    assert _brute_steiner(classes, 4, 1) == 7
    assert channel_bits(plan_channel(classes, 4, "similar:1"), 4) == 8


@pytest.mark.parametrize("seed", range(10))
def test_greedy_cover_is_a_cover_within_bounds(seed):
    rng = np.random.default_rng(200 + seed)
    n, d = 6, int(rng.integers(1, 3))
    kernels = rng.integers(0, 1 << n, int(rng.integers(2, 10)))
    classes, _ = kernel_classes(kernels, n)
    ch = plan_channel(kernels, n, f"approx:{d}")
    reps = {ch.entries[e].bits for e in ch.entry}
    for o, k in enumerate(kernels):         # every kernel within d of what it reads
        read = ch.entries[ch.entry[o]].bits ^ ((1 << n) - 1 if ch.inverted[o] else 0)
        assert bin(int(k) ^ read).count("1") <= d
    def covers(sub):
        return all(min(_delta(int(c), int(s), n) for s in sub) <= d for c in classes)
    best = next(r for r in range(1, len(classes) + 1)
                if any(covers(sub) for sub in itertools.combinations(classes, r)))
    assert cover_lower_bound(len(classes), n, d) <= best <= len(reps)


# -- operation counts on hand-built cases ------------------------------------------------------

def _one_layer_net(weight, h=6, w=6, **conv):
    o = weight.shape[0]
    c = weight.shape[1]
    conv = BinaryConv2d("conv", weight, **conv)
    _, ho, wo = conv.output_shape((c, h, w))
    return Network("hand", (c, h, w), ThresholdQuantizer(128),
                   (conv, Threshold("thr", np.zeros(o, np.int64)),
                    BinaryDense("fc", np.ones((2, o * ho * wo), np.int8)), Output()))


def test_counts_hand_built():
    # Channel 0: w, w, NOT w, w with one bit flipped; channel 1: four times the same kernel.
    w = np.array([[1, -1, 1], [1, 1, -1], [-1, -1, 1]], np.int8)
    w1 = w.copy()
    w1[2, 2] = -1
    weight = np.stack([np.stack([w, w, -w, w1]), np.stack([w, w, w, w])], axis=1)
    net = _one_layer_net(weight)                # 6x6 input, 3x3 kernel: 4x4 = 16 pixels
    px = 16
    exact = layer_counts(make_plan(net, "exact").layers[0])
    assert exact.unshared == 4 * 2 * px
    assert exact.computed == (2 + 1) * px                       # {w, w1} and {w}
    assert exact.correction_bits == 0 and exact.inverted_reads == 1 * px
    assert exact.reduction == pytest.approx(1 - 3 / 8)
    similar = layer_counts(make_plan(net, "similar:1").layers[0])
    assert similar.computed == 2 * px and similar.correction_bits == 1 * px
    assert similar.shared == pytest.approx(2 * px + px / 9)
    assert similar.inversions == 1 * px
    assert similar.reduction == pytest.approx(1 - (2 + 1 / 9) / 8)
    approx = layer_counts(make_plan(net, "approx:1").layers[0])
    assert approx.computed == 2 * px and approx.correction_bits == 0
    rows, total = plan_counts(make_plan(net, "similar:1"))
    assert total.unshared == rows[0].unshared and total.shared == rows[0].shared
    assert list(make_plan(net, "exact").layers[0].inversion_offsets()) == [0, 0, 9, 0]


def test_counts_chain_with_intermediates():
    # Two kernels 3 bits apart (and 6 from each other's inverse): similar:1 derives the second
    # through two intermediates, 3 correction bits; without intermediates it costs a scratch.
    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1], np.int8)
    b = a.copy()
    b[[0, 4, 8]] = -1
    weight = np.stack([a, b]).reshape(2, 1, 3, 3)
    net = _one_layer_net(weight)
    lc = layer_counts(make_plan(net, "similar:1").layers[0])
    assert (lc.computed, lc.correction_bits, lc.intermediates, lc.max_depth) == (16, 48, 2, 3)
    lc = layer_counts(make_plan(net, "similar:3").layers[0])
    assert (lc.computed, lc.correction_bits, lc.intermediates, lc.max_depth) == (16, 48, 0, 1)
    lc = layer_counts(make_plan(net, "similar:1", intermediates=False).layers[0])
    assert (lc.computed, lc.correction_bits) == (32, 0)


def test_cnv_cifar10_goal(cnv_plans):
    """>= 60 % fewer 2-D ops on conv1-conv5 with outputs exact (corrections counted)."""
    _, total = plan_counts(cnv_plans["similar:1"])
    assert total.unshared == sum(lp.out_channels * lp.in_channels * lp.pixels
                                 for lp in cnv_plans["similar:1"].layers) == 6_389_760
    assert total.reduction >= 0.60
    _, exact = plan_counts(cnv_plans["exact"])
    assert 0.25 < exact.reduction < total.reduction


# -- JSON --------------------------------------------------------------------------------------

def test_json_round_trip(cnv, cnv_plans, tmp_path):
    for plan in cnv_plans.values():
        text = plan.to_json()
        back = SharingPlan.from_json(text)
        assert back == plan and back.to_json() == text
        json.loads(text)
    plan = cnv_plans["similar:1"]
    plan.save(tmp_path / "plan.json")
    assert SharingPlan.load(tmp_path / "plan.json") == plan
    # A `bnnhw share --json` report holds the plan under "plan".
    (tmp_path / "report.json").write_text(json.dumps({"model": "x", "plan": plan.to_dict()}))
    assert SharingPlan.load(tmp_path / "report.json") == plan


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="other"), "format must be"),
    (lambda d: d.update(version=2), "version 2 is not supported"),
    (lambda d: d.update(mode="similar:x"), "maximum distance must be an integer"),
    (lambda d: d["layers"][0]["channels"][0]["entries"][1].__setitem__(3, [1]),
     "is not source entry 0's kernel"),
    (lambda d: d["layers"][0]["channels"][0]["entries"][1].__setitem__(3, [0, 1]),
     "the mode allows at most 1"),
    (lambda d: d["layers"][0]["channels"][0].update(entry=[0, 0]), "must have 3 items"),
    (lambda d: d["layers"][0]["channels"][0].update(inverted=[0, 2, 0]), "must hold 0 or 1"),
    (lambda d: d["layers"][0].update(kernel=[3, "3"]), "kernel must be an integer"),
    (lambda d: d["layers"][0]["channels"][0]["entries"][0].__setitem__(0, -1),
     "bits must be at least 0"),
])
def test_json_errors(edit, message):
    lp, _ = _small_plan()
    data = SharingPlan("similar:1", "id", "t", (lp,)).to_dict()
    SharingPlan.from_dict(json.loads(json.dumps(data)))
    edit(data)
    with pytest.raises(InputError, match=message):
        SharingPlan.from_dict(data, source="plan file 'p.json'")


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="cannot read it"):
        SharingPlan.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="is not valid JSON"):
        SharingPlan.load(tmp_path / "bad.json")


# -- the golden model runs plans ---------------------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("multibit", [False, True])
@pytest.mark.parametrize("last", ["popcount", "margin", "clipped"])
def test_random_networks_exact_and_approx(seed, multibit, last):
    rng = np.random.default_rng(seed)
    net = random_shared_net(rng, multibit=multibit, saturate=seed % 3 == 1, clip=seed % 2 == 0,
                            last=last)
    x = rng.integers(0, 256, (5, *net.input_shape), dtype=np.uint8)
    want = forward_sharing_reference(net, x)
    assert np.array_equal(want, forward_reference(net, x))      # SPEC §9 sum == SPEC §2
    assert np.array_equal(golden.forward(net, x), want)
    for mode in MODES:
        plan = make_plan(net, mode, intermediates=seed % 2 == 0)
        got = golden.forward(net, x, sharing=plan)
        if plan.is_exact:
            assert np.array_equal(got, want), mode
        else:
            assert np.array_equal(got, forward_sharing_reference(net, x, plan)), mode


def test_trace_and_threads_with_sharing():
    rng = np.random.default_rng(7)
    net = random_shared_net(rng)
    x = rng.integers(0, 256, (9, *net.input_shape), dtype=np.uint8)
    plan = make_plan(net, "similar:1")
    s0, t0 = golden.forward(net, x, trace=True)
    s1, t1 = golden.forward(net, x, trace=True, threads=2, sharing=plan)
    assert np.array_equal(s0, s1) and t0.keys() == t1.keys()
    for k in t0:
        assert np.array_equal(t0[k], t1[k]), k
    assert np.array_equal(golden.predict(net, x, sharing=plan), golden.predict(net, x))


def test_step_by_step_equals_compiled_form(cnv_plans):
    rng = np.random.default_rng(3)
    for plan in cnv_plans.values():
        for lp in plan.layers:
            prog = compile_layer(plan, lp)
            rows = rng.integers(0, 2, (6, lp.kernel_size * lp.in_channels)).astype(np.float32)
            assert np.array_equal(run_steps(prog, rows), apply_affine(prog, rows)), lp.name


def _cifar(n):
    data = np.load(shared_file("cifar10", "test.npz"))
    return data["images"][:n]


def _gtsrb(n):
    return np.load(shared_file("gtsrb", "test_32x32.npz"))["images"][:n]


@pytest.mark.parametrize("model, inputs", [("cnvW1A1_cifar10", _cifar),
                                           ("cnvW1A1_streetview", _cifar),
                                           ("cnvW1A1_road_signs", _gtsrb)])
def test_real_cnv_models_exact(model, inputs):
    net = bnnhw.load_model(shared_file("bnn-pynq", f"{model}.npz"))
    x = inputs(24)
    plain = golden.forward(net, x)
    for mode in ("exact", "similar:1", "similar:2"):
        plan = make_plan(net, mode, intermediates=mode != "similar:2")
        assert np.array_equal(golden.forward(net, x, sharing=plan), plain), mode
    # The slow SPEC §9 reference on a few images (it is slow on CNV).
    assert np.array_equal(forward_sharing_reference(net, x[:2]), plain[:2])


def test_cnv_vectors_exact(cnv, cnv_plans):
    v = np.load(shared_file("bnn-pynq", "vectors", "vectors_cnvW1A1_cifar10.npz"))
    x = np.ascontiguousarray(v["images_hwc_u8"].transpose(0, 3, 1, 2))
    for mode in ("exact", "similar:1"):
        scores, trace = golden.forward(cnv, x, trace=True, sharing=cnv_plans[mode])
        assert np.array_equal(scores, v["scores"])
        for i in range(1, 6):
            assert np.array_equal(trace[f"conv{i}.popcount"], v[f"trace_conv{i}_popcount"])
    printed = v["hw_reference_scores"][:3]
    assert np.array_equal(golden.forward(cnv, x[:3], sharing=cnv_plans["similar:1"]), printed)


def test_approx_on_real_cnv_matches_reference(cnv, cnv_plans):
    x = _cifar(2)
    plan = cnv_plans["approx:1"]
    got = golden.forward(cnv, x, sharing=plan)
    assert np.array_equal(got, forward_sharing_reference(cnv, x, plan))
    # And it is a different network: its conv1 popcounts differ from the exact ones.
    _, t_exact = golden.forward(cnv, x, trace=True)
    _, t_approx = golden.forward(cnv, x, trace=True, sharing=plan)
    assert not np.array_equal(t_exact["conv1.popcount"], t_approx["conv1.popcount"])


# -- corruption: a wrong plan must give a wrong answer -----------------------------------------

def _layer_reference(net, lp, x):
    """SPEC §9 popcounts of layer ``lp`` on the real input ``x`` of that layer."""
    _, trace = golden.forward(net, x, trace=True)
    prev = net.layers[lp.index - 1].name
    bits = trace[prev].astype(np.int64)                  # the layer's input bits
    layer = net.layers[lp.index]
    p = popcount_2d_sum(bits, layer.weight, layer.stride, layer.pad, 1)
    rows = np.ascontiguousarray(bits.transpose(0, 2, 3, 1))
    return p, rows


def _layer_rows(rows, kh, kw):
    n, h, w, c = rows.shape
    ho, wo = h - kh + 1, w - kw + 1
    out = np.empty((n, ho, wo, kh, kw, c), np.float32)
    for ky in range(kh):
        for kx in range(kw):
            out[:, :, :, ky, kx] = rows[:, ky:ky + ho, kx:kx + wo]
    return out.reshape(n * ho * wo, -1), (n, ho, wo)


@pytest.mark.parametrize("what", ["correction", "scratch bit", "inverted read", "source"])
def test_corruption_is_caught(cnv, cnv_plans, what):
    plan = cnv_plans["similar:1"]
    lp = plan.layer("conv2")
    x = _cifar(1)
    p_ref, act = _layer_reference(cnv, lp, x)
    rows, shape = _layer_rows(act, 3, 3)

    def layer_p(layer_plan):
        prog = _compile(layer_plan)
        a = apply_affine(prog, rows)
        assert np.array_equal(a, run_steps(prog, rows))     # both evaluators follow the plan
        return np.rint(a).astype(np.int64).reshape(*shape, -1).transpose(0, 3, 1, 2)

    assert np.array_equal(layer_p(lp), p_ref)            # the uncorrupted plan is exact
    c, i = derived_entry(plan, "conv2")
    ch = lp.channels[c]
    entries = list(ch.entries)
    e = entries[i]
    if what == "correction":                             # one correction position moved
        pos = e.corrections[0]
        entries[i] = dataclasses.replace(e, corrections=((pos + 1) % 9,))
        bad = dataclasses.replace(ch, entries=tuple(entries))
    elif what == "scratch bit":                          # one kernel bit of the scratch entry
        s = next(k for k, en in enumerate(entries) if en.source is None)
        entries[s] = dataclasses.replace(entries[s], bits=entries[s].bits ^ 1)
        bad = dataclasses.replace(ch, entries=tuple(entries))
    elif what == "inverted read":
        inv = list(ch.inverted)
        inv[0] = not inv[0]
        bad = dataclasses.replace(ch, inverted=tuple(inv))
    else:                                                # derived from a different entry
        other = next(k for k in range(i) if entries[k].bits != entries[e.source].bits)
        entries[i] = dataclasses.replace(e, source=other)
        bad = dataclasses.replace(ch, entries=tuple(entries))
    layers = replace_channel(plan, "conv2", c, bad)
    # 1. the plan's own invariants or check() refuse it, naming where;
    with pytest.raises((ModelError, InputError), match="layer 'conv2' channel"):
        SharingPlan(plan.mode, plan.network, plan.network_name, layers).check(cnv)
    # 2. and the arithmetic run on it (skipping every check) is wrong.
    bad_lp = [lay for lay in layers if lay.name == "conv2"][0]
    assert not np.array_equal(layer_p(bad_lp), p_ref)
    corrupted = unchecked_plan(plan, layers)
    corrupted._cache["checked"] = weakref.WeakSet([cnv])
    assert not np.array_equal(golden.forward(cnv, x, trace=True, sharing=corrupted)[1]
                              ["conv2.popcount"], p_ref)


def test_unshared_signature_unchanged(cnv):
    x = _cifar(3)
    assert np.array_equal(golden.forward(cnv, x), golden.forward(cnv, x, False, threads=1))
    assert np.array_equal(golden.forward(cnv, x, sharing=None), golden.forward(cnv, x))


# -- the full CIFAR-10 test set (slow) ---------------------------------------------------------

@pytest.mark.slow
def test_cifar10_10k_exact_plans(cnv):
    data = np.load(shared_file("cifar10", "test.npz"))
    x, y = data["images"], data["labels"].astype(np.int64)
    plain = golden.predict(cnv, x)
    assert int((plain == y).sum()) == 7922
    for mode in ("exact", "similar:1"):
        assert np.array_equal(golden.predict(cnv, x, sharing=make_plan(cnv, mode)), plain)
