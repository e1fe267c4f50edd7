"""XNOR-popcount processing elements: the chunk stage, accumulators and a stand-alone PE.

The arithmetic is SPEC §2-3 (binary layers) and §6 (multi-bit first layer).

The **chunk stage** (:class:`ChunkPopcount`, :class:`ChunkDot`) is the seam of the matrix-vector
unit: it sees one chunk of the input vector (``SIMD`` lanes) and ``PE`` weight rows and returns
``PE`` partial sums after a fixed :attr:`latency`. Everything that follows (accumulation over
folds, thresholds, output collection) only relies on this small interface, so a later
shared-result filter bank (SPEC §9) can replace the chunk stage without touching the rest:

===========  =====  ==========================================================================
port         dir    meaning
===========  =====  ==========================================================================
``en``       In     clock enable of the whole pipeline (global stall); registers hold when 0
``x``        In     the input chunk, ``SIMD * in_bits`` bits, lane ``j`` at ``[j*b, (j+1)*b)``
``w``        In     the weight rows, ``PE * SIMD`` bits, row ``r`` lane ``j`` at bit
                    ``r*SIMD + j`` (1 = +1)
``row``      In     index of the weight row group (``nf * SF + sf``), valid with ``w``; unused
                    by the plain stages, available to stages that keep weights themselves
``p``        Out    ``PE`` partial sums, :attr:`latency` enabled cycles after ``x`` / ``w``
===========  =====  ==========================================================================

plus two attributes: ``latency`` (int) and ``count_shape`` (the shape of one ``p`` element).
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.layers import popcount_bits
from ..plan.params import check_int
from ..plan.stages import ChunkStagePlan, check_accumulator, default_stages, tree_levels
from .layouts import to_shape

__all__ = ["adder_tree", "default_stages", "tree_levels", "ChunkStageSignature",
           "ChunkPopcount", "KernelPopcount", "ChunkDot", "Accumulators", "XnorPopcountPE",
           "check_accumulator"]

_check_int = check_int


def adder_tree(m, terms, *, stages, en, name="tree"):
    """Sum ``terms`` in a balanced tree with ``stages`` register ranks spread over its levels.

    Rank ``i`` (1-based) sits after level ``round(i * levels / stages)``; level 0 registers the
    leaves. With ``stages = 0`` the tree is combinational. Registers load only when ``en``.
    Returns the final (possibly registered) sum.
    """
    levels = tree_levels(len(terms))
    ranks = [round(i * levels / stages) for i in range(1, stages + 1)] if stages else []
    cur = list(terms)

    def register(values, level, rank):
        out = []
        for i, v in enumerate(values):
            r = Signal(v.shape(), name=f"{name}_l{level}r{rank}_{i}")
            with m.If(en):
                m.d.sync += r.eq(v)
            out.append(r)
        return out

    rank = 0
    for level in range(levels + 1):
        if level:
            cur = [cur[i] + cur[i + 1] if i + 1 < len(cur) else cur[i]
                   for i in range(0, len(cur), 2)]
        while rank < len(ranks) and ranks[rank] == level:
            cur = register(cur, level, rank)
            rank += 1
    assert len(cur) == 1
    return cur[0]


def _xnor_bits(x, w, offset, n):
    """``n`` one-bit XNORs of ``x[j]`` and ``w[offset + j]``, each its own expression.

    Slicing the bits out of one wide ``~(x ^ w)`` is the same logic, but Yosys' ``check`` (run
    by ``synth_ecp5`` after flattening) then grows with the square of the width: a 2x1024
    popcount took 81 s and 1.7 GB there, and LFC's three such layers ran YoWASP Yosys out of
    its 4 GB (one bit per expression: 0.3 s).
    """
    return [~(x[j] ^ w[offset + j]) for j in range(n)]


class ChunkStageSignature(wiring.Signature):
    """The chunk stage's interface (the MVTU's seam, see the module docstring).

    Parameters
    ----------
    pe : int
        Weight rows, i.e. partial sums per chunk.
    x_width, w_width : int
        Bits of the input chunk and of the ``PE`` weight rows.
    count_shape : Shape
        Shape of one partial sum.

    Members
    -------
    en : In(1)
    x : In(unsigned(x_width))
    w : In(unsigned(w_width))
    row : In(unsigned(32))
    p : Out(ArrayLayout(count_shape, pe))
    """

    def __init__(self, *, pe, x_width, w_width, count_shape):
        self.pe, self.x_width, self.w_width = pe, x_width, w_width
        self.count_shape = count_shape
        super().__init__({
            "en": In(1),
            "x": In(unsigned(x_width)),
            "w": In(unsigned(w_width)),
            "row": In(unsigned(32)),
            "p": Out(data.ArrayLayout(count_shape, pe)),
        })

    @classmethod
    def of(cls, plan):
        """The signature of the chunk stage that ``plan`` (a ChunkStagePlan) describes."""
        return cls(pe=plan.pe, x_width=plan.x_width, w_width=plan.w_width,
                   count_shape=to_shape(plan.count_shape))

    def __eq__(self, other):
        return (type(other) is type(self) and self.pe == other.pe
                and self.x_width == other.x_width and self.w_width == other.w_width
                and self.count_shape == other.count_shape)

    def __hash__(self):
        return hash((self.pe, self.x_width, self.w_width, self.count_shape))

    def __repr__(self):
        return (f"ChunkStageSignature(pe={self.pe}, x_width={self.x_width}, "
                f"w_width={self.w_width}, count_shape={self.count_shape!r})")


class _ChunkStage(wiring.Component):
    """What every chunk stage shares: its plan, latency, count shape and signature."""

    def _build(self, plan):
        self.plan = plan
        self.pe, self.simd, self.latency = plan.pe, plan.simd, plan.latency
        self.count_shape = to_shape(plan.count_shape)
        super().__init__(ChunkStageSignature.of(plan))


class ChunkPopcount(_ChunkStage):
    """XNOR + popcount of one input chunk against ``pe`` weight rows (the MVTU's chunk stage).

    ``p[r] = popcount(~(x ^ w_r))`` over the ``simd`` lanes. Padding lanes must be made to
    mismatch by the caller (the MVTU forces padded inputs to 0 and padded weights to 1).

    Parameters
    ----------
    pe : int
        Weight rows (processing elements).
    simd : int
        Lanes per chunk.
    stages : int or None
        Register ranks in the adder tree (0 = combinational); ``None`` is
        :func:`default_stages`.

    Members
    -------
    en : In(1)
        Pipeline enable; every register holds while it is 0.
    x : In(simd)
    w : In(pe * simd)
    row : In(unsigned(32))
        Weight row-group index (unused here; part of the seam, see the module docstring).
    p : Out(ArrayLayout(unsigned(ceil(log2(simd+1))), pe))

    Latency is :attr:`latency` (= ``stages``) enabled cycles, throughput one chunk per cycle,
    no backpressure of its own (the caller stalls it through ``en``).
    """

    def __init__(self, *, pe, simd, stages=None):
        self._build(ChunkStagePlan(kind="popcount", pe=pe, simd=simd, stages=stages))

    def elaborate(self, platform):
        m = Module()
        for r in range(self.pe):
            total = adder_tree(m, _xnor_bits(self.x, self.w, r * self.simd, self.simd),
                               stages=self.latency, en=self.en, name=f"pc{r}")
            m.d.comb += self.p[r].eq(total)
        return m


class KernelPopcount(_ChunkStage):
    """The per-input-channel 2-D popcount stage of a channel-major convolution (SPEC §9).

    With the window vector in ``[c][ky][kx]`` order (``"order": "chw"`` in the folding, see
    :class:`~bnnhw.hw.window.WindowTranspose`) and ``simd`` a multiple of the
    ``kernel_elements = kh * kw`` elements of a 2-D kernel, one chunk holds whole 2-D windows
    of ``g = simd / kernel_elements`` input channels. This stage first computes every 2-D
    popcount ``p(o, c) = popcount(XNOR(window_c, W[o, c]))`` (one ``kh x kw`` XNOR-popcount
    per row and channel, a register rank after them), then sums the ``g`` of each row:
    ``p[r] = sum_c p(r, c)``, the same value as :class:`ChunkPopcount`. It exists so that the
    2-D popcounts are a stage of their own: a shared-result filter bank computes each distinct
    (or inverse, ``kh*kw - p``) 2-D kernel once per channel and replaces just the first half.

    Parameters
    ----------
    pe, simd : int
        Weight rows and lanes per chunk (``simd`` a multiple of ``kernel_elements``).
    kernel_elements : int
        ``kh * kw``.
    stages : int or None
        Register ranks of the per-row adder tree over the ``g`` 2-D popcounts, after the rank
        behind them; ``None`` is :func:`default_stages` of ``g``.
    weight_rows : sequence of int or None
        When given, the stage holds the weight rows itself (``PE * SIMD``-bit words indexed by
        ``row``, as :attr:`bnnhw.plan.stages.MVTUPlan.weight_rows`) and ignores ``w``; the
        MVTU built around it then has no weight memory (folding ``"stage":
        "kernel_popcount_rom"``).

    Members
    -------
    en, x, w, row, p
        As :class:`ChunkPopcount` (the seam of :mod:`bnnhw.hw.pe`).

    Latency :attr:`latency` = ``1 + stages`` enabled cycles, one chunk per cycle, stalled
    through ``en``.
    """

    def __init__(self, *, pe, simd, kernel_elements, stages=None, weight_rows=None):
        kind = "kernel_popcount" if weight_rows is None else "kernel_popcount_rom"
        self._build(ChunkStagePlan(kind=kind, pe=pe, simd=simd, kernel_elements=kernel_elements,
                                   stages=stages, weight_rows=None if weight_rows is None
                                   else tuple(weight_rows)))

    def _build(self, plan):
        super()._build(plan)
        self.groups, self.kernel_elements = plan.groups, plan.kernel_elements
        self._tree_stages = plan.stages

    def elaborate(self, platform):
        m = Module()
        e = self.kernel_elements
        kernel_count = unsigned(popcount_bits(e))
        w = self.w
        if self.plan.holds_weights:
            # The rows are constants of this stage: read by `row` in the same cycle as `x`
            # (an asynchronous ROM), so the stage's latency is unchanged.
            rom = Memory(shape=unsigned(self.pe * self.simd), depth=len(self.plan.weight_rows),
                         init=list(self.plan.weight_rows))
            m.submodules.weights = rom
            port = rom.read_port(domain="comb")
            m.d.comb += port.addr.eq(self.row)
            w = port.data
        for r in range(self.pe):
            xnor = _xnor_bits(self.x, w, r * self.simd, self.simd)
            counts = []
            for g in range(self.groups):
                # One 2-D XNOR-popcount p(r, c): what a filter bank computes once per distinct
                # kernel and hands to every row that repeats (or inverts) it.
                p2d = Signal(kernel_count, name=f"p2d_r{r}_c{g}")
                with m.If(self.en):
                    m.d.sync += p2d.eq(sum(xnor[g * e + j] for j in range(e)))
                counts.append(p2d)
            total = adder_tree(m, counts, stages=self._tree_stages, en=self.en, name=f"sum{r}")
            m.d.comb += self.p[r].eq(total)
        return m


class ChunkDot(_ChunkStage):
    """Signed dot product of one chunk of multi-bit codes with ``pe`` +1/-1 weight rows.

    ``p[r] = sum_j (w_r[j] ? q_j : -q_j)`` with ``q_j`` the two's-complement code of lane ``j``
    (SPEC §6). Padding lanes must carry the code 0.

    Parameters
    ----------
    pe, simd : int
    in_bits : int
        Width of one code.
    stages : int or None
        Register ranks of the adder tree, as :class:`ChunkPopcount`.

    Members
    -------
    en : In(1)
    x : In(simd * in_bits)
    w : In(pe * simd)
    row : In(unsigned(32))
    p : Out(ArrayLayout(signed(...), pe))

    Latency :attr:`latency` enabled cycles, one chunk per cycle, stalled through ``en``.
    """

    def __init__(self, *, pe, simd, in_bits, stages=None):
        self._build(ChunkStagePlan(kind="dot", pe=pe, simd=simd, in_bits=in_bits,
                                   stages=stages))

    def _build(self, plan):
        super()._build(plan)
        self.in_bits = plan.in_bits

    def elaborate(self, platform):
        m = Module()
        b = self.in_bits
        codes = [self.x[j * b:(j + 1) * b].as_signed() for j in range(self.simd)]
        for r in range(self.pe):
            terms = [Mux(self.w[r * self.simd + j], q, -q) for j, q in enumerate(codes)]
            total = adder_tree(m, terms, stages=self.latency, en=self.en, name=f"dot{r}")
            m.d.comb += self.p[r].eq(total)
        return m


class Accumulators(wiring.Component):
    """``lanes`` accumulators that sum partial results over the folds of one vector.

    ``sum[l] = (first ? 0 : acc[l]) + i[l]`` combinationally, saturated at ``2^A - 1`` when
    ``saturate`` (SPEC §3: partial popcounts only grow, so this equals ``min(P, 2^A - 1)``);
    ``acc`` loads ``sum`` on ``en & valid``.

    Parameters
    ----------
    lanes : int
    in_shape : Shape
        Shape of one partial sum.
    acc_shape : Shape
        Shape of one accumulator (unsigned for popcounts, signed for §6 dot products).
    saturate : bool
        Clamp an unsigned accumulator at its maximum instead of wrapping.

    Members
    -------
    en, valid, first : In(1)
    i : In(ArrayLayout(in_shape, lanes))
    sum : Out(ArrayLayout(acc_shape, lanes))

    Latency 0 to ``sum`` (the register holds the running value); one fold per cycle.
    """

    def __init__(self, *, lanes, in_shape, acc_shape, saturate=False):
        _check_int("Lane count", lanes, 1)
        if saturate and acc_shape.signed:
            raise ValueError("only an unsigned accumulator can saturate")
        self.lanes, self.in_shape, self.acc_shape, self.saturate = (lanes, in_shape, acc_shape,
                                                                    bool(saturate))
        super().__init__({
            "en": In(1), "valid": In(1), "first": In(1),
            "i": In(data.ArrayLayout(in_shape, lanes)),
            "sum": Out(data.ArrayLayout(acc_shape, lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        for lane in range(self.lanes):
            acc = Signal(self.acc_shape, name=f"acc{lane}")
            total = Mux(self.first, 0, acc) + self.i[lane]
            if self.saturate:
                top = (1 << self.acc_shape.width) - 1
                m.d.comb += self.sum[lane].eq(Mux(total > top, top, total))
            else:
                m.d.comb += self.sum[lane].eq(total)
            with m.If(self.en & self.valid):
                m.d.sync += acc.eq(self.sum[lane])
        return m


class XnorPopcountPE(wiring.Component):
    """One XNOR-popcount processing element: ``P = popcount(XNOR(x, w))`` over ``K`` inputs.

    Each input beat carries ``simd`` lanes of activations and weights; ``ceil(K / simd)``
    beats make one vector (the last one's lanes beyond ``K`` are ignored). The popcount
    accumulates over the beats in an ``acc_bits``-bit accumulator (SPEC §3) and leaves as one
    output beat per vector.

    Parameters
    ----------
    simd : int
        Lanes per beat.
    fan_in : int
        ``K``, inputs per vector.
    acc_bits : int or None
        Accumulator width; ``None`` is the minimal exact ``A_min = ceil(log2(K + 1))``. Wider
        is allowed; narrower only with ``overflow="saturate"``, then ``P`` saturates at
        ``2^A - 1`` like the golden model.
    overflow : ``"error"`` or ``"saturate"``
    stages : int or None
        Register ranks of the adder tree.

    Members
    -------
    i_stream : In(stream.Signature(StructLayout({"x": simd, "w": simd})))
    o_stream : Out(stream.Signature(unsigned(acc_bits)))

    Throughput one beat per cycle; latency ``stages + 1`` cycles from the last beat of a vector
    to its result. ``i_stream.ready`` is low only while a result waits on ``o_stream``
    (backpressure stalls the whole pipeline).
    """

    def __init__(self, *, simd, fan_in, acc_bits=None, overflow="error", stages=None):
        _check_int("SIMD width", simd, 1)
        _check_int("Fan-in", fan_in, 1)
        self.acc_bits = check_accumulator(fan_in, acc_bits, overflow)
        self.simd, self.fan_in = simd, fan_in
        self.folds = -(-fan_in // simd)
        self.saturates = self.acc_bits < popcount_bits(fan_in)
        self._chunk = ChunkPopcount(pe=1, simd=simd, stages=stages)
        super().__init__({
            "i_stream": In(stream.Signature(data.StructLayout({"x": simd, "w": simd}))),
            "o_stream": Out(stream.Signature(unsigned(self.acc_bits))),
        })

    @property
    def latency(self):
        return self._chunk.latency + 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.chunk = chunk = self._chunk
        m.submodules.acc = acc = Accumulators(lanes=1, in_shape=chunk.count_shape,
                                              acc_shape=unsigned(self.acc_bits),
                                              saturate=self.saturates)
        advance = ~self.o_stream.valid | self.o_stream.ready
        fold = Signal(range(self.folds))
        fire = self.i_stream.valid & advance
        m.d.comb += self.i_stream.ready.eq(advance)
        with m.If(fire):
            m.d.sync += fold.eq(Mux(fold == self.folds - 1, 0, fold + 1))
        rem = self.fan_in - (self.folds - 1) * self.simd
        last = fold == self.folds - 1
        x, w = self.i_stream.payload.x, self.i_stream.payload.w
        if rem != self.simd:
            # Padded lanes: input 0 against weight 1 never matches, so they add nothing to P.
            mask = (1 << rem) - 1
            x = Mux(last, x & mask, x)
            w = Mux(last, w | ~mask & ((1 << self.simd) - 1), w)
        m.d.comb += [chunk.en.eq(advance), chunk.x.eq(x), chunk.w.eq(w)]
        # Sideband (valid, first, last) delayed like the adder tree.
        v, f, l = fire, fold == 0, last
        for s in range(chunk.latency):
            nv, nf, nl = Signal(name=f"v{s}"), Signal(name=f"f{s}"), Signal(name=f"l{s}")
            with m.If(advance):
                m.d.sync += [nv.eq(v), nf.eq(f), nl.eq(l)]
            v, f, l = nv, nf, nl
        m.d.comb += [acc.en.eq(advance), acc.valid.eq(v), acc.first.eq(f),
                     acc.i[0].eq(chunk.p[0])]
        with m.If(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(advance & v & l):
            m.d.sync += [self.o_stream.valid.eq(1), self.o_stream.payload.eq(acc.sum[0])]
        return m
