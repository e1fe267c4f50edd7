"""Width converter, input quantizer and score serializer against slow references."""

import numpy as np
import pytest

from bnnhw.hw.convert import InputQuantizer, ScoreSerializer, WidthConverter
from bnnhw.model import FixedPointQuantizer, ThresholdQuantizer

from .streams import StreamDriver, StreamMonitor, compare_beats, run_streams

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def recut(packets_bits, in_w, out_w):
    """Slow reference: input beats and expected output beats of bit packets."""
    ins, outs = [], []
    for bits in packets_bits:
        for w, dst in ((in_w, ins), (out_w, outs)):
            for s in range(0, len(bits), w):
                dst.append(sum(int(b) << i for i, b in enumerate(bits[s:s + w])))
    return ins, outs


@pytest.mark.parametrize("in_w,out_w,total", [(16, 64, 784), (64, 4, 256), (6, 4, 18),
                                              (5, 7, 23), (8, 8, 8), (3, 12, 12), (12, 5, 12)])
def test_width_converter(in_w, out_w, total):
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
    compare_beats(mon.beats, outs)


def test_width_converter_full_rate():
    """Upsizing 16 -> 64 bits with both sides always ready: no bubble on the output side."""
    dut = WidthConverter(in_width=16, out_width=64, total=256)
    ins = list(range(1, 33))
    drv = StreamDriver(dut.i_stream, ins)
    mon = StreamMonitor(dut.o_stream, 8)
    run_streams(dut, [drv], [mon])
    assert np.all(np.diff(mon.cycles) == 4), mon.cycles
    assert np.all(np.diff(drv.sent_cycles) == 1), drv.sent_cycles


@pytest.mark.parametrize("quantizer", [ThresholdQuantizer(128), ThresholdQuantizer(7),
                                       FixedPointQuantizer(8), FixedPointQuantizer(5)])
def test_input_quantizer(quantizer):
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
    compare_beats(mon.beats, exp)


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


def test_stream_fifo():
    from bnnhw.hw.convert import StreamFIFO
    dut = StreamFIFO(width=7, depth=5)
    data = [int(v) for v in np.random.default_rng(3).integers(0, 128, 40)]
    drv = StreamDriver(dut.i_stream, data, valid_prob=0.8)
    mon = StreamMonitor(dut.o_stream, len(data), ready_prob=0.4)
    run_streams(dut, [drv], [mon])
    compare_beats(mon.beats, [int(d) for d in data])
    assert dut.memory_bits == 35
