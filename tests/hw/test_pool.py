"""OrMaxPool: software model against the golden model, hardware against both (amaranth.sim).

Hardware tests stream several back-to-back frames with random input gaps and random output
backpressure and check every output beat against :meth:`OrMaxPool.reference`, and the decoded
beats against the golden model's ``MaxPool`` trace.
"""

import gc
import random
import warnings
import zlib

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable

from support.data import shared_file
from support.streams import compare_beats, run_stream

from bnnhw import golden
from bnnhw.model.layers import BinaryDense, MaxPool, Output, ThresholdQuantizer
from bnnhw.model.network import Network
from bnnhw.hw.pool import OrMaxPool
from bnnhw.plan.stages import or_pool_reference


def golden_case(rng, *, n, c, h, w, kernel, stride):
    """(input bits [N,H,W,C], golden pooled bits [N,Ho,Wo,C]) from a network input -> pool."""
    pool = MaxPool("pool", kernel=kernel, stride=stride)
    _, ho, wo = pool.output_shape((c, h, w))
    fc = BinaryDense("fc", rng.choice([-1, 1], size=(2, c * ho * wo)).astype(np.int8))
    net = Network("t", (c, h, w), ThresholdQuantizer(128), [pool, fc, Output()])
    raw = rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)
    # Sparse ones make the OR informative (dense random bits OR to almost all ones).
    raw[rng.random(raw.shape) < 0.6] = 0
    _, traces = golden.forward(net, raw, trace=True)
    return (np.moveaxis(traces["input"], 1, -1).astype(np.int64),
            np.moveaxis(traces["pool"], 1, -1).astype(np.int64))


@pytest.mark.parametrize("kernel,stride", [(2, 2), (2, 1), (3, 2), (3, 3), (1, 2), (3, 1)])
def test_reference_matches_golden(kernel, stride):
    rng = np.random.default_rng(kernel * 10 + stride)
    frames, want = golden_case(rng, n=3, c=5, h=7, w=6, kernel=kernel, stride=stride)
    np.testing.assert_array_equal(or_pool_reference(frames, kernel=kernel, stride=stride), want)


GOOD = dict(channels=4, height=5, width=6, kernel=2, stride=2)


@pytest.mark.parametrize("change,error,message", [
    (dict(channels=0), ValueError, "Channel count must be at least 1, not 0"),
    (dict(kernel="2"), TypeError, "Kernel size must be an integer, not '2'"),
    (dict(stride=0), ValueError, "Stride must be at least 1, not 0"),
    (dict(width=1), ValueError, "Kernel size 2 does not fit the width 1"),
])
def test_validation(change, error, message):
    # The half-built component would warn "created but never used" when collected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(error) as info:
            OrMaxPool(**{**GOOD, **change})
        text = str(info.value)
        del info
        gc.collect()
    assert text == message


def test_describe():
    dut = OrMaxPool(channels=4, height=5, width=6, kernel=2)
    dut._MustUse__silence = True          # only inspected, never elaborated
    d = dut.describe()
    assert (d["stride"], d["out_height"], d["out_width"], d["memory_bits"]) == (2, 2, 3, 12)


CASES = [
    # c, h, w, kernel, stride, p_gap, p_stall
    (4, 5, 6, 2, 2, 0.3, 0.3),
    (8, 6, 6, 2, 2, 0.0, 0.6),
    (4, 5, 6, 2, 1, 0.3, 0.3),
    (4, 5, 6, 3, 2, 0.3, 0.3),
    (4, 6, 5, 3, 3, 0.5, 0.0),
    (4, 5, 6, 3, 1, 0.3, 0.5),
    (4, 4, 5, 1, 2, 0.3, 0.3),
    (4, 4, 5, 1, 1, 0.0, 0.0),
    (1, 2, 2, 2, 2, 0.3, 0.3),
    (4, 5, 6, 4, 3, 0.3, 0.3),
]


def _ids(case):
    c, h, w, k, s, gap, stall = case
    return f"C{c}-{h}x{w}-k{k}s{s}-gap{gap}-stall{stall}"


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_pool_hardware(case):
    c, h, w, kernel, stride, p_gap, p_stall = case
    rng = np.random.default_rng(zlib.crc32(_ids(case).encode()))
    frames, pooled = golden_case(rng, n=3, c=c, h=h, w=w, kernel=kernel, stride=stride)
    dut = OrMaxPool(channels=c, height=h, width=w, kernel=kernel, stride=stride)
    want = dut.reference(frames)
    got, _, _ = run_stream(dut, dut.pixels(frames), len(want), p_gap=p_gap, p_stall=p_stall,
                           seed=len(want))
    compare_beats(got, want)
    decoded = np.array([[(b >> i) & 1 for i in range(c)] for b in got]).reshape(pooled.shape)
    np.testing.assert_array_equal(decoded, pooled)


def test_corrupted_expectation_fails():
    """The comparison is sensitive to one bit of one beat."""
    rng = np.random.default_rng(5)
    frames, _ = golden_case(rng, n=2, c=4, h=6, w=6, kernel=2, stride=2)
    dut = OrMaxPool(channels=4, height=6, width=6, kernel=2)
    want = dut.reference(frames)
    got, _, _ = run_stream(dut, dut.pixels(frames), len(want), p_gap=0.2, p_stall=0.2)
    compare_beats(got, want)
    bad = list(want)
    bad[len(bad) // 2] ^= 1 << 3
    with pytest.raises(AssertionError, match=f"beat {len(bad) // 2}:"):
        compare_beats(got, bad)


def test_throughput():
    """No gaps, no backpressure: one input pixel per cycle, latency 1."""
    rng = np.random.default_rng(9)
    n, c, h, w = 4, 4, 6, 6
    frames, _ = golden_case(rng, n=n, c=c, h=h, w=w, kernel=2, stride=2)
    dut = OrMaxPool(channels=c, height=h, width=w, kernel=2)
    want = dut.reference(frames)
    got, out_cycles, in_cycles = run_stream(dut, dut.pixels(frames), len(want))
    compare_beats(got, want)
    assert in_cycles == list(range(n * h * w)), "input was not accepted every cycle"
    # Window (0, 0) ends with pixel (1, 1), accepted at cycle w + 1.
    assert out_cycles[0] == w + 2
    print(f"\npool 2x2 C={c} {h}x{w}, {n} frames: {n * h * w} input pixels in "
          f"{in_cycles[-1] + 1} cycles, {len(got)} outputs, last at cycle {out_cycles[-1]}")


def _random_cases(count, seed):
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        k, s = rng.randrange(1, 5), rng.randrange(1, 5)
        h, w = rng.randrange(1, 9), rng.randrange(1, 9)
        if h < k or w < k:
            continue
        cases.append((rng.choice([1, 3, 8]), h, w, k, s, rng.choice([0.0, 0.3, 0.7]),
                      rng.choice([0.0, 0.3, 0.7])))
    return cases


@pytest.mark.parametrize("case", _random_cases(8, 1), ids=_ids)
def test_pool_random_configs(case):
    test_pool_hardware(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", _random_cases(150, 2), ids=_ids)
def test_pool_random_configs_sweep(case):
    test_pool_hardware(case)


@pytest.mark.parametrize("pool_name,source", [("pool1", "thr1"), ("pool3", "thr3")])
def test_pool_cnv_layers(cnv, pool_name, source):
    """CNV's 2x2 pools on a real image: golden threshold bits in, golden pool bits out."""
    images = np.load(shared_file("bnn-pynq", "vectors", "vectors_cnvW1A1_cifar10.npz"))
    raw = np.ascontiguousarray(images["images_hwc_u8"][:2].transpose(0, 3, 1, 2))
    _, traces = golden.forward(cnv, raw, trace=True)
    c, h, w = cnv.info(pool_name).input_shape
    layer = cnv.info(pool_name).layer
    dut = OrMaxPool(channels=c, height=h, width=w, kernel=layer.kernel, stride=layer.stride)
    frames = np.moveaxis(traces[source], 1, -1)
    want = dut.reference(frames)
    got, _, _ = run_stream(dut, dut.pixels(frames), len(want), p_gap=0.2, p_stall=0.2)
    compare_beats(got, want)
    pooled = np.moveaxis(traces[pool_name], 1, -1)
    decoded = np.array([[(b >> i) & 1 for i in range(c)] for b in got]).reshape(pooled.shape)
    np.testing.assert_array_equal(decoded, pooled)
