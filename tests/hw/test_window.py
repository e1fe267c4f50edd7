"""SlidingWindow: software model against the golden model, hardware against both (amaranth.sim).

Each hardware test streams several back-to-back frames with random input gaps and random
output backpressure, checks every output beat against :meth:`SlidingWindow.reference`, and
also decodes the beats back into window vectors and checks that a convolution computed from
them equals the golden model's trace of the same layer (so the expectation is not the
implementation's own arithmetic).
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
from bnnhw.model.layers import (BinaryConv2d, BinaryDense, FixedPointQuantizer, MultibitConv2d,
                                Output, Threshold, ThresholdQuantizer)
from bnnhw.model.network import Network
from bnnhw.hw.window import SlidingWindow
from bnnhw.model.packing import pack_fields as pack_lanes
from bnnhw.plan.stages import window_vectors


def unpack_lanes(beats, lanes, bits, signed):
    """Inverse of pack_lanes: ``[len(beats), lanes]`` int64."""
    mask = (1 << bits) - 1
    out = np.array([[(b >> (j * bits)) & mask for j in range(lanes)] for b in beats],
                   dtype=np.int64)
    if signed:
        out = np.where(out >= 1 << (bits - 1), out - (1 << bits), out)
    return out


# -- golden networks ----------------------------------------------------------------------------

def binary_conv_net(rng, c, h, w, o, k, stride, pad, pad_value):
    """Input bits -> BinaryConv2d -> ... : the golden trace "conv" is y of the convolution."""
    weight = rng.choice([-1, 1], size=(o, c, k, k)).astype(np.int8)
    conv = BinaryConv2d("conv", weight, stride=stride, pad=pad, pad_value=pad_value)
    _, ho, wo = conv.output_shape((c, h, w))
    fc = BinaryDense("fc", rng.choice([-1, 1], size=(2, o * ho * wo)).astype(np.int8))
    return Network("t", (c, h, w), ThresholdQuantizer(128),
                   [conv, Threshold("thr", np.zeros(o, np.int64)), fc, Output()])


def multibit_conv_net(rng, c, h, w, o, k, stride, pad, pad_value):
    weight = rng.choice([-1, 1], size=(o, c, k, k)).astype(np.int8)
    conv = MultibitConv2d("conv", weight, input_bits=8, stride=stride, pad=pad,
                          pad_value=pad_value)
    _, ho, wo = conv.output_shape((c, h, w))
    fc = BinaryDense("fc", rng.choice([-1, 1], size=(2, o * ho * wo)).astype(np.int8))
    return Network("t", (c, h, w), FixedPointQuantizer(8),
                   [conv, Threshold("thr", np.zeros(o, np.int64)), fc, Output()])


def golden_case(rng, *, multibit, n, c, h, w, k, stride, pad, pad_value, o=5):
    """(frames [N,H,W,C] as bus elements, layer, golden y [N,Ho,Wo,O])."""
    make = multibit_conv_net if multibit else binary_conv_net
    net = make(rng, c, h, w, o, k, stride, pad, pad_value)
    raw = rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)
    _, traces = golden.forward(net, raw, trace=True)
    frames = np.moveaxis(traces["input"], 1, -1).astype(np.int64)
    return frames, net.layers[0], np.moveaxis(traces["conv"], 1, -1)


def conv_from_vectors(vectors, layer, multibit):
    """y of a convolution from [ky][kx][c] window vectors and the IR weights permuted to match."""
    o = layer.weight.shape[0]
    w_rows = layer.weight.transpose(0, 2, 3, 1).reshape(o, -1).astype(np.int64)
    x = vectors if multibit else 2 * vectors - 1
    return x @ w_rows.T


# -- software model against the golden model ----------------------------------------------------

@pytest.mark.parametrize("multibit", [False, True])
@pytest.mark.parametrize("k,stride,pad,pad_value", [
    (3, 1, 0, 1), (3, 1, 1, 1), (3, 1, 1, -1), (3, 2, 1, -1), (3, 2, 2, 1), (2, 2, 0, 1),
    (1, 1, 0, 1), (3, 3, 2, -1)])
def test_reference_matches_golden(multibit, k, stride, pad, pad_value):
    rng = np.random.default_rng(k * 100 + stride * 10 + pad)
    pv = (pad_value * 37) if multibit else pad_value
    frames, layer, y = golden_case(rng, multibit=multibit, n=3, c=4, h=7, w=6, k=k,
                                   stride=stride, pad=pad, pad_value=pv)
    bus_pad = pv if multibit else int(pv == 1)
    vec = window_vectors(frames, kernel=k, stride=stride, pad=pad, pad_value=bus_pad)
    np.testing.assert_array_equal(conv_from_vectors(vec, layer, multibit), y)


# -- parameter validation -----------------------------------------------------------------------

GOOD = dict(channels=4, bits=1, height=5, width=6, kernel=3, stride=1, pad=1, pad_value=1,
            simd=2)


@pytest.mark.parametrize("change,error,message", [
    (dict(channels=0), ValueError, "Channel count must be at least 1, not 0"),
    (dict(channels=4.0), TypeError, "Channel count must be an integer, not 4.0"),
    (dict(simd=3), ValueError, "SIMD must divide the channel count 4, not 3"),
    (dict(stride=0), ValueError, "Stride must be at least 1, not 0"),
    (dict(pad=3), ValueError, "Padding must be less than the kernel size 3, not 3"),
    (dict(pad_value=0), ValueError, "Padding value of a binary map must be +1 or -1, not 0"),
    (dict(bits=8, pad_value=128), ValueError,
     "Padding value must be a 8-bit code in [-128, 127], not 128"),
    (dict(height=1, pad=0), ValueError, "Kernel size 3 does not fit the height 1 with padding 0"),
])
def test_validation(change, error, message):
    # The half-built component would warn "created but never used" when collected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises(error) as info:
            SlidingWindow(**{**GOOD, **change})
        text = str(info.value)
        del info
        gc.collect()
    assert text == message


def test_describe():
    dut = SlidingWindow(**{**GOOD, "stride": 2})
    dut._MustUse__silence = True          # only inspected, never elaborated
    d = dut.describe()
    # 5x6 map, 3x3 window, stride 2, pad 1: output rows read rows -1..1, 1..3, 3..5. At
    # each change, the rows from the current top real row to the next row's bottom real row
    # span 4 (0..3; 1..4; 3..4 then the next frame's 0..1), and the newest can take the
    # oldest's slot, whose columns left of the last window (0..2) are free by then -> 3.
    assert d["buffer_rows"] == 3 and d["memory_bits"] == 3 * 6 * 4
    assert d["K"] == 36 and d["beats_per_vector"] == 18
    assert (d["out_height"], d["out_width"]) == (3, 3)
    assert d["cycles_per_frame"] == 3 * 3 * 18
    assert set(d) >= {"buffer_rows", "memory_bits", "latency_cycles", "cycles_per_frame"}


@pytest.mark.parametrize("h,w,k,stride,pad,rows", [
    # Stride 1, pad 0: the last window still reads the frame's last k rows while the next
    # frame's first k-1 rows must be complete and its k-th started: 2k - 1 rows.
    (30, 30, 3, 1, 0, 5), (5, 6, 3, 1, 0, 5), (12, 12, 5, 1, 0, 9), (8, 8, 2, 1, 0, 3),
    # Stride 1, pad 1: the next frame's first window needs only rows 0..1.
    (5, 6, 3, 1, 1, 3), (32, 32, 3, 1, 1, 3),
    # 1x1 windows: one row, the next row's pixel 0 shares the slot behind the window.
    (4, 5, 1, 1, 0, 1),
    # Tiny map, no free column to share: last rows 2..4 + next frame's rows 0..2, 6 rows.
    (5, 5, 3, 1, 0, 6),
])
def test_buffer_rows(h, w, k, stride, pad, rows):
    dut = SlidingWindow(channels=2, bits=1, height=h, width=w, kernel=k, stride=stride,
                        pad=pad, simd=2)
    dut._MustUse__silence = True
    assert dut.buffer_rows == rows
    assert dut.memory_bits == rows * w * 2


# -- hardware against the models ----------------------------------------------------------------

CASES = [
    # multibit, c, h, w, k, stride, pad, pad_value, simd, p_gap, p_stall
    (False, 4, 5, 6, 3, 1, 1, 1, 2, 0.3, 0.3),
    (False, 4, 5, 6, 3, 1, 1, -1, 4, 0.5, 0.0),
    (False, 8, 5, 6, 3, 1, 0, 1, 2, 0.0, 0.5),
    (False, 4, 5, 6, 3, 2, 1, -1, 1, 0.3, 0.3),
    (False, 4, 6, 5, 3, 2, 0, 1, 4, 0.2, 0.2),
    (False, 4, 5, 6, 3, 1, 2, 1, 4, 0.3, 0.3),
    (False, 4, 5, 6, 3, 2, 2, -1, 2, 0.3, 0.3),
    (False, 4, 6, 6, 2, 2, 0, 1, 4, 0.3, 0.3),
    (False, 4, 4, 5, 1, 1, 0, 1, 4, 0.3, 0.3),
    (True, 3, 5, 6, 3, 1, 1, 0, 3, 0.3, 0.3),
    (True, 4, 5, 6, 3, 2, 1, -7, 2, 0.3, 0.3),
    (True, 4, 5, 6, 3, 1, 0, 0, 1, 0.0, 0.0),
]


def _ids(case):
    mb, c, h, w, k, s, p, pv, simd, gap, stall = case
    return (f"{'q8' if mb else 'bin'}-C{c}-{h}x{w}-k{k}s{s}p{p}pv{pv}-simd{simd}"
            f"-gap{gap}-stall{stall}")


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_window_hardware(case):
    multibit, c, h, w, k, stride, pad, pv, simd, p_gap, p_stall = case
    rng = np.random.default_rng(zlib.crc32(_ids(case).encode()))
    frames, layer, y = golden_case(rng, multibit=multibit, n=3, c=c, h=h, w=w, k=k,
                                   stride=stride, pad=pad, pad_value=pv)
    bits = 8 if multibit else 1
    dut = SlidingWindow(channels=c, bits=bits, height=h, width=w, kernel=k, stride=stride,
                        pad=pad, pad_value=pv, simd=simd)
    want = dut.reference(frames)
    got, _, _ = run_stream(dut, dut.pixels(frames), len(want), p_gap=p_gap, p_stall=p_stall,
                           seed=len(want))
    compare_beats(got, want)
    # Independently of the reference: the beats, decoded, give the golden convolution.
    vectors = unpack_lanes(got, simd, bits, multibit).reshape(y.shape[:3] + (-1,))
    np.testing.assert_array_equal(conv_from_vectors(vectors, layer, multibit), y)


def test_corrupted_expectation_fails():
    """The comparison is sensitive to one bit of one beat."""
    rng = np.random.default_rng(7)
    frames, _, _ = golden_case(rng, multibit=False, n=2, c=4, h=5, w=6, k=3, stride=1, pad=1,
                               pad_value=-1)
    dut = SlidingWindow(channels=4, bits=1, height=5, width=6, kernel=3, stride=1, pad=1,
                        pad_value=-1, simd=2)
    want = dut.reference(frames)
    got, _, _ = run_stream(dut, dut.pixels(frames), len(want), p_gap=0.2, p_stall=0.2)
    compare_beats(got, want)
    bad = list(want)
    bad[len(bad) // 2] ^= 1 << 1
    with pytest.raises(AssertionError, match=f"beat {len(bad) // 2}:"):
        compare_beats(got, bad)


@pytest.mark.parametrize("k,stride,pad,simd", [(3, 1, 1, 2), (3, 2, 1, 4), (3, 1, 0, 4)])
def test_throughput_and_latency(k, stride, pad, simd):
    """No gaps, no backpressure: one chunk per cycle once started, latency as documented."""
    rng = np.random.default_rng(3)
    c, h, w, n = 4, 5, 6, 4
    frames = rng.integers(0, 2, size=(n, h, w, c))
    dut = SlidingWindow(channels=c, bits=1, height=h, width=w, kernel=k, stride=stride,
                        pad=pad, pad_value=1, simd=simd)
    want = dut.reference(frames)
    got, out_cycles, in_cycles = run_stream(dut, dut.pixels(frames), len(want))
    compare_beats(got, want)
    bpv = dut.beats_per_vector
    first_window_end = out_cycles[bpv - 1] - in_cycles[0]
    assert first_window_end == dut.latency_cycles
    # Within each frame, after its first window: one chunk every cycle, no stall at row
    # changes; after the first frame, none at frame changes either.
    per_frame = len(want) // n
    for f in range(n):
        cyc = out_cycles[f * per_frame + bpv - 1:(f + 1) * per_frame]
        assert np.all(np.diff(cyc) == 1), f"frame {f}: stalls after its first window"
    rate = len(got) / (out_cycles[-1] + 1)
    stalls = [out_cycles[(f + 1) * per_frame - 1] - out_cycles[f * per_frame] + 1 - per_frame
              for f in range(n)]
    print(f"\nk={k} s={stride} p={pad} simd={simd} C={c} {h}x{w}, {n} frames: {len(got)} "
          f"beats in {out_cycles[-1] + 1} cycles = {rate:.3f} beats/cycle; latency "
          f"{first_window_end} cycles; stall cycles per frame {stalls}")
    assert stalls[1:] == [0] * (n - 1)
    assert all(out_cycles[f * per_frame] == out_cycles[f * per_frame - 1] + 1
               for f in range(1, n)), "gap between frames"


def frame_intervals(out_cycles, n):
    """Cycles between the last beats of consecutive frames (``n - 1`` values)."""
    per = len(out_cycles) // n
    return [out_cycles[(f + 1) * per - 1] - out_cycles[f * per - 1] for f in range(1, n)]


STEADY = [
    # c, h, w, k, stride, pad, simd: CNV-like pad 0 (output-bound), pad 1, stride 2, a wide
    # kernel, 2x2/2 (beats == pixels: both sides busy every cycle), 1x1 stride 2 (input-bound)
    (4, 5, 6, 3, 1, 0, 4), (4, 6, 8, 3, 1, 0, 2), (2, 5, 6, 3, 1, 1, 2), (4, 7, 6, 3, 2, 0, 4),
    (4, 6, 7, 3, 2, 1, 2), (1, 9, 9, 5, 1, 0, 1), (2, 6, 8, 2, 2, 0, 2), (2, 6, 6, 1, 2, 0, 2),
    (2, 5, 5, 3, 1, 0, 1),
]


@pytest.mark.parametrize("c,h,w,k,stride,pad,simd", STEADY)
def test_steady_state_no_stalls(c, h, w, k, stride, pad, simd):
    """Back-to-back frames, input valid every cycle, output always ready: frames 2..n take
    exactly cycles_per_frame = max(output beats, input pixels) cycles each."""
    n = 4
    rng = np.random.default_rng(c * 1000 + h * 100 + w * 10 + k)
    frames = rng.integers(0, 2, size=(n, h, w, c))
    dut = SlidingWindow(channels=c, bits=1, height=h, width=w, kernel=k, stride=stride,
                        pad=pad, pad_value=-1, simd=simd)
    want = dut.reference(frames)
    got, out_cycles, in_cycles = run_stream(dut, dut.pixels(frames), len(want))
    compare_beats(got, want)
    beats = len(want) // n
    expected = max(beats, h * w)              # computed here, not taken from the DUT
    assert dut.cycles_per_frame == expected
    assert frame_intervals(out_cycles, n) == [expected] * (n - 1)
    if beats >= h * w:
        # Output-bound: from the second frame on, one beat every cycle, no gap at all.
        assert np.all(np.diff(out_cycles[beats - 1:]) == 1)
    else:
        # Input-bound: from the second frame on, one pixel accepted every cycle.
        assert np.all(np.diff(in_cycles[h * w - 1:]) == 1)


@pytest.mark.parametrize("every", [1, 2, 3])
@pytest.mark.parametrize("h,w,pad", [(8, 8, 0), (6, 7, 1)])
def test_first_layer_fixed_rate_consumer(every, h, w, pad):
    """The first layer's case: 8-bit 3-channel pixels always available (the source offers a
    pixel every cycle and it is taken whenever ready), a consumer taking one chunk every
    ``every`` cycles (an MVTU with ``every`` neuron folds). The window must keep it busy:
    each frame after the first costs exactly ``every * beats`` cycles, no more."""
    n = 4
    rng = np.random.default_rng(every * 10 + pad)
    frames = rng.integers(-128, 128, size=(n, h, w, 3))
    dut = SlidingWindow(channels=3, bits=8, height=h, width=w, kernel=3, stride=1, pad=pad,
                        pad_value=0, simd=3)
    want = dut.reference(frames)
    got, out_cycles, _ = run_stream(dut, dut.pixels(frames), len(want), ready_every=every)
    compare_beats(got, want)
    beats = len(want) // n
    assert frame_intervals(out_cycles, n) == [every * beats] * (n - 1)
    # The consumer took a beat at every one of its ready cycles from the first frame's end.
    assert np.all(np.diff(out_cycles[beats - 1:]) == every)


RATE_LIMITED = [
    # c, h, w, k, stride, pad, simd: the producer's rate matches the window's output
    # (pixels * every <= beats), as behind a matrix-vector unit in a balanced network.
    (1, 6, 6, 3, 1, 0, 1), (4, 8, 8, 3, 1, 0, 4), (2, 6, 8, 3, 1, 1, 2), (4, 9, 9, 3, 2, 0, 1),
    (1, 12, 12, 5, 1, 0, 1),
]


def _rate_limited_run(cls, c, h, w, k, stride, pad, simd):
    n = 4
    frames = np.random.default_rng(h * w + k).integers(0, 2, size=(n, h, w, c))
    dut = cls(channels=c, bits=1, height=h, width=w, kernel=k, stride=stride, pad=pad,
              pad_value=1, simd=simd)
    want = dut.reference(frames)
    beats = len(want) // n
    every = beats // (h * w)                  # the slowest producer that keeps up
    got, out_cycles, _ = run_stream(dut, dut.pixels(frames), len(want), valid_every=every)
    compare_beats(got, want)
    return dut, frame_intervals(out_cycles, n), beats


@pytest.mark.parametrize("c,h,w,k,stride,pad,simd", RATE_LIMITED)
def test_rate_limited_producer(c, h, w, k, stride, pad, simd):
    """A later layer's case without a FIFO: pixels trickle in at the rate of the layer before
    (one every ``beats // pixels`` cycles, never sooner, not even after a stall); the
    window still emits every frame after the first in exactly ``beats`` cycles."""
    dut, intervals, beats = _rate_limited_run(SlidingWindow, c, h, w, k, stride, pad, simd)
    assert intervals == [beats] * len(intervals)


class _SmallerBuffer(SlidingWindow):
    """The same generator with one line-buffer row less than it asks for."""

    @property
    def buffer_rows(self):
        return super().buffer_rows - 1


@pytest.mark.parametrize("c,h,w,k,stride,pad,simd",
                         [case for case in RATE_LIMITED if case[5] == 0])
def test_one_row_less_stalls(c, h, w, k, stride, pad, simd):
    """The buffer is no larger than needed: with one row less the output is still right (the
    writer's freeing rule alone protects the data) but, with the producer above, every frame
    loses cycles. (For 3x3, stride 1, pad 0 that is ``kernel + 1`` rows, which would still
    do with an input valid every cycle.)"""
    dut, intervals, beats = _rate_limited_run(_SmallerBuffer, c, h, w, k, stride, pad, simd)
    assert dut.buffer_rows >= k
    assert all(iv > beats for iv in intervals)


def test_pack_lanes_signed():
    assert pack_lanes([[-1, 2]], 8) == [0x02FF]


def _random_cases(count, seed):
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        k = rng.choice([1, 2, 3, 3, 4, 5])
        stride = rng.choice([1, 1, 2, 3])
        pad = rng.randrange(0, k)
        h, w = rng.randrange(1, 8), rng.randrange(1, 8)
        if h + 2 * pad < k or w + 2 * pad < k:
            continue
        multibit = rng.random() < 0.3
        c = rng.choice([1, 2, 3, 4, 6])
        simd = rng.choice([d for d in range(1, c + 1) if c % d == 0])
        pv = rng.randrange(-128, 128) if multibit else rng.choice([1, -1])
        cases.append((multibit, c, h, w, k, stride, pad, pv, simd,
                      rng.choice([0.0, 0.3, 0.7]), rng.choice([0.0, 0.3, 0.7])))
    return cases


@pytest.mark.parametrize("case", _random_cases(10, 1), ids=_ids)
def test_window_random_configs(case):
    """Odd shapes: tiny maps, stride above the kernel, 1x1 kernels, kernels wider than the map."""
    test_window_hardware(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", _random_cases(150, 2), ids=_ids)
def test_window_random_configs_sweep(case):
    test_window_hardware(case)


def _steady_cases(count, seed):
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        k, stride = rng.choice([1, 2, 3, 3, 4, 5]), rng.choice([1, 1, 2, 3])
        pad = rng.randrange(0, k)
        h, w = rng.randrange(1, 10), rng.randrange(1, 10)
        if h + 2 * pad < k or w + 2 * pad < k:
            continue
        c = rng.choice([1, 2, 4])
        cases.append((c, h, w, k, stride, pad, rng.choice([d for d in (1, 2, 4) if c % d == 0])))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("c,h,w,k,stride,pad,simd", _steady_cases(100, 3))
def test_steady_state_random_sweep(c, h, w, k, stride, pad, simd):
    """Random geometries (tiny maps, stride above the kernel, 1x1 and 5x5 kernels): no
    frame after the first loses a cycle (the former k+stride-1 buffer fails 9 of these
    100)."""
    test_steady_state_no_stalls(c, h, w, k, stride, pad, simd)


# -- real layer geometry: BNN-PYNQ CNV ----------------------------------------------------------

@pytest.mark.parametrize("layer_name,source", [("conv0", "input"), ("conv2", "pool1")])
def test_window_cnv_layers(cnv, layer_name, source):
    """CNV's conv0 (8-bit codes, SIMD 3) and conv2 (64 channels, SIMD 32) on a real image.

    The window generator gets the golden trace that feeds the layer; its beats, decoded and
    multiplied by the permuted IR weights, must give the golden trace of the layer.
    """
    images = np.load(shared_file("bnn-pynq", "vectors", "vectors_cnvW1A1_cifar10.npz"))
    raw = np.ascontiguousarray(images["images_hwc_u8"][:1].transpose(0, 3, 1, 2))
    _, traces = golden.forward(cnv, raw, trace=True)
    layer = cnv.info(layer_name).layer
    c, h, w = cnv.info(layer_name).input_shape
    multibit = isinstance(layer, MultibitConv2d)
    bits = layer.input_bits if multibit else 1
    simd = cnv.meta["folding"][layer_name]["SIMD"]
    dut = SlidingWindow(channels=c, bits=bits, height=h, width=w, kernel=layer.kernel[0],
                        stride=layer.stride, pad=layer.pad, pad_value=layer.pad_value, simd=simd)
    frames = np.moveaxis(traces[source], 1, -1).astype(np.int64)
    want = dut.reference(frames)
    got, _, _ = run_stream(dut, dut.pixels(frames), len(want), p_gap=0.2, p_stall=0.2)
    compare_beats(got, want)
    y = np.moveaxis(traces[layer_name], 1, -1)
    vectors = unpack_lanes(got, simd, bits, multibit).reshape(y.shape[:3] + (-1,))
    np.testing.assert_array_equal(conv_from_vectors(vectors, layer, multibit), y)


# -- in a network: balanced layers keep the manifest's interval ---------------------------------

def _balanced_conv_net(pad1):
    """6x6x3 bytes -> conv0 3x3 pad 0 (8-bit codes, 4 out) -> conv1 3x3 pad ``pad1`` (6 out)
    -> pool 2 -> fc2 -> fc3; with the folding below both convolutions' MVTUs take 144
    cycles per image (16 pixels x 9 chunks, or 4 pixels x 36 chunks) with NF = 1, so both
    windows must deliver one chunk every cycle, frame after frame."""
    from bnnhw.model.layers import MaxPool
    from support.networks import pm1, thresholds
    rng = np.random.default_rng(20 + pad1)
    side = 4 + 2 * pad1 - 2                        # conv1's output side
    k_fc = 6 * (side // 2) ** 2
    layers = [MultibitConv2d("conv0", pm1(rng, (4, 3, 3, 3)), input_bits=8),
              Threshold("thr0", rng.integers(-300, 300, 4), rng.random(4) < 0.3),
              BinaryConv2d("conv1", pm1(rng, (6, 4, 3, 3)), pad=pad1, pad_value=-1),
              thresholds(rng, "thr1", 6, 36), MaxPool("pool1", 2),
              BinaryDense("fc2", pm1(rng, (5, k_fc))), thresholds(rng, "thr2", 5, k_fc),
              BinaryDense("fc3", pm1(rng, (3, 5))), Output()]
    net = Network("balanced", (3, 6, 6), FixedPointQuantizer(8), tuple(layers))
    folding = {"conv0": {"PE": 4, "SIMD": 3},
               "conv1": {"PE": 6, "SIMD": 4} if pad1 else {"PE": 6, "SIMD": 1},
               "fc2": {"PE": 5, "SIMD": k_fc}, "fc3": {"PE": 3, "SIMD": 5}}
    return net, folding


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("window_fifo", [True, False])
@pytest.mark.parametrize("pad1", [1, 0])
def test_balanced_network_interval(pad1, window_fifo):
    """NetworkCore with two equally fast convolutions: the measured interval between
    back-to-back images equals describe()["cycles_per_image"] (it was 148 vs 144 with the
    former k-row buffer; 186 with pad 0 and no FIFO)."""
    from bnnhw.hw.network import NetworkCore
    from support.networks import expected_lasts, run_core
    net, folding = _balanced_conv_net(pad1)
    n = 4
    images = np.random.default_rng(pad1).integers(0, 256, (n, 3, 6, 6), dtype=np.uint8)
    core = NetworkCore(net=net, folding=folding, window_fifo=window_fifo)
    d = core.describe()
    assert d["stage_cycles_per_image"]["conv0"] == d["stage_cycles_per_image"]["conv1"] == 144
    scores, lasts, cycles = run_core(core, images)
    np.testing.assert_array_equal(scores, golden.forward(net, images))
    np.testing.assert_array_equal(lasts, expected_lasts(n, net.num_classes))
    last = np.array(cycles).reshape(n, -1)[:, -1]
    assert list(np.diff(last)) == [d["cycles_per_image"]] * (n - 1) == [144] * (n - 1)


@pytest.mark.slow
@pytest.mark.parametrize("layer_name", ["conv0", "conv1", "conv2", "conv3", "conv4", "conv5"])
def test_steady_state_cnv_geometry(cnv, layer_name):
    """Every CNV convolution's window at FINN's SIMD (pad 0, stride 1), three back-to-back
    random frames, input valid every cycle, output always ready: frames 2 and 3 take exactly
    cycles_per_frame (e.g. conv1: 28*28*18 = 14112 cycles)."""
    info = cnv.info(layer_name)
    layer = info.layer
    c, h, w = info.input_shape
    multibit = isinstance(layer, MultibitConv2d)
    bits = layer.input_bits if multibit else 1
    n = 3
    rng = np.random.default_rng(len(layer_name))
    frames = (rng.integers(-128, 128, size=(n, h, w, c)) if multibit
              else rng.integers(0, 2, size=(n, h, w, c)))
    dut = SlidingWindow(channels=c, bits=bits, height=h, width=w, kernel=layer.kernel[0],
                        stride=layer.stride, pad=layer.pad, pad_value=layer.pad_value,
                        simd=cnv.meta["folding"][layer_name]["SIMD"])
    want = dut.reference(frames)
    got, out_cycles, _ = run_stream(dut, dut.pixels(frames), len(want), max_cycles=10 ** 6)
    compare_beats(got, want)
    beats = len(want) // n
    print(f"\n{layer_name}: {c}x{h}x{w}, R={dut.buffer_rows}, {beats} beats/frame, "
          f"intervals {frame_intervals(out_cycles, n)}")
    assert frame_intervals(out_cycles, n) == [max(beats, h * w)] * (n - 1)
