"""The hardwired (constant-weight) convolution datapath: an adder graph, one window per cycle.

:class:`HardwiredConv` elaborates a :class:`~bnnhw.plan.hardwired.HardwiredPlan`: the layer's
:class:`~bnnhw.plan.adder_graph.AdderGraph` as one adder per node (a term is a wire, its
inversion a free NOT, its shift a wire offset), then per output channel one compare with a
constant, ``(value >= compare) XOR negate`` (the threshold in the graph's value domain, the
plan folds every constant in). There is no weight memory and no fold counter: all ``O``
outputs of a whole ``K``-bit window vector leave per cycle.
"""


from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..plan.adder_graph import Term, csa_schedule
from ..plan.hardwired import HardwiredPlan
from .layouts import from_plan

__all__ = ["HardwiredConv", "full_adder"]

KEEP = {"keep": 1}


def full_adder(a, b, c):
    """``(sum, carry)`` of three 1-bit values: what Yosys maps to two LUTs."""
    return a ^ b ^ c, (a & b) | (c & (a ^ b))


def _balanced_sum(parts):
    """``parts[0] + parts[1] + ...`` as a balanced tree (Yosys' ``alumacc`` merges it into one
    multi-operand sum all the same; a chain of hundreds of ``+`` is too deep for the
    simulator's recursion)."""
    parts = list(parts)
    while len(parts) > 1:
        parts = [parts[i] + parts[i + 1] if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return parts[0]


@from_plan("fan_in", "out_channels", "cycles_per_vector", "latency", "in_width", "out_width")
class HardwiredConv(wiring.Component):
    """A binary convolution with its threshold, fully unrolled with constant weights.

    Parameters
    ----------
    layer : bnnhw.model.BinaryConv2d
    threshold : bnnhw.model.Threshold
    clip : bnnhw.model.Clip or None
    sharing : bnnhw.sharing.LayerPlan or None
        The layer's sharing plan (SPEC §9); ``None``: unshared.
    adders : str or None
        How the graph is built (:data:`bnnhw.plan.hardwired.ADDER_FORMS`); default
        ``"auto"`` with a sharing plan, else ``"naive"``.
    ranks : sequence of int or None
        Pipeline register ranks, each after that many adder levels (``None``: the plan's
        default, :class:`~bnnhw.plan.hardwired.HardwiredPlan`).

    Members
    -------
    i_stream : In(stream.Signature(unsigned(K)))
        One whole window vector per beat, ``[ky][kx][c]`` (the sliding window's order).
    o_stream : Out(stream.Signature(unsigned(O)))
        One output pixel per beat, bit ``o`` = output channel ``o``.

    Throughput one vector per cycle; latency :attr:`latency` cycles (``len(ranks) + 1``);
    ``o_stream.ready`` low stalls the whole pipeline (``i_stream.ready`` follows it).
    """

    def __init__(self, *, layer, threshold, clip=None, sharing=None, adders=None, ranks=None):
        self._build(HardwiredPlan(layer=layer, threshold=threshold, clip=clip,
                                  sharing=sharing, adders=adders,
                                  ranks=None if ranks is None else tuple(ranks)))

    def _build(self, plan):
        self.plan = plan
        self.layer = plan.layer
        super().__init__({
            "i_stream": In(stream.Signature(plan.in_width)),
            "o_stream": Out(stream.Signature(plan.out_width)),
        })

    def describe(self):
        """JSON-serialisable summary (:meth:`bnnhw.plan.hardwired.HardwiredPlan.describe`)."""
        return self.plan.describe()

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        graph = plan.hardware_graph
        ranks = plan.ranks
        advance = Signal()
        m.d.comb += [advance.eq(~self.o_stream.valid | self.o_stream.ready),
                     self.i_stream.ready.eq(advance)]

        def stage_of(node):
            d = graph.depth(node)
            return sum(1 for r in ranks if d > r)

        # values[node] = {stage: value}: a register per rank a value crosses, made on use.
        values = {}
        x = self.i_stream.payload

        def at(node, s):
            per = values[node]
            if s not in per:
                prev = at(node, s - 1)
                reg = Signal(prev.shape(), name=f"n{node}_s{s}")
                with m.If(advance):
                    m.d.sync += reg.eq(prev)
                per[s] = reg
            return per[s]

        def term(t, s):
            v = at(t.node, s)
            if t.invert:
                v = ~v
            if t.shift:
                v = Cat(Const(0, t.shift), v)
            return v

        needed = graph._needed()
        for j in range(graph.inputs):
            values[j] = {0: x[j]}
        for i, terms in enumerate(graph.sums):
            node = graph.inputs + i
            if not needed[node]:
                continue
            s = stage_of(node)
            keep = KEEP if plan.keeps(graph.kinds[i], graph.width(node)) else {}
            sig = Signal(graph.width(node), name=f"{graph.kinds[i]}{node}", attrs=keep)
            parts = [term(t, s) for t in terms]
            if graph.kinds[i] == "fa":
                # A full adder in LUTs: sum and majority of three bits.
                a, b, c = parts
                m.d.comb += sig.eq(Cat(*full_adder(a, b, c)))
            elif graph.kinds[i] == "c6":
                # A 6:3 counter, left to the LUT mapper as logic: each of its three bits is
                # a function of the six inputs.
                (s1, k1), (s2, k2) = full_adder(*parts[:3]), full_adder(*parts[3:])
                carry = s1 & s2
                m.d.comb += sig.eq(Cat(s1 ^ s2, *full_adder(k1, k2, carry)))
            elif graph.kinds[i] == "csa":
                m.d.comb += sig.eq(self._carry_save(m, node, terms, parts, graph.width(node)))
            else:
                m.d.comb += sig.eq(self._sum(terms, parts, lambda t: term(t, s)))
            values[node] = {s: sig}

        final = len(ranks)
        self._final = final
        valid = self.i_stream.valid
        for s in range(final):
            v = Signal(name=f"valid_s{s + 1}")
            with m.If(advance):
                m.d.sync += v.eq(valid)
            valid = v
        bits = []
        for o, node in enumerate(graph.outputs):
            const = plan.constant_output(o)
            if const is not None:
                bits.append(Const(const, 1))
                continue
            cmp = at(node, final) >= int(plan.graph_compare[o])
            bits.append(cmp ^ int(plan.negate[o]))
        with m.If(advance):
            m.d.sync += [self.o_stream.valid.eq(valid), self.o_stream.payload.eq(Cat(*bits))]
        return m

    @staticmethod
    def _sum(terms, parts, term):
        """A sum node's adder. When one term is unshifted and every other is shifted by at
        least ``s``, the low ``s`` bits are the unshifted term's and the adder starts above
        them (a carry chain does not shrink by itself around a constant-zero operand)."""
        shifts = [t.shift for t in terms]
        if shifts.count(0) == 1 and len(terms) > 1:
            low = min(x for x in shifts if x)
            i = shifts.index(0)
            a = parts[i]
            if len(a) > low:
                rest = [term(Term(t.node, t.invert, t.shift - low))
                        for j, t in enumerate(terms) if j != i]
                return Cat(a[:low], _balanced_sum([a[low:], *rest]))
        return _balanced_sum(parts)

    def _carry_save(self, m, node, terms, parts, width):
        """A sum node as full adders per column and one final carry chain
        (:func:`~bnnhw.plan.adder_graph.csa_schedule`); every adder output kept, so that
        Yosys maps each full adder to two LUTs and the chain to carry cells."""
        ops, (row0, row1) = csa_schedule(
            [(len(p), 0) for p in parts], width, self.plan.ripple_below)
        bit = {}
        for t, p in enumerate(parts):
            for j in range(len(p)):
                bit[(t, j)] = p[j]
        for op in ops:
            if op[0] == "fa":
                _, a, b, c, so, ko = op
                a, b, c = bit[a], bit[b], bit[c]
                sv, kv = full_adder(a, b, c)
            else:
                _, a, b, so, ko = op
                a, b = bit[a], bit[b]
                sv, kv = a ^ b, a & b
            s_sig = Signal(name=f"csa{node}_s{so}", attrs=KEEP)
            k_sig = Signal(name=f"csa{node}_k{ko}", attrs=KEEP)
            m.d.comb += [s_sig.eq(sv), k_sig.eq(kv)]
            bit[so], bit[ko] = s_sig, k_sig
        zero = Const(0, 1)
        a = Cat(*[bit[b] if b is not None else zero for b in row0])
        if all(b is None for b in row1):
            return a
        b = Cat(*[bit[b] if b is not None else zero for b in row1])
        return a + b

