"""What the commands share: model and array loading, atomic score files, short previews."""

import numpy as np

from ..model.datasets import load_array

__all__ = ["load_net", "load_input", "save_scores", "preview"]


def load_net(path):
    """Load a model file (any format :func:`bnnhw.load_model` reads)."""
    from ..model import load_model
    return load_model(path)


def load_input(path):
    """Raw input array of a command (``.npy``)."""
    return load_array(path)


def save_scores(path, scores):
    """Write scores to ``path`` (.npy) atomically."""
    from ..model.io import atomic_write

    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, scores)
    atomic_write(path, write)


def preview(values, n=10):
    """The first ``n`` integers of ``values`` as a short string (``... `` when cut)."""
    values = list(map(int, values))
    return " ".join(map(str, values[:n])) + (" ..." if len(values) > n else "")
