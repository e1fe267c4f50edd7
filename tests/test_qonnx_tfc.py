"""The real Brevitas export TFC_1W1A.onnx: bnnhw's golden model on the imported network against
qonnx executing the original, unmodified file, on all 10,000 MNIST test images.

The file's tensors are named by the export (tensor '37' is the binarized input, '42' the first
MatMul, '45' its BipolarQuant, ... '74' the TensorNorm scores); the test reads them from qonnx's
full execution context and compares them with bnnhw's trace, layer by layer.
"""

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from bnnhw.model.datasets import load_mnist
from support.qonnx import assert_same, qonnx_execute
from support.data import MNIST, shared_file

#: (file tensor, bnnhw trace key, kind): bits as +1/-1, pre-activations y = 2P - K.
LAYERS = [("37", "input", "bits"), ("42", "fc0", "y"), ("45", "thr0", "bits"),
          ("50", "fc1", "y"), ("53", "thr1", "bits"), ("58", "fc2", "y"),
          ("61", "thr2", "bits"), ("66", "fc3", "y")]


@pytest.fixture(scope="module")
def tfc():
    path = shared_file("qonnx", "TFC_1W1A.onnx")
    images, labels = load_mnist(MNIST)
    net = bnnhw.load_model(path)
    x = (images.astype(np.float32) / 255).reshape(-1, 1, 28, 28)     # what the file expects
    context = qonnx_execute(path, {"0": x}, full=True)
    scores, trace = golden.forward(net, images, trace=True)
    return net, images, labels, context, scores, trace


def compare_layers(context, trace, n):
    for tensor, key, kind in LAYERS:
        mine = trace[key].reshape(n, -1).astype(np.int64)
        if kind == "bits":
            mine = 2 * mine - 1
        assert_same(context[tensor].reshape(n, -1), mine, f"tensor {tensor} vs {key}")


def test_tfc_imports_as_expected(tfc):
    net = tfc[0]
    assert [l.name for l in net.layers] == ["fc0", "thr0", "fc1", "thr1", "fc2", "thr2", "fc3",
                                            "output"]
    assert net.quantizer.kind == "threshold" and net.quantizer.threshold == 128
    assert net.output_rule == "popcount" and net.input_shape == (1, 28, 28)
    # The file's batch norms have negative gains: those channels fire downward.
    assert sum(int(l.negate.sum()) for l in net.layers if l.kind == "threshold") == 12


def test_tfc_every_class_identical_to_qonnx(tfc, capsys):
    net, images, labels, context, scores, _ = tfc
    theirs = context["74"]
    assert_same(np.argmax(theirs, axis=1), np.argmax(scores, axis=1), "predicted class")
    accuracy = float(np.mean(np.argmax(scores, axis=1) == labels))
    qonnx_accuracy = float(np.mean(np.argmax(theirs, axis=1) == labels))
    assert accuracy == qonnx_accuracy
    with capsys.disabled():
        print(f"\nTFC_1W1A on the 10,000 MNIST test images: bnnhw {100 * accuracy:.2f} %, "
              f"qonnx {100 * qonnx_accuracy:.2f} % (same class on every image)")
    assert round(100 * accuracy, 2) == 92.96


def test_tfc_scores_are_an_exact_affine_image_of_the_popcounts(tfc):
    net, _, _, context, scores, _ = tfc
    theirs = context["74"].astype(np.float64).ravel()
    p = scores.ravel().astype(np.float64)
    # One function: equal popcounts give bit-identical scores, larger popcounts larger scores.
    order = np.argsort(p, kind="stable")
    ps, ts = p[order], theirs[order]
    step = np.diff(ps) > 0
    assert np.all(np.diff(ts)[~step] == 0) and np.all(np.diff(ts)[step] > 0)
    # ... and it is affine: the TensorNorm tail a * P + b, up to float32 rounding.
    a, b = np.polyfit(p, theirs, 1)
    assert a > 0
    assert np.max(np.abs(theirs - (a * p + b))) <= 4 * np.finfo(np.float32).eps * \
        np.max(np.abs(theirs))


def test_tfc_bits_identical_layer_by_layer(tfc):
    _, images, _, context, _, trace = tfc
    compare_layers(context, trace, images.shape[0])


def test_tfc_layer_comparison_catches_one_bit(tfc):
    """The comparison is sharp: one activation bit flipped in qonnx's context fails it."""
    _, images, _, context, _, trace = tfc
    for tensor, (image, unit) in (("45", (0, 0)), ("61", (9999, 63)), ("37", (17, 400))):
        corrupted = dict(context)
        bad = context[tensor].copy().reshape(images.shape[0], -1)
        bad[image, unit] = -bad[image, unit]
        corrupted[tensor] = bad
        with pytest.raises(AssertionError, match=f"tensor {tensor} .*1 values differ, first "
                                                 f"at \\({image}, {unit}\\)"):
            compare_layers(corrupted, trace, images.shape[0])
