"""Where the shared real data lives (../shared/data), and the MNIST test set, for every test.

A module with a unique name: several test folders have a conftest.py of their own, so tests
import these helpers from here, never `from conftest import`.
"""

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
BNN_PYNQ = SHARED_DATA / "bnn-pynq"
MNIST = SHARED_DATA / "mnist"


def shared_file(*parts):
    """A file under ../shared/data; fails (never skips) when it is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"shared data file {path} is missing: tests need ../shared/data beside "
                    f"the repository")
    return path




def mnist_images(count=None):
    """MNIST test images ``[N, 28, 28]`` uint8 (the first ``count``), by bnnhw's IDX reader."""
    return mnist(count)[0]


def mnist(count=None):
    """MNIST test images and labels (the first ``count``), read by
    :func:`bnnhw.model.datasets.load_mnist` (the one MNIST reader)."""
    from bnnhw.model.datasets import load_mnist
    shared_file("mnist", "t10k-images-idx3-ubyte.gz")
    images, labels = load_mnist(MNIST)
    if count is not None:
        images, labels = images[:count], labels[:count]
    return images.copy(), labels.astype(np.int64)
