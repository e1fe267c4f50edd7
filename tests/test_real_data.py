"""The golden model on the real BNN-PYNQ networks (../shared/data)."""

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from support.data import shared_file
from reference import forward_reference


def test_lfc_mnist_accuracy_all_10000(lfc, mnist):
    images, labels = mnist
    assert images.shape == (10000, 28, 28)
    pred = golden.predict(lfc, images)
    # SPEC §8 margin rule; 98.34 % is what the BNN-PYNQ parameters give on the full test set.
    assert int((pred == labels).sum()) == 9834


def test_lfc_reference_vectors(lfc):
    v = np.load(shared_file("bnn-pynq", "vectors", "vectors_lfcW1A1_mnist.npz"))
    scores, trace = golden.forward(lfc, v["images_u8"], trace=True)
    assert np.array_equal(trace["input"].reshape(-1, 784), v["input_bits"])
    for i in range(4):
        assert np.array_equal(trace[f"fc{i}.popcount"], v[f"trace_fc{i}_popcount"])
        assert np.array_equal(trace[f"thr{i}"], v[f"trace_fc{i}"])
    assert np.array_equal(np.argmax(scores, axis=1), v["pred_class_margin"])


def test_cnv_reproduces_the_pynq_board(cnv):
    v = np.load(shared_file("bnn-pynq", "vectors", "vectors_cnvW1A1_cifar10.npz"))
    x = np.ascontiguousarray(v["images_hwc_u8"].transpose(0, 3, 1, 2))
    scores, trace = golden.forward(cnv, x, trace=True)
    board = v["hw_reference_scores"][:3]
    assert np.array_equal(scores[:3], board)          # the 30 numbers the board printed
    assert np.array_equal(scores, v["scores"])
    assert np.array_equal(trace["input"], v["input_q_int8"])
    assert np.array_equal(trace["conv0"], v["trace_conv0_acc"])
    for name, key in [("thr0", "conv0"), ("thr1", "conv1"), ("pool1", "pool1"),
                      ("thr3", "conv3"), ("pool3", "pool3"), ("thr5", "conv5"),
                      ("thr7", "fc7")]:
        assert np.array_equal(trace[name], v[f"trace_{key}"]), name
    assert np.array_equal(np.argmax(scores, axis=1), v["pred_class"])


@pytest.mark.parametrize("name", ["cnvW1A1_cifar10", "cnvW1A1_streetview", "cnvW1A1_road_signs",
                                  "lfcW1A1_mnist", "lfcW1A1_chars_merged"])
def test_random_images_against_slow_reference(name):
    net = bnnhw.load_model(shared_file("bnn-pynq", f"{name}.npz"))
    x = np.random.default_rng(7).integers(0, 256, (3, *net.input_shape), dtype=np.uint8)
    assert np.array_equal(golden.forward(net, x), forward_reference(net, x))
