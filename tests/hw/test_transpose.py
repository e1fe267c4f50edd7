"""WindowTranspose (tap-major window vectors -> channel-major chunks) and the channel-major
convolution datapath whose per-input-channel 2-D popcount stage a filter bank replaces."""

import numpy as np
import pytest

from bnnhw import golden
from bnnhw.hw.network import NetworkCore
from bnnhw.hw.pe import KernelPopcount
from bnnhw.hw.window import WindowTranspose
from bnnhw.model.packing import channel_major_order
from bnnhw.model.packing import pack_fields as pack_lanes

from support.networks import expected_lasts, random_conv_net, run_core
from support.streams import StreamDriver, StreamMonitor, compare_beats, run_streams

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def test_channel_major_order():
    # 2x2 window, 3 channels: tap-major index = tap * 3 + c.
    assert channel_major_order(2, 3) == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
    w = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)          # [O, C, kh, kw]
    tap_major = w.transpose(0, 2, 3, 1).reshape(2, -1)
    assert np.array_equal(tap_major[:, channel_major_order(2, 3)], w.reshape(2, -1))


def _run(dut, vectors, **kw):
    beats = pack_lanes(np.asarray(vectors).reshape(-1, dut.in_simd), dut.bits)
    drv = StreamDriver(dut.i_stream, beats, valid_prob=kw.get("valid_prob", 1.0), seed=2)
    mon = StreamMonitor(dut.o_stream, len(vectors) * dut.out_beats,
                        ready_prob=kw.get("ready_prob", 1.0), seed=3)
    run_streams(dut, [drv], [mon])
    return mon


CASES = [  # channels, kernel, bits, in_simd, out_simd
    (4, 3, 1, 2, 9), (4, 3, 1, 4, 18), (3, 3, 8, 3, 9), (8, 3, 1, 8, 36), (2, 2, 1, 1, 3),
    (6, 1, 1, 3, 4), (5, 3, 1, 5, 45),
]


@pytest.mark.parametrize("case", CASES)
def test_transpose_vs_reference(case):
    c, k, b, si, so = case
    dut = WindowTranspose(channels=c, kernel=k, bits=b, in_simd=si, out_simd=so)
    rng = np.random.default_rng(sum(case))
    vectors = rng.integers(0, 1 << b, (5, k * k * c))
    mon = _run(dut, vectors, valid_prob=0.7, ready_prob=0.6)
    compare_beats(mon.beats, dut.reference(vectors))


def test_transpose_throughput():
    # One beat per cycle on the slower side, back to back: 4 vectors of max(18, 4) cycles.
    dut = WindowTranspose(channels=4, kernel=3, in_simd=2, out_simd=9)
    vectors = np.random.default_rng(0).integers(0, 2, (4, 36))
    mon = _run(dut, vectors)
    compare_beats(mon.beats, dut.reference(vectors))
    assert np.diff(mon.cycles).max() == 1 + dut.in_beats - dut.out_beats
    assert mon.cycles[-1] - mon.cycles[dut.out_beats - 1] == 3 * dut.cycles_per_vector


def test_transpose_corrupted_expectation_fails():
    dut = WindowTranspose(channels=4, kernel=3, in_simd=4, out_simd=9)
    vectors = np.random.default_rng(4).integers(0, 2, (2, 36))
    mon = _run(dut, vectors)
    want = dut.reference(vectors)
    want[3] ^= 1 << 5                       # one bit of one expected chunk
    with pytest.raises(AssertionError, match="beat 3"):
        compare_beats(mon.beats, want)


@pytest.mark.parametrize("change, error, message", [
    ({"in_simd": 3}, ValueError, "Input SIMD must divide the 4 channels, not 3"),
    ({"out_simd": 37}, ValueError, "Output SIMD must be at most K=36, not 37"),
    ({"kernel": 0}, ValueError, "Kernel size must be at least 1, not 0"),
    ({"bits": 1.0}, TypeError, "Element width must be an integer, not 1.0"),
])
def test_transpose_validation(change, error, message):
    params = {"channels": 4, "kernel": 3, "in_simd": 2, "out_simd": 9} | change
    with pytest.raises(error, match=message):
        WindowTranspose(**params)


# -- whole networks with channel-major convolutions -------------------------------------------

def sensitive_conv_net(seed):
    """Two convolutions (multi-bit, then binary with padding) and a popcount classifier over
    every conv1 output bit, with thresholds at 0: each conv output bit moves the scores."""
    from bnnhw.model import (BinaryConv2d, BinaryDense, FixedPointQuantizer, MultibitConv2d,
                             Network, Output, Threshold)
    from support.networks import pm1
    rng = np.random.default_rng(seed)
    layers = (
        MultibitConv2d("conv0", pm1(rng, (4, 3, 3, 3)), input_bits=8),
        Threshold("thr0", np.zeros(4, int), rng.random(4) < 0.3),
        BinaryConv2d("conv1", pm1(rng, (6, 4, 3, 3)), pad=1, pad_value=1),
        Threshold("thr1", np.zeros(6, int), rng.random(6) < 0.3),
        BinaryDense("fc2", pm1(rng, (10, 6 * 4 * 4))),
        Output(),
    )
    return Network("sensitive", (3, 6, 6), FixedPointQuantizer(8), layers)


FOLDING = {"conv0": {"PE": 3, "SIMD": 9, "order": "chw"},
           "conv1": {"PE": 4, "SIMD": 18, "order": "chw"},
           "fc2": {"PE": 2, "SIMD": 5}, "fc3": {"PE": 2, "SIMD": 5}}


def _check(core, net, images, **kw):
    scores, lasts, cycles = run_core(core, images, **kw)
    np.testing.assert_array_equal(scores, golden.forward(net, images))
    np.testing.assert_array_equal(lasts, expected_lasts(len(images), net.num_classes))
    return scores


SENSITIVE_FOLDING = {"conv0": {"PE": 2, "SIMD": 9, "order": "chw"},
                     "conv1": {"PE": 3, "SIMD": 18, "order": "chw"},
                     "fc2": {"PE": 5, "SIMD": 16}}


def test_channel_major_network_vs_golden():
    net = random_conv_net(3)
    images = np.random.default_rng(3).integers(0, 256, (2, 3, 6, 6), dtype=np.uint8)
    core = NetworkCore(net=net, folding=FOLDING)
    names = [n for n, _ in core.stages]
    assert "conv0.transpose" in names and "conv1.transpose" in names
    _check(core, net, images, valid_prob=0.8, ready_prob=0.7)


def test_channel_major_sensitive_network(monkeypatch):
    net = sensitive_conv_net(8)
    images = np.random.default_rng(8).integers(0, 256, (3, 3, 6, 6), dtype=np.uint8)
    scores = _check(NetworkCore(net=net, folding=SENSITIVE_FOLDING), net, images)
    assert len({tuple(s) for s in scores}) == 3          # the images are told apart
    # The same core with its weights in the tap-major order (the transpose left in front)
    # must disagree with the golden model: the test sees the order.
    import bnnhw.plan.stages as stages
    tap_major = stages.conv_weight_rows
    monkeypatch.setattr(stages, "conv_weight_rows", lambda w, order="hwc": tap_major(w))
    wrong, _, _ = run_core(NetworkCore(net=net, folding=SENSITIVE_FOLDING), images)
    assert not np.array_equal(wrong, golden.forward(net, images))


def test_kernel_popcount_stage_swaps_in():
    # The per-input-channel 2-D popcount stage, swapped in through the seam (what a
    # shared-result filter bank replaces): same scores, nothing else changed.
    net = sensitive_conv_net(9)
    images = np.random.default_rng(5).integers(0, 256, (2, 3, 6, 6), dtype=np.uint8)
    folding = {k: dict(v) for k, v in SENSITIVE_FOLDING.items()}
    folding["conv1"]["stage"] = "kernel_popcount"
    core = NetworkCore(net=net, folding=folding)
    mvtu = dict(core.stages)["conv1"]
    assert isinstance(mvtu._chunk, KernelPopcount) and not mvtu.holds_weights
    assert core.describe()["layers"][1]["chunk_stage"] == {
        "kind": "kernel_popcount", "latency": mvtu._chunk.latency, "holds_weights": False}
    _check(core, net, images)


def test_kernel_popcount_rom_holds_the_weights():
    # The same stage holding the weight rows itself: the MVTU drops its weight memory.
    net = sensitive_conv_net(9)
    images = np.random.default_rng(6).integers(0, 256, (2, 3, 6, 6), dtype=np.uint8)
    folding = {k: dict(v) for k, v in SENSITIVE_FOLDING.items()}
    folding["conv1"]["stage"] = "kernel_popcount_rom"
    core = NetworkCore(net=net, folding=folding)
    mvtu = dict(core.stages)["conv1"]
    assert mvtu.holds_weights and mvtu._chunk.plan.weight_rows == tuple(mvtu.plan.weight_rows)
    _check(core, net, images)
    # Wrong rows in the stage must show: the comparison sees where the weights come from.
    plan = core.plan
    mask = (1 << (plan.mvtu("conv1").pe * plan.mvtu("conv1").simd)) - 1
    bad = [row ^ mask for row in plan.mvtu("conv1").weight_rows]     # every weight inverted
    object.__setattr__(plan.mvtu("conv1").chunk, "weight_rows", tuple(bad))
    wrong, _, _ = run_core(NetworkCore(plan=plan), images)
    assert not np.array_equal(wrong, golden.forward(net, images))


def test_channel_major_folding_errors():
    from bnnhw.errors import ModelError
    net = random_conv_net(3)
    bad = dict(FOLDING, fc2={"PE": 2, "SIMD": 5, "order": "chw"})
    with pytest.raises(ModelError, match="layer 'fc2': folding order 'chw' is for "
                                         "convolutions only"):
        NetworkCore(net=net, folding=bad)
    bad = dict(FOLDING, conv1={"PE": 4, "SIMD": 18, "order": "cwh"})
    with pytest.raises(ModelError, match="layer 'conv1': folding order must be 'hwc' or "
                                         "'chw', not 'cwh'"):
        NetworkCore(net=net, folding=bad)
    with pytest.raises(ValueError, match="SIMD must be a multiple of the 9 elements of a "
                                         "2-D kernel, not 10"):
        KernelPopcount(pe=2, simd=10, kernel_elements=9)
