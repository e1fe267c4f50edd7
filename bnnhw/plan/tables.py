"""Per-channel constants in the domains where hardware and firmware compare (SPEC §4, §5, §8).

The hardware compares in the **accumulator domain**: the value ``a`` that the matrix-vector
unit accumulates is the (saturated) popcount ``P`` of a binary layer, or the signed sum
``y = sum(w*q)`` of a multi-bit first layer (SPEC §6). The thresholded value ``v`` is a
non-decreasing function of ``a`` (``y = 2P - K``, then an optional clip), so every threshold
``v >= T`` (or ``v <= T`` for a negated channel) is a step in ``a``:

* ``neg = 0``: output ``a >= C`` with ``C = min{a : v(a) >= T}`` (``= ceil((T + K) / 2)`` for a
  binary layer without clip, SPEC §5);
* ``neg = 1``: output ``NOT (a >= C)`` with ``C = max{a : v(a) <= T} + 1``.

:func:`threshold_table` finds ``C`` by evaluating ``v`` on the whole range of ``a`` (exact for
ties, saturation, clipping and thresholds outside the range) and clamps it to
``[a_lo, a_hi + 1]``, so a threshold that always or never fires needs no extra bits.

The firmware compares in the **value domain** (``y`` itself) with a clipping block folded into
its thresholds: :func:`value_thresholds`.

The golden model (:mod:`bnnhw.golden`) derives its own fused thresholds on purpose: it is the
reference these tables are checked against, so it shares no arithmetic with them.
"""

from dataclasses import dataclass

import numpy as np

from ..model.layers import MultibitConv2d, signed_bits

__all__ = ["IntShape", "shape_for", "accumulator_range", "value_of", "threshold_table",
           "score_table", "value_thresholds"]


@dataclass(frozen=True)
class IntShape:
    """An integer signal shape without Amaranth: ``width`` bits, two's complement if ``signed``."""
    width: int
    signed: bool = False


def shape_for(lo, hi):
    """The narrowest shape holding every integer in ``[lo, hi]`` (unsigned when ``lo >= 0``)."""
    lo, hi = int(lo), int(hi)
    if lo >= 0:
        return IntShape(max(1, hi.bit_length()), False)
    return IntShape(signed_bits(lo, hi), True)


def accumulator_range(layer, acc_bits=None):
    """``(lo, hi)`` of the accumulated value ``a`` of ``layer``.

    Binary layers: ``[0, min(K, 2^A - 1)]`` with ``A`` = ``acc_bits`` or the layer's
    accumulator width; multi-bit layers: the exact signed range of ``y``.
    """
    if isinstance(layer, MultibitConv2d):
        return layer.output_range
    a = layer.accumulator_bits if acc_bits is None else int(acc_bits)
    return 0, min(layer.fan_in, (1 << a) - 1)


def value_of(layer, a, clip=None):
    """The pre-activation (``y``, or ``z`` after ``clip``) for accumulated values ``a``."""
    a = np.asarray(a, dtype=np.int64)
    y = a if isinstance(layer, MultibitConv2d) else 2 * a - layer.fan_in
    if clip is not None:
        y = np.clip(y, -clip.limit, clip.limit)
    return y


def threshold_table(layer, threshold, clip=None, acc_bits=None):
    """Per output channel ``(C, neg)``: the threshold in the accumulator domain.

    Returns
    -------
    compare : numpy.ndarray of int64
        Output bit = ``(a >= compare[o]) XOR neg[o]``; values in ``[a_lo, a_hi + 1]``.
    neg : numpy.ndarray of bool
    """
    lo, hi = accumulator_range(layer, acc_bits)
    a = np.arange(lo, hi + 1, dtype=np.int64)
    v = value_of(layer, a, clip)[None, :]
    t = threshold.thresholds[:, None]
    neg = threshold.negate.astype(bool)
    fires = np.where(neg[:, None], v <= t, v >= t)
    count = fires.sum(axis=1)
    # v is non-decreasing in a: ">=" fires on a suffix, "<=" on a prefix of the range.
    compare = np.where(neg, lo + count, hi + 1 - count).astype(np.int64)
    return compare, neg


def score_table(layer, rule, threshold=None, clip=None, acc_bits=None):
    """Score constants of the last layer (SPEC §8) and the exact score range.

    Returns
    -------
    bias : numpy.ndarray of int64
        Per class ``T`` for ``rule == "margin"`` (zeros otherwise).
    neg : numpy.ndarray of bool
        Per class: the margin is ``T - v`` instead of ``v - T``.
    score_range : (int, int)
        Smallest and largest score over every class and every reachable ``a``.
    """
    lo, hi = accumulator_range(layer, acc_bits)
    a = np.arange(lo, hi + 1, dtype=np.int64)
    n = layer.out_channels
    if rule == "popcount":
        if isinstance(layer, MultibitConv2d):
            raise ValueError("rule 'popcount' needs a binary layer")
        scores = np.broadcast_to(a, (n, a.size))
        bias, neg = np.zeros(n, np.int64), np.zeros(n, bool)
    elif rule in ("clipped", "value"):
        scores = np.broadcast_to(value_of(layer, a, clip), (n, a.size))
        bias, neg = np.zeros(n, np.int64), np.zeros(n, bool)
    elif rule == "margin":
        if threshold is None:
            raise ValueError("rule 'margin' needs a threshold")
        v = value_of(layer, a, clip)[None, :]
        bias = threshold.thresholds.astype(np.int64)
        neg = threshold.negate.astype(bool)
        scores = np.where(neg[:, None], bias[:, None] - v, v - bias[:, None])
    else:
        raise ValueError(f"score rule must be 'popcount', 'margin', 'clipped' or 'value', "
                         f"not {rule!r}")
    return bias, neg, (int(scores.min()), int(scores.max()))


def value_thresholds(threshold, clip_limit, bound):
    """Thresholds on ``y`` (``|y| <= bound``) that decide like ``threshold`` on ``z``.

    ``z = clip(y, -L, L)`` with ``L = clip_limit`` (``None``: no clipping block). A threshold
    outside the clip range fires always or never (SPEC §4-5): it becomes one just outside
    ``[-bound, bound]``. Every result lies in ``[-bound - 1, bound + 1]`` (it fits ``int32``
    for the firmware). Returns ``(T, neg)`` as int64 and bool arrays.
    """
    t = np.asarray(threshold.thresholds, np.int64).copy()
    neg = np.asarray(threshold.negate, bool)
    if clip_limit is not None:
        limit = clip_limit
        always_pos, never_pos = t <= -limit, t > limit
        always_neg, never_neg = t >= limit, t < -limit
        t[~neg & always_pos] = -bound - 1
        t[~neg & never_pos] = bound + 1
        t[neg & always_neg] = bound + 1
        t[neg & never_neg] = -bound - 1
    return np.clip(t, -bound - 1, bound + 1), neg
