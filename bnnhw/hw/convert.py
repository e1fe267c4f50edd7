"""Stream adapters: width conversion, the input quantizer and the score serializer.

* :class:`WidthConverter` re-cuts packets of ``total`` bits from ``in_width``-bit beats into
  ``out_width``-bit beats (pixels to chunks for a dense layer after a feature map, input bytes
  to chunks for a dense first layer). Bit ``i`` of a packet keeps its position ``i``.
* :class:`PacketSerializer` does the same for packets that arrive in one input beat
  (``total <= in_width``, every MVTU -> dense-layer hop): a counter selects constant slices of
  the held input beat, with no buffer and no barrel shifter.
* :class:`InputQuantizer` maps raw input bytes to the first layer's bits or codes (SPEC §6).
* :class:`ScoreSerializer` turns one beat of all class scores into one score beat per class.
"""

from amaranth.hdl import Mux, Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.layers import ThresholdQuantizer
from ..plan.stages import FifoPlan, InputPlan, ScoresPlan, SerializerPlan, WidthPlan
from .layouts import ScoreLayout

__all__ = ["WidthConverter", "PacketSerializer", "InputQuantizer", "ScoreSerializer",
           "StreamFIFO"]


class WidthConverter(wiring.Component):
    """Re-cut packets of ``total`` bits from ``in_width``-bit into ``out_width``-bit beats.

    A packet is ``ceil(total / in_width)`` input beats (bits of the last one beyond ``total``
    are ignored) and leaves as ``ceil(total / out_width)`` output beats (the last one padded
    with 0 bits). Bit ``i`` of the packet is bit ``i % w`` of beat ``i // w`` on both sides.

    Parameters
    ----------
    in_width, out_width : int
        Beat widths in bits.
    total : int
        Bits per packet.

    Members
    -------
    i_stream : In(stream.Signature(unsigned(in_width)))
    o_stream : Out(stream.Signature(unsigned(out_width)))

    Throughput: one input and one output beat per cycle can transfer in the same cycle, so the
    converter never limits a stream whose rate is set by the slower side; after the last input
    beat of a packet that leaves a partial output beat, input pauses until that padded beat
    has left (at most one cycle with the output ready). Latency 1 cycle. ``i_stream.ready``
    depends only on registers (no combinational path from ``o_stream.ready``); ``o_stream``
    is a register.
    """

    def __init__(self, *, in_width, out_width, total):
        self._build(WidthPlan(in_width=in_width, out_width=out_width, total=total))

    def _build(self, plan):
        self.plan = plan
        self.in_width, self.out_width, self.total = plan.in_width, plan.out_width, plan.total
        self.in_beats, self.out_beats = plan.in_beats, plan.out_beats
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(plan.in_width))),
            "o_stream": Out(stream.Signature(unsigned(plan.out_width))),
        })

    def elaborate(self, platform):
        m = Module()
        iw, ow = self.in_width, self.out_width
        cap = iw + ow
        buf = Signal(cap)             # bits at and above `n` are always 0
        n = Signal(range(cap + 1))
        ending = Signal()             # the packet's input is complete; flush what is left
        icnt = Signal(range(self.in_beats))
        last_in = icnt == self.in_beats - 1
        last_bits = self.total - (self.in_beats - 1) * iw

        o_fire = self.o_stream.valid & self.o_stream.ready
        i_fire = self.i_stream.valid & self.i_stream.ready
        m.d.comb += [
            self.o_stream.valid.eq((n >= ow) | (ending & (n != 0))),
            self.o_stream.payload.eq(buf[:ow]),
            self.i_stream.ready.eq(~ending & (n <= cap - iw)),
        ]
        shifted = Signal(cap)
        n_after = Signal(range(cap + 1))
        with m.If(o_fire):
            m.d.comb += [shifted.eq(buf >> ow), n_after.eq(Mux(n > ow, n - ow, 0))]
        with m.Else():
            m.d.comb += [shifted.eq(buf), n_after.eq(n)]
        data = self.i_stream.payload
        if last_bits != iw:
            data = Mux(last_in, data & ((1 << last_bits) - 1), data)
        # On input n <= cap - iw = ow before the shift, so the insert position is at most ow.
        pos = Signal(range(ow + 1))
        m.d.comb += pos.eq(n_after)
        with m.If(i_fire):
            m.d.sync += [buf.eq(shifted | (data << pos)),
                         n.eq(n_after + Mux(last_in, last_bits, iw)),
                         icnt.eq(Mux(last_in, 0, icnt + 1))]
            if self.total % ow:
                with m.If(last_in):
                    m.d.sync += ending.eq(1)
        with m.Else():
            m.d.sync += [buf.eq(shifted), n.eq(n_after)]
            with m.If(o_fire & (n_after == 0)):
                m.d.sync += ending.eq(0)
        return m


def _mux_tree(sel, words, lo=0):
    """``words[sel]`` as a tree of 2:1 multiplexers on the bits of ``sel`` (LSB at the leaves).

    Every leaf is a constant slice, so no shifter of variable amount is built; ``sel`` values
    at or past ``len(words)`` select some word (the caller never drives them).
    """
    if len(words) == 1:
        return words[0]
    half = []
    for j in range(0, len(words), 2):
        pair = words[j:j + 2]
        half.append(pair[0] if len(pair) == 1 else Mux(sel[lo], pair[1], pair[0]))
    return _mux_tree(sel, half, lo + 1)


class PacketSerializer(wiring.Component):
    """Cut a packet of ``total`` bits, arriving as one ``in_width``-bit beat, into
    ``out_width``-bit beats.

    The output is the same as :class:`WidthConverter`'s for a one-beat packet: bit ``i`` of the
    packet (bit ``i`` of the input beat) is bit ``i % out_width`` of output beat
    ``i // out_width``; the packet leaves as ``ceil(total / out_width)`` beats, the last one
    padded with 0 bits, and input bits at and above ``total`` are ignored. The input beat is
    not copied: it stays on ``i_stream`` (not yet accepted) while a beat counter selects its
    constant ``out_width``-bit slices, and is accepted together with the last output beat.

    Parameters
    ----------
    in_width : int
        Input beat width in bits.
    out_width : int
        Output beat width in bits.
    total : int
        Bits per packet, at most ``in_width``.

    Members
    -------
    i_stream : In(stream.Signature(unsigned(in_width)))
    o_stream : Out(stream.Signature(unsigned(out_width)))

    Throughput: one output beat per cycle while ``o_stream.ready`` is high, without a bubble
    between packets (the first beat of the next packet can leave in the cycle after the last
    beat of the previous one, when the producer presents it then, as an MVTU with its next
    vector done does). Latency 0 cycles: ``o_stream.valid`` is ``i_stream.valid`` and the
    payload is a multiplexer of the input payload. Backpressure: ``i_stream.ready`` is
    ``o_stream.ready`` during the last output beat of a packet and low otherwise, so the
    producer must hold its beat (as the stream rules require) while the packet is cut; the
    only combinational paths are ``i_stream.valid -> o_stream.valid``,
    ``i_stream.payload -> o_stream.payload`` and ``o_stream.ready -> i_stream.ready`` (no
    loop as long as the producer's ``valid`` does not depend on its ``ready``).
    """

    def __init__(self, *, in_width, out_width, total):
        self._build(SerializerPlan(in_width=in_width, out_width=out_width, total=total))

    def _build(self, plan):
        self.plan = plan
        self.in_width, self.out_width, self.total = plan.in_width, plan.out_width, plan.total
        self.out_beats, self.latency = plan.out_beats, plan.latency
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(plan.in_width))),
            "o_stream": Out(stream.Signature(unsigned(plan.out_width))),
        })

    def elaborate(self, platform):
        m = Module()
        ow, n = self.out_width, self.out_beats
        data = self.i_stream.payload[:self.total]
        words = [data[k * ow:(k + 1) * ow] for k in range(n)]   # the last one may be short
        m.d.comb += self.o_stream.valid.eq(self.i_stream.valid)
        if n == 1:
            m.d.comb += [self.o_stream.payload.eq(words[0]),
                         self.i_stream.ready.eq(self.o_stream.ready)]
            return m
        idx = Signal(range(n))
        last = idx == n - 1
        m.d.comb += [self.o_stream.payload.eq(_mux_tree(idx, words)),
                     self.i_stream.ready.eq(self.o_stream.ready & last)]
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += idx.eq(Mux(last, 0, idx + 1))
        return m


class InputQuantizer(wiring.Component):
    """The model's input quantizer (SPEC §6) on ``lanes`` raw bytes per beat.

    A :class:`~bnnhw.model.layers.ThresholdQuantizer` gives one bit per byte (``p >= t``); a
    :class:`~bnnhw.model.layers.FixedPointQuantizer` gives a signed ``bits``-bit code per byte
    from a 256-entry table computed by the quantizer itself (so it cannot disagree with the
    golden model).

    Parameters
    ----------
    quantizer : ThresholdQuantizer or FixedPointQuantizer
    lanes : int
        Bytes per beat.

    Members
    -------
    i_stream : In(stream.Signature(unsigned(8 * lanes)))
        Byte ``j`` at bits ``[8j, 8j+8)``.
    o_stream : Out(stream.Signature(unsigned(lanes * out_bits)))
        Element ``j`` at bits ``[j*b, (j+1)*b)``.

    Combinational: latency 0, ``valid``/``ready`` pass straight through.
    """

    def __init__(self, *, quantizer, lanes):
        self._build(InputPlan(quantizer=quantizer, lanes=lanes))

    def _build(self, plan):
        self.plan = plan
        self.quantizer, self.lanes = plan.quantizer, plan.lanes
        self.out_bits, self.table = plan.out_bits, plan.table
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(8 * plan.lanes))),
            "o_stream": Out(stream.Signature(unsigned(plan.out_width))),
        })

    def elaborate(self, platform):
        m = Module()
        b = self.out_bits
        m.d.comb += [self.o_stream.valid.eq(self.i_stream.valid),
                     self.i_stream.ready.eq(self.o_stream.ready)]
        for j in range(self.lanes):
            byte = self.i_stream.payload[8 * j:8 * j + 8]
            out = self.o_stream.payload[j * b:(j + 1) * b]
            if isinstance(self.quantizer, ThresholdQuantizer):
                m.d.comb += out.eq(byte >= self.quantizer.threshold)
            else:
                rom = Memory(shape=signed(b), depth=256, init=self.table)
                m.submodules[f"lut{j}"] = rom
                port = rom.read_port(domain="comb")
                m.d.comb += [port.addr.eq(byte), out.eq(port.data)]
        return m


class ScoreSerializer(wiring.Component):
    """One beat of ``classes`` scores in, one :class:`ScoreLayout` beat per class out.

    Parameters
    ----------
    classes : int
    score_width : int
        Score ``o`` is the two's-complement field ``[o*w, (o+1)*w)`` of the input beat.

    Members
    -------
    i_stream : In(stream.Signature(unsigned(classes * score_width)))
    o_stream : Out(stream.Signature(ScoreLayout(score_width)))
        ``last`` is set on class ``classes - 1``.

    Throughput: ``classes`` cycles per input beat, without a bubble between images (the next
    beat loads while the last score leaves). Latency 1 cycle. Backpressure holds the current
    score; ``i_stream.ready`` depends combinationally on ``o_stream.ready`` only on the
    last class.
    """

    def __init__(self, *, classes, score_width):
        self._build(ScoresPlan(classes=classes, score_width=score_width))

    def _build(self, plan):
        self.plan = plan
        self.classes, self.score_width = plan.classes, plan.score_width
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(plan.classes * plan.score_width))),
            "o_stream": Out(stream.Signature(ScoreLayout(plan.score_width))),
        })

    def elaborate(self, platform):
        m = Module()
        w, n = self.score_width, self.classes
        vec = Signal(n * w)
        busy = Signal()
        idx = Signal(range(n))
        last = idx == n - 1
        taking_last = busy & last & self.o_stream.ready
        m.d.comb += [
            self.o_stream.valid.eq(busy),
            self.o_stream.payload.score.eq(vec.word_select(idx, w).as_signed()),
            self.o_stream.payload.last.eq(last),
            self.i_stream.ready.eq(~busy | taking_last),
        ]
        with m.If(busy & self.o_stream.ready):
            m.d.sync += idx.eq(Mux(last, 0, idx + 1))
            with m.If(last):
                m.d.sync += busy.eq(0)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [vec.eq(self.i_stream.payload), busy.eq(1), idx.eq(0)]
        return m


class StreamFIFO(wiring.Component):
    """A synchronous FIFO on streams (:class:`amaranth.lib.fifo.SyncFIFOBuffered`).

    Parameters
    ----------
    width : int
        Payload width in bits.
    depth : int
        Beats it holds.

    Members
    -------
    i_stream : In(stream.Signature(unsigned(width)))
    o_stream : Out(stream.Signature(unsigned(width)))

    One beat per cycle in and out; latency 1 cycle (registered output); ``i_stream.ready`` is
    high while the FIFO is not full and does not depend on ``o_stream.ready``.
    """

    def __init__(self, *, width, depth):
        self._build(FifoPlan(width=width, depth=depth))

    def _build(self, plan):
        self.plan = plan
        self.width, self.depth = plan.width, plan.depth
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(plan.width))),
            "o_stream": Out(stream.Signature(unsigned(plan.width))),
        })

    @property
    def memory_bits(self):
        return self.plan.memory_bits

    def elaborate(self, platform):
        from amaranth.lib.fifo import SyncFIFOBuffered
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.width, depth=self.depth)
        wiring.connect(m, wiring.flipped(self.i_stream), fifo.w_stream)
        wiring.connect(m, fifo.r_stream, wiring.flipped(self.o_stream))
        return m
