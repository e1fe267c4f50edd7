"""The imported Brevitas file TFC_1W1A.onnx through the firmware: ``bnnhw firmware run`` reads
the .onnx directly and reproduces ``bnnhw run`` bit for bit on real MNIST images."""

import numpy as np
import pytest

from bnnhw.cli import main

from support.qonnx import assert_same
from support.data import MNIST, shared_file

pytestmark = pytest.mark.firmware


@pytest.mark.parametrize("target", ["host", pytest.param("aarch64", marks=pytest.mark.slow)])
def test_imported_tfc_firmware_run(tmp_path, monkeypatch, target):
    from bnnhw.model.datasets import load_mnist
    monkeypatch.setenv("BNNHW_BUILD_ROOT", str(tmp_path / "root"))
    tfc = str(shared_file("qonnx", "TFC_1W1A.onnx"))
    x = load_mnist(MNIST)[0][:200]
    np.save(tmp_path / "x.npy", x)
    assert main(["run", tfc, str(tmp_path / "x.npy"), "-o", str(tmp_path / "g.npy")]) == 0
    assert main(["firmware", "run", tfc, str(tmp_path / "x.npy"), "-o", str(tmp_path / "f.npy"),
                 "--target", target]) == 0
    golden, firmware = np.load(tmp_path / "g.npy"), np.load(tmp_path / "f.npy")
    assert firmware.dtype == np.int64
    assert_same(golden, firmware, f"firmware ({target}) TFC scores vs golden")
    bad = golden.copy()
    bad[123, 9] ^= 1 << 3
    with pytest.raises(AssertionError, match=r"1 values differ, first at \(123, 9\)"):
        assert_same(bad, firmware, "scores")
