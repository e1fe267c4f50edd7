"""The shared amaranth.sim monitor (tests/support/streams.py) fails on stream-rule breaks."""

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from support.streams import StreamDriver, StreamMonitor, run_stream, run_streams


class Passthrough(wiring.Component):
    """A one-register stream stage; ``bug`` breaks one stream rule on purpose."""

    def __init__(self, bug=None):
        self.bug = bug
        super().__init__({"i_stream": In(stream.Signature(8)),
                          "o_stream": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        o, i = self.o_stream, self.i_stream
        stalled = Signal()
        m.d.comb += i.ready.eq(~o.valid | o.ready)
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(i.valid & i.ready):
            m.d.sync += [o.valid.eq(1), o.payload.eq(i.payload)]
        m.d.sync += stalled.eq(o.valid & ~o.ready)
        if self.bug == "drop-valid":
            # Gives up a stalled beat after one cycle.
            with m.If(o.valid & ~o.ready & stalled):
                m.d.sync += o.valid.eq(0)
        if self.bug == "change-payload":
            with m.If(o.valid & ~o.ready):
                m.d.sync += o.payload.eq(o.payload + 1)
        return m


def test_rules_hold_for_a_correct_stage():
    beats, _, _ = run_stream(Passthrough(), list(range(40)), 40, p_gap=0.3, p_stall=0.5)
    assert beats == list(range(40))


@pytest.mark.parametrize("bug, message", [("drop-valid", "valid dropped before the transfer"),
                                          ("change-payload", "payload changed while stalled")])
def test_monitor_catches_a_broken_rule(bug, message):
    dut = Passthrough(bug)
    drv = StreamDriver(dut.i_stream, list(range(40)), valid_prob=0.7, seed=1)
    mon = StreamMonitor(dut.o_stream, 40, ready_prob=0.4, seed=2)
    with pytest.raises(AssertionError, match=message):
        run_streams(dut, [drv], [mon], max_cycles=5000)
