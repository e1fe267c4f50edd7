"""Cost model of adder graphs on FPGA families, and the graph forms that choose by it.

Pure Python. The hardware of an :class:`~bnnhw.plan.adder_graph.AdderGraph` is its lowered
form (:func:`~bnnhw.plan.adder_graph.lower`): full adders in LUTs and two-operand carry chains.
:class:`CostModel` prices both per family, in LUT4 equivalents (ECP5: a ``CCU2C`` is two) or
LUT6 (xc7), from the measured behaviour of Yosys (``benchmarks/adder_calibration.py``
synthesizes each adder and prints the measured figures next to these):

* a full adder: two LUTs (sum and majority);
* a carry chain adding two words (and a carry-in bit) into ``w`` result bits: on xc7 one LUT
  per bit of the narrower word in front of ``CARRY4`` (the wider word's upper bits need
  none), on ECP5 ``2 * ceil(w / 2)`` LUT4 equivalents (a ``CCU2C`` per two bits);
* ECP5 only: an inverted word into a chain costs one LUT per bit, once per node and
  polarity (``CCU2C`` cannot absorb the inversion; xc7's LUT in front of the carry can).

The forms that choose (``"rows"``, ``"auto"``, :mod:`bnnhw.plan.hardwired`) build per input
channel and kernel row the row popcounts (each row class, up to inversion, one full adder per
channel and window), and per 2-D kernel class of the sharing plan decide, by this model,
between

* *flat*: every reader adds the kernel's row values itself;
* *rows*: one node summing the kernel's rows, read by every output channel that has the
  kernel (or its inverse, through the complement);
* *derived*: one node from an already built entry of the plan plus its correction literals
  (SPEC §9's exact similar-kernel sharing, the plan's derivation chain).
"""

from dataclasses import dataclass

import numpy as np

from .adder_graph import AdderGraph, Term

__all__ = ["CostModel", "cost_model", "rows_graph", "auto_graph", "estimate", "FAMILIES"]

FAMILIES = ("ecp5", "xc7")


@dataclass(frozen=True)
class CostModel:
    """LUT prices of the lowered adders on one family (see the module docstring).

    ``lut_adders`` prices the adders Yosys builds in LUTs rather than a carry chain (ECP5:
    result width <= 4; xc7: <= 2), by ``(sorted operand widths, carry-in)``; other adders
    follow :meth:`chain`.
    """
    family: str
    full_adder: float
    lut_add_max: int
    lut_adders: tuple
    chain_pair: bool
    inverted_bit: float

    def chain(self, width, operands=None):
        """A carry chain with ``width`` result bits (``operands``: the widths added)."""
        if self.chain_pair:
            return 2.0 * -(-width // 2)
        # xc7: a LUT in front of CARRY4 where both operands have a bit; above the narrower
        # operand the wider one's bits enter the carry cells directly.
        return float(max(1, min(operands)) if operands else width - 1)

    def add(self, operands, carry_in, width):
        """One two-operand adder (``operands``: the word widths) with an optional carry-in,
        ``width`` result bits."""
        if width <= self.lut_add_max:
            key = (tuple(sorted(operands)), bool(carry_in))
            table = dict(self.lut_adders)
            if key in table:
                return table[key]
            return 3.0 * width
        return self.chain(width, operands)

    def term(self, width):
        """What one more ``width``-bit term costs in a large sum: an adder with it."""
        return self.add((width, width), False, width + 1)

    def sum_cost(self, widths):
        """A node adding words of ``widths`` (as :func:`~bnnhw.plan.adder_graph.lower` builds
        it: 1-bit terms in full adders, then adders narrowest first): LUTs, result width."""
        bits = sum(1 for w in widths if w == 1)
        words = [w for w in widths if w > 1]
        cost = 0.0
        while bits >= 3:
            bits -= 3
            cost += self.full_adder
            words.append(2)
        words.sort()
        while len(words) + bits > 1:
            if len(words) >= 2:
                a, b = words.pop(0), words.pop(0)
                ci = bits > 0
                bits -= int(ci)
                w = max(a, b) + 1
                cost += self.add((a, b), ci, w)
            elif words:
                a = words.pop(0)
                take = min(bits, 2)
                bits -= take
                w = a + 1
                cost += self.add((a, 1), take == 2, w)
            else:
                bits -= 2
                w = 2
                cost += self.add((1, 1), False, w)
            words.append(w)
            words.sort()
        width = words[0] if words else 1
        return cost, width


_MODELS = {
    # LUTs per adder after Yosys 0.70, 32 independent copies each, every result kept:
    # benchmarks/adder_calibration.py (its table is in BENCHMARKS.md).
    "ecp5": CostModel("ecp5", full_adder=2.0, lut_add_max=4,
                      lut_adders=((((1, 1), False), 2.0), (((1, 1), True), 2.0),
                                  (((2, 2), False), 3.0), (((2, 2), True), 5.0),
                                  (((1, 2), False), 3.0), (((1, 2), True), 3.0),
                                  (((2, 3), False), 6.0), (((2, 3), True), 11.0),
                                  (((3, 3), False), 10.0), (((3, 3), True), 16.0),
                                  (((1, 3), False), 4.0), (((1, 3), True), 6.0)),
                      chain_pair=True, inverted_bit=1.0),
    "xc7": CostModel("xc7", full_adder=2.0, lut_add_max=2,
                     lut_adders=((((1, 1), False), 2.0), (((1, 1), True), 2.0)),
                     chain_pair=False, inverted_bit=0.0),
}


def cost_model(family):
    """The :class:`CostModel` of ``family`` (``"ecp5"`` or ``"xc7"``)."""
    if family not in _MODELS:
        raise ValueError(f"Cost model family must be 'ecp5' or 'xc7', not {family!r}")
    return _MODELS[family]


# -- the forms that choose ---------------------------------------------------------------------

class _Layer:
    """Row nodes of a layer's window and the terms of each channel's kernels."""

    def __init__(self, builder, kh, kw):
        self.b = builder
        self.kh, self.kw = kh, kw
        self.row_mask = (1 << kw) - 1
        self.rows = {}

    def row_term(self, c, r, pattern):
        """The popcount of row ``r`` of channel ``c`` against ``pattern`` (``kw`` bits): a
        row node per class (the pattern or its complement), read inverted for the other."""
        cls = min(pattern, pattern ^ self.row_mask)
        key = (c, r, cls)
        node = self.rows.get(key)
        if node is None:
            taps = range(r * self.kw, (r + 1) * self.kw)
            lits = [self.b.literal(c, t, (cls << (r * self.kw)) >> t & 1) for t in taps]
            node = self.b.add(lits, "row")
            self.rows[key] = node
        return Term(node, invert=pattern != cls)

    def kernel_rows(self, c, bits):
        """The row terms of kernel ``bits`` of channel ``c``."""
        return [self.row_term(c, r, bits >> (r * self.kw) & self.row_mask)
                for r in range(self.kh)]


def _classes(bits_c, n):
    """Kernel classes of one channel: ``{class: [(output, inverted)]}``, class = the smaller
    of kernel and complement."""
    mask = (1 << n) - 1
    out = {}
    for o, k in enumerate(bits_c):
        k = int(k)
        cls = min(k, k ^ mask)
        out.setdefault(cls, []).append((o, k != cls))
    return out


def rows_graph(weight, sharing=None, cost=None, min_uses=2):
    """Row popcounts shared per channel; a kernel class that ``min_uses`` or more output
    channels read becomes a node of its rows, the others are added flat by their readers.

    Parameters
    ----------
    weight : array of +1 / -1, ``[O, C, kh, kw]``
    sharing, cost
        Unused (the form needs neither); accepted for a uniform signature.
    min_uses : int
        Readers from which a kernel class is a node of its own.
    """
    from .hardwired import _Builder, _kernel_bits
    weight = np.asarray(weight)
    o_n, c_n, kh, kw = weight.shape
    b = _Builder(c_n, kh, kw)
    lay = _Layer(b, kh, kw)
    bits = _kernel_bits(weight)
    n = kh * kw
    mask = (1 << n) - 1
    reads = [[] for _ in range(o_n)]
    for c in range(c_n):
        for cls, readers in sorted(_classes(bits[:, c], n).items()):
            rows = lay.kernel_rows(c, cls)
            if len(readers) >= min_uses:
                node = b.add(rows, "kernel")
                for o, inv in readers:
                    reads[o].append(Term(node, inv))
            else:
                for o, inv in readers:
                    reads[o] += [Term(t.node, t.invert ^ inv) for t in rows]
    del mask
    return b.graph([b.add(ts, "output") for ts in reads])


def auto_graph(weight, sharing, cost=None, *, cse=False, cse_block=None):
    """Per kernel class of the sharing plan, the cheapest of flat, rows and derived (module
    docstring), by ``cost`` (default ECP5's model)."""
    from .hardwired import _Builder, _kernel_bits
    cost = cost or cost_model("ecp5")
    weight = np.asarray(weight)
    o_n, c_n, kh, kw = weight.shape
    b = _Builder(c_n, kh, kw)
    lay = _Layer(b, kh, kw)
    n = kh * kw
    mask = (1 << n) - 1
    reads = [[] for _ in range(o_n)]
    # The width a reader's term occupies in its output sum, and what the inverse costs.
    row_w = max(1, kw.bit_length())
    kern_w = max(1, n.bit_length())
    for c, ch in enumerate(sharing.channels):
        readers = [[] for _ in ch.entries]
        for o, (e, inv) in enumerate(zip(ch.entry, ch.inverted)):
            readers[e].append((o, bool(inv)))
        # Entries needed by later entries (derivation sources) must exist as terms.
        sources = {e.source for e in ch.entries if e.source is not None}
        terms = [None] * len(ch.entries)
        for i, e in enumerate(ch.entries):
            rd = readers[i]
            uses = len(rd)
            both = len({inv for _, inv in rd}) > 1
            inv_cost = cost.inverted_bit * kern_w if both else 0.0
            # Flat: each reader adds kh row words (no node).
            flat = uses * kh * cost.term(row_w)
            node_rows, _ = cost.sum_cost([row_w] * kh)
            as_rows = node_rows + uses * cost.term(kern_w) + inv_cost
            derived = None
            if e.source is not None and terms[e.source] is not None:
                d = len(e.corrections)
                if d:
                    node_d, _ = cost.sum_cost([kern_w] + [1] * (2 * d))
                    derived = node_d + uses * cost.term(kern_w + 1) + inv_cost
                else:
                    derived = uses * cost.term(kern_w) + inv_cost
            needed_later = i in sources
            options = {"rows": as_rows}
            if derived is not None:
                options["derived"] = derived
            if not needed_later:
                options["flat"] = flat
            choice = min(options, key=lambda k: (options[k], k != "derived"))
            if choice == "flat":
                rows = lay.kernel_rows(c, e.bits)
                for o, inv in rd:
                    reads[o] += [Term(t.node, t.invert ^ inv) for t in rows]
                continue
            if choice == "rows":
                t = Term(b.add(lay.kernel_rows(c, e.bits), "kernel"))
            else:
                src = terms[e.source]
                src = Term(src.node, src.invert ^ e.invert)
                if e.corrections:
                    fix = [Term(b.index(c, p), invert=not (e.bits >> p & 1))
                           for p in e.corrections for _ in range(2)]
                    t = Term(b.add([src, *fix], "derived"))
                else:
                    t = src
            terms[i] = t
            for o, inv in rd:
                reads[o].append(Term(t.node, t.invert ^ inv))
    del mask
    if cse:
        reads = common_subexpressions(b, reads, cost, block=cse_block)
    return b.graph([b.add(ts, "output") for ts in reads])


def common_subexpressions(builder, reads, cost, *, block=None):
    """Greedy two-term common subexpression elimination over the output channels' terms.

    In the manner of distributed-arithmetic compilers (hls4ml's da4ml): count every pair of
    terms that output channels add, up to a common complement (``~a + ~b`` is ``~(a + b)``
    plus a constant, folded into the thresholds); make the pair with the largest gain a node
    of its own and substitute it wherever it occurs; repeat while a pair pays. The gain of a
    pair read ``u`` times is ``(u - 1)`` carry chains of its width, less, on ECP5, the
    inverters when some readers need its complement.

    Parameters
    ----------
    builder : the graph builder holding the nodes the terms name
    reads : list of list of Term
        Per output channel, its terms (each node at most once per channel).
    cost : CostModel
    block : int or None
        Pair only terms whose input channels (``node // 1`` of the builder's channel map)
        fall in the same block of this many channels (bounds the work on whole layers).

    Returns
    -------
    list of list of Term
        The new terms per output channel (new nodes are in the builder, kind ``"cse"``).
    """
    import heapq
    width = {}

    def w_of(node):
        if node not in width:
            width[node] = _node_width(builder, node)
        return width[node]

    def key(t1, t2):
        (n1, i1), (n2, i2) = (t1, t2) if t1[0] < t2[0] else (t2, t1)
        return (n1, n2, i1 ^ i2), i1

    group = getattr(builder, "node_channel", {})

    def same_block(n1, n2):
        if block is None:
            return True
        c1, c2 = group.get(n1), group.get(n2)
        return c1 is None or c2 is None or c1 // block == c2 // block

    terms = [dict() for _ in reads]
    for o, ts in enumerate(reads):
        for t in ts:
            if t.shift or t.node in terms[o]:
                raise ValueError("common subexpressions need distinct unshifted terms")
            terms[o][t.node] = t.invert
    pairs = {}
    for o, tm in enumerate(terms):
        items = sorted(tm.items())
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                if same_block(items[i][0], items[j][0]):
                    k, _ = key(items[i], items[j])
                    pairs.setdefault(k, set()).add(o)

    def gain(k):
        users = pairs.get(k)
        if not users or len(users) < 2:
            return 0.0
        n1, n2, rel = k
        hi = _hi(builder, n1) + (_hi(builder, n2) if not rel else
                                 (1 << w_of(n2)) - 1 - _lo(builder, n2))
        w = max(1, hi.bit_length())
        inverted = any(terms[o][n1] for o in users)
        g = (len(users) - 1) * cost.add((w_of(n1), w_of(n2)), False, w)
        if inverted:
            g -= cost.inverted_bit * w
        return g

    heap = [(-gain(k), k) for k in pairs]
    heap = [h for h in heap if h[0] < 0]
    heapq.heapify(heap)
    while heap:
        neg, k = heapq.heappop(heap)
        g = gain(k)
        if g <= 0:
            continue
        if -neg > g + 1e-9:
            heapq.heappush(heap, (-g, k))
            continue
        n1, n2, rel = k
        node = builder.add([Term(n1), Term(n2, bool(rel))], "cse")
        if hasattr(builder, "node_channel") and n1 in builder.node_channel:
            builder.node_channel[node] = builder.node_channel[n1]
        touched = set()
        for o in sorted(pairs.pop(k)):
            tm = terms[o]
            inv = tm.pop(n1)
            tm.pop(n2)
            for m, im in tm.items():
                for n, i_n in ((n1, inv), (n2, inv ^ rel)):
                    kk, _ = key((n, i_n), (m, im))
                    users = pairs.get(kk)
                    if users is not None:
                        users.discard(o)
                        touched.add(kk)
            for m, im in tm.items():
                if same_block(node, m):
                    kk, _ = key((node, inv), (m, im))
                    pairs.setdefault(kk, set()).add(o)
                    touched.add(kk)
            tm[node] = inv
        for kk in touched:
            gk = gain(kk)
            if gk > 0:
                heapq.heappush(heap, (-gk, kk))
    return [[Term(n, i) for n, i in sorted(tm.items())] for tm in terms]


def _range(builder, node):
    lo, hi = builder.ranges(node)
    return lo, hi


def _hi(builder, node):
    return _range(builder, node)[1]


def _lo(builder, node):
    return _range(builder, node)[0]


def _node_width(builder, node):
    return max(1, _hi(builder, node).bit_length())


def estimate(graph, cost, compares=True):
    """Estimated LUTs of a lowered graph (:func:`~bnnhw.plan.adder_graph.lower`) under
    ``cost``: full adders, carry chains, ECP5's inverted chain inputs (once per node), and
    with ``compares`` one constant compare (a chain of the output's width) per output."""
    needed = graph._needed()
    total = 0.0
    inverted = set()
    for i, terms in enumerate(graph.sums):
        node = graph.inputs + i
        if not needed[node]:
            continue
        if graph.kinds[i] == "fa":
            total += cost.full_adder
            continue
        words = [graph.width(t.node) for t in terms[:2]]
        ci = len(terms) > 2
        if len(terms) == 1:
            words = [graph.width(terms[0].node)]
        total += cost.add(words, ci, graph.width(node))
        for t in terms:
            if t.invert and graph.width(t.node) > 1 and t.node not in inverted:
                inverted.add(t.node)
                total += cost.inverted_bit * graph.width(t.node)
    if compares:
        total += sum(cost.chain(graph.width(o), [graph.width(o)]) for o in graph.outputs)
    return total
