"""bnnhw's own example network (scikit-learn digits): training, export, committed model.

The committed model's accuracy is recomputed here with the golden model; the export is checked
layer by layer against the float training network (with binarized weights), and the folded
thresholds against the float ``sign(BN(v))`` for every integer ``v`` their layer can produce.
"""

import json
from fractions import Fraction

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from bnnhw.cli import main
from bnnhw.errors import InputError
from bnnhw.examples import EXAMPLE_MODEL, EXAMPLE_REPORT, digits_bytes, digits_split
from bnnhw.examples.train_digits import DEFAULTS, export, train_digits, train_float
from bnnhw.model import (BinaryConv2d, BinaryDense, Clip, MaxPool, MultibitConv2d, Threshold,
                         bn_sign_reference, load_model, save_model)


@pytest.fixture(scope="module")
def report():
    return json.loads(EXAMPLE_REPORT.read_text())


@pytest.fixture(scope="module")
def committed():
    return load_model(EXAMPLE_MODEL)


@pytest.fixture(scope="module")
def split():
    return digits_split()


@pytest.fixture(scope="module")
def short_run(split):
    """A 2-epoch float network and its export (enough to make every threshold non-trivial)."""
    x_train, y_train, _, _ = split
    model, _ = train_float(x_train, y_train, seed=5, settings={"epochs": 2})
    return model, export(model)


# -- data ------------------------------------------------------------------------------------

def test_digits_bytes_scaling():
    from sklearn.datasets import load_digits
    raw, labels = digits_bytes()
    v = load_digits().images
    assert raw.dtype == np.uint8 and raw.shape == (1797, 1, 8, 8) and labels.shape == (1797,)
    # p = round(v * 255 / 16), half up, computed independently with exact fractions.
    table = {k: int(Fraction(k * 255, 16) + Fraction(1, 2)) for k in range(17)}
    assert table[0] == 0 and table[16] == 255 and table[8] == 128
    expected = np.vectorize(lambda k: table[int(k)])(v)
    np.testing.assert_array_equal(raw[:, 0], expected)


def test_split_is_fixed_and_disjoint(split):
    x_train, y_train, x_test, y_test = split
    assert len(y_test) == 449 and len(y_train) == 1797 - 449
    again = digits_split()
    for a, b in zip(split, again):
        np.testing.assert_array_equal(a, b)
    # Disjoint and complete: every image appears exactly once across the two parts.
    raw, _ = digits_bytes()
    rows = lambda x: {r.tobytes() for r in x.reshape(len(x), -1)}
    assert len(rows(np.concatenate([x_train, x_test]))) == len(rows(raw))


# -- the committed model --------------------------------------------------------------------

def test_committed_accuracy_matches_report(committed, report, split):
    _, _, x_test, y_test = split
    pred = golden.predict(committed, x_test)
    correct = int(np.sum(pred == y_test))
    assert correct == report["test_correct"]
    assert correct / len(y_test) == report["accuracy"]["golden_test"]
    assert report["split"]["test_images"] == len(y_test)
    assert report["fingerprint"] == committed.fingerprint()
    # The committed model is the one `bnnhw train-example` makes: default settings, seed 0.
    assert report["seed"] == 0 and committed.meta["seed"] == 0
    assert report["settings"] == {k: list(v) if isinstance(v, tuple) else v
                                  for k, v in DEFAULTS.items()}
    # The integer network should be about as good as its float twin, and good.
    assert report["accuracy"]["golden_test"] >= 0.9
    assert abs(report["accuracy"]["golden_test"] - report["accuracy"]["float_test"]) <= 0.01


def test_committed_structure(committed):
    kinds = [type(layer) for layer in committed.layers]
    assert kinds[0] is MultibitConv2d and BinaryConv2d in kinds and BinaryDense in kinds
    assert Clip in kinds and MaxPool in kinds
    assert committed.output_rule == "popcount"
    assert committed.quantizer.kind == "fixed_point" and committed.quantizer.bits == 8
    conv0 = committed.layers[0]
    # The first layer pads with the code of a background (zero) pixel.
    assert conv0.pad == 1 and conv0.pad_value == int(committed.quantizer(np.uint8(0)))
    assert committed.info("fc2").input_shape == (32, 4, 4)
    assert committed.meta["source"] == "bnnhw.examples.train_digits"


def _value_range(net, name):
    """Integer range of the value threshold ``name`` compares, derived here from the IR."""
    lo = hi = None
    for layer in net.layers:
        if isinstance(layer, (MultibitConv2d, BinaryConv2d, BinaryDense)):
            lo, hi = layer.output_range
        elif isinstance(layer, Clip):
            lo, hi = max(lo, -layer.limit), min(hi, layer.limit)
        elif layer.name == name:
            return lo, hi
    raise KeyError(name)


def _folded_bits(layer, v):
    """SPEC §5 threshold unit on integers ``v`` ``[..., C]``, written out independently."""
    t, neg = layer.thresholds, layer.negate
    return np.where(neg, v <= t, v >= t).astype(np.uint8)


def _check_folding(net, name, gamma, beta, mean, var, eps):
    layer = net.info(name).layer
    assert isinstance(layer, Threshold)
    lo, hi = _value_range(net, name)
    v = np.arange(lo, hi + 1)[:, None]
    ref = bn_sign_reference(v, gamma, beta, mean, var, eps)
    np.testing.assert_array_equal(_folded_bits(layer, v), ref, err_msg=name)
    return lo, hi


def test_committed_folding_matches_float_bn(committed, report):
    ranges = {}
    for name, bn in report["batchnorm"].items():
        ranges[name] = _check_folding(committed, name, bn["gamma"], bn["beta"], bn["mean"],
                                      bn["var"], bn["eps"])
        assert tuple(bn["range"]) == ranges[name]
    # thr0 sees conv0's full range (9 codes of at most 128); the others see the 8-bit clip.
    assert ranges == {"thr0": (-1152, 1152), "thr1": (-127, 127), "thr2": (-127, 127)}


def test_folding_check_detects_one_wrong_threshold(committed, report):
    # The folding check above must be able to fail: move one threshold by one step.
    bn = report["batchnorm"]["thr2"]
    layer = committed.info("thr2").layer
    lo, hi = _value_range(committed, "thr2")
    c = int(np.argmax((layer.thresholds > lo) & (layer.thresholds <= hi)))
    t = layer.thresholds.copy()
    t[c] += 1
    broken = Threshold("thr2", t, layer.negate)
    v = np.arange(lo, hi + 1)[:, None]
    ref = bn_sign_reference(v, bn["gamma"], bn["beta"], bn["mean"], bn["var"], bn["eps"])
    assert not np.array_equal(_folded_bits(broken, v), ref)


def test_committed_round_trip(committed, split, tmp_path):
    _, _, x_test, _ = split
    path = tmp_path / "copy.npz"
    save_model(committed, path)
    again = bnnhw.load_model(path)
    assert again.fingerprint() == committed.fingerprint()
    assert [l.kind for l in again.layers] == [l.kind for l in committed.layers]
    for a, b in zip(committed.layers, again.layers):
        assert a.params() == b.params()
        for key, array in a.arrays().items():
            np.testing.assert_array_equal(array, b.arrays()[key], err_msg=f"{a.name}.{key}")
    np.testing.assert_array_equal(golden.forward(again, x_test), golden.forward(committed, x_test))
    assert path.read_bytes() == EXAMPLE_MODEL.read_bytes()


# -- training and export ----------------------------------------------------------------------

def test_export_matches_float_network_layer_by_layer(short_run, split):
    model, net = short_run
    _, _, x_test, _ = split
    scores, trace = golden.forward(net, x_test, trace=True)
    _, float_trace = model.forward(net.quantizer(x_test), train=False)
    for name, value in float_trace.items():
        assert np.all(value == np.round(value)), name
        np.testing.assert_array_equal(trace[name], value.astype(np.int64), err_msg=name)
    # Popcount scores: P = (y + K) / 2 of the last layer.
    np.testing.assert_array_equal(scores, (float_trace["fc3"].astype(np.int64) + 64) // 2)


def test_export_folding_matches_float_bn(short_run):
    model, net = short_run
    for name, bn in model.bn.items():
        _check_folding(net, name, bn.gamma, bn.beta, bn.mean, bn.var, bn.eps)


def test_training_is_reproducible(tmp_path):
    a, report_a = train_digits(seed=7, epochs=1, out=tmp_path / "a.npz")
    b, report_b = train_digits(seed=7, epochs=1, out=tmp_path / "b.npz")
    c, _ = train_digits(seed=8, epochs=1, out=tmp_path / "c.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "a.npz").read_bytes() != (tmp_path / "c.npz").read_bytes()
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert report_a["accuracy"] == report_b["accuracy"]
    written = json.loads((tmp_path / "a.json").read_text())
    assert written["accuracy"] == report_a["accuracy"] and written["seed"] == 7
    assert written["settings"]["epochs"] == 1


def test_train_digits_rejects_bad_arguments():
    with pytest.raises(InputError, match=r"^training epochs must be a positive integer, not 0$"):
        train_digits(epochs=0)
    with pytest.raises(InputError, match=r"^training seed must be a non-negative integer, "
                                         r"not -1$"):
        train_digits(seed=-1)


def test_train_digits_rejects_bad_output_before_training(tmp_path):
    with pytest.raises(InputError, match=r"must not end in \.json: the report is written next"):
        train_digits(out=tmp_path / "m.json")
    with pytest.raises(InputError, match=r"^model output '.*' is a directory$"):
        train_digits(out=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_train_example(tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(["train-example", "--epochs", "1", "--seed", "3", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    net = load_model(out)
    written = json.loads(out.with_suffix(".json").read_text())
    assert net.fingerprint() == written["fingerprint"]
    assert f"{100 * written['accuracy']['golden_test']:.2f} % golden" in printed


def test_cli_train_example_bad_epochs(tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(["train-example", "--epochs", "0", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == "bnnhw: error: training epochs must be a positive integer, not 0\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_default_training_reproduces_committed_model(tmp_path):
    """Retrain with the committed settings: the committed file again, byte for byte.

    Holds on the machine and NumPy/BLAS build that made the file (the report records the
    versions). Another CPU or BLAS may round one float differently during training and end
    with a different, equally valid model: a failure here then says "not reproducible on this
    platform", not "wrong"; the fast tests above check the committed file itself.
    """
    report = json.loads(EXAMPLE_REPORT.read_text())
    net, fresh = train_digits(seed=report["seed"], epochs=report["settings"]["epochs"],
                              out=tmp_path / "m.npz")
    assert fresh["settings"] == report["settings"]
    assert (tmp_path / "m.npz").read_bytes() == EXAMPLE_MODEL.read_bytes()
    assert fresh["accuracy"] == report["accuracy"]
    assert fresh["train_seconds"] < 300
