"""Session fixtures shared by all tests: the real BNN-PYNQ networks and MNIST; the build root.

Every build of the test session goes under one build root: ``$BNNHW_BUILD_ROOT`` if set, else
``<repo>/build/test-root`` (kept between local runs, so only changed builds are redone; the
build flow's keys make reuse safe).
"""

import os

import pytest

from support.data import MNIST, ROOT, shared_file

os.environ.setdefault("BNNHW_BUILD_ROOT", str(ROOT / "build" / "test-root"))


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
    from bnnhw.model.datasets import load_mnist
    shared_file("mnist", "t10k-images-idx3-ubyte.gz")
    return load_mnist(MNIST)
