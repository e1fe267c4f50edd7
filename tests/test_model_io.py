"""Model files: round trips, BNN-PYNQ import, BN parameters in files, and every error case."""

import json

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from bnnhw.errors import ModelError
from bnnhw.model import (BinaryConv2d, BinaryDense, Clip, MaxPool, MultibitConv2d, Network,
                         Output, Threshold, ThresholdQuantizer, FixedPointQuantizer,
                         load_model, save_model, bn_sign_reference)
from support.data import BNN_PYNQ, shared_file

ALL_SHARED = ["cnvW1A1_cifar10", "cnvW1A1_streetview", "cnvW1A1_road_signs", "lfcW1A1_mnist",
              "lfcW1A1_chars_merged"]


def small_net(rng):
    return Network("small", (2, 6, 6), FixedPointQuantizer(8), (
        MultibitConv2d("c0", rng.choice([-1, 1], (4, 2, 3, 3)), pad=1, pad_value=-3),
        Threshold("t0", rng.integers(-50, 50, 4), [0, 1, 0, 1]),
        BinaryConv2d("c1", rng.choice([-1, 1], (4, 4, 3, 3)), stride=2, pad=1, pad_value=-1,
                     acc_bits=9),
        Clip("k1", 4),
        Threshold("t1", rng.integers(-5, 5, 4)),
        MaxPool("p1", 3, 1),
        BinaryDense("f2", rng.choice([-1, 1], (3, 4)), acc_bits=2, overflow="saturate"),
        Output("out")), classes=("a", "b", "c"), meta={"note": "test"})


def test_round_trip_own_format(tmp_path):
    net = small_net(np.random.default_rng(0))
    save_model(net, tmp_path / "m.npz")
    back = load_model(tmp_path / "m.npz")
    assert back.fingerprint() == net.fingerprint()
    assert back.classes == ("a", "b", "c") and back.meta == {"note": "test"}
    x = np.random.default_rng(1).integers(0, 256, (4, 2, 6, 6), dtype=np.uint8)
    assert np.array_equal(golden.forward(back, x), golden.forward(net, x))
    # Saving again gives the same bytes (reproducible artefacts).
    save_model(back, tmp_path / "m2.npz")
    assert (tmp_path / "m.npz").read_bytes() == (tmp_path / "m2.npz").read_bytes()


@pytest.mark.parametrize("name", ALL_SHARED)
def test_bnn_pynq_files_load_and_convert(name, tmp_path):
    net = load_model(shared_file("bnn-pynq", f"{name}.npz"))
    assert net.meta["folding"]
    save_model(net, tmp_path / "own.npz")
    back = load_model(tmp_path / "own.npz")
    assert back.fingerprint() == net.fingerprint()


def write_model(path, header, arrays):
    np.savez(path, __bnnhw__=np.array(json.dumps(header)), **arrays)


def bn_model(tmp_path, *, var=(1.0, 4.0), gamma=(1.0, -2.0), clip=False):
    header = {"format": "bnnhw-model", "version": 1, "name": "bn", "input_shape": [1, 1, 6],
              "quantizer": {"kind": "threshold", "threshold": 128}, "classes": [], "meta": {},
              "layers": [
                  {"kind": "binary_dense", "name": "fc", "params": {},
                   "arrays": {"weight": "w"}}] + (
                  [{"kind": "clip", "name": "clip", "params": {"bits": 3}, "arrays": {}}]
                  if clip else []) + [
                  {"kind": "batchnorm_sign", "name": "bn", "params": {"eps": 1e-5},
                   "arrays": {"gamma": "g", "beta": "b", "mean": "m", "var": "v"}},
                  {"kind": "binary_dense", "name": "fc2", "params": {},
                   "arrays": {"weight": "w2"}},
                  {"kind": "output", "name": "out", "params": {}, "arrays": {}}]}
    arrays = {"w": np.array([[1, -1, 1, 1, -1, 1], [1, 1, 1, -1, -1, -1]], np.int8),
              "g": np.array(gamma), "b": np.array([0.5, -1.0]), "m": np.array([0.3, 1.0]),
              "v": np.array(var), "w2": np.array([[1, -1], [1, 1]], np.int8)}
    path = tmp_path / "bn.npz"
    write_model(path, header, arrays)
    return path


@pytest.mark.parametrize("clip", [False, True])
def test_batchnorm_layers_are_folded_on_load(tmp_path, clip):
    net = load_model(bn_model(tmp_path, clip=clip))
    thr = net.layers[2 if clip else 1]
    assert isinstance(thr, Threshold) and thr.negate.tolist() == [False, True]
    lo, hi = (-3, 3) if clip else (-6, 6)
    v = np.arange(lo, hi + 1)[:, None]
    expected = bn_sign_reference(v, np.array([1.0, -2.0]), np.array([0.5, -1.0]),
                                 np.array([0.3, 1.0]), np.array([1.0, 4.0]), 1e-5)
    got = np.where(thr.negate, v <= thr.thresholds, v >= thr.thresholds)
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("var,gamma,message", [
    ((1.0, -4.0), (1.0, 1.0), r"layer 'bn': batch-norm var\[1\] must be non-negative, not -4.0"),
    ((1.0, 1.0), (np.nan, 1.0), r"layer 'bn': batch-norm gamma\[0\] must be finite, not nan"),
])
def test_bad_batchnorm_in_file(tmp_path, var, gamma, message):
    with pytest.raises(ModelError, match=message):
        load_model(bn_model(tmp_path, var=var, gamma=gamma))


def test_weights_not_pm1(tmp_path):
    with pytest.raises(ModelError, match=r"layer 'fc': weight values must be \+1 or -1, "
                                         r"not 0 at index \(1, 2\)"):
        BinaryDense("fc", np.array([[1, 1, 1], [1, -1, 0]]))


def test_layer_validation_messages():
    w = np.ones((2, 2, 3, 3), np.int8)
    with pytest.raises(ModelError, match="layer 'c': pad_value must be \\+1 or -1, not 0"):
        BinaryConv2d("c", w, pad_value=0)
    with pytest.raises(ModelError, match="layer 'c': stride must be at least 1, not 0"):
        BinaryConv2d("c", w, stride=0)
    with pytest.raises(ModelError, match="accumulator width must be at least 5 for K=18, not 4"):
        BinaryConv2d("c", w, acc_bits=4)
    with pytest.raises(ModelError, match="weight expects 2 input channels, not 3"):
        Network("n", (3, 5, 5), ThresholdQuantizer(), (BinaryConv2d("c", w), Output()))
    with pytest.raises(ModelError, match="the last layer must be an output layer"):
        Network("n", (1, 1, 4), ThresholdQuantizer(), (BinaryDense("f", np.ones((2, 4))),))
    with pytest.raises(ModelError, match=r"layer 'f2' \(binary_dense\) needs bits input, "
                                         r"but the layer before it gives int"):
        Network("n", (1, 1, 4), ThresholdQuantizer(), (
            BinaryDense("f", np.ones((2, 4))), BinaryDense("f2", np.ones((2, 2))), Output()))


def _header_of(path):
    data = dict(np.load(path))
    return json.loads(str(data["__bnnhw__"])), data


@pytest.mark.parametrize("mutate,message", [
    (lambda h, a: h["layers"][0].update(kind="conv3d"),
     r"layer 'fc': unknown layer kind 'conv3d'"),
    (lambda h, a: h.update(version=99), r"model format version 99 is not supported"),
    (lambda h, a: h.update(format="other"), r"header format must be 'bnnhw-model'"),
    (lambda h, a: a.pop("w"), r"layer 'fc': array 'weight' \(entry 'w'\) is missing"),
    (lambda h, a: a.update(w=np.full((2, 6), 2, np.int8)),
     r"layer 'fc': weight values must be \+1 or -1, not 2 at index \(0, 0\)"),
    (lambda h, a: h["quantizer"].update(kind="log"), r"unknown input quantizer kind 'log'"),
])
def test_malformed_files(tmp_path, mutate, message):
    header, arrays = _header_of(bn_model(tmp_path))
    arrays.pop("__bnnhw__")
    mutate(header, arrays)
    write_model(tmp_path / "bad.npz", header, arrays)
    with pytest.raises(ModelError, match=message):
        load_model(tmp_path / "bad.npz")


def test_truncated_and_missing_files(tmp_path):
    good = shared_file("bnn-pynq", "lfcW1A1_mnist.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelError, match="is not a readable .npz archive"):
        load_model(tmp_path / "cut.npz")
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nothing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ModelError, match="neither a bnnhw model"):
        load_model(tmp_path / "other.npz")
