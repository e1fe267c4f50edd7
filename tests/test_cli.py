"""The command line: every command works, bad input gives one line and no output file."""

import subprocess
import sys

import numpy as np
import pytest

from bnnhw import golden
from bnnhw.cli import main
from testdata import BNN_PYNQ, MNIST, shared_file


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "bnnhw", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("info", "run", "eval", "convert", "demo"):
        assert command in out


@pytest.mark.parametrize("name", ["cnvW1A1_cifar10", "lfcW1A1_mnist", "lfcW1A1_chars_merged",
                                  "cnvW1A1_streetview", "cnvW1A1_road_signs"])
def test_info(capsys, name):
    code, out, _ = run(capsys, "info", shared_file("bnn-pynq", f"{name}.npz"))
    assert code == 0
    assert "total" in out and "A_min" in out


def test_info_json_values(capsys, cnv):
    import json
    code, out, _ = run(capsys, "info", BNN_PYNQ / "cnvW1A1_cifar10.npz", "--json")
    rows = {r["name"]: r for r in json.loads(out)["layers"]}
    assert rows["conv1"]["K"] == 576 and rows["conv1"]["min_acc_bits"] == 10
    assert rows["conv5"]["K"] == 2304 and rows["conv5"]["min_acc_bits"] == 12
    assert rows["conv1"]["operations"] == 64 * 576 * 28 * 28
    assert json.loads(out)["total_weight_bits"] == cnv.total_weight_bits


def test_run_matches_golden(capsys, tmp_path, lfc):
    x = np.random.default_rng(0).integers(0, 256, (5, 784), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    code, out, _ = run(capsys, "run", BNN_PYNQ / "lfcW1A1_mnist.npz", tmp_path / "x.npy",
                       "-o", tmp_path / "s.npy")
    assert code == 0
    scores = np.load(tmp_path / "s.npy")
    assert scores.dtype == np.int64 and np.array_equal(scores, golden.forward(lfc, x))


def test_eval_mnist(capsys):
    code, out, _ = run(capsys, "eval", BNN_PYNQ / "lfcW1A1_mnist.npz", "--mnist", MNIST,
                       "--limit", "500")
    assert code == 0 and "/500 correct" in out


def test_convert_round_trip(capsys, tmp_path, lfc):
    code, _, _ = run(capsys, "convert", BNN_PYNQ / "lfcW1A1_mnist.npz", "-o", tmp_path / "m.npz")
    assert code == 0
    from bnnhw import load_model
    assert load_model(tmp_path / "m.npz").fingerprint() == lfc.fingerprint()


def _bad_inputs(tmp_path):
    np.save(tmp_path / "float.npy", np.zeros((2, 784), np.float32))
    np.save(tmp_path / "shape.npy", np.zeros((2, 785), np.uint8))
    (tmp_path / "garbage.npy").write_bytes(b"not numpy at all")
    good = shared_file("bnn-pynq", "lfcW1A1_mnist.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[:5000])
    np.save(tmp_path / "ok.npy", np.zeros((2, 784), np.uint8))
    return {
        "missing model": (["run", tmp_path / "none.npz", tmp_path / "ok.npy"],
                          "model file .* does not exist"),
        "truncated model": (["run", tmp_path / "cut.npz", tmp_path / "ok.npy"],
                            "is not a readable .npz archive"),
        "missing input": (["run", BNN_PYNQ / "lfcW1A1_mnist.npz", tmp_path / "none.npy"],
                          "input file .* does not exist"),
        "input dtype": (["run", BNN_PYNQ / "lfcW1A1_mnist.npz", tmp_path / "float.npy"],
                        r"input must be raw bytes \(uint8\), not float32"),
        "input shape": (["run", BNN_PYNQ / "lfcW1A1_mnist.npz", tmp_path / "shape.npy"],
                        r"must have shape \[N, 1, 28, 28\] or \[N, 28, 28\] or \[N, 784\], "
                        r"not \[2, 785\]"),
        "input garbage": (["run", BNN_PYNQ / "lfcW1A1_mnist.npz", tmp_path / "garbage.npy"],
                          "is not a readable .npy array"),
    }


@pytest.mark.parametrize("case", ["missing model", "truncated model", "missing input",
                                  "input dtype", "input shape", "input garbage"])
def test_bad_input_one_line_error_no_output(capsys, tmp_path, case):
    argv, message = _bad_inputs(tmp_path)[case]
    out_file = tmp_path / "scores.npy"
    code, out, err = run(capsys, *argv, "-o", out_file)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnnhw: error: ")
    import re
    assert re.search(message, lines[0]), lines[0]
    assert not out_file.exists()
    assert not list(tmp_path.glob(".scores.npy*"))     # no temporary left behind either


def test_eval_bad_folder(capsys, tmp_path):
    code, _, err = run(capsys, "eval", BNN_PYNQ / "lfcW1A1_mnist.npz", "--mnist", tmp_path)
    assert code == 2 and "has no t10k-images IDX file" in err
