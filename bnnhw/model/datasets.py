"""Data loaders: raw input arrays, labels, IDX files (MNIST) and the example's digits split.

Every loader treats its file as untrusted input: errors are one-line
:class:`~bnnhw.errors.InputError` messages that name the file and what is wrong. Pure NumPy
(scikit-learn only for the digits, imported when asked for).
"""

from pathlib import Path

import numpy as np

from ..errors import InputError, ToolError
from .safeio import read_idx as _read_idx
from .safeio import read_npy

__all__ = ["load_array", "load_labels", "check_labels", "read_idx", "load_mnist",
           "digits_bytes", "digits_split", "DIGITS_SPLIT"]

#: The example model's train / held-out split of scikit-learn's digits.
DIGITS_SPLIT = {"split_seed": 0, "test_fraction": 0.25}


def load_array(path, what="input file"):
    """Read a ``.npy`` file holding one array (e.g. uint8 raw inputs), with one-line errors.

    The header is checked against the file and ``BNNHW_MAX_ARRAY_BYTES`` before anything is
    allocated (:func:`bnnhw.model.safeio.read_npy`); object arrays are never read.
    """
    x = read_npy(path, what, error=InputError)
    if x.dtype.kind == "U":
        raise InputError(f"{what} {str(path)!r} holds text ({x.dtype}), not numbers")
    return x


def load_labels(path):
    """Read a labels ``.npy`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` holding one integer class index per input, ``[N]``.

    Returns
    -------
    numpy.ndarray of int64, ``[N]``

    Raises
    ------
    bnnhw.errors.InputError
        Missing or unreadable file, not a vector, not integers; the message names the file.
    """
    labels = load_array(path)
    where = f"labels file {str(path)!r}"
    if labels.ndim != 1:
        raise InputError(f"{where} must hold a vector [N], not shape {list(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise InputError(f"{where} must hold integer class indices, not {labels.dtype}")
    return labels.astype(np.int64)


def check_labels(net, labels, n, source):
    """Refuse labels that do not fit ``net`` or the ``n`` inputs they go with.

    Parameters
    ----------
    net : bnnhw.model.Network
    labels : numpy.ndarray of int, ``[N]``
    n : int
        Number of inputs the labels go with.
    source : str
        Where the labels come from, for the message (e.g. ``"labels file 'y.npy'"``).

    Raises
    ------
    bnnhw.errors.InputError
        A count mismatch, or the first label outside ``0 .. net.num_classes - 1`` (value and
        index).
    """
    if labels.shape[0] != n:
        raise InputError(f"{source}: {n} inputs but {labels.shape[0]} labels")
    bad = (labels < 0) | (labels >= net.num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{source}: label {int(labels[i])} at index {i} is not a class of "
                         f"model {net.name!r} (0..{net.num_classes - 1})")


def read_idx(path):
    """Read an IDX file (optionally gzipped): big-endian header first, checked against the
    size limit, then exactly the data it declares (:func:`bnnhw.model.safeio.read_idx`)."""
    return _read_idx(path, "IDX file", error=InputError)


def load_mnist(directory, split="t10k"):
    """MNIST images ``[N, 28, 28]`` and labels ``[N]`` from an IDX folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"MNIST folder {str(directory)!r} does not exist")

    def find(kind):
        for name in (f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz",
                     f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"):
            if (directory / name).exists():
                return directory / name
        raise InputError(f"MNIST folder {str(directory)!r} has no {split}-{kind} IDX file")
    images, labels = read_idx(find("images")), read_idx(find("labels"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise InputError(f"MNIST folder {str(directory)!r}: images {list(images.shape)} and "
                         f"labels {list(labels.shape)} do not match")
    return images, labels


def digits_bytes():
    """scikit-learn's 8x8 digits as raw bytes ``[1797, 1, 8, 8]`` uint8 and labels ``[1797]``.

    The digits' pixel values ``v`` (0..16) are scaled to bytes ``p = round(v * 255 / 16)``
    (half up, in exact integer arithmetic), so that the network's input quantizer sees the
    same kind of raw bytes as the other bnnhw models. The data ship inside scikit-learn: no
    download.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ToolError("training the example needs scikit-learn "
                        "(pip install 'bnnhw[train]')") from None
    digits = load_digits()
    v = np.asarray(digits.images).astype(np.int64)
    if v.min() < 0 or v.max() > 16 or not np.all(v == digits.images):
        raise ToolError("scikit-learn's digits are not integers in 0..16 as expected")
    raw = ((v * 255 + 8) // 16).astype(np.uint8)[:, None, :, :]
    return raw, np.asarray(digits.target).astype(np.int64)


def digits_split(split_seed=DIGITS_SPLIT["split_seed"],
                 test_fraction=DIGITS_SPLIT["test_fraction"]):
    """The fixed train / held-out split of :func:`digits_bytes`.

    Returns
    -------
    x_train, y_train, x_test, y_test : numpy.ndarray
        Raw bytes ``[N, 1, 8, 8]`` uint8 and labels; the held-out part is
        ``round(test_fraction * 1797)`` images chosen by a permutation seeded with
        ``split_seed``.
    """
    raw, labels = digits_bytes()
    order = np.random.default_rng(split_seed).permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])
    return raw[train], labels[train], raw[test], labels[test]


