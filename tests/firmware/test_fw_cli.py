"""`bnnhw firmware run` reproduces `bnnhw run` exactly, on every target; errors are one line."""

import re

import numpy as np
import pytest

from bnnhw.cli import main

from fw_helpers import shared_file

pytestmark = pytest.mark.firmware


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BNNHW_CACHE", str(tmp_path_factory.getbasetemp() / "fwcli-cache"))


def assert_same_score_files(firmware_npy, golden_npy):
    """The comparison of the CLI tests: two score files, int64, identical bit for bit."""
    golden, firmware = np.load(golden_npy), np.load(firmware_npy)
    assert firmware.dtype == np.int64 and golden.dtype == np.int64, (firmware.dtype, golden.dtype)
    assert firmware.shape == golden.shape, (firmware.shape, golden.shape)
    bad = np.argwhere(firmware != golden)
    assert bad.size == 0, f"{len(bad)} scores differ, first at {tuple(map(int, bad[0]))}"


def cli_scores(tmp_path, model, shape, target):
    """Runs `bnnhw run` and `bnnhw firmware run` on the same random input; returns the paths."""
    path = shared_file("bnn-pynq", f"{model}.npz")
    x = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "g.npy")]) == 0
    assert main(["firmware", "run", str(path), str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "f.npy"), "--target", target]) == 0
    return tmp_path / "f.npy", tmp_path / "g.npy"


@pytest.mark.parametrize("target", ["host", "aarch64", "armv7"])
@pytest.mark.parametrize("model,shape", [("lfcW1A1_mnist", (40, 28, 28)),
                                         ("cnvW1A1_cifar10", (3, 3, 32, 32))])
def test_firmware_run_matches_golden_run(tmp_path, capsys, target, model, shape):
    firmware, golden = cli_scores(tmp_path, model, shape, target)
    assert_same_score_files(firmware, golden)
    assert f"firmware, {target}" in capsys.readouterr().out


@pytest.mark.parametrize("target", ["host", "aarch64"])
def test_cli_one_corrupted_score_bit_fails(tmp_path, target):
    """The CLI comparison is sharp: one bit flipped in the golden model's score file fails."""
    firmware, golden = cli_scores(tmp_path, "lfcW1A1_mnist", (12, 28, 28), target)
    assert_same_score_files(firmware, golden)
    scores = np.load(golden)
    for index, bit in (((0, 0), 0), ((7, 3), 5), ((11, 9), 62)):
        corrupted = scores.copy()
        corrupted[index] ^= np.int64(1) << np.int64(bit)
        np.save(tmp_path / "bad.npy", corrupted)
        message = "^1 scores differ, first at " + re.escape(str(index))
        with pytest.raises(AssertionError, match=message):
            assert_same_score_files(firmware, tmp_path / "bad.npy")


def test_firmware_generate(tmp_path, capsys):
    path = shared_file("bnn-pynq", "lfcW1A1_mnist.npz")
    assert main(["firmware", str(path), "-o", str(tmp_path / "out"), "--target", "aarch64"]) == 0
    assert (tmp_path / "out" / "generated" / "bnn_model_data.h").exists()
    assert (tmp_path / "out" / "build-aarch64-neon" / "bnn_runner").exists()


@pytest.mark.parametrize("argv_tail,message", [
    (["run", "MODEL", "bad.npy"], "input of model 'lfcW1A1_mnist' must have shape"),
    (["run", "MODEL"], "usage: bnnhw firmware run MODEL INPUT.npy"),
    (["MODEL", "extra"], "usage: bnnhw firmware MODEL -o DIR"),
])
def test_firmware_errors(tmp_path, capsys, argv_tail, message):
    path = shared_file("bnn-pynq", "lfcW1A1_mnist.npz")
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 3), np.uint8))
    argv = ["firmware"] + [str(path) if a == "MODEL" else str(tmp_path / a) if a.endswith(".npy")
                           else a for a in argv_tail] + ["-o", str(tmp_path / "s.npy")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bnnhw: error: ") and message in err[0], err
    assert not (tmp_path / "s.npy").exists()
