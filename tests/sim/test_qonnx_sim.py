"""The imported Brevitas file TFC_1W1A.onnx through the hardware path: ``bnnhw generate`` and
``bnnhw simulate`` (cocotb + Verilator) read the .onnx directly, bit-exact with the golden
model on real MNIST images."""

import json

import numpy as np
import pytest

from bnnhw.cli import main
from support.data import mnist_images as load_mnist_images

from support.qonnx import assert_same
from support.data import shared_file

pytestmark = pytest.mark.cocotb


def test_imported_tfc_generate_and_simulate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BNNHW_BUILD_ROOT", str(tmp_path / "build"))
    tfc = str(shared_file("qonnx", "TFC_1W1A.onnx"))
    assert main(["generate", tfc, "-o", str(tmp_path / "core")]) == 0
    manifest = json.loads((tmp_path / "core" / "manifest.json").read_text())
    assert manifest["model"]["fingerprint"] == "163b07ab2f2c0ea9"
    x = load_mnist_images(12)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", tfc, str(tmp_path / "x.npy"), "-o", str(tmp_path / "g.npy")]) == 0
    assert main(["simulate", tfc, str(tmp_path / "x.npy"), "-o", str(tmp_path / "s.npy"),
                 "--sim", "verilator", "--verilator-opt", "fast-build"]) == 0
    golden, hardware = np.load(tmp_path / "g.npy"), np.load(tmp_path / "s.npy")
    assert hardware.dtype == np.int64
    assert_same(golden, hardware, "simulated TFC scores vs golden")
    # the comparison is sharp: one flipped score bit fails it
    bad = golden.copy()
    bad[7, 4] ^= 1
    with pytest.raises(AssertionError, match=r"1 values differ, first at \(7, 4\)"):
        assert_same(bad, hardware, "scores")
