"""MVTU against an independent slow reference (SPEC §2-6, §8), with gaps and backpressure."""

import numpy as np
import pytest

from bnnhw.hw.mvtu import MVTU
from bnnhw.model.layers import BinaryConv2d, BinaryDense, Clip, MultibitConv2d, Threshold

from support.streams import StreamDriver, StreamMonitor, compare_beats, run_streams

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def ref_vector_output(layer, x_vec, threshold=None, clip=None, rule=None):
    """Slow reference of one vector: x_vec in chunk order (bits 0/1, or signed codes)."""
    w = layer.weight
    if w.ndim == 4:
        w = w.transpose(0, 2, 3, 1)
    w = w.reshape(w.shape[0], -1).astype(np.int64)
    if isinstance(layer, MultibitConv2d):
        y = [int(sum(int(a) * int(b) for a, b in zip(row, x_vec))) for row in w]
        p = None
    else:
        pm = [1 if b else -1 for b in x_vec]
        p = [sum(1 for a, b in zip(row, pm) if a == b) for row in w]
        if layer.saturates:
            p = [min(v, (1 << layer.accumulator_bits) - 1) for v in p]
        y = [2 * v - layer.fan_in for v in p]
    if clip is not None:
        y = [max(-clip.limit, min(clip.limit, v)) for v in y]
    if rule is None:
        return [int(v <= t) if n else int(v >= t)
                for v, t, n in zip(y, threshold.thresholds, threshold.negate)]
    if rule == "popcount":
        return p
    if rule == "margin":
        return [int(t - v) if n else int(v - t)
                for v, t, n in zip(y, threshold.thresholds, threshold.negate)]
    return y


def chunks_of(x_vec, simd, bits):
    """Split a vector into chunk-beat integers (lane j at bits [j*bits, (j+1)*bits))."""
    beats = []
    for s in range(0, len(x_vec), simd):
        word = 0
        for j, v in enumerate(x_vec[s:s + simd]):
            word |= (int(v) & ((1 << bits) - 1)) << (j * bits)
        beats.append(word)
    return beats


def unpack_scores(word, n, width):
    out = []
    for o in range(n):
        v = (word >> (o * width)) & ((1 << width) - 1)
        out.append(v - (1 << width) if v >> (width - 1) else v)
    return out


def run_mvtu(dut, vectors, *, valid_prob=1.0, ready_prob=1.0, seed=0, junk_padding=True):
    rng = np.random.default_rng(seed)
    beats = []
    for x in vectors:
        b = chunks_of(x, dut.simd, dut.in_bits)
        if junk_padding:
            # Padded lanes of the last chunk carry garbage: the MVTU must ignore them.
            rem = dut.fan_in - (dut.sf - 1) * dut.simd
            if rem != dut.simd:
                junk = int(rng.integers(0, 1 << 30)) << (rem * dut.in_bits)
                b[-1] |= junk & ((1 << (dut.simd * dut.in_bits)) - 1)
        beats += b
    drv = StreamDriver(dut.i_stream, beats, valid_prob=valid_prob, seed=seed)
    mon = StreamMonitor(dut.o_stream, len(vectors), ready_prob=ready_prob, seed=seed + 1)
    run_streams(dut, [drv], [mon])
    return mon


def decode(dut, word):
    if dut.output == "bits":
        return [(word >> o) & 1 for o in range(dut.out_channels)]
    return unpack_scores(word, dut.out_channels, dut.score_width)


def rand_pm1(rng, shape):
    return rng.choice(np.array([-1, 1], np.int8), size=shape)


def check(dut, vectors, threshold=None, clip=None, rule=None, **kw):
    mon = run_mvtu(dut, vectors, **kw)
    got = [decode(dut, w) for w in mon.beats]
    exp = [ref_vector_output(dut.layer, x, threshold, clip, rule) for x in vectors]
    compare_beats(got, exp, "vector")
    return mon


@pytest.mark.parametrize("o,k,pe,simd", [(6, 20, 2, 4), (5, 13, 2, 4), (3, 8, 3, 8),
                                         (4, 7, 1, 7), (7, 9, 4, 2), (3, 6, 5, 3)])
def test_dense_threshold(o, k, pe, simd):
    rng = np.random.default_rng(o * 100 + k)
    layer = BinaryDense("fc", rand_pm1(rng, (o, k)))
    t = rng.integers(-k - 3, k + 4, o)
    neg = rng.random(o) < 0.4
    thr = Threshold("thr", t, neg)
    dut = MVTU(layer=layer, pe=pe, simd=simd, threshold=thr)
    vectors = [rng.integers(0, 2, k) for _ in range(5)]
    # Corner vectors: all-match and all-mismatch with row 0; ties come from thresholds at y.
    vectors.append((layer.weight[0] == 1).astype(int))
    vectors.append((layer.weight[0] != 1).astype(int))
    check(dut, vectors, thr, valid_prob=0.7, ready_prob=0.6, seed=o)


def test_conv_multibit_threshold_clip():
    """A multi-bit first layer (SPEC §6) with a clip in front of its threshold (§4-5)."""
    rng = np.random.default_rng(7)
    layer = MultibitConv2d("c0", rand_pm1(rng, (5, 3, 2, 2)), input_bits=4)
    clip = Clip("cl", bits=4)   # [-7, 7]: thresholds beyond it fire always / never
    t = np.array([-9, -7, 0, 7, 8])
    neg = np.array([0, 1, 0, 1, 1], bool)
    thr = Threshold("thr", t, neg)
    dut = MVTU(layer=layer, pe=2, simd=3, threshold=thr, clip=clip)
    vectors = [rng.integers(-8, 8, layer.fan_in) for _ in range(6)]
    vectors.append(np.full(layer.fan_in, -8))
    check(dut, vectors, thr, clip, valid_prob=0.6, ready_prob=0.5, seed=3)


def test_conv_binary_chunk_order():
    """Convolution weights are permuted to the [ky][kx][c] window order."""
    rng = np.random.default_rng(8)
    layer = BinaryConv2d("c1", rand_pm1(rng, (4, 4, 2, 2)))
    thr = Threshold("thr", rng.integers(-6, 7, 4), rng.random(4) < 0.5)
    dut = MVTU(layer=layer, pe=4, simd=2, threshold=thr)
    check(dut, [rng.integers(0, 2, 16) for _ in range(6)], thr, valid_prob=0.8, ready_prob=0.8)


@pytest.mark.parametrize("rule", ["popcount", "margin", "clipped"])
def test_scores(rule):
    rng = np.random.default_rng(11)
    o, k = 5, 19
    layer = BinaryDense("fc", rand_pm1(rng, (o, k)))
    thr = Threshold("thr", rng.integers(-25, 25, o), rng.random(o) < 0.5) \
        if rule == "margin" else None
    clip = Clip("cl", bits=4) if rule == "clipped" else None
    dut = MVTU(layer=layer, pe=2, simd=4, threshold=thr, clip=clip, output="scores", rule=rule)
    vectors = [rng.integers(0, 2, k) for _ in range(5)] + [np.ones(k, int), np.zeros(k, int)]
    check(dut, vectors, thr, clip, rule, valid_prob=0.7, ready_prob=0.5, seed=5)


def test_saturating_accumulator():
    """acc_bits = 3 < A_min = 5 saturates P at 7, like the golden model (SPEC §3)."""
    rng = np.random.default_rng(12)
    layer = BinaryDense("fc", rand_pm1(rng, (3, 17)), acc_bits=3, overflow="saturate")
    assert layer.saturates
    dut = MVTU(layer=layer, pe=3, simd=5, output="scores", rule="popcount")
    vectors = [rng.integers(0, 2, 17) for _ in range(5)]
    vectors += [(layer.weight[0] == 1).astype(int), (layer.weight[0] != 1).astype(int)]
    check(dut, vectors, rule="popcount", valid_prob=0.9, ready_prob=0.7)


def test_accumulator_width_validation():
    layer = BinaryDense("fc", np.ones((2, 576), np.int8))
    with pytest.raises(ValueError, match=r"^layer 'fc': accumulator width must be at least "
                                         r"10 for K=576, not 8$"):
        MVTU(layer=layer, pe=1, simd=64, output="scores", rule="popcount", acc_bits=8)
    wide = MVTU(layer=layer, pe=1, simd=64, output="scores", rule="popcount", acc_bits=12)
    assert wide.acc_bits == 12


def test_parameter_validation():
    rng = np.random.default_rng(1)
    conv = BinaryConv2d("c", rand_pm1(rng, (4, 6, 3, 3)))
    thr = Threshold("t", np.zeros(4, int))
    with pytest.raises(ValueError, match=r"^layer 'c': SIMD must divide the 6 input "
                                         r"channels, not 4$"):
        MVTU(layer=conv, pe=1, simd=4, threshold=thr)
    with pytest.raises(TypeError, match=r"^PE must be an integer, not 1.5$"):
        MVTU(layer=conv, pe=1.5, simd=3, threshold=thr)
    with pytest.raises(ValueError, match=r"^layer 'c': output 'bits' needs a threshold$"):
        MVTU(layer=conv, pe=1, simd=3)


@pytest.mark.parametrize("o,k,pe,simd", [(6, 20, 2, 4), (5, 9, 5, 9), (4, 6, 1, 1)])
def test_cycles_per_vector(o, k, pe, simd):
    """Back to back, with the output always ready: exactly NF * SF cycles per vector."""
    rng = np.random.default_rng(2)
    layer = BinaryDense("fc", rand_pm1(rng, (o, k)))
    thr = Threshold("thr", rng.integers(-k, k, o))
    dut = MVTU(layer=layer, pe=pe, simd=simd, threshold=thr)
    mon = check(dut, [rng.integers(0, 2, k) for _ in range(6)], thr)
    gaps = np.diff(mon.cycles)
    assert list(gaps) == [dut.cycles_per_vector] * 5, gaps


def test_corrupted_expectation_fails():
    """The comparison catches a single wrong expected bit."""
    rng = np.random.default_rng(3)
    layer = BinaryDense("fc", rand_pm1(rng, (6, 10)))
    thr = Threshold("thr", rng.integers(-5, 5, 6))
    dut = MVTU(layer=layer, pe=2, simd=4, threshold=thr)
    vectors = [rng.integers(0, 2, 10) for _ in range(3)]
    mon = run_mvtu(dut, vectors)
    got = [decode(dut, w) for w in mon.beats]
    exp = [ref_vector_output(layer, x, thr) for x in vectors]
    compare_beats(got, exp, "vector")
    exp[1][4] ^= 1
    with pytest.raises(AssertionError, match="vector 1"):
        compare_beats(got, exp, "vector")


def test_chunk_stage_seam():
    """A replacement chunk stage plugs in through `chunk_stage` (here: a deeper tree)."""
    from bnnhw.hw.pe import ChunkPopcount
    rng = np.random.default_rng(9)
    layer = BinaryConv2d("c", rand_pm1(rng, (4, 2, 3, 3)))
    thr = Threshold("thr", rng.integers(-9, 9, 4))
    made = []

    def stage(plan):
        made.append((plan.pe, plan.simd))
        return ChunkPopcount(pe=plan.pe, simd=plan.simd, stages=4)

    dut = MVTU(layer=layer, pe=2, simd=2, threshold=thr, chunk_stage=stage)
    assert made == [(2, 2)] and dut.latency == dut.cycles_per_vector + 4 + 3
    check(dut, [rng.integers(0, 2, 18) for _ in range(5)], thr, ready_prob=0.7)


def test_ties_every_channel():
    """Thresholds set to each channel's exact y for a vector: P == ceil((T+K)/2) ties."""
    rng = np.random.default_rng(10)
    o, k = 6, 13
    layer = BinaryDense("fc", rand_pm1(rng, (o, k)))
    x = rng.integers(0, 2, k)
    y = layer.weight.astype(int) @ (2 * x - 1)
    for neg in (False, True):
        for delta in (-1, 0, 1):
            thr = Threshold("thr", y + delta, np.full(o, neg))
            dut = MVTU(layer=layer, pe=4, simd=5, threshold=thr)
            check(dut, [x, 1 - x], thr, valid_prob=0.8, ready_prob=0.8)


@pytest.mark.parametrize("case", range(6))
def test_plan_reference_equals_slow_reference_and_hardware(case):
    """The amaranth.lib.crc pattern: the plan's software model (from its own tables) equals
    the independent slow reference, and the hardware built from the same plan equals both."""
    from bnnhw.plan.stages import MVTUPlan
    rng = np.random.default_rng(40 + case)
    kinds = ["dense", "conv", "multibit", "dense-clip", "dense-sat", "conv-scores"]
    kind = kinds[case]
    clip = rule = None
    if kind.startswith("dense"):
        layer = BinaryDense("fc", rand_pm1(rng, (7, 21)),
                            **({"acc_bits": 3, "overflow": "saturate"} if kind == "dense-sat"
                               else {}))
        x = rng.integers(0, 2, (6, 21))
    elif kind == "multibit":
        layer = MultibitConv2d("c0", rand_pm1(rng, (5, 2, 3, 3)), input_bits=4)
        x = rng.integers(-8, 8, (6, 18))
    else:
        layer = BinaryConv2d("c", rand_pm1(rng, (6, 2, 3, 3)))
        x = rng.integers(0, 2, (6, 18))
    if kind == "dense-clip":
        clip = Clip("clip", bits=3)
    k = layer.fan_in
    thr = Threshold("thr", rng.integers(-k - 2, k + 3, layer.out_channels),
                    rng.random(layer.out_channels) < 0.4)
    output = "bits"
    if kind == "conv-scores":
        output, rule = "scores", "margin"
    plan = MVTUPlan(layer=layer, pe=3, simd=2, threshold=thr, clip=clip, output=output,
                    rule=rule)
    got = plan.reference(x)
    for vec, beat in zip(x, got):
        want = ref_vector_output(layer, vec, thr, clip, rule)
        if output == "bits":
            assert beat == sum(int(b) << o for o, b in enumerate(want))
        else:
            assert unpack_scores(beat, layer.out_channels, plan.score_width) == want
    hw = run_mvtu(plan.create(), list(x), valid_prob=0.8, ready_prob=0.7)
    compare_beats([int(b) for b in hw.beats], got, "vector")
