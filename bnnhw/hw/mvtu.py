"""Matrix-vector-threshold unit (MVTU): one compute layer with its clip and threshold.

Data path (one global-stall pipeline, registers load only when ``advance``)::

    i_stream (chunks) ─> input ping-pong buffer ─> S0 counters (nf, sf), memory reads
        ─> S1 chunk stage (x, weight rows)  [seam: ChunkPopcount / ChunkDot, latency L]
        ─> accumulators (over sf)  ─> result register + threshold/score constants
        ─> ThresholdUnit or ScoreUnit ─> output collect ─> o_stream (one beat per vector)

The chunk stage is a separate component with the small interface documented in
:mod:`bnnhw.hw.pe`; a shared-result filter bank (SPEC §9) replaces it through the
``stage`` (by name) or ``chunk_stage`` (a factory of the unit's plan) parameters without
touching anything else here; every figure and constant comes from the unit's plan,
:class:`~bnnhw.plan.stages.MVTUPlan`. The stage's ``row`` input
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

from amaranth.hdl import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..plan.stages import MVTUPlan
from .layouts import chunk_shape, from_plan, to_shape
from .pe import Accumulators, ChunkStageSignature
from .threshold import ScoreUnit, ThresholdUnit

__all__ = ["MVTU"]


@from_plan("nf", "sf", "fan_in", "out_channels", "in_bits", "multibit", "saturates",
           "acc_range", "score_width", "score_range", "cycles_per_vector",
           "weight_memory_bits", "table_memory_bits", "buffer_memory_bits")
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
        ``chunk_stage(plan)`` returning a replacement chunk stage (the seam,
        :class:`~bnnhw.hw.pe.ChunkStageSignature`) for this unit's
        :class:`~bnnhw.plan.stages.MVTUPlan` (weights, kernel shape, folding). A stage whose
        ``plan.holds_weights`` is true keeps the weight rows itself: the unit then has no
        weight memory. Default: the stage named by ``stage``.
    input_order : ``"hwc"`` or ``"chw"``
        Element order of a convolution's input vector
        (:func:`bnnhw.model.packing.conv_weight_rows`); ``"chw"`` lifts the rule that
        ``simd`` divides the input channels.
    stage : str or None
        The chunk stage by name (:data:`bnnhw.plan.stages.CHUNK_STAGES`); default
        ``"popcount"``, ``"dot"`` for a multi-bit layer.
    weight_map : tuple or None
        Weight ROM as column slices ``((lo, width, ram_style), ...)`` (see
        :class:`~bnnhw.plan.stages.MVTUPlan`; :class:`bnnhw.plan.memory.MemoryMap` chooses
        them per device); default one memory.
    table_style : str or None
        ``ram_style`` of the threshold table memory.

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
                 input_order="hwc", stage=None, weight_map=None, table_style=None):
        self._build(MVTUPlan(layer=layer, pe=pe, simd=simd, threshold=threshold, clip=clip,
                             output=output, rule=rule, acc_bits=acc_bits, overflow=overflow,
                             stages=stages, input_order=input_order, stage=stage,
                             weight_map=weight_map, table_style=table_style),
                    chunk_stage=chunk_stage)

    def _build(self, plan, chunk_stage=None):
        self.plan = plan
        layer = self.layer = plan.layer
        self.threshold, self.clip = plan.threshold, plan.clip
        self.pe, self.simd, self.output, self.rule = plan.pe, plan.simd, plan.output, plan.rule
        self.input_order = plan.input_order
        self.acc_bits = plan.acc_width
        self.acc_shape = to_shape(plan.acc_shape)
        self.table_shape = to_shape(plan.table_shape)
        if plan.output == "scores":
            self.score_shape = to_shape(plan.score_shape)
        if chunk_stage is None:
            self._chunk = plan.chunk.create()
        elif not callable(chunk_stage):
            raise TypeError(f"Chunk stage must be a callable (plan) -> component, "
                            f"not {chunk_stage!r}")
        else:
            self._chunk = chunk_stage(plan)
            want = ChunkStageSignature.of(plan.chunk)
            got = getattr(self._chunk, "signature", None)
            if not (isinstance(got, ChunkStageSignature) and got.pe == want.pe
                    and got.x_width == want.x_width and got.w_width == want.w_width):
                raise TypeError(f"Chunk stage of layer {layer.name!r} must have the signature "
                                f"{want!r}, not {got!r}")
        # A stage that keeps the weight rows itself makes the weight memory unnecessary.
        self.holds_weights = bool(getattr(self._chunk, "plan", None) is not None
                                  and self._chunk.plan.holds_weights)
        out_shape = unsigned(plan.out_width)
        super().__init__({
            "i_stream": In(stream.Signature(chunk_shape(plan.simd, plan.in_bits))),
            "o_stream": Out(stream.Signature(out_shape)),
        })

    @property
    def latency(self):
        """Cycles from accepting a vector's last chunk to presenting its output beat
        (``NF * SF + L + 3``, ``L`` the chunk stage's latency)."""
        return self.plan.nf * self.plan.sf + self._chunk.latency + 3

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

        reads = [ibuf_r.addr.eq(Mux(rbank, SF, 0) + sf), ibuf_r.en.eq(advance)]
        w_data = None
        if not self.holds_weights and self.plan.weight_map is None:
            m.submodules.weights = wmem = Memory(shape=unsigned(PE * SIMD), depth=NF * SF,
                                                 init=self.plan.weight_rows)
            w_r = wmem.read_port(domain="sync")
            reads += [w_r.addr.eq(waddr), w_r.en.eq(advance)]
            w_data = w_r.data
        elif not self.holds_weights:
            # The device's memory map: column slices, each in the memory kind that suits its
            # width and depth (block RAM shapes, or logic for wide shallow ROMs).
            parts = []
            for i, (lo, width, style) in enumerate(self.plan.weight_map):
                mask = (1 << width) - 1
                mem = Memory(shape=unsigned(width), depth=NF * SF,
                             init=[(row >> lo) & mask for row in self.plan.weight_rows],
                             attrs={"ram_style": style})
                m.submodules[f"weights{i}"] = mem
                port = mem.read_port(domain="sync")
                reads += [port.addr.eq(waddr), port.en.eq(advance)]
                parts.append(port.data)
            w_data = Cat(*parts)
        m.d.comb += reads

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
        # A stage that holds its weights reads them by `row`; its `w` stays 0.
        weights = [] if self.holds_weights else [chunk.w.eq(w_data)]
        m.d.comb += [chunk.en.eq(advance), chunk.x.eq(ibuf_r.data), *weights,
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
        table_attrs = None if self.plan.table_style is None else \
            {"ram_style": self.plan.table_style}
        m.submodules.table = tmem = Memory(shape=unsigned(PE * (tw + 1)), depth=NF,
                                           init=self.plan.table_init, attrs=table_attrs)
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
