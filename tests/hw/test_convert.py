"""Width converter, input quantizer and score serializer against slow references."""

import numpy as np
import pytest

from bnnhw.gen.verilog import to_rtlil
from bnnhw.hw.convert import (InputQuantizer, PacketSerializer, ScoreSerializer, StreamFIFO,
                              WidthConverter)
from bnnhw.model import FixedPointQuantizer, ThresholdQuantizer

from support.streams import StreamDriver, StreamMonitor, compare_beats, run_streams

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def recut(packets_bits, in_w, out_w):
    """Slow reference: input beats and expected output beats of bit packets."""
    ins, outs = [], []
    for bits in packets_bits:
        for w, dst in ((in_w, ins), (out_w, outs)):
            for s in range(0, len(bits), w):
                dst.append(sum(int(b) << i for i, b in enumerate(bits[s:s + w])))
    return ins, outs


def width_converter_run(in_w, out_w, total):
    """Three random packets through a WidthConverter: (output beats, reference beats)."""
    rng = np.random.default_rng(in_w * 31 + out_w)
    packets = [rng.integers(0, 2, total) for _ in range(3)]
    ins, outs = recut(packets, in_w, out_w)
    # Garbage above `total` in the last input beat of each packet must be ignored.
    last_bits = total - (-(-total // in_w) - 1) * in_w
    if last_bits != in_w:
        per = -(-total // in_w)
        for p in range(3):
            ins[(p + 1) * per - 1] |= ((1 << in_w) - 1) & ~((1 << last_bits) - 1)
    dut = WidthConverter(in_width=in_w, out_width=out_w, total=total)
    drv = StreamDriver(dut.i_stream, ins, valid_prob=0.7, seed=1)
    mon = StreamMonitor(dut.o_stream, len(outs), ready_prob=0.6, seed=2)
    run_streams(dut, [drv], [mon])
    return mon.beats, outs


@pytest.mark.parametrize("in_w,out_w,total", [(16, 64, 784), (64, 4, 256), (6, 4, 18),
                                              (5, 7, 23), (8, 8, 8), (3, 12, 12), (12, 5, 12)])
def test_width_converter(in_w, out_w, total):
    got, exp = width_converter_run(in_w, out_w, total)
    compare_beats(got, exp)


def test_width_converter_full_rate():
    """Upsizing 16 -> 64 bits with both sides always ready: no bubble on the output side."""
    dut = WidthConverter(in_width=16, out_width=64, total=256)
    ins = list(range(1, 33))
    drv = StreamDriver(dut.i_stream, ins)
    mon = StreamMonitor(dut.o_stream, 8)
    run_streams(dut, [drv], [mon])
    assert np.all(np.diff(mon.cycles) == 4), mon.cycles
    assert np.all(np.diff(drv.sent_cycles) == 1), drv.sent_cycles


# (in_width, out_width, total): total % out_width != 0, out_width > total, out_width == total,
# total < in_width (ignored bits above total), one-bit beats, power-of-two and odd beat counts,
# and LFC's three hops at FINN's folding.
SERIALIZER_CASES = [(12, 5, 12), (12, 4, 12), (12, 12, 12), (10, 16, 10), (16, 7, 11),
                    (9, 1, 9), (24, 6, 20), (30, 8, 30), (5, 2, 5), (1, 1, 1), (1, 3, 1),
                    (37, 13, 37), (1024, 32, 1024), (1024, 64, 1024), (1024, 8, 1024)]


def serializer_run(in_w, out_w, total, *, packets=12, valid_prob=0.6, ready_prob=0.5, seed=0):
    """Random packets (random bits above ``total`` too) through a PacketSerializer; returns
    (monitor beats, expected beats, the protocol log of the output stream)."""
    rng = np.random.default_rng(seed * 1000 + in_w * 31 + out_w * 7 + total)
    bits = [rng.integers(0, 2, total) for _ in range(packets)]
    ins, outs = recut(bits, in_w, out_w)
    garbage = ((1 << in_w) - 1) & ~((1 << total) - 1)
    ins = [v | (int.from_bytes(rng.bytes(in_w // 8 + 1), "little") & garbage) for v in ins]
    dut = PacketSerializer(in_width=in_w, out_width=out_w, total=total)
    drv = StreamDriver(dut.i_stream, ins, valid_prob=valid_prob, seed=seed + 1)
    mon = StreamMonitor(dut.o_stream, len(outs), ready_prob=ready_prob, seed=seed + 2)
    log = []

    async def protocol(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(
                dut.o_stream.valid, dut.o_stream.ready, dut.o_stream.payload):
            log.append((valid, ready, payload))

    run_streams(dut, [drv, _Background(protocol)], [mon])
    return mon.beats, outs, log


class _Background:
    """Adapter: an extra background testbench for :func:`run_streams`."""

    def __init__(self, fn):
        self.run = fn


def check_stream_rules(log):
    """Once valid, an output beat stays valid with the same payload until it is taken."""
    for (v0, r0, p0), (v1, _, p1) in zip(log, log[1:]):
        if v0 and not r0:
            assert v1 and p1 == p0, "valid dropped or payload changed before the transfer"


def test_stream_rule_check_catches_violations():
    check_stream_rules([(1, 0, 5), (1, 0, 5), (1, 1, 5), (1, 1, 6), (0, 1, 7)])
    for bad in ([(1, 0, 5), (1, 1, 6)], [(1, 0, 5), (0, 1, 5)]):
        with pytest.raises(AssertionError, match="before the transfer"):
            check_stream_rules(bad)


@pytest.mark.parametrize("in_w,out_w,total", SERIALIZER_CASES)
@pytest.mark.parametrize("valid_prob,ready_prob", [(1.0, 1.0), (0.5, 0.6), (0.9, 0.3)])
def test_packet_serializer(in_w, out_w, total, valid_prob, ready_prob):
    packets = 4 if in_w >= 1024 else 12
    got, exp, log = serializer_run(in_w, out_w, total, packets=packets,
                                   valid_prob=valid_prob, ready_prob=ready_prob)
    compare_beats(got, exp)
    check_stream_rules(log)


@pytest.mark.parametrize("in_w", [7, 8])
def test_packet_serializer_all_small_sizes(in_w):
    """Every total in 1..in_w with every out_width in 1..total + 2 (short last beats,
    out_width > total, one beat per packet), random gaps and backpressure."""
    for total in range(1, in_w + 1):
        for out_w in range(1, total + 3):
            got, exp, log = serializer_run(in_w, out_w, total, packets=6, seed=total)
            compare_beats(got, exp, f"beat ({in_w}, {out_w}, {total})")
            check_stream_rules(log)


def test_packet_serializer_matches_width_converter():
    """Same beats as the general converter on the same one-beat packets."""
    rng = np.random.default_rng(9)
    ins = [int(v) for v in rng.integers(0, 1 << 40, 10)]
    beats = {}
    for cls in (PacketSerializer, WidthConverter):
        dut = cls(in_width=40, out_width=9, total=38)
        drv = StreamDriver(dut.i_stream, ins, valid_prob=0.7, seed=3)
        mon = StreamMonitor(dut.o_stream, 50, ready_prob=0.7, seed=4)
        run_streams(dut, [drv], [mon])
        beats[cls] = mon.beats
    compare_beats(beats[PacketSerializer], beats[WidthConverter])


@pytest.mark.parametrize("in_w,out_w,total", [(12, 5, 12), (1024, 32, 1024), (8, 8, 8),
                                              (6, 10, 6)])
def test_packet_serializer_full_rate(in_w, out_w, total):
    """Input always valid, output always ready: one output beat every cycle, no bubble between
    packets; each input beat is taken with its packet's last output beat."""
    n = -(-total // out_w)
    dut = PacketSerializer(in_width=in_w, out_width=out_w, total=total)
    ins = [(0x5A5A5A5A5A5A5A5A * (k + 1)) & ((1 << in_w) - 1) for k in range(5)]
    drv = StreamDriver(dut.i_stream, ins)
    mon = StreamMonitor(dut.o_stream, 5 * n)
    run_streams(dut, [drv], [mon])
    assert mon.cycles == list(range(1, 5 * n + 1)), mon.cycles
    assert drv.sent_cycles == [n * (k + 1) for k in range(5)], drv.sent_cycles
    _, exp = recut([[(v >> i) & 1 for i in range(total)] for v in ins], in_w, out_w)
    compare_beats(mon.beats, exp)


def test_packet_serializer_corrupted_expectation_fails():
    """The comparison above is not vacuous: one flipped expected bit is caught."""
    got, exp, _ = serializer_run(24, 6, 20, packets=5)
    compare_beats(got, exp)
    for beat, bit in ((0, 0), (7, 5), (len(exp) - 1, 1)):
        bad = list(exp)
        bad[beat] ^= 1 << bit
        with pytest.raises(AssertionError, match=f"^beat {beat}: got"):
            compare_beats(got, bad)


@pytest.mark.parametrize("in_w,out_w,total", [(1024, 32, 1024), (1024, 8, 1000), (37, 13, 37)])
def test_packet_serializer_has_no_variable_shifter(in_w, out_w, total):
    rtlil = to_rtlil(PacketSerializer(in_width=in_w, out_width=out_w, total=total), "top")
    cells = {line.split()[1] for line in rtlil.splitlines() if line.strip().startswith("cell ")}
    assert cells <= {"$add", "$and", "$dff", "$eq", "$mux"}, cells


def test_packet_serializer_validation():
    with pytest.raises(ValueError, match=r"^Output width must be at least 1, not 0$"):
        PacketSerializer(in_width=4, out_width=0, total=4)
    with pytest.raises(TypeError, match=r"^Packet size must be an integer, not 2.0$"):
        PacketSerializer(in_width=4, out_width=2, total=2.0)
    with pytest.raises(ValueError, match=r"^Packet size must be at most the input width 4, "
                                         r"not 5$"):
        PacketSerializer(in_width=4, out_width=2, total=5)


def input_quantizer_run(quantizer):
    """All 256 bytes and 30 random ones through an InputQuantizer: (beats, SPEC §6 beats)."""
    lanes = 3
    dut = InputQuantizer(quantizer=quantizer, lanes=lanes)
    data = np.concatenate([np.arange(256), np.random.default_rng(0).integers(0, 256, 30)])
    data = np.concatenate([data, np.zeros((-data.size) % lanes, int)]).astype(np.uint8)
    beats = [int.from_bytes(data[i:i + lanes].tobytes(), "little")
             for i in range(0, data.size, lanes)]
    b = quantizer.output_bits
    # Reference straight from SPEC §6 (not from the quantizer object under test).
    if isinstance(quantizer, ThresholdQuantizer):
        codes = (data.astype(int) >= quantizer.threshold).astype(int)
    else:
        half = 1 << (b - 1)
        codes = np.array([max(-half, min(half - 1, int(np.floor(half * (2 * int(p) / 255 - 1) + 0.5))))
                          for p in data])
    exp = [sum((int(c) & ((1 << b) - 1)) << (j * b) for j, c in enumerate(codes[i:i + lanes]))
           for i in range(0, data.size, lanes)]
    drv = StreamDriver(dut.i_stream, beats, valid_prob=0.7)
    mon = StreamMonitor(dut.o_stream, len(exp), ready_prob=0.7)
    run_streams(dut, [drv], [mon])
    return mon.beats, exp


@pytest.mark.parametrize("quantizer", [ThresholdQuantizer(128), ThresholdQuantizer(7),
                                       FixedPointQuantizer(8), FixedPointQuantizer(5)])
def test_input_quantizer(quantizer):
    got, exp = input_quantizer_run(quantizer)
    compare_beats(got, exp)


def test_score_serializer():
    n, w = 5, 6
    rng = np.random.default_rng(4)
    vecs = rng.integers(-32, 32, (4, n))
    beats = [sum((int(s) & 63) << (o * w) for o, s in enumerate(v)) for v in vecs]
    dut = ScoreSerializer(classes=n, score_width=w)
    drv = StreamDriver(dut.i_stream, beats, valid_prob=0.5)
    mon = StreamMonitor(dut.o_stream, 4 * n, ready_prob=0.6,
                        convert=lambda v: (int(v.score), int(v.last)))
    run_streams(dut, [drv], [mon])
    exp = [(int(s), int(o == n - 1)) for v in vecs for o, s in enumerate(v)]
    compare_beats(mon.beats, exp, "score")
    bad = list(exp)
    bad[7] = (bad[7][0] ^ 1, bad[7][1])
    with pytest.raises(AssertionError, match="score 7"):
        compare_beats(mon.beats, bad, "score")


def test_score_serializer_no_bubble():
    dut = ScoreSerializer(classes=3, score_width=4)
    drv = StreamDriver(dut.i_stream, [0x123, 0x456, 0x789])
    mon = StreamMonitor(dut.o_stream, 9, convert=lambda v: int(v.score))
    run_streams(dut, [drv], [mon])
    assert np.all(np.diff(mon.cycles) == 1)


def test_validation_messages():
    with pytest.raises(ValueError, match=r"^Output width must be at least 1, not 0$"):
        WidthConverter(in_width=4, out_width=0, total=8)
    with pytest.raises(TypeError, match=r"^Quantizer must be an input quantizer, not 3$"):
        InputQuantizer(quantizer=3, lanes=1)


def stream_fifo_run():
    """40 random beats through a 5-deep StreamFIFO: (output beats, input beats)."""
    dut = StreamFIFO(width=7, depth=5)
    data = [int(v) for v in np.random.default_rng(3).integers(0, 128, 40)]
    drv = StreamDriver(dut.i_stream, data, valid_prob=0.8)
    mon = StreamMonitor(dut.o_stream, len(data), ready_prob=0.4)
    run_streams(dut, [drv], [mon])
    assert dut.memory_bits == 35
    return mon.beats, [int(d) for d in data]


def test_stream_fifo():
    got, exp = stream_fifo_run()
    compare_beats(got, exp)


@pytest.mark.parametrize("run,args,beat,bit", [
    (width_converter_run, (16, 64, 784), 0, 0),
    (width_converter_run, (5, 7, 23), 11, 1),        # the last, short beat of packet 3
    (input_quantizer_run, (ThresholdQuantizer(128),), 50, 2),
    (input_quantizer_run, (FixedPointQuantizer(5),), 0, 14),
    (stream_fifo_run, (), 39, 6),
])
def test_corrupted_expectation_fails(run, args, beat, bit):
    """Each comparison above catches one flipped expected bit, at the right beat."""
    got, exp = run(*args)
    compare_beats(got, exp)
    assert 0 <= beat < len(exp)
    bad = list(exp)
    bad[beat] ^= 1 << bit
    with pytest.raises(AssertionError, match=f"^beat {beat}: got"):
        compare_beats(got, bad)
