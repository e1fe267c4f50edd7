"""The amaranth.sim stream driver and monitor of every unit test, with random valid gaps and
backpressure, that checks the stream rules on each DUT output it watches.

A driver puts a list of payloads on a stream, idling a random number of cycles before each
beat (or offering each beat a fixed number of cycles after the last one was taken); it holds
the payload stable while ``valid & ~ready``. A monitor takes beats off a stream with a random
(or periodic) ``ready``, records each payload with its cycle, and **fails** when the DUT breaks
the rules: ``valid`` dropped before the transfer, or the payload changed while stalled.
"""

import random

from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

__all__ = ["StreamDriver", "StreamMonitor", "run_streams", "run_stream", "compare_beats",
           "raw"]


def raw(value):
    """A sampled payload as a plain int (struct layouts included), for comparisons."""
    if isinstance(value, int):
        return value
    if hasattr(value, "as_bits"):
        return int(value.as_bits())
    return int(value)


class StreamDriver:
    """Drive ``payloads`` onto ``stream``.

    Before each beat it idles with probability ``1 - valid_prob`` per cycle, or, with
    ``valid_every=m``, it offers each beat ``m`` cycles after the previous one was taken (a
    producer of fixed rate). :attr:`sent_cycles` holds each transfer's cycle (1-based: the
    cycle whose clock edge took the beat).
    """

    def __init__(self, stream, payloads, *, valid_prob=1.0, valid_every=None, seed=0):
        self.stream, self.payloads = stream, list(payloads)
        self.valid_prob, self.valid_every = valid_prob, valid_every
        self.rng = random.Random(seed)
        self.sent_cycles = []

    async def run(self, ctx):
        cycle = 0
        idle = (self.valid_every or 1) - 1
        for payload in self.payloads:
            while (idle if self.valid_every else self.rng.random() >= self.valid_prob):
                ctx.set(self.stream.valid, 0)
                await ctx.tick()
                cycle += 1
                if self.valid_every:
                    idle -= 1
            ctx.set(self.stream.valid, 1)
            ctx.set(self.stream.payload, payload)
            while True:
                _, _, ready = await ctx.tick().sample(self.stream.ready)
                cycle += 1
                if ready:
                    break
            self.sent_cycles.append(cycle)
            idle = (self.valid_every or 1) - 1
        ctx.set(self.stream.valid, 0)


class StreamMonitor:
    """Collect ``count`` beats from ``stream`` and check the stream rules on it.

    ``ready`` is high with probability ``ready_prob`` per cycle, or, with ``ready_every=n``,
    exactly every ``n``-th cycle (a consumer of fixed rate). :attr:`beats` holds the payloads
    (as ``convert(value)``), :attr:`cycles` each transfer's cycle (1-based).

    Raises ``AssertionError`` (failing the test) when ``valid`` drops before a stalled beat
    was taken or its payload changes while stalled.
    """

    def __init__(self, stream, count, *, ready_prob=1.0, ready_every=None, seed=1,
                 convert=None, name="o_stream"):
        self.stream, self.count, self.name = stream, count, name
        self.ready_prob, self.ready_every = ready_prob, ready_every
        self.rng = random.Random(seed)
        self.convert = convert or (lambda v: v)
        self.beats, self.cycles = [], []

    async def run(self, ctx):
        cycle, waiting = 0, None
        while len(self.beats) < self.count:
            if self.ready_every:
                ready = cycle % self.ready_every == 0
            else:
                ready = self.rng.random() < self.ready_prob
            ctx.set(self.stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(self.stream.valid,
                                                           self.stream.payload)
            if waiting is not None:
                assert valid, f"{self.name}.valid dropped before the transfer at cycle {cycle}"
                assert raw(payload) == waiting, \
                    f"{self.name}.payload changed while stalled at cycle {cycle}"
            cycle += 1
            if valid and ready:
                self.beats.append(self.convert(payload))
                self.cycles.append(cycle)
                waiting = None
            elif valid:
                waiting = raw(payload)
        ctx.set(self.stream.ready, 0)


def run_streams(dut, drivers, monitors, *, max_cycles=200_000, vcd=None):
    """Simulate ``dut`` until every monitor has its beats (fails after ``max_cycles``)."""
    top = Module()
    top.submodules.dut = dut
    top.domains.sync = ClockDomain("sync")   # also for purely combinational DUTs
    sim = Simulator(top)
    sim.add_clock(1e-8)
    for d in drivers:
        sim.add_testbench(d.run, background=True)
    for m in monitors:
        sim.add_testbench(m.run)

    async def timeout(ctx):
        for _ in range(max_cycles):
            await ctx.tick()
        taken = ", ".join(f"{m.name}: {len(m.beats)} of {m.count} beats" for m in monitors)
        raise AssertionError(f"timeout: simulation did not finish within {max_cycles} cycles "
                             f"({taken})")

    sim.add_testbench(timeout, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def run_stream(dut, in_beats, n_out, *, p_gap=0.0, p_stall=0.0, ready_every=None,
               valid_every=None, seed=0, max_cycles=200_000):
    """Drive ``in_beats`` into ``dut.i_stream`` and collect ``n_out`` beats of ``dut.o_stream``.

    ``p_gap``: probability of an idle input cycle before a beat; ``p_stall``: probability that
    the sink is not ready in a cycle; ``ready_every`` / ``valid_every``: fixed-rate consumer /
    producer (see :class:`StreamMonitor`, :class:`StreamDriver`). The stream rules are checked
    on the output. Returns ``(beats, out_cycles, in_cycles)`` as plain ints, the cycles
    counted from 0 at the first simulated edge.
    """
    drv = StreamDriver(dut.i_stream, in_beats, valid_prob=1.0 - p_gap, valid_every=valid_every,
                       seed=seed)
    mon = StreamMonitor(dut.o_stream, n_out, ready_prob=1.0 - p_stall, ready_every=ready_every,
                        seed=seed + 1, convert=raw)
    run_streams(dut, [drv], [mon], max_cycles=max_cycles)
    return mon.beats, [c - 1 for c in mon.cycles], [c - 1 for c in drv.sent_cycles]


def compare_beats(got, expected, what="beat"):
    """Assert two beat lists are equal, naming the first difference."""
    assert len(got) == len(expected), f"{len(got)} {what}s, expected {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"{what} {i}: got {g!r}, expected {e!r}"
