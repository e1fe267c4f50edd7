"""bnnhw's own example network: a small BNN trained on scikit-learn's 8x8 digits.

The committed model :data:`EXAMPLE_MODEL` (``digits_bnn.npz``, bnnhw's model format) and its
report :data:`EXAMPLE_REPORT` (``digits_bnn.json``: settings and the held-out accuracy measured
with the golden model) are reproduced by ``bnnhw train-example`` or :func:`train_digits`.
"""

from ..model.datasets import digits_bytes, digits_split
from .train_digits import (DEFAULTS, EXAMPLE_MODEL, EXAMPLE_REPORT,
                           train_digits)

__all__ = ["train_digits", "digits_bytes", "digits_split", "DEFAULTS", "EXAMPLE_MODEL",
           "EXAMPLE_REPORT"]
