"""Explicit adder graphs of hardwired (constant-weight) binary convolutions. Pure Python.

A hardwired layer computes, at every window, all ``O`` popcounts
``P[o] = popcount(XNOR(x, W[o]))`` of the ``K``-bit window vector ``x`` at once, with the
weights as constants: each XNOR is the literal ``x_j`` (weight +1) or ``NOT x_j`` (weight -1),
free in a LUT. What remains is addition, and the layer's cost is how its additions are
organised. An :class:`AdderGraph` says exactly that: every node is an unsigned sum of
*terms*, a term being an earlier node, optionally bitwise inverted within the node's width
and shifted left. Its hardware (:class:`bnnhw.hw.hardwired.HardwiredConv`) is one adder per
node, nothing else.

Inversion is what makes result sharing cheap (SPEC §9): the inverse kernel's popcount
``n - p`` is the bitwise complement ``~p = (2^w - 1) - p`` of the node plus a constant, and a
correction ``2 XNOR(x_i, w_i) - 1`` is the literal at weight 2 plus a constant. The graph
never adds those constants: every output node's value is ``P[o] + offset[o]`` with a constant
``offset[o]`` (:meth:`AdderGraph.offsets`), folded into the output channel's threshold.

Every node's value is an affine function of ``x`` with integer coefficients (sums, shifts and
complements within a width that holds the node's whole range never wrap), so evaluating the
graph at ``x = 0`` and at the ``K`` unit vectors gives every output's affine form exactly
(:meth:`AdderGraph.affine`): :meth:`AdderGraph.check` proves a graph computes a given set of
kernels for all ``2^K`` inputs, not for samples.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["Term", "AdderGraph", "lower"]


@dataclass(frozen=True)
class Term:
    """One operand of a sum node: node ``node``, bitwise inverted within its width when
    ``invert`` (``(2^w - 1) - v``), times ``2^shift``."""
    node: int
    invert: bool = False
    shift: int = 0


class AdderGraph:
    """A DAG of unsigned sums over ``inputs`` input bits (see the module docstring).

    Parameters
    ----------
    inputs : int
        ``K``: nodes ``0 .. K-1`` are the input bits ``x_j``.
    sums : sequence of sequence of Term
        Sum node ``inputs + i`` is the sum of the terms ``sums[i]``; terms name earlier nodes.
    outputs : sequence of int
        The node whose value is output ``o`` (plus a constant, :meth:`offsets`).
    kinds : sequence of str, optional
        A label per sum node for the reports (``"kernel"``, ``"row"``, ``"output"``...).

    Raises
    ------
    ValueError
        A term naming a node that is not earlier, an empty sum, a negative shift, or an
        output that is no node; the message names the node.
    """

    def __init__(self, inputs, sums, outputs, kinds=None):
        self.inputs = int(inputs)
        if self.inputs < 1:
            raise ValueError(f"an adder graph needs at least 1 input, not {inputs}")
        self.sums = tuple(tuple(terms) for terms in sums)
        self.outputs = tuple(int(o) for o in outputs)
        self.kinds = tuple(kinds) if kinds is not None else ("sum",) * len(self.sums)
        if len(self.kinds) != len(self.sums):
            raise ValueError(f"{len(self.kinds)} kinds for {len(self.sums)} sum nodes")
        total = self.inputs + len(self.sums)
        lo = [0] * self.inputs
        hi = [1] * self.inputs
        depth = [0] * self.inputs
        for i, terms in enumerate(self.sums):
            node = self.inputs + i
            if not terms:
                raise ValueError(f"sum node {node} has no terms")
            l = h = d = 0
            for t in terms:
                if not isinstance(t, Term):
                    raise ValueError(f"sum node {node}: terms must be Term, not {t!r}")
                if not 0 <= t.node < node:
                    raise ValueError(f"sum node {node}: term node {t.node} is not an earlier "
                                     f"node (0..{node - 1})")
                if t.shift < 0:
                    raise ValueError(f"sum node {node}: shift must be >= 0, not {t.shift}")
                a, b = lo[t.node], hi[t.node]
                if t.invert:
                    top = (1 << max(1, b.bit_length())) - 1
                    a, b = top - b, top - a
                l += a << t.shift
                h += b << t.shift
                d = max(d, depth[t.node])
            lo.append(l)
            hi.append(h)
            depth.append(d + 1)
        for o, node in enumerate(self.outputs):
            if not 0 <= node < total:
                raise ValueError(f"output {o} names node {node}, which does not exist")
        self._lo, self._hi, self._depth = tuple(lo), tuple(hi), tuple(depth)

    # -- figures ------------------------------------------------------------------------------

    @property
    def nodes(self):
        """Number of nodes, inputs included."""
        return self.inputs + len(self.sums)

    def width(self, node):
        """Bits of node ``node``: what holds its largest value (at least 1)."""
        return max(1, self._hi[node].bit_length())

    def range(self, node):
        """``(lo, hi)``: the node's smallest and largest value."""
        return self._lo[node], self._hi[node]

    def depth(self, node):
        """Sum nodes on the longest path from an input (inputs: 0)."""
        return self._depth[node]

    @property
    def max_depth(self):
        return max(self._depth[o] for o in self.outputs)

    def term_width(self, term):
        """Bits a term occupies in its sum: the node's width plus the shift."""
        return self.width(term.node) + term.shift

    def fanout(self):
        """Uses of every node as a term (outputs not counted)."""
        count = [0] * self.nodes
        for terms in self.sums:
            for t in terms:
                count[t.node] += 1
        return count

    def stats(self):
        """Counts for the reports: sum nodes per kind, terms, operand bits (the bits that
        enter adders, a term counting its node's width), and the bits of the nodes' results.
        """
        by_kind = {}
        terms = operand_bits = result_bits = 0
        for i, ts in enumerate(self.sums):
            kind = self.kinds[i]
            by_kind[kind] = by_kind.get(kind, 0) + 1
            terms += len(ts)
            operand_bits += sum(self.width(t.node) for t in ts)
            result_bits += self.width(self.inputs + i)
        return {"inputs": self.inputs, "outputs": len(self.outputs), "sums": len(self.sums),
                "by_kind": dict(sorted(by_kind.items())), "terms": terms,
                "operand_bits": operand_bits, "result_bits": result_bits,
                "max_depth": self.max_depth}

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, x):
        """Output values for input bit vectors ``x`` (``[N, K]`` of 0 / 1): int64 ``[N, O]``.

        Evaluates the graph node by node, as the hardware does (no wrap-around can occur).
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.inputs:
            raise ValueError(f"inputs must have shape [N, {self.inputs}], not {list(x.shape)}")
        vals = [None] * self.nodes
        xt = np.ascontiguousarray(x.T.astype(np.int64))
        for j in range(self.inputs):
            vals[j] = xt[j]
        needed = self._needed()
        for i, terms in enumerate(self.sums):
            node = self.inputs + i
            if not needed[node]:
                continue
            acc = np.zeros(x.shape[0], np.int64)
            for t in terms:
                v = vals[t.node]
                if t.invert:
                    v = ((1 << self.width(t.node)) - 1) - v
                acc += v << t.shift
            vals[node] = acc
        return np.stack([vals[o] for o in self.outputs], axis=1)

    def _needed(self):
        needed = [False] * self.nodes
        for o in self.outputs:
            needed[o] = True
        for i in range(len(self.sums) - 1, -1, -1):
            if needed[self.inputs + i]:
                for t in self.sums[i]:
                    needed[t.node] = True
        return needed

    def affine(self, block=512):
        """Every output's exact affine form: ``value[o] = const[o] + coef[o] @ x``.

        Returns
        -------
        coef : numpy.ndarray of int64, ``[O, K]``
        const : numpy.ndarray of int64, ``[O]``
        """
        k = self.inputs
        const = self.evaluate(np.zeros((1, k), np.int8))[0]
        coef = np.empty((len(self.outputs), k), np.int64)
        for s in range(0, k, block):
            e = min(k, s + block)
            basis = np.zeros((e - s, k), np.int8)
            basis[np.arange(e - s), np.arange(s, e)] = 1
            coef[:, s:e] = (self.evaluate(basis) - const).T
        return coef, const

    def offsets(self, weight_rows):
        """``offset[o]`` such that output ``o`` is ``P[o] + offset[o]`` (see :meth:`check`)."""
        return self.check(weight_rows)

    def check(self, weight_rows):
        """Prove that output ``o`` is ``popcount(XNOR(x, weight_rows[o])) + offset[o]``.

        Parameters
        ----------
        weight_rows : array of +1 / -1, ``[O, K]``
            The kernels in the graph's input order.

        Returns
        -------
        numpy.ndarray of int64, ``[O]``
            The offsets.

        Raises
        ------
        ValueError
            Naming the first output and input whose coefficient is wrong.
        """
        w = np.asarray(weight_rows)
        if w.shape != (len(self.outputs), self.inputs):
            raise ValueError(f"weight rows must have shape [{len(self.outputs)}, "
                             f"{self.inputs}], not {list(w.shape)}")
        coef, const = self.affine()
        # popcount(XNOR(x, w)) = sum_j (w_j > 0 ? x_j : 1 - x_j): coefficient +-1, constant
        # the number of -1 weights.
        want = np.where(w > 0, 1, -1)
        bad = coef != want
        if bad.any():
            o, j = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"adder graph output {o}: coefficient of input {j} is "
                             f"{int(coef[o, j])}, the kernel needs {int(want[o, j])}")
        return const - (w < 0).sum(axis=1)


def lower(graph, counters=False):
    """The same function as ``graph`` with only the adders that FPGA carry chains build.

    Every sum node becomes a tree of

    * with ``counters``, ``"c6"`` nodes first: six 1-bit terms, a 6:3 counter (three
      six-input functions: one LUT6 each, where a full adder takes two LUTs for three bits);

    * ``"fa"`` nodes: three 1-bit terms, a full adder in LUTs (sum and majority, 2 bits out),
      where the literals' inversions are free;
    * ``"add"`` nodes: two word terms and at most one 1-bit term (the chain's carry-in), one
      carry chain of the node's width.

    Shifted 1-bit terms (a correction at weight 2) become that many copies at weight 1;
    shifted words stay shifted operands of a chain (its low bits are the other operand's). Terms
    combine narrowest first (fewest chain bits), 1-bit terms in full adders while three
    are left, then as carry-ins. Node outputs and value ranges are unchanged
    (:meth:`AdderGraph.check` of the lowered graph proves it).

    Returns
    -------
    AdderGraph
        ``kinds`` ``"fa"`` / ``"add"``; ``outputs`` at the lowered output nodes.
    """
    sums, kinds = [], []
    inputs = graph.inputs
    lo = [0] * inputs
    hi = [1] * inputs
    new = list(range(inputs))            # old node -> new node

    def width(node):
        return max(1, hi[node].bit_length())

    def term_range(t):
        a, b = lo[t.node], hi[t.node]
        if t.invert:
            top = (1 << width(t.node)) - 1
            a, b = top - b, top - a
        return a << t.shift, b << t.shift

    seen = {}

    def emit(terms, kind):
        terms = tuple(terms)
        # Structural hashing, as Yosys' opt_merge does: the same adder on the same terms is
        # one adder.
        if kind in ("fa", "c6"):
            key = (kind, tuple(sorted((t.node, t.invert) for t in terms)))
        else:
            key = (kind, tuple(sorted((t.node, t.invert, t.shift) for t in terms[:2])),
                   tuple((t.node, t.invert, t.shift) for t in terms[2:]))
        if key in seen:
            return seen[key]
        sums.append(terms)
        kinds.append(kind)
        l = h = 0
        for t in terms:
            a, b = term_range(t)
            l, h = l + a, h + b
        lo.append(l)
        hi.append(h)
        seen[key] = inputs + len(sums) - 1
        return seen[key]

    for i, terms in enumerate(graph.sums):
        bits, words = [], []
        for t in terms:
            t = Term(new[t.node], t.invert, t.shift)
            w = width(t.node)
            if w == 1 and t.shift:
                bits += [Term(t.node, t.invert)] * (1 << t.shift)
            elif w == 1:
                bits.append(t)
            else:
                words.append(t)
        while counters and len(bits) >= 6:
            words.append(Term(emit(tuple(bits[:6]), "c6")))
            del bits[:6]
        # Full adders while at least three single bits are left (a triple in LUTs), keeping
        # one bit as a carry-in per word adder that will follow.
        while len(bits) >= 3:
            a, b, c = bits.pop(0), bits.pop(0), bits.pop(0)
            words.append(Term(emit((a, b, c), "fa")))
        while len(words) + len(bits) > 1:
            words.sort(key=lambda t: (width(t.node) + t.shift, t.node))
            if len(words) >= 2:
                a, b = words.pop(0), words.pop(0)
                extra = (bits.pop(0),) if bits else ()
                words.append(Term(emit((a, b, *extra), "add")))
            elif words:
                # One word and one or two bits left.
                a = words.pop(0)
                take = bits[:2]
                del bits[:2]
                if len(take) == 2:
                    words.append(Term(emit((a, take[0], take[1]), "add")))
                else:
                    words.append(Term(emit((a, take[0]), "add")))
            else:
                # Two bits: a half adder as a 2-bit chain.
                a, b = bits.pop(0), bits.pop(0)
                words.append(Term(emit((a, b), "add")))
        last = (words or bits)[0]
        if last.invert or last.shift:
            # A single inverted term: the node is its complement, kept as a node of its own.
            new.append(emit((last,), "add"))
        else:
            new.append(last.node)
    return AdderGraph(inputs, sums, [new[o] for o in graph.outputs], kinds)


def csa_schedule(terms, width, ripple_below=5):
    """Carry-save schedule of one sum node: full adders per column, then one final adder.

    Parameters
    ----------
    terms : sequence of (term_width, shift)
        The node's terms; bit ``i`` of term ``t`` is bit id ``(t, i)``, weight
        ``2^(shift + i)``.
    width : int
        The node's result width (columns at or above it are dropped: the node's range fits).
    ripple_below : int
        Final additions narrower than this are rippled in full and half adders instead of a
        carry chain (ECP5 maps adders of at most 4 result bits to LUTs poorly).

    Returns
    -------
    ops : list of tuple
        ``("fa", a, b, c, s, k)`` / ``("ha", a, b, s, k)``: bit ids in, sum ``s`` (same
        column) and carry ``k`` (next column) out; new ids are ints.
    rows : tuple of two lists
        Per column the id of each final row's bit, or ``None``: the node is
        ``row0 + row1`` (a carry chain); ``row1`` all ``None`` when no chain is needed.
    """
    cols = [[] for _ in range(width + 1)]
    for t, (w, s) in enumerate(terms):
        for i in range(w):
            if s + i < width:
                cols[s + i].append((t, i))
    ops = []
    fresh = [0]

    def new():
        fresh[0] += 1
        return fresh[0] - 1

    # Wallace passes: every column with three or more bits loses two per full adder.
    while any(len(c) > 2 for c in cols[:width]):
        nxt = [[] for _ in range(width + 1)]
        for i in range(width):
            c = cols[i]
            j = 0
            while len(c) - j >= 3:
                s, k = new(), new()
                ops.append(("fa", c[j], c[j + 1], c[j + 2], s, k))
                nxt[i].append(s)
                nxt[i + 1].append(k)
                j += 3
            nxt[i].extend(c[j:])
        cols = nxt
    live = [i for i in range(width) if len(cols[i]) == 2]
    if live and width - live[0] < ripple_below:
        # Ripple the short rest in half and full adders.
        for i in range(live[0], width):
            while len(cols[i]) >= 2:
                if len(cols[i]) >= 3:
                    a, b, c = cols[i][:3]
                    s, k = new(), new()
                    ops.append(("fa", a, b, c, s, k))
                    cols[i] = [s] + cols[i][3:]
                else:
                    a, b = cols[i][:2]
                    s, k = new(), new()
                    ops.append(("ha", a, b, s, k))
                    cols[i] = [s] + cols[i][2:]
                cols[i + 1].append(k)
    row0 = [c[0] if c else None for c in cols[:width]]
    row1 = [c[1] if len(c) > 1 else None for c in cols[:width]]
    return ops, (row0, row1)
