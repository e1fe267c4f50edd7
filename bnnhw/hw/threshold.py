"""Threshold unit, clipping block and score unit (SPEC §4, §5, §8), and their constant tables.

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
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..model.layers import MultibitConv2d, signed_bits

__all__ = ["accumulator_range", "value_of", "threshold_table", "score_table", "shape_for",
           "ThresholdUnit", "ClipUnit", "ScoreUnit"]


def shape_for(lo, hi):
    """The narrowest shape holding every integer in ``[lo, hi]`` (unsigned when ``lo >= 0``)."""
    lo, hi = int(lo), int(hi)
    if lo >= 0:
        return unsigned(max(1, hi.bit_length()))
    return signed(signed_bits(lo, hi))


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


class ThresholdUnit(wiring.Component):
    """Per-lane threshold compare: ``o[l] = (value[l] >= compare[l]) XOR negate[l]``.

    Parameters
    ----------
    lanes : int
    value_shape : Shape
        Shape of the accumulated value ``a`` (popcount or signed sum).
    compare_shape : Shape
        Shape of the per-channel constant from :func:`threshold_table`.

    Members
    -------
    value : In(ArrayLayout(value_shape, lanes))
    compare : In(ArrayLayout(compare_shape, lanes))
    negate : In(lanes)
    o : Out(lanes)

    Combinational: latency 0, no handshake (it sits inside the MVTU pipeline).
    """

    def __init__(self, *, lanes, value_shape, compare_shape):
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise TypeError(f"Lane count must be a positive integer, not {lanes!r}")
        self.lanes = lanes
        super().__init__({
            "value": In(data.ArrayLayout(value_shape, lanes)),
            "compare": In(data.ArrayLayout(compare_shape, lanes)),
            "negate": In(lanes),
            "o": Out(lanes),
        })

    def elaborate(self, platform):
        m = Module()
        for lane in range(self.lanes):
            m.d.comb += self.o[lane].eq((self.value[lane] >= self.compare[lane])
                                        ^ self.negate[lane])
        return m


class ClipUnit(wiring.Component):
    """Clipping block (SPEC §4): ``o = clip(i, -(2^(b-1) - 1), 2^(b-1) - 1)``.

    Parameters
    ----------
    in_shape : Shape
        Signed input shape.
    bits : int
        Output width ``b`` (at least 2).

    Members
    -------
    i : In(in_shape)
    o : Out(signed(bits))

    Combinational: latency 0.
    """

    def __init__(self, *, in_shape, bits):
        if isinstance(bits, bool) or not isinstance(bits, int):
            raise TypeError(f"Clip width must be an integer, not {bits!r}")
        if bits < 2:
            raise ValueError(f"Clip width must be at least 2, not {bits}")
        self.bits = bits
        self.limit = (1 << (bits - 1)) - 1
        super().__init__({"i": In(in_shape), "o": Out(signed(bits))})

    def elaborate(self, platform):
        m = Module()
        lim = self.limit
        m.d.comb += self.o.eq(Mux(self.i > lim, lim, Mux(self.i < -lim, -lim, self.i)))
        return m


class ScoreUnit(wiring.Component):
    """Output scores of the last layer from accumulated values (SPEC §8).

    Per lane: ``v = a`` (rule ``popcount``); otherwise ``y = 2a - K`` for a binary layer
    (``a`` itself for a multi-bit one), clipped when ``clip_bits`` is given, and for rule
    ``margin`` the score is ``v - T`` (``T - v`` where ``neg``).

    Parameters
    ----------
    lanes : int
    value_shape : Shape
        Shape of ``a``.
    rule : str
        ``"popcount"``, ``"margin"``, ``"clipped"`` or ``"value"``.
    fan_in : int or None
        ``K`` of a binary layer; ``None`` for a multi-bit layer.
    clip_bits : int or None
    bias_shape : Shape
        Shape of ``T``.
    score_shape : Shape

    Members
    -------
    value : In(ArrayLayout(value_shape, lanes))
    bias : In(ArrayLayout(bias_shape, lanes))
    negate : In(lanes)
    o : Out(ArrayLayout(score_shape, lanes))

    Combinational: latency 0.
    """

    def __init__(self, *, lanes, value_shape, rule, fan_in, clip_bits, bias_shape, score_shape):
        if rule not in ("popcount", "margin", "clipped", "value"):
            raise ValueError(f"Score rule must be 'popcount', 'margin', 'clipped' or 'value', "
                             f"not {rule!r}")
        self.lanes, self.rule, self.fan_in, self.clip_bits = lanes, rule, fan_in, clip_bits
        self.value_shape = value_shape
        super().__init__({
            "value": In(data.ArrayLayout(value_shape, lanes)),
            "bias": In(data.ArrayLayout(bias_shape, lanes)),
            "negate": In(lanes),
            "o": Out(data.ArrayLayout(score_shape, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        for lane in range(self.lanes):
            a = self.value[lane]
            if self.rule == "popcount":
                m.d.comb += self.o[lane].eq(a)
                continue
            if self.fan_in is None:
                v = a
            else:
                # y = 2a - K in a signed signal: unsigned subtraction would wrap.
                v = Signal(signed(self.value_shape.width + 2), name=f"y{lane}")
                m.d.comb += v.eq(a * 2 - self.fan_in)
            if self.clip_bits is not None:
                clip = ClipUnit(in_shape=v.shape(), bits=self.clip_bits)
                m.submodules[f"clip{lane}"] = clip
                m.d.comb += clip.i.eq(v)
                v = clip.o
            if self.rule == "margin":
                t = self.bias[lane]
                m.d.comb += self.o[lane].eq(Mux(self.negate[lane], t - v, v - t))
            else:
                m.d.comb += self.o[lane].eq(v)
        return m
