"""The one parameter validator of bnnhw's plans and components, in Amaranth's message form.

``check_int("SIMD", 0, 1)`` raises ``ValueError("SIMD must be at least 1, not 0")``; a
non-integer raises ``TypeError("SIMD must be an integer, not 'x'")``. Booleans are not
integers here. Components validate their keyword-only parameters with these before
``super().__init__``, usually by building their plan (:mod:`bnnhw.plan.stages`).
"""

__all__ = ["check_int", "check_choice", "check_type"]


def check_int(name, value, minimum=None, maximum=None):
    """``value`` as an ``int``; ``TypeError`` / ``ValueError`` naming ``name`` otherwise."""
    import numpy as np
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, not {value}")
    return value


def check_choice(name, value, choices):
    """``value`` if it is one of ``choices``; ``ValueError`` listing them otherwise."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        if len(choices) == 2:
            listed = " or ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be {listed}, not {value!r}")
    return value


def check_type(name, value, types, what):
    """``value`` if it is an instance of ``types``; ``TypeError`` saying ``what`` otherwise."""
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {what}, not {value!r}")
    return value
