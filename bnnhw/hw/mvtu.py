"""Matrix-vector-threshold unit (MVTU): one compute layer with its clip and threshold.

Data path (one global-stall pipeline, registers load only when ``advance``)::

    i_stream (chunks) ─> input ping-pong buffer ─> S0 counters (nf, sf), memory reads
        ─> S1 chunk stage (x, weight rows)  [seam: ChunkPopcount / ChunkDot, latency L]
        ─> accumulators (over sf)  ─> result register + threshold/score constants
        ─> ThresholdUnit or ScoreUnit ─> output collect ─> o_stream (one beat per vector)

The chunk stage is a separate component with the small interface documented in
:mod:`bnnhw.hw.pe`; a shared-result filter bank (SPEC §9) replaces it through the
``chunk_stage`` parameter without touching anything else here. The stage's ``row`` input
is ``nf * SF + sf``: chunk ``sf`` of neuron fold ``nf`` against output channels
``nf*PE ...``. For a convolution the chunk is, by ``input_order``:

* ``"hwc"`` (default): tap ``(ky, kx) = divmod(sf // (C/SIMD), kw)`` of channels
  ``(sf % (C/SIMD)) * SIMD ...``, the pixel stream's order;
* ``"chw"``: elements ``sf*SIMD ...`` of the ``[c][ky][kx]`` vector (a
  :class:`~bnnhw.hw.window.WindowTranspose` in front), so with ``SIMD`` a multiple of
  ``kh*kw`` each chunk is whole 2-D windows of ``SIMD/(kh*kw)`` input channels. Its chunk stage
  can then be the per-input-channel 2-D popcount stage (:class:`~bnnhw.hw.pe.KernelPopcount`),
  and a shared-result filter bank (repeated, inverse and similar 2-D kernels of one input
  channel computed once) takes its place; the accumulators downstream sum the chunks into
  ``P`` exactly as before.
"""

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.layers import BinaryConv2d, BinaryDense, Clip, MultibitConv2d, Threshold
from ..model.packing import bits_to_int
from .layouts import chunk_shape
from .pe import Accumulators, ChunkDot, ChunkPopcount, check_accumulator
from .threshold import (ScoreUnit, ThresholdUnit, accumulator_range, score_table, shape_for,
                        threshold_table)

__all__ = ["MVTU", "weight_matrix"]


def weight_matrix(layer, order="hwc"):
    """The layer's weights as ``[O, K]`` +1/-1 rows in chunk-stream order.

    Convolution vectors are ordered ``[ky][kx][c]`` (``order="hwc"``: channels innermost, the
    pixel stream's order; IR weights ``[O, C, kh, kw]`` are transposed to ``[O, kh, kw, C]``)
    or ``[c][ky][kx]`` (``order="chw"``: each input channel's 2-D kernel contiguous, as
    :class:`~bnnhw.hw.window.WindowTranspose` emits them).
    """
    w = layer.weight
    if w.ndim == 4 and order == "hwc":
        w = w.transpose(0, 2, 3, 1)
    return w.reshape(w.shape[0], -1)


def _pack_rows(bits_2d):
    """Each row of a 0/1 matrix as one integer, element ``i`` at bit ``i``."""
    return [bits_to_int(row) for row in bits_2d]


def _pack_fields(values, width):
    """Per row, the fields ``values[row, lane]`` (two's complement, ``width`` bits) packed."""
    mask = (1 << width) - 1
    out = []
    for row in values:
        word = 0
        for lane, v in enumerate(row):
            word |= (int(v) & mask) << (lane * width)
        out.append(word)
    return out


class MVTU(wiring.Component):
    """Matrix-vector-threshold unit for one compute layer, folded ``PE`` x ``SIMD``.

    Each input vector (``K`` elements) arrives as ``SF = ceil(K / SIMD)`` chunk beats and is
    stored once in a ping-pong buffer; the unit then computes ``NF = ceil(O / PE)`` neuron
    folds of ``SF`` cycles each, ``PE`` outputs at a time, and emits one output beat per vector.
    ``O`` not divisible by ``PE`` pads weight rows (their outputs are dropped); ``K`` not
    divisible by ``SIMD`` pads the last chunk, whose padded lanes are forced to 0 on entry
    (against weight 1 they never match, so they never change ``P``).

    Parameters
    ----------
    layer : BinaryConv2d, BinaryDense or MultibitConv2d
    pe, simd : int
        Folding. For a convolution ``simd`` must divide the input channels.
    threshold : Threshold or None
        The block's threshold; required for ``output="bits"``.
    clip : Clip or None
        The block's clipping block (applied before the threshold / score).
    output : ``"bits"`` or ``"scores"``
        ``"bits"``: one pixel beat ``unsigned(O)``, bit ``o`` = output channel ``o``.
        ``"scores"``: one beat with all ``O`` scores, ``unsigned(O * score_width)``, score ``o``
        (two's complement) at ``[o*w, (o+1)*w)``.
    rule : str or None
        Score rule (SPEC §8) for ``output="scores"``: ``"popcount"``, ``"margin"``,
        ``"clipped"`` or ``"value"``.
    acc_bits : int or None
        Popcount accumulator width; default the layer's (``A_min`` unless the IR says
        otherwise). Narrower than ``A_min`` only with ``overflow="saturate"``.
    overflow : str or None
        Default the layer's.
    stages : int or None
        Adder-tree register ranks of the chunk stage.
    chunk_stage : callable or None
        ``chunk_stage(pe=, simd=)`` returning a replacement chunk stage (the seam).
    input_order : ``"hwc"`` or ``"chw"``
        Element order of a convolution's input vector (:func:`weight_matrix`); ``"chw"``
        lifts the rule that ``simd`` divides the input channels.

    Members
    -------
    i_stream : In(stream.Signature(unsigned(simd * in_bits)))
    o_stream : Out(stream.Signature(unsigned(O)) or unsigned(O * score_width))

    Throughput: exactly ``NF * SF`` cycles per vector in steady state (no bubbles while the
    next vector is already buffered and the output is not stalled). The input is accepted at
    up to one chunk per cycle whenever a buffer half is free (``i_stream.ready`` is a register,
    independent of ``o_stream.ready``). Latency from the last chunk of a vector to its output
    beat: ``NF * SF + L + 3`` cycles (:attr:`latency`). Backpressure: while an output beat
    waits and the next one is complete, the whole pipeline stalls.
    """

    def __init__(self, *, layer, pe, simd, threshold=None, clip=None, output="bits", rule=None,
                 acc_bits=None, overflow=None, stages=None, chunk_stage=None,
                 input_order="hwc"):
        if not isinstance(layer, (BinaryConv2d, BinaryDense, MultibitConv2d)):
            raise TypeError(f"Layer must be a BinaryConv2d, BinaryDense or MultibitConv2d, "
                            f"not {layer!r}")
        for name, value in (("PE", pe), ("SIMD", simd)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if threshold is not None and not isinstance(threshold, Threshold):
            raise TypeError(f"Threshold must be a Threshold layer or None, not {threshold!r}")
        if clip is not None and not isinstance(clip, Clip):
            raise TypeError(f"Clip must be a Clip layer or None, not {clip!r}")
        if output not in ("bits", "scores"):
            raise ValueError(f"Output must be 'bits' or 'scores', not {output!r}")
        if output == "bits" and threshold is None:
            raise ValueError(f"layer {layer.name!r}: output 'bits' needs a threshold")
        if threshold is not None and threshold.channels != layer.out_channels:
            raise ValueError(f"layer {layer.name!r}: {threshold.channels} thresholds for "
                             f"{layer.out_channels} output channels")
        self.layer, self.threshold, self.clip = layer, threshold, clip
        self.multibit = isinstance(layer, MultibitConv2d)
        self.fan_in = K = layer.fan_in
        self.out_channels = O = layer.out_channels
        if input_order not in ("hwc", "chw"):
            raise ValueError(f"Input order must be 'hwc' or 'chw', not {input_order!r}")
        self.input_order = input_order
        if isinstance(layer, (BinaryConv2d, MultibitConv2d)) and input_order == "hwc" \
                and layer.in_channels % simd:
            raise ValueError(f"layer {layer.name!r}: SIMD must divide the "
                             f"{layer.in_channels} input channels, not {simd}")
        if simd > K:
            raise ValueError(f"layer {layer.name!r}: SIMD must be at most K={K}, not {simd}")
        self.pe, self.simd = pe, simd
        self.in_bits = layer.input_bits if self.multibit else 1
        self.sf = -(-K // simd)
        self.nf = -(-O // pe)
        if self.multibit:
            if acc_bits is not None:
                raise ValueError(f"layer {layer.name!r}: a multi-bit layer's accumulator is "
                                 f"exact; acc_bits must be None")
            self.acc_bits = layer.signed_bits
            self.acc_shape = signed(self.acc_bits)
            self.saturates = False
        else:
            if overflow is None:
                overflow = layer.overflow
            if acc_bits is None:
                acc_bits = layer.accumulator_bits
            try:
                self.acc_bits = check_accumulator(K, acc_bits, overflow)
            except ValueError as e:
                raise ValueError(f"layer {layer.name!r}: {e}") from None
            self.acc_shape = unsigned(self.acc_bits)
            self.saturates = self.acc_bits < layer.min_acc_bits
        self.output, self.rule = output, rule
        if chunk_stage is None:
            if self.multibit:
                self._chunk = ChunkDot(pe=pe, simd=simd, in_bits=self.in_bits, stages=stages)
            else:
                self._chunk = ChunkPopcount(pe=pe, simd=simd, stages=stages)
        else:
            self._chunk = chunk_stage(pe=pe, simd=simd)
        self.acc_range = accumulator_range(layer, None if self.multibit else self.acc_bits)
        lo, hi = self.acc_range

        # Constant tables, padded to NF * PE rows.
        rows = self.nf * pe
        if output == "bits":
            compare, neg = threshold_table(layer, threshold, clip,
                                           None if self.multibit else self.acc_bits)
            self.table_shape = shape_for(lo, hi + 1)
            self.score_width = None
        else:
            if rule is None:
                raise ValueError(f"layer {layer.name!r}: output 'scores' needs a score rule")
            compare, neg, (s_lo, s_hi) = score_table(
                layer, rule, threshold, clip, None if self.multibit else self.acc_bits)
            self.table_shape = shape_for(min(0, int(compare.min())), int(compare.max()))
            self.score_shape = signed(max(2, shape_for(min(s_lo, -1), s_hi).width))
            self.score_width = self.score_shape.width
            self.score_range = (s_lo, s_hi)
        tw = self.table_shape.width
        cmp_pad = np.zeros(rows, np.int64)
        cmp_pad[:O] = compare
        neg_pad = np.zeros(rows, np.int64)
        neg_pad[:O] = neg
        fields = (cmp_pad & ((1 << tw) - 1)) | (neg_pad << tw)
        self._table_init = _pack_fields(fields.reshape(self.nf, pe), tw + 1)

        # Weight rows: [NF, SF, PE, SIMD] bits; padded rows 0, padded lanes 1 (see above).
        wbits = np.zeros((rows, self.sf * simd), np.uint8)
        wbits[:, K:] = 1
        wbits[:O, :K] = weight_matrix(layer, input_order) == 1
        wbits = wbits.reshape(self.nf, pe, self.sf, simd).transpose(0, 2, 1, 3)
        self._weight_init = _pack_rows(wbits.reshape(self.nf * self.sf, pe * simd))

        out_shape = unsigned(O) if output == "bits" else unsigned(O * self.score_width)
        super().__init__({
            "i_stream": In(stream.Signature(chunk_shape(simd, self.in_bits))),
            "o_stream": Out(stream.Signature(out_shape)),
        })

    # -- figures for the manifest ----------------------------------------------------------

    @property
    def cycles_per_vector(self):
        """``ceil(O / PE) * ceil(K / SIMD)``: steady-state cycles per input vector."""
        return self.nf * self.sf

    @property
    def latency(self):
        """Cycles from accepting a vector's last chunk to presenting its output beat."""
        return self.nf * self.sf + self._chunk.latency + 3

    @property
    def weight_memory_bits(self):
        return len(self._weight_init) * self.pe * self.simd

    @property
    def table_memory_bits(self):
        return self.nf * self.pe * (self.table_shape.width + 1)

    @property
    def buffer_memory_bits(self):
        return 2 * self.sf * self.simd * self.in_bits

    # -- hardware ----------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        SF, NF, PE, SIMD = self.sf, self.nf, self.pe, self.simd
        cw = self.simd * self.in_bits
        m.submodules.chunk = chunk = self._chunk
        L = chunk.latency

        stall = Signal()
        advance = ~stall

        # Input ping-pong buffer: half `wbank` fills while the compute reads half `rbank`.
        m.submodules.ibuf = ibuf = Memory(shape=unsigned(cw), depth=2 * SF, init=[])
        ibuf_w = ibuf.write_port()
        ibuf_r = ibuf.read_port(domain="sync")
        full = Signal(2)
        wbank, wcnt = Signal(), Signal(range(SF))
        m.d.comb += self.i_stream.ready.eq(~full.bit_select(wbank, 1))
        payload = self.i_stream.payload
        rem = self.fan_in - (SF - 1) * SIMD
        if rem != SIMD:
            # Padding lanes of the last chunk carry 0, whatever the producer sent.
            payload = Mux(wcnt == SF - 1, payload & ((1 << (rem * self.in_bits)) - 1), payload)
        m.d.comb += [
            ibuf_w.addr.eq(Mux(wbank, SF, 0) + wcnt),
            ibuf_w.data.eq(payload),
            ibuf_w.en.eq(self.i_stream.valid & self.i_stream.ready),
        ]
        set_full = Signal(2)
        clr_full = Signal(2)
        with m.If(self.i_stream.valid & self.i_stream.ready):
            with m.If(wcnt == SF - 1):
                m.d.sync += [wcnt.eq(0), wbank.eq(~wbank)]
                m.d.comb += set_full.eq(Mux(wbank, 0b10, 0b01))
            with m.Else():
                m.d.sync += wcnt.eq(wcnt + 1)

        # S0: fold counters and memory addresses.
        rbank = Signal()
        sf, nf = Signal(range(SF)), Signal(range(NF))
        waddr = Signal(range(NF * SF))
        fire = Signal()
        m.d.comb += fire.eq(advance & full.bit_select(rbank, 1))
        with m.If(fire):
            with m.If(sf == SF - 1):
                m.d.sync += sf.eq(0)
                with m.If(nf == NF - 1):
                    m.d.sync += [nf.eq(0), rbank.eq(~rbank)]
                    m.d.comb += clr_full.eq(Mux(rbank, 0b10, 0b01))
                with m.Else():
                    m.d.sync += nf.eq(nf + 1)
            with m.Else():
                m.d.sync += sf.eq(sf + 1)
            m.d.sync += waddr.eq(Mux(waddr == NF * SF - 1, 0, waddr + 1))
        m.d.sync += full.eq((full | set_full) & ~clr_full)

        m.submodules.weights = wmem = Memory(shape=unsigned(PE * SIMD), depth=NF * SF,
                                             init=self._weight_init)
        w_r = wmem.read_port(domain="sync")
        m.d.comb += [
            ibuf_r.addr.eq(Mux(rbank, SF, 0) + sf), ibuf_r.en.eq(advance),
            w_r.addr.eq(waddr), w_r.en.eq(advance),
        ]

        # Sideband through the pipeline: valid, first/last fold of a vector, neuron fold.
        def stage(prev, name):
            nxt = {k: Signal(v.shape(), name=f"{name}_{k}") for k, v in prev.items()}
            with m.If(advance):
                m.d.sync += [nxt[k].eq(prev[k]) for k in prev]
            return nxt

        sb = {"v": fire, "first": sf == 0, "last": sf == SF - 1, "nf": nf,
              "lastnf": nf == NF - 1}
        sb = stage(sb, "s1")
        row1 = Signal(range(NF * SF))
        with m.If(advance):
            m.d.sync += row1.eq(waddr)
        m.d.comb += [chunk.en.eq(advance), chunk.x.eq(ibuf_r.data), chunk.w.eq(w_r.data),
                     chunk.row.eq(row1)]
        for s in range(L):
            sb = stage(sb, f"s{2 + s}")

        # Accumulate over the SF folds of each neuron fold.
        m.submodules.acc = acc = Accumulators(lanes=PE, in_shape=chunk.count_shape,
                                              acc_shape=self.acc_shape,
                                              saturate=self.saturates)
        m.d.comb += [acc.en.eq(advance), acc.valid.eq(sb["v"]), acc.first.eq(sb["first"]),
                     acc.i.eq(chunk.p)]
        res = [Signal(self.acc_shape, name=f"res{p}") for p in range(PE)]
        res_v, res_lastnf = Signal(), Signal()
        with m.If(advance):
            m.d.sync += [res_v.eq(sb["v"] & sb["last"]), res_lastnf.eq(sb["lastnf"])]
            with m.If(sb["v"] & sb["last"]):
                m.d.sync += [res[p].eq(acc.sum[p]) for p in range(PE)]

        # Per-channel constants, read so that they arrive with `res`.
        tw = self.table_shape.width
        m.submodules.table = tmem = Memory(shape=unsigned(PE * (tw + 1)), depth=NF,
                                           init=self._table_init)
        t_r = tmem.read_port(domain="sync")
        m.d.comb += [t_r.addr.eq(sb["nf"]), t_r.en.eq(advance)]
        consts = [t_r.data[p * (tw + 1):p * (tw + 1) + tw] for p in range(PE)]
        if self.table_shape.signed:
            consts = [c.as_signed() for c in consts]
        negs = [t_r.data[p * (tw + 1) + tw] for p in range(PE)]

        if self.output == "bits":
            unit = ThresholdUnit(lanes=PE, value_shape=self.acc_shape,
                                 compare_shape=self.table_shape)
            lane_w = 1
        else:
            unit = ScoreUnit(lanes=PE, value_shape=self.acc_shape, rule=self.rule,
                             fan_in=None if self.multibit else self.fan_in,
                             clip_bits=None if self.clip is None else self.clip.bits,
                             bias_shape=self.table_shape, score_shape=self.score_shape)
            lane_w = self.score_width
        m.submodules.unit = unit
        m.d.comb += [unit.value[p].eq(res[p]) for p in range(PE)]
        m.d.comb += [(unit.compare if self.output == "bits" else unit.bias)[p].eq(consts[p])
                     for p in range(PE)]
        m.d.comb += [unit.negate[p].eq(negs[p]) for p in range(PE)]

        # Collect NF groups of PE lanes; neuron fold nf lands at lanes [nf*PE, (nf+1)*PE).
        group = PE * lane_w
        total = NF * group
        new = Value.cast(unit.o)
        if NF > 1:
            collect = Signal(total - group)
            full_vec = Cat(collect, new)
            with m.If(advance & res_v):
                m.d.sync += collect.eq(full_vec[group:])
        else:
            full_vec = new
        out_bits = self.o_stream.payload.shape().width

        m.d.comb += stall.eq(res_v & res_lastnf & self.o_stream.valid & ~self.o_stream.ready)
        with m.If(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(advance & res_v & res_lastnf):
            m.d.sync += [self.o_stream.valid.eq(1),
                         self.o_stream.payload.eq(full_vec[:out_bits])]
        return m
