"""Shared test fixtures: where the shared real data lives, and an independent slow reference."""

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.fixture(scope="session")
def cnv():
    import bnnhw
    return bnnhw.load_model(shared_file("bnn-pynq", "cnvW1A1_cifar10.npz"))


@pytest.fixture(scope="session")
def lfc():
    import bnnhw
    return bnnhw.load_model(shared_file("bnn-pynq", "lfcW1A1_mnist.npz"))


@pytest.fixture(scope="session")
def mnist():
    from bnnhw.cli import load_mnist
    shared_file("mnist", "t10k-images-idx3-ubyte.gz")
    return load_mnist(MNIST)
