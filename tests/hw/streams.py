"""Reusable amaranth.sim stream driver and monitor with random valid gaps and backpressure.

A driver puts a list of payloads on a stream, waiting a random number of idle cycles before
each beat; a monitor takes beats off a stream with a random ``ready`` and records each
payload with its cycle. Both honour the valid/ready contract (the driver holds the payload
stable while ``valid & ~ready``).
"""

import random

from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

__all__ = ["StreamDriver", "StreamMonitor", "run_streams", "compare_beats"]


class StreamDriver:
    """Drive ``payloads`` onto ``stream``; before each beat, idle with probability ``1 - p``."""

    def __init__(self, stream, payloads, *, valid_prob=1.0, seed=0):
        self.stream, self.payloads = stream, list(payloads)
        self.valid_prob, self.rng = valid_prob, random.Random(seed)
        self.sent_cycles = []

    async def run(self, ctx):
        cycle = 0
        for payload in self.payloads:
            while self.rng.random() >= self.valid_prob:
                ctx.set(self.stream.valid, 0)
                await ctx.tick()
                cycle += 1
            ctx.set(self.stream.valid, 1)
            ctx.set(self.stream.payload, payload)
            while True:
                _, _, ready = await ctx.tick().sample(self.stream.ready)
                cycle += 1
                if ready:
                    break
            self.sent_cycles.append(cycle)
        ctx.set(self.stream.valid, 0)


class StreamMonitor:
    """Collect ``count`` beats from ``stream``; ``ready`` is high with probability ``ready_prob``.

    :attr:`beats` holds the payloads (as ``convert(value)``), :attr:`cycles` the cycle of each
    transfer (counted from the start of the simulation).
    """

    def __init__(self, stream, count, *, ready_prob=1.0, seed=1, convert=None):
        self.stream, self.count = stream, count
        self.ready_prob, self.rng = ready_prob, random.Random(seed)
        self.convert = convert or (lambda v: v)
        self.beats, self.cycles = [], []

    async def run(self, ctx):
        cycle = 0
        while len(self.beats) < self.count:
            ready = self.rng.random() < self.ready_prob
            ctx.set(self.stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(self.stream.valid,
                                                           self.stream.payload)
            cycle += 1
            if valid and ready:
                self.beats.append(self.convert(payload))
                self.cycles.append(cycle)
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
        raise AssertionError(f"simulation did not finish within {max_cycles} cycles")

    sim.add_testbench(timeout, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def compare_beats(got, expected, what="beat"):
    """Assert two beat lists are equal, naming the first difference."""
    assert len(got) == len(expected), f"{len(got)} {what}s, expected {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"{what} {i}: got {g!r}, expected {e!r}"
