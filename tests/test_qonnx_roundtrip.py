"""Round trips through QONNX on every shared model.

* export then import gives the same fingerprint (same layers, weights, thresholds, names);
* qonnx executing the exported file gives the golden model's scores, bit for bit, on real
  images (CIFAR-10, GTSRB, MNIST, the scikit-learn digits);
* the real TFC file: import, export, and qonnx on the export equals the golden model; a second
  import of that export has the first import's fingerprint.
"""

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from bnnhw.examples import EXAMPLE_MODEL
from bnnhw.interop import export_qonnx, import_onnx
from bnnhw.model.datasets import digits_split, load_mnist
from support.qonnx import assert_same, qonnx_execute
from support.data import MNIST, shared_file


def real_images(kind, n):
    if kind == "cifar10":
        return np.load(shared_file("cifar10", "test.npz"))["images"][:n]
    if kind == "gtsrb":
        return np.load(shared_file("gtsrb", "test_32x32.npz"))["images"][:n]
    if kind == "mnist":
        return load_mnist(MNIST)[0][:n].reshape(n, 1, 28, 28)
    return digits_split()[2][:n]


MODELS = [("cnvW1A1_cifar10", "cifar10"), ("cnvW1A1_streetview", "cifar10"),
          ("cnvW1A1_road_signs", "gtsrb"), ("lfcW1A1_mnist", "mnist"),
          ("lfcW1A1_chars_merged", "mnist"), ("digits_bnn", "digits")]


def model_path(name):
    return EXAMPLE_MODEL if name == "digits_bnn" else shared_file("bnn-pynq", f"{name}.npz")


@pytest.mark.parametrize("name,data", MODELS)
def test_export_import_roundtrip(tmp_path, name, data):
    net = bnnhw.load_model(model_path(name))
    path = tmp_path / f"{name}.onnx"
    export_qonnx(net, path)
    back, report = import_onnx(path)
    assert back.fingerprint() == net.fingerprint()
    assert back.classes == net.classes and back.name == net.name
    assert "byte / 255" in report.preprocessing
    x = real_images(data, 24)
    theirs = qonnx_execute(path, {"input": x.astype(np.float32) / 255})["scores"]
    mine = golden.forward(net, x)
    assert np.all(theirs == np.rint(theirs))
    assert_same(mine, theirs.astype(np.int64), f"{name}: qonnx on the export vs golden")


def test_roundtrip_comparison_catches_one_score(tmp_path):
    """The score comparison above is sharp: one score off by one fails it."""
    net = bnnhw.load_model(model_path("lfcW1A1_mnist"))
    path = export_qonnx(net, tmp_path / "lfc.onnx") and tmp_path / "lfc.onnx"
    x = real_images("mnist", 8)
    theirs = qonnx_execute(path, {"input": x.astype(np.float32) / 255})["scores"]
    theirs[5, 3] += 1
    with pytest.raises(AssertionError, match=r"1 values differ, first at \(5, 3\)"):
        assert_same(golden.forward(net, x), theirs.astype(np.int64), "scores")


def test_tfc_import_export_import(tmp_path):
    tfc = shared_file("qonnx", "TFC_1W1A.onnx")
    net, _ = import_onnx(tfc)
    export_qonnx(net, tmp_path / "tfc.onnx")
    again, _ = import_onnx(tmp_path / "tfc.onnx")
    assert again.fingerprint() == net.fingerprint()
    images = load_mnist(MNIST)[0][:500]
    x = images.reshape(-1, 1, 28, 28).astype(np.float32) / 255
    theirs = qonnx_execute(tmp_path / "tfc.onnx", {"input": x})["scores"]
    assert_same(golden.forward(net, images), theirs.astype(np.int64), "TFC export vs golden")
    # and the original file, executed by qonnx, predicts the same classes
    original = qonnx_execute(tfc, {"0": x})["74"]
    assert_same(np.argmax(original, 1), np.argmax(theirs, 1), "classes")
