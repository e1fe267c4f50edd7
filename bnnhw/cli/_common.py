"""What the commands share: model and array loading, atomic score files, short previews,
argument types."""

import argparse
import math

import numpy as np

from ..model.datasets import load_array
from ..outputs import check_output_file

__all__ = ["load_net", "load_input", "save_scores", "preview", "positive_number",
           "check_output_file"]


#: The largest value of a rate or clock argument (images/s, MHz): far above any hardware,
#: far below where products with it overflow a float.
MAX_NUMBER = 1e12


def positive_number(text):
    """argparse type: a finite number in ``(0, 1e12]`` (``0``, ``-100``, ``nan``, ``inf``,
    ``1e308`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    if value > MAX_NUMBER:
        raise argparse.ArgumentTypeError(f"must be a positive number of at most "
                                         f"{MAX_NUMBER:g}, not {text!r}")
    return value


def load_net(path):
    """Load a model file (any format :func:`bnnhw.load_model` reads)."""
    from ..model import load_model
    return load_model(path)


def load_input(path):
    """Raw input array of a command (``.npy``)."""
    return load_array(path)


def save_scores(path, scores):
    """Write scores to ``path`` (.npy) atomically."""
    from ..outputs import atomic_write

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, scores)
    atomic_write(path, write)


def preview(values, n=10):
    """The first ``n`` integers of ``values`` as a short string (``... `` when cut)."""
    values = list(map(int, values))
    return " ".join(map(str, values[:n])) + (" ..." if len(values) > n else "")
