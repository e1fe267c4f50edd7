"""Memory mapping: every memory of a core plan placed on a device family's primitives.

A streaming core's memories are listed from its :class:`~bnnhw.plan.core.CorePlan` with their
real width and depth (:func:`core_memories`): per MVTU the weight ROM (``NF*SF`` words of
``PE*SIMD`` bits), the threshold / score table (``NF`` words of ``PE*(w+1)`` bits) and the
input ping-pong buffer; per convolution the line buffer and its FIFO; per pool its row memory.

Each memory costs, by how it is built (:func:`options`):

``block``
    block RAM tiles; a wide memory may be **split** into column slices of different block
    shapes (:func:`split_block`), e.g. 56 bits x 10,656 words on ECP5 as 36 + 18 + 2 bits
    (21 + 11 + 2 = 34 DP16KD, 32.4 needed) instead of one uniform shape (42);
``logic``
    a read-only memory as LUTs: one LUT4 per output bit and 16 words (free wide multiplexers
    on ECP5 and Gowin; iCE40 pays one more LUT per extra 16 words), plus the output register;
``lutram``
    distributed RAM cells (written memories; ECP5 and Gowin).

:func:`map_memories` chooses per memory the option that uses the smaller share of the device
block RAM unless logic frees a block for under a quarter of the device's LUTs-per-block
exchange rate (wide, shallow ROMs: CNV conv1's 9 x 4,096-bit weights are 114 DP16KD but
4,096 LUT4s), then, while the block RAMs do not fit, moves the memories that free a block
RAM for the fewest LUTs into logic. The MVTU
elaborates the mapping of its weights (slices with a ``ram_style`` each) and table
(:class:`~bnnhw.plan.stages.MVTUPlan` ``weight_map`` / ``table_style``); the other memories
are left to Yosys, which the estimate models with the same rules.
"""

from dataclasses import dataclass

from .devices import FAMILIES, Device

__all__ = ["Memory", "MemoryChoice", "core_memories", "options", "split_block",
           "bram_tiles", "rom_luts", "MemoryMap"]


@dataclass(frozen=True)
class Memory:
    """One memory of a core: ``stage`` and ``role`` name it; ``rom`` is True for constants."""
    stage: str
    role: str
    width: int
    depth: int
    rom: bool
    layer: str | None = None

    @property
    def bits(self):
        return self.width * self.depth

    @property
    def key(self):
        return f"{self.stage}.{self.role}"


@dataclass(frozen=True)
class MemoryChoice:
    """How one memory is built: ``style`` (``block``, ``logic``, ``lutram``), block RAMs,
    LUTs and FFs it takes, and for ``block`` its column ``slices`` ``((width, (depth, width
    of the block shape)), ...)``."""
    memory: Memory
    style: str
    brams: int
    luts: int
    ffs: int
    slices: tuple = ()

    def describe(self, family):
        fam = FAMILIES[family]
        m = self.memory
        used_bits = self.brams * fam.bram_bits
        return {"stage": m.stage, "role": m.role, "layer": m.layer, "width": m.width,
                "depth": m.depth, "bits": m.bits, "rom": m.rom, "style": self.style,
                "brams": self.brams, "bram_bits_used": used_bits, "luts": self.luts,
                "ffs": self.ffs,
                "slices": [{"width": w, "block_shape": f"{d}x{bw}"} for w, (d, bw)
                           in self.slices]}


def bram_tiles(width, depth, config):
    """Block RAMs of shape ``config = (depth, width)`` for a ``width`` x ``depth`` memory."""
    d, w = config
    return -(-depth // d) * -(-width // w)


def split_block(width, depth, configs):
    """The cheapest column split of a memory into block RAM slices.

    Returns ``(brams, slices)`` with ``slices = ((slice width, config), ...)`` in bit order
    (least significant first), consecutive slices of one shape merged. Each slice but the
    last is a whole number of the shape's width, so Yosys tiles it exactly as counted.
    """
    if not configs:
        return None, ()
    best = [(0, None)] * (width + 1)
    for w in range(1, width + 1):
        cand = None
        for cfg in configs:
            cost = -(-depth // cfg[0]) + best[max(0, w - cfg[1])][0]
            if cand is None or cost < cand[0]:
                cand = (cost, cfg)
        best[w] = cand
    slices, w = [], width
    while w > 0:
        cfg = best[w][1]
        take = min(cfg[1], w)
        if slices and slices[-1][1] == cfg:
            slices[-1] = (slices[-1][0] + take, cfg)
        else:
            slices.append((take, cfg))
        w -= take
    uniform = min((bram_tiles(width, depth, c), c) for c in configs)
    if uniform[0] <= best[width][0]:
        return uniform[0], ((width, uniform[1]),)
    return best[width][0], tuple(slices)


def rom_luts(width, depth, family):
    """LUT4s of a read-only memory built as logic (see the module docstring)."""
    if depth <= 1:
        return 0
    words = -(-depth // 16)
    per_bit = words if FAMILIES[family].mux_free else words + (words - 1)
    return width * per_bit


def options(memory, family):
    """``{style: MemoryChoice}`` of every way ``family`` can build ``memory``."""
    fam = FAMILIES[family]
    out = {}
    if fam.bram_configs:
        brams, slices = split_block(memory.width, memory.depth, fam.bram_configs)
        out["block"] = MemoryChoice(memory, "block", brams, 0, 0, slices)
    if memory.rom:
        out["logic"] = MemoryChoice(memory, "logic", 0, rom_luts(memory.width, memory.depth,
                                                                family), memory.width)
    elif fam.lutram is not None:
        d, w, luts = fam.lutram
        cells = -(-memory.depth // d) * -(-memory.width // w)
        # The write-address decode and the read register come on top of the cells.
        out["lutram"] = MemoryChoice(memory, "lutram", 0, cells * luts, memory.width)
    else:
        # No LUT RAM (iCE40): a written memory is flip-flops and a read multiplexer.
        out["logic"] = MemoryChoice(memory, "logic", 0, memory.bits, memory.bits)
    return out


def core_memories(plan):
    """Every memory of a :class:`~bnnhw.plan.core.CorePlan`, as :class:`Memory`."""
    from .stages import FifoPlan, MVTUPlan, PoolPlan, WindowPlan
    out = []
    for s in plan.stages:
        p = s.plan
        layer = s.name.split(".")[0]
        if isinstance(p, MVTUPlan):
            out.append(Memory(s.name, "weights", p.pe * p.simd, p.nf * p.sf, True, s.name))
            out.append(Memory(s.name, "table", p.pe * (p.table_shape.width + 1), p.nf, True,
                              s.name))
            out.append(Memory(s.name, "ibuf", p.simd * p.in_bits, 2 * p.sf, False, s.name))
        elif isinstance(p, WindowPlan):
            out.append(Memory(s.name, "line", p.channels * p.bits, p.buffer_rows * p.width,
                              False, layer))
        elif isinstance(p, FifoPlan):
            out.append(Memory(s.name, "fifo", p.width, p.depth, False, layer))
        elif isinstance(p, PoolPlan) and p.kernel > 1:
            out.append(Memory(s.name, "rows", (p.kernel - 1) * p.channels, p.out_width,
                              False, layer))
    return out


#: Memories this small always stay out of block RAM (Yosys does the same).
_SMALL_BITS = 1024


class MemoryMap:
    """The chosen build of every memory of a core on one family (see the module docstring).

    Parameters
    ----------
    plan : CorePlan
    device : Device
    bram_budget : int or None
        Block RAMs the memories may take (default: all of the device's).
    """

    def __init__(self, plan, device, *, bram_budget=None):
        if not isinstance(device, Device):
            raise TypeError(f"Device must be a Device, not {device!r}")
        self.device = device
        self.family = device.family
        budget = device.brams if bram_budget is None else bram_budget
        mems = core_memories(plan)
        # Exchange rate: LUTs worth one block RAM on this device. Block RAM that the
        # design does not need is free, so a memory leaves block RAM on its own only when
        # logic frees a block for less than a quarter of that rate (wide, shallow ROMs).
        rate = device.luts / device.brams if device.brams else None
        choice = {}
        for m in mems:
            opts = options(m, self.family)
            block = opts.get("block")
            other = opts.get("logic") or opts.get("lutram")
            if block is None:
                choice[m.key] = other
            elif other is None:
                choice[m.key] = block
            elif m.bits < _SMALL_BITS or other.luts <= block.brams * rate / 4:
                choice[m.key] = other
            else:
                choice[m.key] = block
        # Over budget: free block RAMs where a freed block costs the fewest LUTs.
        used = sum(c.brams for c in choice.values())
        if used > budget:
            moves = []
            for m in mems:
                c = choice[m.key]
                if c.style != "block":
                    continue
                alt = options(m, self.family)
                other = alt.get("logic") or alt.get("lutram")
                if other is not None and c.brams:
                    moves.append((other.luts / c.brams, m.key, other))
            for _, key, other in sorted(moves, key=lambda t: (t[0], t[1])):
                if used <= budget:
                    break
                used -= choice[key].brams
                choice[key] = other
        self.memories = mems
        self.choices = choice

    def choice(self, stage, role):
        return self.choices[f"{stage}.{role}"]

    def totals(self):
        c = self.choices.values()
        return {"brams": sum(x.brams for x in c), "luts": sum(x.luts for x in c),
                "ffs": sum(x.ffs for x in c), "bits": sum(x.memory.bits for x in c),
                "block_bits": sum(x.memory.bits for x in c if x.style == "block")}

    def weight_map(self, stage):
        """``((lo, width, ram_style), ...)`` slices of ``stage``'s weight ROM for the MVTU."""
        c = self.choice(stage, "weights")
        if c.style != "block":
            return ((0, c.memory.width, "logic"),)
        out, lo = [], 0
        for width, _ in c.slices:
            out.append((lo, width, "block"))
            lo += width
        return tuple(out)

    def core_memory(self):
        """The ``memory`` argument of :class:`~bnnhw.plan.core.CorePlan` for this map."""
        out = {}
        for m in self.memories:
            if m.role == "weights":
                out.setdefault(m.stage, {})["weights"] = self.weight_map(m.stage)
            elif m.role == "table":
                out.setdefault(m.stage, {})["table"] = self.table_style(m.stage)
        return out

    def table_style(self, stage):
        return "block" if self.choice(stage, "table").style == "block" else "logic"

    def per_layer(self):
        """Per compute layer: bits needed, block RAMs and their bits, LUTs of logic ROMs."""
        fam = FAMILIES[self.family]
        rows = {}
        for c in self.choices.values():
            key = c.memory.layer or c.memory.stage
            r = rows.setdefault(key, {"layer": key, "bits": 0, "brams": 0, "bram_bits": 0,
                                      "block_bits": 0, "luts": 0, "ffs": 0,
                                      "weight_bits": 0})
            r["bits"] += c.memory.bits
            r["brams"] += c.brams
            r["bram_bits"] += c.brams * fam.bram_bits
            r["luts"] += c.luts
            r["ffs"] += c.ffs
            if c.style == "block":
                r["block_bits"] += c.memory.bits
            if c.memory.role == "weights":
                r["weight_bits"] += c.memory.bits
        return list(rows.values())

    def describe(self):
        return {"device": self.device.name, "family": self.family, "totals": self.totals(),
                "per_layer": self.per_layer(),
                "memories": [self.choices[m.key].describe(self.family) for m in self.memories]}
