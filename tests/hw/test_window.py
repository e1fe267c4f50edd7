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
from amaranth.sim import Simulator

from testdata import shared_file

from bnnhw import golden
from bnnhw.model.layers import (BinaryConv2d, BinaryDense, FixedPointQuantizer, MultibitConv2d,
                                Output, Threshold, ThresholdQuantizer)
from bnnhw.model.network import Network
from bnnhw.hw.window import SlidingWindow, pack_lanes, window_vectors


# -- stream driver ------------------------------------------------------------------------------

def run_stream(dut, in_beats, n_out, *, p_gap=0.0, p_stall=0.0, seed=0, max_cycles=200_000):
    """Drive ``in_beats`` into ``dut.i_stream`` and collect ``n_out`` beats of ``dut.o_stream``.

    ``p_gap``: probability of an idle input cycle between beats; ``p_stall``: probability that
    the sink is not ready in a cycle. Checks the stream rules on the output (valid held until
    the transfer, payload stable while waiting). Returns ``(beats, out_cycles, in_cycles)``,
    the cycle numbers counting from 0 at the first simulated edge.
    """
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    out, out_cycles, in_cycles = [], [], []

    async def source(ctx):
        i, cycle, presenting = 0, 0, False
        while i < len(in_beats):
            if not presenting and rng_in.random() < p_gap:
                ctx.set(dut.i_stream.valid, 0)
            else:
                presenting = True
                ctx.set(dut.i_stream.valid, 1)
                ctx.set(dut.i_stream.payload, in_beats[i])
            _, _, valid, ready = await ctx.tick().sample(dut.i_stream.valid, dut.i_stream.ready)
            if valid and ready:
                in_cycles.append(cycle)
                i += 1
                presenting = False
            cycle += 1
        ctx.set(dut.i_stream.valid, 0)

    async def sink(ctx):
        cycle, waiting = 0, None
        while len(out) < n_out:
            if cycle > max_cycles:
                raise AssertionError(f"timeout: {len(out)} of {n_out} beats after {cycle} "
                                     f"cycles ({len(in_cycles)} of {len(in_beats)} inputs taken)")
            ready = rng_out.random() >= p_stall
            ctx.set(dut.o_stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o_stream.valid,
                                                           dut.o_stream.payload)
            if waiting is not None:
                assert valid, f"o_stream.valid dropped before the transfer at cycle {cycle}"
                assert payload == waiting, f"payload changed while stalled at cycle {cycle}"
            if valid and ready:
                out.append(payload)
                out_cycles.append(cycle)
                waiting = None
            elif valid:
                waiting = payload
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return out, out_cycles, in_cycles


def compare_beats(got, want):
    """Fail on the first differing beat, naming it."""
    assert len(got) == len(want), f"{len(got)} beats, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"beat {i}: got {g:#x}, expected {w:#x}"


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
    assert d["buffer_rows"] == 4 and d["memory_bits"] == 4 * 6 * 4
    assert d["K"] == 36 and d["beats_per_vector"] == 18
    assert (d["out_height"], d["out_width"]) == (3, 3)


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
    # changes. Frame starts may stall while the first rows of the new frame arrive.
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
    assert rate > 0.85


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
