"""Size limits on untrusted input, checked from headers before anything is allocated.

Model files, input arrays and IDX files come from other people. Every size that such a file
*declares* (an ``.npy`` header's shape, a zip member's uncompressed size, an IDX header's
dimensions, a model's input shape, a folding's PE) is compared with a documented maximum
before any memory is allocated or any byte is inflated, so that a 640-byte file cannot ask for
a terabyte. Each maximum can be raised (or lowered) with an environment variable:

=============================  ============  ================================================
variable                       default       what it bounds
=============================  ============  ================================================
``BNNHW_MAX_ARRAY_BYTES``      1 GiB         one array read from a file (an ``.npy`` input,
                                             a model member, an IDX payload)
``BNNHW_MAX_MODEL_BYTES``      256 MiB       a model archive's members together, uncompressed
``BNNHW_MAX_IMAGE_ELEMENTS``   16 Mi (2^24)  values of one image, and of any layer's
                                             activations for one image
``BNNHW_MAX_LAYERS``           4096          layers of a model
``BNNHW_MAX_HW_LANES``         1 Mi (2^20)   XNOR / multiply lanes of a generated core
                                             (PE x SIMD x input bits, summed over its layers)
=============================  ============  ================================================

The largest shipped networks use a small fraction of each (CNV: 1.5 Mbit of weights, a
3x32x32 image, 6 k lanes at FINN's folding).
"""

import os

from .errors import InputError

__all__ = ["LIMITS", "limit", "check_size", "check_count"]

#: ``{name: (environment variable, default, unit)}``.
LIMITS = {
    "array_bytes": ("BNNHW_MAX_ARRAY_BYTES", 1 << 30, "bytes"),
    "model_bytes": ("BNNHW_MAX_MODEL_BYTES", 256 << 20, "bytes"),
    "image_elements": ("BNNHW_MAX_IMAGE_ELEMENTS", 1 << 24, "values"),
    "layers": ("BNNHW_MAX_LAYERS", 4096, "layers"),
    "hw_lanes": ("BNNHW_MAX_HW_LANES", 1 << 20, "lanes"),
}


def limit(name):
    """The current maximum ``name`` (a key of :data:`LIMITS`), from its variable or default.

    Raises
    ------
    bnnhw.errors.InputError
        The environment variable is set but is not a positive integer.
    """
    variable, default, unit = LIMITS[name]
    text = os.environ.get(variable)
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text.strip().replace("_", ""), 0)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"${variable} must be a positive integer ({unit}), not {text!r}")
    return value


def check_count(name, amount, what, error=InputError):
    """Refuse a count (``"layers"``) above the maximum: ``"<what> has N layers, more than the
    maximum M (set $VARIABLE ...)"``."""
    top = limit(name)
    if amount > top:
        variable, _, unit = LIMITS[name]
        raise error(f"{what} has {amount:,} {unit}, more than the maximum {top:,} "
                    f"(set ${variable} to allow more)")
    return amount


def check_size(name, amount, what, error=InputError):
    """Refuse ``amount`` (a Python int: never wraps) above the maximum ``name``.

    ``what`` says what is that large, e.g. ``"input file 'x.npy': array of shape [...]"``;
    the message names the limit and the variable that raises it.
    """
    top = limit(name)
    if amount > top:
        variable, _, unit = LIMITS[name]
        raise error(f"{what} needs {amount:,} {unit}, more than the maximum {top:,} "
                    f"(set ${variable} to allow more)")
    return amount
