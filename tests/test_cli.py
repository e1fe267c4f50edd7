"""The command line: every command works, bad input gives one line and no output file."""

import subprocess
import sys

import numpy as np
import pytest

from bnnhw import golden
from bnnhw.cli import main
from support.data import BNN_PYNQ, MNIST, shared_file


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command():
    from bnnhw.cli import build_parser
    out = subprocess.run([sys.executable, "-m", "bnnhw", "--help"], capture_output=True,
                         text=True, check=True).stdout
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert {"info", "run", "eval", "convert", "demo", "train-example", "firmware", "generate",
            "simulate"} <= set(commands)
    listed = out.split("positional arguments:")[1]
    for command, sub in commands.items():
        assert f"    {command} " in listed, command          # listed with its help line
        help_out = subprocess.run([sys.executable, "-m", "bnnhw", command, "--help"],
                                  capture_output=True, text=True)
        assert help_out.returncode == 0 and help_out.stdout.startswith("usage: bnnhw"), command


@pytest.mark.parametrize("name", ["cnvW1A1_cifar10", "lfcW1A1_mnist", "lfcW1A1_chars_merged",
                                  "cnvW1A1_streetview", "cnvW1A1_road_signs"])
def test_info(capsys, name):
    import bnnhw
    path = shared_file("bnn-pynq", f"{name}.npz")
    net = bnnhw.load_model(path)
    code, out, _ = run(capsys, "info", path)
    assert code == 0
    lines = out.splitlines()
    assert f"id {net.fingerprint()}" in lines[0] and "A_min" in lines[1]
    total = lines[-1].split()
    assert total == ["total", str(net.total_operations), str(net.total_weight_bits)]
    rows = {line.split()[0]: line.split() for line in lines[2:-1]}
    for info in net.infos:
        if info.fan_in:
            assert rows[info.name][4] == str(info.fan_in)          # K column


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


def test_eval_mnist(capsys, lfc):
    from support.data import mnist
    code, out, _ = run(capsys, "eval", BNN_PYNQ / "lfcW1A1_mnist.npz", "--mnist", MNIST,
                       "--limit", "500")
    images, labels = mnist(500)
    correct = int((golden.predict(lfc, images) == labels).sum())
    assert correct > 450                                   # LFC is ~98 % accurate
    assert code == 0 and f": {correct}/500 correct = {correct / 5:.2f} %" in out


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


def one_line_error(code, err):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("bnnhw: error: "), err
    return lines[0]


def test_eval_inputs_labels_equals_mnist(capsys, tmp_path, mnist):
    images, labels = mnist
    np.save(tmp_path / "x.npy", images[:500])
    np.save(tmp_path / "y.npy", labels[:500].astype(np.int32))
    model = BNN_PYNQ / "lfcW1A1_mnist.npz"
    code, by_idx, _ = run(capsys, "eval", model, "--mnist", MNIST, "--limit", "500")
    assert code == 0
    code, by_npy, _ = run(capsys, "eval", model, "--inputs", tmp_path / "x.npy",
                          "--labels", tmp_path / "y.npy")
    assert code == 0
    assert by_npy.split(" correct")[0] == by_idx.split(" correct")[0]     # same count


def test_eval_inputs_cnv(capsys, tmp_path):
    # CNV on the reference images; their labels are the classes the board printed scores for.
    v = np.load(shared_file("bnn-pynq", "vectors", "vectors_cnvW1A1_cifar10.npz"))
    np.save(tmp_path / "x.npy", np.ascontiguousarray(v["images_hwc_u8"].transpose(0, 3, 1, 2)))
    np.save(tmp_path / "y.npy", v["pred_class"].astype(np.int64))
    code, out, _ = run(capsys, "eval", BNN_PYNQ / "cnvW1A1_cifar10.npz",
                       "--inputs", tmp_path / "x.npy", "--labels", tmp_path / "y.npy")
    assert code == 0 and "4/4 correct = 100.00 %" in out


def test_eval_example_model_on_its_held_out_split(capsys, tmp_path):
    import json
    from bnnhw.examples import EXAMPLE_MODEL, EXAMPLE_REPORT, digits_split
    report = json.loads(EXAMPLE_REPORT.read_text())
    _, _, x_test, y_test = digits_split()
    np.save(tmp_path / "x.npy", x_test)
    np.save(tmp_path / "y.npy", y_test)
    expected = f"{report['test_correct']}/{report['split']['test_images']} correct"
    code, out, _ = run(capsys, "eval", EXAMPLE_MODEL, "--inputs", tmp_path / "x.npy",
                       "--labels", tmp_path / "y.npy")
    assert code == 0 and expected in out
    code, out, _ = run(capsys, "eval", EXAMPLE_MODEL, "--digits")
    assert code == 0 and expected in out
    assert f"matches the {100 * report['accuracy']['golden_test']:.2f} % recorded in" in out


def test_eval_digits_detects_a_different_recorded_accuracy(capsys, tmp_path):
    import json
    import shutil
    from bnnhw.examples import EXAMPLE_MODEL, EXAMPLE_REPORT
    shutil.copy(EXAMPLE_MODEL, tmp_path / "m.npz")
    report = json.loads(EXAMPLE_REPORT.read_text())
    report["test_correct"] -= 1
    (tmp_path / "m.json").write_text(json.dumps(report))
    code, _, err = run(capsys, "eval", tmp_path / "m.npz", "--digits")
    line = one_line_error(code, err)
    assert "differs from" in line and "m.json" in line


def _eval_errors(tmp_path):
    lfc = BNN_PYNQ / "lfcW1A1_mnist.npz"
    np.save(tmp_path / "x5.npy", np.zeros((5, 784), np.uint8))
    np.save(tmp_path / "y4.npy", np.arange(4))
    np.save(tmp_path / "y10.npy", np.array([0, 1, 2, 10, 3]))
    np.save(tmp_path / "yneg.npy", np.array([0, -1, 2, 1, 3]))
    np.save(tmp_path / "yfloat.npy", np.zeros(5))
    np.save(tmp_path / "y2d.npy", np.zeros((5, 1), np.int64))
    x, y = tmp_path / "x5.npy", tmp_path / "y4.npy"
    return {
        "count": (["eval", lfc, "--inputs", x, "--labels", y],
                  r"labels file .*y4.npy': 5 inputs but 4 labels"),
        "range": (["eval", lfc, "--inputs", x, "--labels", tmp_path / "y10.npy"],
                  r"label 10 at index 3 is not a class of model 'lfcW1A1_mnist' \(0..9\)"),
        "negative": (["eval", lfc, "--inputs", x, "--labels", tmp_path / "yneg.npy"],
                     r"label -1 at index 1 is not a class"),
        "float": (["eval", lfc, "--inputs", x, "--labels", tmp_path / "yfloat.npy"],
                  r"must hold integer class indices, not float64"),
        "shape": (["eval", lfc, "--inputs", x, "--labels", tmp_path / "y2d.npy"],
                  r"must hold a vector \[N\], not shape \[5, 1\]"),
        "no labels": (["eval", lfc, "--inputs", x], r"--inputs needs --labels"),
        "labels alone": (["eval", lfc, "--mnist", MNIST, "--labels", y],
                         r"--labels goes with --inputs"),
        "missing labels": (["eval", lfc, "--inputs", x, "--labels", tmp_path / "none.npy"],
                           r"input file .*none.npy' does not exist"),
        "input shape": (["eval", BNN_PYNQ / "cnvW1A1_cifar10.npz", "--inputs", x, "--labels", y],
                        r"must have shape \[N, 3, 32, 32\], not \[5, 784\]"),
        "digits shape": (["eval", lfc, "--digits"],
                         r"--digits needs a model of 8x8 grey images .* takes \[1, 28, 28\]"),
        "limit": (["eval", lfc, "--mnist", MNIST, "--limit", "-3"],
                  r"--limit must be a number of images >= 0 \(0: all\), not -3"),
    }


@pytest.mark.parametrize("case", ["count", "range", "negative", "float", "shape", "no labels",
                                  "labels alone", "missing labels", "input shape",
                                  "digits shape", "limit"])
def test_eval_refuses_bad_labels_and_inputs(capsys, tmp_path, case):
    import re
    argv, message = _eval_errors(tmp_path)[case]
    code, out, err = run(capsys, *argv)
    line = one_line_error(code, err)
    assert re.search(message, line), line
    assert out == ""


def test_eval_needs_a_data_set(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", str(BNN_PYNQ / "lfcW1A1_mnist.npz")])
    assert e.value.code == 2
    assert "one of the arguments --mnist --inputs --digits is required" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "convert"])
def test_output_is_a_directory(capsys, tmp_path, command):
    np.save(tmp_path / "x.npy", np.zeros((2, 784), np.uint8))
    target = tmp_path / "out"
    target.mkdir()
    model = BNN_PYNQ / "lfcW1A1_mnist.npz"
    argv = ["run", model, tmp_path / "x.npy"] if command == "run" else ["convert", model]
    code, out, err = run(capsys, *argv, "-o", target)
    line = one_line_error(code, err)
    assert line == f"bnnhw: error: output {str(target)!r} is a directory, not a file name"
    assert list(target.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "out", "x.npy"]                                   # nothing written, no temporaries


def test_output_folder_is_a_file(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 784), np.uint8))
    (tmp_path / "file").write_text("in the way")
    target = tmp_path / "file" / "scores.npy"
    code, _, err = run(capsys, "run", BNN_PYNQ / "lfcW1A1_mnist.npz", tmp_path / "x.npy",
                       "-o", target)
    line = one_line_error(code, err)
    assert f"output {str(target)!r}: its folder {str(tmp_path / 'file')!r} is not a directory" \
        in line
    assert (tmp_path / "file").read_text() == "in the way"


def test_output_folder_that_is_a_file(tmp_path, capsys):
    # Commands that write a folder name the path in one line when a file is in the way.
    from bnnhw.cli import main
    from bnnhw.demo import example_model_path
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    assert main(["firmware", str(example_model_path()), "-o", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bnnhw: error: ") and str(blocker) in err and err.count("\n") == 1
    assert blocker.read_text() == "x"
