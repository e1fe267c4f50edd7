"""Whole-network amaranth.sim tests of NetworkCore against bnnhw.golden.forward."""

import numpy as np
import pytest

from bnnhw import golden
from bnnhw.hw.network import NetworkCore

from support.networks import expected_lasts, random_dense_net, run_core

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def check_core(net, folding, images, *, expected=None, expected_last=None, **kw):
    """Simulate a core on ``images`` and compare its score beats with ``expected`` (default:
    the golden model) and their ``last`` flags with ``expected_last`` (default: the final
    class of each image)."""
    core = NetworkCore(net=net, folding=folding)
    scores, lasts, cycles = run_core(core, images, **kw)
    if expected is None:
        expected = golden.forward(net, images)
    if expected_last is None:
        expected_last = expected_lasts(len(images), net.num_classes)
    np.testing.assert_array_equal(scores, expected)
    np.testing.assert_array_equal(lasts, expected_last)
    return core, cycles


def test_dense_margin_gaps_backpressure():
    net = random_dense_net(1)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 1, 4, 6), dtype=np.uint8)
    folding = {"fc0": {"PE": 5, "SIMD": 7}, "fc1": {"PE": 4, "SIMD": 5}}
    check_core(net, folding, images, valid_prob=0.6, ready_prob=0.5)


def test_dense_popcount_two_hidden():
    net = random_dense_net(2, hidden=(9, 8), classes=3, last_threshold=False)
    assert net.output_rule == "popcount"
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (3, 1, 4, 6), dtype=np.uint8)
    folding = {"fc0": {"PE": 3, "SIMD": 8}, "fc1": {"PE": 2, "SIMD": 9}, "fc2": {"PE": 3, "SIMD": 8}}
    check_core(net, folding, images, valid_prob=0.8, ready_prob=0.7)


@pytest.mark.parametrize("window_fifo", [True, False])
def test_conv_network_vs_golden(window_fifo):
    from support.networks import random_conv_net
    net = random_conv_net(3)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 3, 6, 6), dtype=np.uint8)
    folding = {"conv0": {"PE": 3, "SIMD": 3}, "conv1": {"PE": 4, "SIMD": 2},
               "fc2": {"PE": 2, "SIMD": 5}, "fc3": {"PE": 2, "SIMD": 5}}
    core = NetworkCore(net=net, folding=folding, window_fifo=window_fifo)
    scores, lasts, _ = run_core(core, images, valid_prob=0.8, ready_prob=0.7)
    np.testing.assert_array_equal(scores, golden.forward(net, images))
    np.testing.assert_array_equal(lasts, expected_lasts(len(images), net.num_classes))


DESCRIBE_KEYS = {"input_bytes_per_beat", "input_beats_per_image", "score_width", "num_classes",
                 "output_rule", "cycles_per_image", "latency_cycles_estimate", "layers"}
LAYER_KEYS = {"name", "kind", "PE", "SIMD", "K", "acc_bits", "weight_bits", "threshold_bits",
              "memory_bits", "cycles_per_image"}


@pytest.mark.parametrize("folding", [
    {"fc0": {"PE": 5, "SIMD": 7}, "fc1": {"PE": 4, "SIMD": 5}},
    {"fc0": {"PE": 1, "SIMD": 4}, "fc1": {"PE": 2, "SIMD": 3}},
])
def test_dense_cycles_per_image_measured(folding):
    """Back-to-back images: the measured interval equals describe()["cycles_per_image"]."""
    import json
    net = random_dense_net(1)
    images = np.random.default_rng(5).integers(0, 256, (4, 1, 4, 6), dtype=np.uint8)
    core, cycles = check_core(net, folding, images)
    d = core.describe()
    json.dumps(d)
    assert DESCRIBE_KEYS <= set(d) and all(LAYER_KEYS <= set(e) for e in d["layers"])
    last = np.array(cycles).reshape(len(images), -1)[:, -1]
    assert list(np.diff(last)) == [d["cycles_per_image"]] * (len(images) - 1)
    assert last[0] <= d["latency_cycles_estimate"]


def test_conv_cycles_per_image_measured():
    """With an MVTU as the clear bottleneck the conv network's interval is exact too."""
    from support.networks import random_conv_net
    net = random_conv_net(3)
    images = np.random.default_rng(6).integers(0, 256, (3, 3, 6, 6), dtype=np.uint8)
    folding = {"conv0": {"PE": 3, "SIMD": 3}, "conv1": {"PE": 4, "SIMD": 2},
               "fc2": {"PE": 2, "SIMD": 5}, "fc3": {"PE": 2, "SIMD": 5}}
    core, cycles = check_core(net, folding, images)
    d = core.describe()
    assert d["bottleneck"] == "conv1"
    last = np.array(cycles).reshape(len(images), -1)[:, -1]
    assert list(np.diff(last)) == [d["cycles_per_image"]] * (len(images) - 1)


@pytest.mark.parametrize("what,image,cls,bit", [("score", 1, 3, 0), ("score", 0, 9, 2),
                                                ("last", 1, 9, 0)])
def test_corrupted_expectation_fails(what, image, cls, bit):
    """The whole-network harness (check_core: simulate, compare with golden) passes on the
    golden scores and fails when one bit of one expected score or ``last`` flag is flipped."""
    net = random_dense_net(4)
    images = np.random.default_rng(4).integers(0, 256, (2, 1, 4, 6), dtype=np.uint8)
    folding = {"fc0": {"PE": 4, "SIMD": 8}, "fc1": {"PE": 5, "SIMD": 6}}
    kw = dict(valid_prob=0.7, ready_prob=0.6)
    check_core(net, folding, images, **kw)
    expected = golden.forward(net, images)
    lasts = expected_lasts(len(images), net.num_classes)
    (expected if what == "score" else lasts)[image, cls] ^= 1 << bit
    with pytest.raises(AssertionError, match=r"Mismatched elements: 1 / 20 "):
        check_core(net, folding, images, expected=expected, expected_last=lasts, **kw)


def test_errors():
    from bnnhw.errors import ModelError
    net = random_dense_net(1)
    with pytest.raises(ModelError, match=r"^layer 'fc0': SIMD must be at most the 24 inputs "
                                         r"\(K\), not 30$"):
        NetworkCore(net=net, folding={"fc0": {"PE": 1, "SIMD": 30}, "fc1": {"PE": 1, "SIMD": 1}})
    with pytest.raises(TypeError, match=r"^Network must be a bnnhw Network, not 3$"):
        NetworkCore(net=3)


def test_real_lfc_one_image(lfc):
    """The real LFC at FINN's folding, one MNIST test vector, bit-exact with the golden model."""
    from pathlib import Path
    v = np.load(Path(__file__).resolve().parents[3] / "shared" / "data" / "bnn-pynq" / "vectors"
                / "vectors_lfcW1A1_mnist.npz")
    images = v["images_u8"][:1].reshape(1, 1, 28, 28)
    core = NetworkCore(net=lfc)
    assert core.describe()["cycles_per_image"] == 512
    scores, lasts, _ = run_core(core, images, max_cycles=5000)
    np.testing.assert_array_equal(scores, golden.forward(lfc, images))
    # And with the independent reference vectors: margins y - T from their popcounts.
    thr = lfc.layers[-2]
    margins = 2 * v["fc3_popcount"][:1].astype(np.int64) - 1024 - thr.thresholds
    np.testing.assert_array_equal(scores, margins)
    assert int(np.argmax(scores[0])) == int(v["pred_class_margin"][0])


@pytest.mark.parametrize("last_threshold,rule", [(False, "clipped"), (True, "margin")])
def test_dense_clipped_last_layer(last_threshold, rule):
    net = random_dense_net(7, hidden=(8,), classes=4, clip_last=True,
                           last_threshold=last_threshold)
    assert net.output_rule == rule
    images = np.random.default_rng(7).integers(0, 256, (3, 1, 4, 6), dtype=np.uint8)
    check_core(net, {"fc0": {"PE": 3, "SIMD": 6}, "fc1": {"PE": 4, "SIMD": 3}}, images,
               valid_prob=0.7, ready_prob=0.6)


@pytest.mark.slow
def test_real_cnv_one_image(cnv):
    """The real CNV at FINN's folding (5-8 minutes of amaranth.sim): golden and board."""
    from pathlib import Path
    v = np.load(Path(__file__).resolve().parents[3] / "shared" / "data" / "bnn-pynq" / "vectors"
                / "vectors_cnvW1A1_cifar10.npz")
    images = np.ascontiguousarray(v["images_hwc_u8"][:1].transpose(0, 3, 1, 2))
    core = NetworkCore(net=cnv)
    scores, lasts, cycles = run_core(core, images, max_cycles=400_000)
    np.testing.assert_array_equal(scores, golden.forward(cnv, images))
    np.testing.assert_array_equal(scores, v["hw_reference_scores"][:1])
    assert cycles[-1] <= core.describe()["latency_cycles_estimate"]
