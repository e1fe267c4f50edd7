"""The hardwired convolution stage: its adder graph, thresholds and figures. Pure Python.

A hardwired layer (folding ``"datapath": "hardwired"``) is a binary convolution fully
unrolled with its weights as constants: all ``O`` output channels of one whole ``K``-bit window
vector per cycle, no weight memory. Its hardware is an
:class:`~bnnhw.plan.adder_graph.AdderGraph` followed by one constant compare per output
channel; how the graph is organised is the ``adders`` form (:data:`ADDER_FORMS`):

``"naive"``
    One popcount per output channel over all ``K`` literals (unshared baseline).
``"grouped"``
    A popcount per 2-D kernel ``p(o, c)``, summed per output channel (unshared baseline; the
    SPEC §9 decomposition without sharing).
``"kernels"``
    The sharing plan's entries as they are (:mod:`bnnhw.sharing.plan`): each scratch entry a
    popcount of its ``kh * kw`` literals, once per input channel; inverse entries and
    inverted reads the node's complement (``~p``, the constants folded into the thresholds);
    derived entries their source plus the correction literals at weight 2.
``"rows"``
    Partial kernels: each input channel's kernel rows (``kw`` taps) are classes of their own,
    a row popcount computed once per channel, row and class (up to inversion); a 2-D kernel
    of the plan is a node of its own only where the cost model says it pays
    (:mod:`bnnhw.plan.adder_cost`), else its readers add its rows.
``"minority"``
    Whole filters against the window: ``P[o] = T + 2 popcount(m) - |m|`` or its mirror
    ``K - T + 2 popcount(m) - |m|``, where ``T`` is the popcount of the whole window vector
    (one node, shared by every output channel) and ``m`` the literals of the output's
    minority sign (at most ``K / 2``).
``"filters"``
    Whole filters from each other: every output channel is derived from the window popcount
    (as in ``"minority"``) or from an output channel already computed, or its inverse, plus
    twice the popcount of the literals where the two filters differ (:func:`filter_tree`:
    a minimum spanning tree by Hamming distance, at most :data:`FILTER_DEPTH` derivations
    deep).
``"auto"`` (default)
    Per kernel class of the plan, the cheapest of: its rows added by every reader, a node
    from its rows, a node derived from another entry with exact corrections (the plan's
    chain); chosen by the cost model of :mod:`bnnhw.plan.adder_cost`.

The graph's outputs are ``P[o] + offset[o]`` (:meth:`AdderGraph.check
<bnnhw.plan.adder_graph.AdderGraph.check>` proves it against the kernels the layer computes:
the network's own in the exact modes, the plan's effective kernels in ``"approx:D"``); the
thresholds are moved by the offsets.
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..model.layers import BinaryConv2d, Clip, Threshold
from ..model.packing import conv_weight_rows
from .adder_graph import AdderGraph, Term, lower
from .params import check_choice, check_int
from .stages import StagePlan
from .tables import accumulator_range, threshold_table

__all__ = ["HardwiredPlan", "ADDER_FORMS", "build_graph", "conv_slice", "filter_tree",
           "hardwired_plan"]

#: The ways a hardwired layer's adder graph can be built (see the module docstring).
ADDER_FORMS = ("naive", "grouped", "kernels", "rows", "auto", "cse", "minority", "split",
               "filters")

#: Longest chain of filter derivations of the ``"filters"`` form (each one adds a carry
#: chain to the combinational path).
FILTER_DEPTH = 4

#: Forms pipelined by default, a register rank every :data:`RANK_EVERY` adder levels: their
#: derivation chains are deep, and unpipelined Yosys' ABC9 took 716 s to map ``filters`` on
#: an 8-channel slice of CNV's conv1 (4,002 LUT4 eq.), pipelined 14 s (3,988).
PIPELINED_FORMS = ("split", "filters")
RANK_EVERY = 3

#: How sum nodes become hardware: ``"chains"`` (:func:`~bnnhw.plan.adder_graph.lower`: full
#: adders in LUTs and two-operand carry chains), ``"counters"`` (the same with 6:3 counters
#: first, for six-input LUTs), ``"csa"`` (each node a carry-save tree of full adders and one
#: chain) or ``"yosys"`` (each node one multi-operand sum, as Yosys maps it).
LOWERINGS = ("chains", "csa", "yosys", "counters")

#: Forms that read a sharing plan.
SHARED_FORMS = ("kernels", "auto", "cse")


class _Builder:
    """Collects sum nodes of a graph over a layer's window vector (``[ky][kx][c]`` order)."""

    def __init__(self, channels, kh, kw):
        self.C, self.kh, self.kw = channels, kh, kw
        self.n = kh * kw
        self.inputs = self.n * channels
        self.sums, self.kinds = [], []
        self._lo = [0] * self.inputs
        self._hi = [1] * self.inputs
        # Input channel of every node (inputs, and each node by its first term): common
        # subexpressions may be limited to blocks of channels.
        self.node_channel = {j: j % channels for j in range(self.inputs)}

    def index(self, c, tap):
        """Input bit of tap ``tap`` (``ky * kw + kx``) of channel ``c``."""
        return tap * self.C + c

    def literal(self, c, tap, plus):
        """The XNOR of the input with a constant weight: ``x`` for +1, ``NOT x`` for -1."""
        return Term(self.index(c, tap), invert=not plus)

    def add(self, terms, kind):
        terms = tuple(terms)
        if len(terms) == 1 and terms[0].shift == 0 and not terms[0].invert and kind != "output":
            return terms[0].node
        self.sums.append(terms)
        self.kinds.append(kind)
        lo = hi = 0
        for t in terms:
            a, b = self._lo[t.node], self._hi[t.node]
            if t.invert:
                top = (1 << max(1, b.bit_length())) - 1
                a, b = top - b, top - a
            lo, hi = lo + (a << t.shift), hi + (b << t.shift)
        self._lo.append(lo)
        self._hi.append(hi)
        node = self.inputs + len(self.sums) - 1
        self.node_channel[node] = self.node_channel[terms[0].node]
        return node

    def ranges(self, node):
        """``(lo, hi)`` of a node's value."""
        return self._lo[node], self._hi[node]

    def kernel_literals(self, c, bits, taps=None):
        taps = range(self.n) if taps is None else taps
        return [self.literal(c, t, bits >> t & 1) for t in taps]

    def graph(self, outputs):
        return AdderGraph(self.inputs, self.sums, outputs, self.kinds)


def _naive(weight):
    o, c, kh, kw = weight.shape
    b = _Builder(c, kh, kw)
    rows = conv_weight_rows(weight, "hwc")
    outs = [b.add([Term(j, invert=bool(rows[r, j] < 0)) for j in range(b.inputs)], "output")
            for r in range(o)]
    return b.graph(outs)


def _kernel_bits(weight):
    from ..sharing.plan import kernel_bits
    return kernel_bits(weight)


def _grouped(weight):
    o, c, kh, kw = weight.shape
    b = _Builder(c, kh, kw)
    bits = _kernel_bits(weight)
    outs = []
    for r in range(o):
        parts = [Term(b.add(b.kernel_literals(ch, int(bits[r, ch])), "kernel"))
                 for ch in range(c)]
        outs.append(b.add(parts, "output"))
    return b.graph(outs)


def filter_tree(rows, max_depth):
    """From which filter every output channel's popcount is derived (forms ``"minority"``,
    ``"filters"``).

    Prim's minimum spanning tree over the output channels and the window popcount ``T`` (the
    popcount of the all-+1 filter, whose inverse is the all-−1 one), edge weights the Hamming
    distance between filters, a filter or its inverse (``min(H, K - H)``): the bits a
    derivation adds. Outputs join in order of their distance; an output ``max_depth``
    derivations from ``T`` is no parent.

    Parameters
    ----------
    rows : array of +1 / -1, ``[O, K]``
    max_depth : int

    Returns
    -------
    order : list of int
        Output channels in the order they are built (parents first).
    parent : list of (int, bool)
        Per output channel: the parent (``-1``: ``T``) and whether its inverse is used.
    """
    rows = np.asarray(rows)
    o, k = rows.shape
    u = (rows > 0).astype(np.int64)
    h = k - (u @ u.T + (1 - u) @ (1 - u).T)
    dist = np.minimum(h, k - h)
    inverse = (k - h) < h
    ones = u.sum(axis=1)
    best = np.minimum(ones, k - ones)
    # Parent T (the all-+1 filter) when the output has fewer -1 than +1 weights, else ~T.
    parent = [(-1, bool(ones[q] < k - ones[q])) for q in range(o)]
    depth = np.zeros(o, np.int64)
    free = np.ones(o, bool)
    order = []
    for _ in range(o):
        q = int(np.flatnonzero(free)[np.argmin(best[free])])
        free[q] = False
        order.append(q)
        p = parent[q][0]
        depth[q] = 1 if p < 0 else depth[p] + 1
        if depth[q] >= max_depth:
            continue
        better = free & (dist[q] < best)
        best = np.where(better, dist[q], best)
        for r in np.flatnonzero(better):
            parent[r] = (q, bool(inverse[q, r]))
    return order, parent


def _filters(weight, max_depth):
    o, c, kh, kw = weight.shape
    b = _Builder(c, kh, kw)
    rows = conv_weight_rows(weight, "hwc")
    order, parent = filter_tree(rows, max_depth)
    window = None
    node = [None] * o
    for q in order:
        p, inv = parent[q]
        if p < 0:
            if window is None:
                window = b.add([Term(j) for j in range(b.inputs)], "window")
            base, filt = Term(window, inv), np.where(inv, -1, 1)
        else:
            base, filt = Term(node[p], inv), -rows[p] if inv else rows[p]
        diff = np.flatnonzero(rows[q] != filt)
        terms = [base]
        if diff.size:
            d = b.add([Term(int(j), invert=bool(rows[q, j] < 0)) for j in diff], "diff")
            terms.append(Term(d, shift=1))
        node[q] = b.add(terms, "output")
    return b.graph(node)


def _split(weight):
    """Form ``"split"``: ``"minority"`` with each output's minority literals counted per 2-D
    kernel, a count per input channel and set of taps shared by every output that needs it."""
    o, c, kh, kw = weight.shape
    b = _Builder(c, kh, kw)
    bits = _kernel_bits(weight)
    full = (1 << b.n) - 1
    window = b.add([Term(j) for j in range(b.inputs)], "window")
    counts = {}
    outs = []
    for r in range(o):
        ones = sum(int(v).bit_count() for v in bits[r])
        # Root T (all +1 weights) when the output has fewer -1 than +1 weights, else ~T.
        minus_root = ones < b.inputs - ones
        parts = []
        for ch in range(c):
            taps = int(bits[r, ch]) if minus_root else full & ~int(bits[r, ch])
            if not taps:
                continue
            key = (ch, taps)
            if key not in counts:
                # Counted over x; the -1 taps' literals NOT x are its complement.
                counts[key] = b.add([Term(b.index(ch, t)) for t in range(b.n)
                                     if taps >> t & 1], "kernel")
            parts.append(Term(counts[key], invert=not minus_root))
        terms = [Term(window, minus_root)]
        if parts:
            terms.append(Term(b.add(parts, "sum"), shift=1))
        outs.append(b.add(terms, "output"))
    return b.graph(outs)


def _entry_terms(b, c, ch, mask):
    """Terms of every entry of channel plan ``ch`` (scratch: a node of its literals; inverse:
    the source's complement; derived: a node of the source plus corrections)."""
    terms = []
    for e in ch.entries:
        if e.source is None:
            terms.append(Term(b.add(b.kernel_literals(c, e.bits), "kernel")))
            continue
        src = terms[e.source]
        src = Term(src.node, src.invert ^ e.invert, src.shift)
        if not e.corrections:
            terms.append(src)
            continue
        # 2 XNOR(x_i, w_i) - 1: the literal twice (its -1 goes into the offset).
        fix = [Term(b.index(c, i), invert=not (e.bits >> i & 1))
               for i in e.corrections for _ in range(2)]
        terms.append(Term(b.add([src, *fix], "derived")))
    return terms


def _kernels(weight, lp):
    o, c, kh, kw = weight.shape
    b = _Builder(c, kh, kw)
    mask = (1 << b.n) - 1
    reads = [[] for _ in range(o)]
    for ci, ch in enumerate(lp.channels):
        terms = _entry_terms(b, ci, ch, mask)
        for r in range(o):
            t = terms[ch.entry[r]]
            reads[r].append(Term(t.node, t.invert ^ bool(ch.inverted[r]), t.shift))
    return b.graph([b.add(ts, "output") for ts in reads])


def build_graph(weight, adders, sharing=None, cost=None):
    """The :class:`~bnnhw.plan.adder_graph.AdderGraph` of a layer's kernels.

    Parameters
    ----------
    weight : array of +1 / -1, ``[O, C, kh, kw]``
        The kernels the layer computes (for ``"approx:D"`` plans, the plan's effective ones).
    adders : str
        One of :data:`ADDER_FORMS`.
    sharing : bnnhw.sharing.LayerPlan or None
        Needed by the forms that read a plan.
    cost : bnnhw.plan.adder_cost.CostModel or None
        The cost model of the forms that choose (default: ECP5's).
    """
    check_choice("Adder form", adders, ADDER_FORMS)
    weight = np.asarray(weight)
    if adders == "naive":
        return _naive(weight)
    if adders == "grouped":
        return _grouped(weight)
    if adders == "split":
        return _split(weight)
    if adders in ("minority", "filters"):
        return _filters(weight, 1 if adders == "minority" else FILTER_DEPTH)
    if adders in SHARED_FORMS and sharing is None:
        raise ValueError(f"Adder form {adders!r} needs a sharing plan")
    if adders == "kernels":
        return _kernels(weight, sharing)
    from .adder_cost import rows_graph, auto_graph
    if adders == "rows":
        return rows_graph(weight, sharing, cost)
    return auto_graph(weight, sharing, cost, cse=adders == "cse")


@dataclass(frozen=True, eq=False)
class HardwiredPlan(StagePlan):
    """A binary convolution and its threshold as one hardwired stage (module docstring).

    Parameters
    ----------
    layer : BinaryConv2d
    threshold : Threshold
    clip : Clip or None
    sharing : bnnhw.sharing.LayerPlan or None
        The layer's plan (``None``: unshared).
    sharing_mode : str or None
        The plan's mode (``"exact"``, ``"similar:D"``, ``"approx:D"``), for the manifest.
    adders : str
        :data:`ADDER_FORMS`; default ``"auto"`` with a plan, ``"naive"`` without.
    ranks : tuple of int or None
        Pipeline register ranks, each after that many adder levels of the hardware graph.
        ``None`` (default): a rank every :data:`RANK_EVERY` levels for the forms of
        :data:`PIPELINED_FORMS`, none for the others.
    family : str
        Whose cost model chooses (``"ecp5"`` or ``"xc7"``).
    """
    layer: object
    threshold: object
    clip: object = None
    sharing: object = None
    sharing_mode: str | None = None
    adders: str | None = None
    ranks: tuple | None = None
    family: str = "ecp5"
    lowering: str = "chains"
    ripple_below: int = 5
    component: ClassVar[str] = "hardwired:HardwiredConv"

    def __post_init__(self):
        layer = self.layer
        if not isinstance(layer, BinaryConv2d):
            raise TypeError(f"Layer must be a BinaryConv2d (a hardwired datapath computes "
                            f"binary convolutions), not {layer!r}")
        if not isinstance(self.threshold, Threshold):
            raise TypeError(f"layer {layer.name!r}: a hardwired layer needs a Threshold, "
                            f"not {self.threshold!r}")
        if self.threshold.channels != layer.out_channels:
            raise ValueError(f"layer {layer.name!r}: {self.threshold.channels} thresholds for "
                             f"{layer.out_channels} output channels")
        if self.clip is not None and not isinstance(self.clip, Clip):
            raise TypeError(f"Clip must be a Clip layer or None, not {self.clip!r}")
        adders = self.adders
        if adders is None:
            adders = "auto" if self.sharing is not None else "naive"
            object.__setattr__(self, "adders", adders)
        check_choice("Adder form", adders, ADDER_FORMS)
        if adders in SHARED_FORMS and self.sharing is None:
            raise ValueError(f"layer {layer.name!r}: adder form {adders!r} needs a sharing "
                             f"plan (bnnhw generate --share MODE)")
        check_choice("Cost model family", self.family, ("ecp5", "xc7"))
        check_choice("Lowering", self.lowering, LOWERINGS)
        if self.ranks is None:
            object.__setattr__(self, "ranks", ())
            if adders in PIPELINED_FORMS:
                depth = self.hardware_graph.max_depth
                object.__setattr__(self, "ranks", tuple(range(RANK_EVERY, depth, RANK_EVERY)))
        ranks = tuple(check_int("Pipeline rank", r, 1) for r in self.ranks)
        if list(ranks) != sorted(set(ranks)):
            raise ValueError(f"Pipeline ranks must be increasing, not {list(ranks)}")
        object.__setattr__(self, "ranks", ranks)
        if self.sharing is not None:
            lp = self.sharing
            if (lp.name, lp.in_channels, lp.out_channels, tuple(lp.kernel)) != \
                    (layer.name, layer.in_channels, layer.out_channels, tuple(layer.kernel)):
                raise ValueError(f"layer {layer.name!r}: the sharing plan is for layer "
                                 f"{lp.name!r} ({lp.out_channels}x{lp.in_channels}x"
                                 f"{lp.kernel[0]}x{lp.kernel[1]})")

    # -- the graph ------------------------------------------------------------------------

    @property
    def fan_in(self):
        return self.layer.fan_in

    @property
    def out_channels(self):
        return self.layer.out_channels

    @property
    def in_width(self):
        """``K``: one whole window vector per beat."""
        return self.layer.fan_in

    @property
    def out_width(self):
        return self.layer.out_channels

    @property
    def cycles_per_vector(self):
        return 1

    @property
    def latency(self):
        """Cycles from a vector's beat to its output beat."""
        return len(self.ranks) + 1

    @property
    def effective_weight(self):
        """The kernels computed: the layer's, or the plan's effective ones (``approx``)."""
        if self.sharing is None:
            return self.layer.weight
        return self.sharing.effective_weight()

    def _derived(self):
        cached = self.__dict__.get("_derived_cache")
        if cached is not None:
            return cached
        from .adder_cost import cost_model
        weight = np.asarray(self.effective_weight)
        graph = build_graph(weight, self.adders, self.sharing, cost_model(self.family))
        if self.lowering in ("chains", "counters"):
            hardware = lower(graph, counters=self.lowering == "counters")
        elif self.lowering == "csa":
            hardware = AdderGraph(graph.inputs, graph.sums, graph.outputs,
                                  ["csa"] * len(graph.sums))
        else:
            hardware = graph
        offsets = hardware.check(conv_weight_rows(weight, "hwc"))
        compare, neg = threshold_table(self.layer, self.threshold, self.clip)
        _, top = accumulator_range(self.layer)
        lo = np.array([graph.range(n)[0] for n in graph.outputs], np.int64)
        hi = np.array([graph.range(n)[1] for n in graph.outputs], np.int64)
        # P saturates at `top` (SPEC §3): a compare above it never fires, at or below it, P
        # and the saturated value decide alike. Compares outside the graph's range are
        # constants.
        fires_never = compare > top
        gcmp = compare + offsets
        const = np.full(len(compare), -1, np.int64)
        const[(gcmp <= lo) & ~fires_never] = 1
        const[(gcmp > hi) | fires_never] = 0
        const = np.where(const >= 0, const ^ neg.astype(np.int64), -1)
        needed = hardware._needed()
        cached = {"graph": graph, "hardware": hardware, "offsets": offsets, "compare": compare, "neg": neg,
                  "gcmp": gcmp, "const": const, "needed": needed}
        object.__setattr__(self, "_derived_cache", cached)
        return cached

    @property
    def graph(self):
        """The :class:`~bnnhw.plan.adder_graph.AdderGraph` (checked against the kernels)."""
        return self._derived()["graph"]

    @property
    def hardware_graph(self):
        """The graph the hardware elaborates (:attr:`graph` lowered, see :data:`LOWERINGS`)."""
        return self._derived()["hardware"]

    @property
    def offsets(self):
        """Per output: graph value minus ``P``."""
        return self._derived()["offsets"]

    @property
    def compare(self):
        """Per output: the threshold on ``P`` (:func:`~bnnhw.plan.tables.threshold_table`)."""
        return self._derived()["compare"]

    @property
    def graph_compare(self):
        """Per output: the threshold on the graph's value (``compare + offset``)."""
        return self._derived()["gcmp"]

    @property
    def negate(self):
        return self._derived()["neg"]

    @property
    def needed(self):
        """Per graph node: whether an output depends on it."""
        return self._derived()["needed"]

    def keeps(self, kind, width):
        """Whether the hardware marks a node's result ``keep`` (so that Yosys' ``alumacc``
        does not merge its adder into the next one). Tuned per family on the CNV slices
        (by an earlier session, script not in the repo): on ECP5 adders of 4 or more result bits (smaller
        ones merge into their consumer, as Yosys maps adders of up to 4 bits to LUTs
        poorly), on xc7 every adder and full adder."""
        if kind in ("output", "c6") or self.lowering not in ("chains", "counters"):
            return True
        if self.family == "ecp5":
            return kind in ("add", "sum") and width >= 4
        return kind in ("add", "fa", "sum")

    def constant_output(self, o):
        """The output bit of channel ``o`` when it does not depend on the input, else None."""
        v = int(self._derived()["const"][o])
        return None if v < 0 else v

    def reference(self, vectors):
        """Output beats (ints) for window vectors ``[N, K]`` of bits in ``[ky][kx][c]`` order,
        computed by evaluating the graph."""
        vectors = np.asarray(vectors)
        vals = self.hardware_graph.evaluate(vectors)
        bits = (vals >= self.graph_compare) ^ self.negate
        d = self._derived()
        bits = np.where(d["const"] >= 0, d["const"], bits).astype(np.int64)
        return [int(sum(int(b) << i for i, b in enumerate(row))) for row in bits]

    def describe(self):
        """JSON-serialisable summary: form, sharing mode, graph counts, latency."""
        return {"kind": "hardwired", "adders": self.adders, "sharing": self.sharing_mode,
                "K": self.fan_in, "O": self.out_channels, "latency": self.latency,
                "ranks": list(self.ranks), "cost_model": self.family,
                "lowering": self.lowering, "graph": self.graph.stats(),
                "hardware": self.hardware_graph.stats(), "cycles_per_vector": 1}


def conv_slice(net, layer_name, outputs=None, inputs=None):
    """A binary convolution of ``net`` cut to some of its output (and input) channels, as a
    network.

    An output-channel slice keeps every input channel and the layer's clip and threshold
    (cut alike). An input-channel slice (``inputs``) computes only part of each sum, to which
    the layer's thresholds do not apply: it gets zero thresholds (``y >= 0``), so that no
    output is a constant and every form of the slice computes the same function. The slice's
    input is the layer's input map, as raw bytes 0 / 1 (a :class:`ThresholdQuantizer` at 1),
    and a dense layer of +1 weights over the thresholded map gives it a vector output. Used to
    test and measure hardwired layers on real networks' weights at a size that simulates and
    synthesizes quickly.

    Parameters
    ----------
    net : bnnhw.model.Network
    layer_name : str
        A binary convolution of ``net`` followed by a threshold.
    outputs, inputs : sequence of int or None
        The output and input channels kept, in order (``None``: all).

    Returns
    -------
    bnnhw.model.Network
        Layers ``[conv, (clip), threshold, "fc", output]`` with the convolution's name.
    """
    from ..model import BinaryDense, Network, Output, ThresholdQuantizer
    block = next((b for b in net.blocks() if b.name == layer_name), None)
    if block is None or not isinstance(block.compute.layer, BinaryConv2d):
        raise ValueError(f"layer {layer_name!r} is not a binary convolution of "
                         f"{net.name!r}")
    if block.threshold is None:
        raise ValueError(f"layer {layer_name!r} has no threshold")
    conv = block.compute.layer

    def pick(chosen, count, what):
        sel = np.arange(count) if chosen is None else np.asarray(list(chosen), np.int64)
        if sel.size == 0 or sel.min() < 0 or sel.max() >= count:
            raise ValueError(f"layer {layer_name!r}: {what} channels must be in "
                             f"0..{count - 1}, not {sel.tolist()}")
        return sel
    sel = pick(outputs, conv.out_channels, "output")
    ins = pick(inputs, conv.in_channels, "input")
    thr = block.threshold.layer
    weight = conv.weight[sel][:, ins]
    layers = [BinaryConv2d(conv.name, weight, stride=conv.stride, pad=conv.pad,
                           pad_value=conv.pad_value, acc_bits=conv.acc_bits,
                           overflow=conv.overflow)]
    if inputs is None:
        if block.clip is not None:
            layers.append(block.clip.layer)
        layers.append(Threshold(thr.name, thr.thresholds[sel], thr.negate[sel]))
    else:
        layers.append(Threshold(thr.name, np.zeros(sel.size, np.int64), np.zeros(sel.size, bool)))
    _, ho, wo = block.compute.output_shape
    layers += [BinaryDense("fc", np.ones((1, sel.size * ho * wo), np.int8)), Output()]
    _, h, w = block.compute.input_shape
    return Network(f"{net.name}_{conv.name}_slice", (ins.size, h, w),
                   ThresholdQuantizer(1), tuple(layers))


def hardwired_plan(net, layer_name, *, sharing=None, **kwargs):
    """The :class:`HardwiredPlan` of binary convolution ``layer_name`` of ``net`` (its clip
    and threshold from the network; ``sharing``: a :class:`~bnnhw.sharing.SharingPlan` of
    ``net`` or ``None``; ``kwargs``: the plan's other fields)."""
    block = next((b for b in net.blocks() if b.name == layer_name), None)
    if block is None:
        raise ValueError(f"layer {layer_name!r} is not a layer of {net.name!r}")
    lp = None
    mode = None
    if sharing is not None:
        lp = sharing.layer(layer_name)
        mode = sharing.mode
    return HardwiredPlan(layer=block.compute.layer,
                         threshold=None if block.threshold is None else block.threshold.layer,
                         clip=None if block.clip is None else block.clip.layer,
                         sharing=lp, sharing_mode=mode, **kwargs)
