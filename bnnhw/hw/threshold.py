"""Threshold unit, clipping block and score unit (SPEC §4, §5, §8).

The units compare in the **accumulator domain** (the popcount ``P`` of a binary layer, the
signed sum of a multi-bit first layer); their per-channel constants come from
:mod:`bnnhw.plan.tables` (:func:`~bnnhw.plan.tables.threshold_table`,
:func:`~bnnhw.plan.tables.score_table`), read from the matrix-vector unit's table memory.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..plan.params import check_int

__all__ = ["ThresholdUnit", "ClipUnit", "ScoreUnit"]


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
        self.lanes = check_int("Lane count", lanes, 1)
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
        self.bits = check_int("Clip width", bits, 2)
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
