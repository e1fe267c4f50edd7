"""Reusable cocotb drivers for ``amaranth.lib.stream`` ports (valid / ready / payload).

Port names and widths always come from a ``manifest.json`` stream entry
(:func:`bnnhw.gen.verilog.port_manifest`): ``{"payload", "valid", "ready", "payload_layout"}``.

All three classes sample the bus right after a rising clock edge, i.e. the values the
flip-flops saw at that edge, and drive new values that take effect after the edge. A transfer
happens on an edge where ``valid & ready`` were both high.
"""

import random

from cocotb.triggers import RisingEdge

__all__ = ["StreamSource", "StreamSink", "StreamMonitor", "decode_field", "Cycles"]


def _get(handle):
    return int(handle.value)


def decode_field(payload, field):
    """Extract a struct field (manifest ``{"offset", "width", "signed"}``) from an int payload."""
    value = (payload >> field["offset"]) & ((1 << field["width"]) - 1)
    if field.get("signed") and value >> (field["width"] - 1):
        value -= 1 << field["width"]
    return value


class Cycles:
    """Counts rising clock edges; ``now`` is the index of the latest edge."""

    def __init__(self, clk):
        self.clk = clk
        self.now = 0

    async def run(self):
        while True:
            await RisingEdge(self.clk)
            self.now += 1


class StreamSource:
    """Drives beats into a core's input stream, with random gaps in ``valid``.

    Parameters
    ----------
    dut : cocotb handle of the top module
    clk : clock handle
    stream : dict
        The manifest entry of the stream.
    cycles : Cycles
    valid_prob : float
        Probability that ``valid`` is raised in a cycle when a beat is waiting (1.0: no gaps).
    rng : random.Random

    ``accepted`` lists ``(cycle, tag)`` for every beat transferred, in order.
    """

    def __init__(self, dut, clk, stream, cycles, *, valid_prob=1.0, rng=None):
        self.clk = clk
        self.payload = getattr(dut, stream["payload"])
        self.valid = getattr(dut, stream["valid"])
        self.ready = getattr(dut, stream["ready"])
        self.width = stream["payload_layout"]["width"]
        self.cycles = cycles
        self.valid_prob = valid_prob
        self.rng = rng or random.Random(0)
        self.accepted = []
        self.valid.value = 0
        self.payload.value = 0

    async def send(self, beats, tags=None):
        """Send ``beats`` (ints) one by one; return when the last one is transferred.

        The payload is held stable while ``valid & ~ready`` (stream protocol).
        """
        tags = tags if tags is not None else [None] * len(beats)
        for beat, tag in zip(beats, tags):
            if beat >> self.width:
                raise ValueError(f"beat {beat:#x} is wider than the {self.width}-bit payload")
            while self.valid_prob < 1.0 and self.rng.random() >= self.valid_prob:
                self.valid.value = 0
                await RisingEdge(self.clk)
            self.payload.value = beat
            self.valid.value = 1
            while True:
                await RisingEdge(self.clk)
                if _get(self.ready):
                    break
                # Busy core: sleep until it raises ready instead of waking every cycle.
                if not _get(self.ready):
                    await RisingEdge(self.ready)
            self.accepted.append((self.cycles.now, tag))
            self.valid.value = 0


class StreamSink:
    """Accepts beats from a core's output stream, with random backpressure on ``ready``.

    ``received`` lists ``(cycle, payload_int)`` per transferred beat.
    """

    def __init__(self, dut, clk, stream, cycles, *, ready_prob=1.0, rng=None):
        self.clk = clk
        self.payload = getattr(dut, stream["payload"])
        self.valid = getattr(dut, stream["valid"])
        self.ready = getattr(dut, stream["ready"])
        self.cycles = cycles
        self.ready_prob = ready_prob
        self.rng = rng or random.Random(1)
        self.received = []
        self.ready.value = 0
        self.running = False

    async def run(self):
        self.running = True
        ready = 0
        while self.running:
            ready = 1 if (self.ready_prob >= 1.0 or self.rng.random() < self.ready_prob) else 0
            self.ready.value = ready
            if ready and self.ready_prob >= 1.0 and not _get(self.valid):
                # Idle output: sleep until the core raises valid (saves a wake-up per cycle).
                await RisingEdge(self.valid)
            await RisingEdge(self.clk)
            if ready and _get(self.valid):
                self.received.append((self.cycles.now, _get(self.payload)))

    def stop(self):
        self.running = False


class StreamMonitor:
    """Passively checks the stream protocol: while ``valid & ~ready`` the payload must not
    change and ``valid`` must not drop. ``violations`` lists ``(cycle, message)``."""

    def __init__(self, dut, clk, stream, cycles, name):
        self.clk = clk
        self.payload = getattr(dut, stream["payload"])
        self.valid = getattr(dut, stream["valid"])
        self.ready = getattr(dut, stream["ready"])
        self.cycles = cycles
        self.name = name
        self.violations = []
        self.transfers = 0

    async def run(self):
        pending = None   # payload offered and not taken at the previous edge
        while True:
            if pending is None and not _get(self.valid):
                await RisingEdge(self.valid)    # nothing to check until valid rises
            await RisingEdge(self.clk)
            valid, ready = _get(self.valid), _get(self.ready)
            payload = _get(self.payload) if valid else None
            if pending is not None:
                if not valid:
                    self.violations.append((self.cycles.now,
                                            f"{self.name}: valid dropped before the transfer"))
                elif payload != pending:
                    self.violations.append((self.cycles.now,
                                            f"{self.name}: payload changed while stalled"))
            if valid and ready:
                self.transfers += 1
            pending = payload if (valid and not ready) else None
