"""Shared helpers of the simulation tests: data paths, MNIST, small random networks."""

import gzip
import os
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = REPO / ".." / "shared" / "data"
sys.path.insert(0, str(HERE))


def load_mnist_images(count):
    """The first ``count`` MNIST test images (uint8 [N, 28, 28]) from the IDX file."""
    path = DATA / "mnist" / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in range(0, 16, 4))
    assert magic == 2051 and (rows, cols) == (28, 28)
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows, cols)[:count].copy()


def random_dense_network(rng, sizes, *, name="rand_dense", input_hw=(4, 4), margin=True):
    """A random binary MLP: threshold-quantized input, dense layers with random thresholds.

    ``sizes`` are the output widths; the last layer is thresholded (scores = margins) when
    ``margin``, else its popcounts are the scores.
    """
    from bnnhw.model.layers import BinaryDense, Output, Threshold, ThresholdQuantizer
    from bnnhw.model.network import Network
    layers = []
    fan_in = input_hw[0] * input_hw[1]
    for i, out in enumerate(sizes):
        w = rng.choice(np.array([-1, 1], np.int8), size=(out, fan_in))
        layers.append(BinaryDense(f"fc{i}", w))
        last = i == len(sizes) - 1
        if not last or margin:
            t = rng.integers(-fan_in // 2, fan_in // 2 + 1, size=out)
            neg = rng.integers(0, 2, size=out).astype(bool)
            layers.append(Threshold(f"thr{i}", t, neg))
        fan_in = out
    layers.append(Output("output"))
    return Network(name=name, input_shape=(1, *input_hw), quantizer=ThresholdQuantizer(128),
                   layers=tuple(layers))


def random_conv_network(rng, *, name="rand_cnv", hw=6, channels=(3, 4, 8), classes=3):
    """A random small CNV-like network: 8-bit fixed-point input conv, binary conv + pool,
    dense classifier with popcount scores."""
    from bnnhw.model.layers import (BinaryConv2d, BinaryDense, FixedPointQuantizer, MaxPool,
                                    MultibitConv2d, Output, Threshold)
    from bnnhw.model.network import Network
    c0, c1, c2 = channels
    pm1 = np.array([-1, 1], np.int8)
    w0 = rng.choice(pm1, size=(c1, c0, 3, 3))
    w1 = rng.choice(pm1, size=(c2, c1, 3, 3))
    h1 = hw - 2
    h2 = (h1 - 2) // 2
    w2 = rng.choice(pm1, size=(classes, c2 * h2 * h2))
    layers = (
        MultibitConv2d("conv0", w0, input_bits=8),
        Threshold("thr0", rng.integers(-200, 200, size=c1), rng.integers(0, 2, size=c1)),
        BinaryConv2d("conv1", w1),
        Threshold("thr1", rng.integers(-6, 7, size=c2), rng.integers(0, 2, size=c2)),
        MaxPool("pool1", 2),
        BinaryDense("fc2", w2),
        Output("output"),
    )
    return Network(name=name, input_shape=(c0, hw, hw), quantizer=FixedPointQuantizer(8),
                   layers=layers)


@pytest.fixture(scope="session")
def data_dir():
    if not (DATA / "bnn-pynq").is_dir():
        pytest.fail(f"shared data folder {DATA} is missing")
    return DATA


@pytest.fixture(scope="session")
def sim_cache(tmp_path_factory):
    """One folder per test session for generated cores and simulator builds."""
    return tmp_path_factory.mktemp("simcache")
