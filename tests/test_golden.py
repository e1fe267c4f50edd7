"""The golden model against the independent slow reference (tests/reference.py)."""

import numpy as np
import pytest

from bnnhw import golden
from bnnhw.errors import InputError
from bnnhw.model import (BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer, MaxPool,
                         MultibitConv2d, Network, Output, Threshold, ThresholdQuantizer)
from reference import conv_int, forward_reference


def pm1(rng, shape):
    return rng.choice(np.array([-1, 1], np.int8), size=shape)


@pytest.mark.parametrize("seed", range(12))
def test_binary_conv_against_loop_reference(seed):
    rng = np.random.default_rng(seed)
    c, o = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    k = int(rng.choice([1, 2, 3, 5]))
    stride = int(rng.choice([1, 2]))
    pad = int(rng.integers(0, 3))
    pad_value = int(rng.choice([1, -1]))
    h, w = int(rng.integers(k, 12)), int(rng.integers(k, 12))
    layer = BinaryConv2d("conv", pm1(rng, (o, c, k, k)), stride=stride, pad=pad,
                         pad_value=pad_value)
    _, ho, wo = layer.output_shape((c, h, w))
    net = Network("t", (c, h, w), ThresholdQuantizer(128), (
        layer, Threshold("thr", np.zeros(o, np.int64)),
        BinaryDense("fc", pm1(rng, (2, o * ho * wo))), Output()))
    x = rng.integers(0, 256, (3, c, h, w), dtype=np.uint8)
    y = conv_int(2 * (x >= 128).astype(np.int64) - 1, layer.weight, stride, pad, pad_value)
    _, trace = golden.forward(net, x, trace=True)
    assert np.array_equal(trace["conv"], y)
    assert np.array_equal(trace["conv.popcount"], (y + layer.fan_in) // 2)


@pytest.mark.parametrize("seed", range(6))
def test_binary_dense_against_int_matmul(seed):
    rng = np.random.default_rng(seed)
    k, o = int(rng.integers(1, 300)), int(rng.integers(1, 40))
    layer = BinaryDense("fc", pm1(rng, (o, k)))
    net = Network("t", (1, 1, k), ThresholdQuantizer(128), (layer, Output()))
    x = rng.integers(0, 256, (9, 1, 1, k), dtype=np.uint8)
    xs = 2 * (x.reshape(9, k) >= 128).astype(np.int64) - 1
    p = (xs @ layer.weight.astype(np.int64).T + k) // 2
    assert np.array_equal(golden.forward(net, x), p)


def random_net(rng, *, multibit, saturate=False, clip=False, last="popcount"):
    layers = []
    c, h, w = 3, 9, 8
    if multibit:
        quantizer = FixedPointQuantizer(8)
        first = MultibitConv2d("conv0", pm1(rng, (6, c, 3, 3)), stride=1, pad=1)
        lo, hi = first.output_range
        layers += [first, Threshold("thr0", rng.integers(-300, 300, 6),
                                    rng.integers(0, 2, 6).astype(bool))]
    else:
        quantizer = ThresholdQuantizer(int(rng.integers(1, 255)))
        first = BinaryConv2d("conv0", pm1(rng, (6, c, 3, 3)), stride=1, pad=1,
                             pad_value=int(rng.choice([1, -1])))
        layers += [first, Threshold("thr0", rng.integers(-27, 28, 6),
                                    rng.integers(0, 2, 6).astype(bool))]
    acc = {"acc_bits": 4, "overflow": "saturate"} if saturate else {}
    conv1 = BinaryConv2d("conv1", pm1(rng, (8, 6, 3, 3)), stride=int(rng.choice([1, 2])),
                         pad=int(rng.integers(0, 2)), pad_value=int(rng.choice([1, -1])), **acc)
    layers.append(conv1)
    if clip:
        layers.append(Clip("clip1", bits=4))
    layers += [Threshold("thr1", rng.integers(-60, 61, 8), rng.integers(0, 2, 8).astype(bool)),
               MaxPool("pool1", 2)]
    shape = (c, h, w)
    for layer in layers:
        shape = layer.output_shape(shape)
    fan_in = int(np.prod(shape))
    layers.append(BinaryDense("fc2", pm1(rng, (5, fan_in)), **acc))
    if last == "margin":
        layers.append(Threshold("thr2", rng.integers(-fan_in, fan_in, 5),
                                rng.integers(0, 2, 5).astype(bool)))
    elif last == "clipped":
        layers.append(Clip("clip2", bits=3))
    layers.append(Output("output"))
    return Network("random", (c, h, w), quantizer, tuple(layers))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("multibit", [False, True])
@pytest.mark.parametrize("last", ["popcount", "margin", "clipped"])
def test_networks_against_reference(seed, multibit, last):
    rng = np.random.default_rng(seed)
    net = random_net(rng, multibit=multibit, saturate=seed % 3 == 1, clip=seed % 2 == 0,
                     last=last)
    assert net.output_rule == last
    x = rng.integers(0, 256, (7, *net.input_shape), dtype=np.uint8)
    assert np.array_equal(golden.forward(net, x), forward_reference(net, x))


def test_trace_has_every_layer(lfc):
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    scores, trace = golden.forward(lfc, x, trace=True)
    for layer in lfc.layers:
        assert layer.name in trace
    assert trace["fc0.popcount"].shape == (3, 1024)
    assert np.array_equal(trace["output"], scores)
    assert scores.dtype == np.int64


def test_saturation_semantics():
    # K = 16 all matching -> P = 16, but a 3-bit accumulator saturates at 7: y = 2*7 - 16.
    w = np.ones((1, 16), np.int8)
    with pytest.raises(Exception, match="accumulator width must be at least 5 for K=16, not 3"):
        BinaryDense("fc", w, acc_bits=3)
    layer = BinaryDense("fc", w, acc_bits=3, overflow="saturate")
    assert layer.min_acc_bits == 5 and layer.saturates
    net = Network("s", (1, 4, 4), ThresholdQuantizer(128), (layer, Output("out")))
    x = np.full((2, 1, 4, 4), 255, np.uint8)
    x[1, 0, 0, :3] = 0                    # P = 13 -> still saturated at 7
    assert golden.forward(net, x).tolist() == [[7], [7]]
    x[1] = 0
    x[1, 0, 0, :] = 255
    x[1, 0, 1, 0] = 255                   # P = 5 -> below saturation, exact
    assert golden.forward(net, x).tolist() == [[7], [5]]
    wider = BinaryDense("fc", w, acc_bits=8)
    assert wider.accumulator_bits == 8 and not wider.saturates


def test_minimal_accumulator_width():
    for k, a in [(1, 1), (2, 2), (3, 2), (7, 3), (8, 4), (27, 5), (576, 10), (1023, 10),
                 (1024, 11), (2304, 12)]:
        assert BinaryDense("fc", np.ones((1, k), np.int8)).min_acc_bits == a
        assert BinaryDense("fc", np.ones((1, k), np.int8)).signed_bits == a + 1


def test_input_quantizers_match_spec():
    p = np.arange(256)
    q = FixedPointQuantizer(8)(p).astype(np.int64)
    # SPEC §6 formula, evaluated in exact rational arithmetic.
    from fractions import Fraction
    import math
    expected = [max(-128, min(127, math.floor(Fraction(128) * (Fraction(2 * int(v), 255) - 1)
                                              + Fraction(1, 2)))) for v in p]
    assert q.tolist() == expected
    assert q[0] == -128 and q[255] == 127 and q[127] == -1 and q[128] == 1
    assert ThresholdQuantizer(128)(p).tolist() == [int(v >= 128) for v in p]


def test_input_errors(lfc, cnv):
    with pytest.raises(InputError, match=r"input must be raw bytes \(uint8\), not float64"):
        golden.forward(lfc, np.zeros((1, 784)))
    with pytest.raises(InputError, match=r"must have shape \[N, 3, 32, 32\], not \[2, 32, 32, 3\]"):
        golden.forward(cnv, np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(InputError, match="N = 0"):
        golden.forward(lfc, np.zeros((0, 784), np.uint8))
    for shape in [(2, 28, 28), (2, 784), (2, 1, 28, 28)]:
        assert golden.forward(lfc, np.zeros(shape, np.uint8)).shape == (2, 10)


def test_predict_is_first_argmax():
    w = np.ones((3, 4), np.int8)          # three identical classes: ties everywhere
    net = Network("tie", (1, 2, 2), ThresholdQuantizer(128), (BinaryDense("fc", w), Output()))
    x = np.random.default_rng(0).integers(0, 256, (5, 1, 2, 2), dtype=np.uint8)
    assert golden.predict(net, x).tolist() == [0] * 5


@pytest.mark.parametrize("seed", range(10))
def test_multibit_conv_against_loop_reference(seed):
    # Multi-bit first layer with stride 2 (and 1), padding with a non-zero code, odd sizes.
    rng = np.random.default_rng(100 + seed)
    bits = int(rng.choice([2, 4, 8]))
    c, o = int(rng.integers(1, 5)), int(rng.integers(1, 9))
    k = int(rng.choice([1, 2, 3, 5]))
    stride = 2 if seed < 7 else 1
    pad = int(rng.integers(1, 3)) if seed % 4 else 0
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    pad_value = int(rng.integers(lo, hi + 1))
    h, w = int(rng.integers(k, 14)), int(rng.integers(k, 14))
    layer = MultibitConv2d("conv0", pm1(rng, (o, c, k, k)), input_bits=bits, stride=stride,
                           pad=pad, pad_value=pad_value)
    _, ho, wo = layer.output_shape((c, h, w))
    bound = layer.fan_in << (bits - 1)
    net = Network("t", (c, h, w), FixedPointQuantizer(bits), (
        layer, Threshold("thr0", rng.integers(-bound // 4, bound // 4 + 1, o),
                         rng.integers(0, 2, o).astype(bool)),
        BinaryDense("fc", pm1(rng, (3, o * ho * wo))), Output()))
    x = rng.integers(0, 256, (5, c, h, w), dtype=np.uint8)
    codes = FixedPointQuantizer(bits)(x).astype(np.int64)
    y = conv_int(codes, layer.weight, stride, pad, pad_value)
    scores, trace = golden.forward(net, x, trace=True)
    assert np.array_equal(trace["conv0"], y)
    # The untraced path fuses the threshold into the product: same scores as the reference.
    assert np.array_equal(golden.forward(net, x), forward_reference(net, x))
    assert np.array_equal(scores, forward_reference(net, x))


def test_wide_codes_fall_back_to_float64():
    # 16-bit codes over K = 576: |y| can reach 576 * 2^15 > 2^24, beyond float32's integers.
    rng = np.random.default_rng(3)
    layer = MultibitConv2d("conv0", np.ones((2, 64, 3, 3), np.int8), input_bits=16, stride=2,
                           pad=1, pad_value=-(1 << 15))
    assert layer.output_range[1] > 1 << 24
    net = Network("wide", (64, 5, 5), FixedPointQuantizer(16), (
        layer, Threshold("thr0", np.array([(1 << 24) + 1, -(1 << 24) - 3]),
                         np.array([False, True])),
        BinaryDense("fc", pm1(rng, (2, 2 * 3 * 3))), Output()))
    x = np.full((3, 64, 5, 5), 255, np.uint8)
    x[1] = 0
    x[2] = rng.integers(0, 256, (64, 5, 5), dtype=np.uint8)
    codes = FixedPointQuantizer(16)(x).astype(np.int64)
    y = conv_int(codes, layer.weight, 2, 1, -(1 << 15))
    assert np.abs(y).max() > 1 << 24                          # the test reaches the range
    _, trace = golden.forward(net, x, trace=True)
    assert np.array_equal(trace["conv0"], y)
    assert np.array_equal(golden.forward(net, x), forward_reference(net, x))


def test_thresholds_far_outside_the_range():
    # Constant channels (folded with thresholds far outside y's range, either polarity) must
    # stay exact when the threshold is moved into the product's float domain.
    rng = np.random.default_rng(5)
    t = np.array([1 << 40, -(1 << 40), 1 << 40, -(1 << 40), 28, -28, 0, 27])
    neg = np.array([0, 0, 1, 1, 0, 1, 1, 0], bool)
    conv = BinaryConv2d("conv0", pm1(rng, (8, 3, 3, 3)), pad=1, pad_value=-1)
    net = Network("far", (3, 6, 6), ThresholdQuantizer(100), (
        conv, Threshold("thr0", t, neg), BinaryDense("fc", pm1(rng, (4, 8 * 36))),
        Threshold("thr1", np.array([1 << 50, -(1 << 50), 0, 3]), np.array([0, 1, 1, 0], bool)),
        Output()))
    x = rng.integers(0, 256, (9, 3, 6, 6), dtype=np.uint8)
    scores, trace = golden.forward(net, x, trace=True)
    bits = trace["thr0"]
    assert (bits[:, 0] == 0).all() and (bits[:, 1] == 1).all()
    assert (bits[:, 2] == 1).all() and (bits[:, 3] == 0).all()
    assert np.array_equal(golden.forward(net, x), forward_reference(net, x))
    assert np.array_equal(scores, forward_reference(net, x))


@pytest.mark.parametrize("seed", range(3))
def test_chunks_threads_and_trace_agree(seed, monkeypatch):
    # Many small chunks (the last one partial), one or two workers, traced or not: one answer.
    rng = np.random.default_rng(seed)
    net = random_net(rng, multibit=seed == 1, saturate=seed == 2, clip=True, last="margin")
    x = rng.integers(0, 256, (23, *net.input_shape), dtype=np.uint8)
    expected = forward_reference(net, x)
    monkeypatch.setattr(golden, "CHUNK_BYTES", 1)           # the minimum: 4 images per chunk
    for threads in (1, 2, 3):
        assert np.array_equal(golden.forward(net, x, threads=threads), expected)
        scores, trace = golden.forward(net, x, trace=True, threads=threads)
        assert np.array_equal(scores, expected)
        assert all(v.shape[0] == 23 for v in trace.values())
    assert golden.predict(net, x, threads=2).tolist() == np.argmax(expected, axis=1).tolist()
    with pytest.raises(InputError, match="threads must be a positive integer, not 0"):
        golden.forward(net, x, threads=0)


def test_blas_threads_restored(lfc):
    from threadpoolctl import threadpool_info
    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    x = np.random.default_rng(1).integers(0, 256, (1100, 784), dtype=np.uint8)
    golden.forward(lfc, x, threads=2)
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == before
