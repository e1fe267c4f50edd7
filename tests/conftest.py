"""Session fixtures shared by all tests: the real BNN-PYNQ networks and MNIST."""

import pytest

from testdata import MNIST, shared_file


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
