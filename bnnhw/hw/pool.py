"""OR max-pooling of binary pixel streams (SPEC §7).

Max-pooling binary activations (bit 1 = +1) is the logical OR of each window's bits, per
channel. :func:`bnnhw.plan.stages.or_pool_reference` is the software model (NumPy, from SPEC §7); tests compare
it with the golden model's ``MaxPool`` and the hardware with both.
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..plan.stages import PoolPlan
from .layouts import from_plan, pixel_signature

__all__ = ["OrMaxPool"]


@from_plan("out_height", "out_width", "memory_bits")
class OrMaxPool(wiring.Component):
    """Max-pooling of a binary pixel stream: per channel, the OR of each window.

    Parameters
    ----------
    channels : int
        ``C``; a pixel is ``C`` bits, channel ``c`` at bit ``c`` (1 = +1).
    height, width : int
        Input map size.
    kernel : int
        Window size ``k`` (``k x k``).
    stride : int or None
        Window step; ``None`` means ``kernel`` (non-overlapping, as in BNN-PYNQ). No padding:
        ``Ho = (height - k) // stride + 1``; rows and columns past the last window are read
        and dropped.

    Members
    -------
    i_stream : ``In(pixel_signature(channels))``
        Input pixels in raster order; frames follow each other back to back, no marker.
    o_stream : ``Out(pixel_signature(channels))``
        Pooled pixels in raster order.

    Notes
    -----
    **Structure.** A shift register of the last ``k - 1`` pixels of the current row gives the
    horizontal OR ``h(y, ox)`` of a window's row when its last column arrives. A line buffer
    (:class:`amaranth.lib.memory.Memory`, ``Wo`` words of ``(k - 1) * C`` bits) keeps the
    horizontal ORs of the last ``k - 1`` rows, one slot per row, round-robin; on a window's last
    row the output is ``h`` ORed with all slots. For the usual 2x2 window this buffer is one
    row of partial ORs (the window's first row). Memory: :attr:`memory_bits`
    ``= (k - 1) * Wo * C`` bits; no memory for ``k = 1``.

    **Timing.** One input pixel per cycle while the output is free; a pooled pixel is valid the
    cycle after its window's last pixel was accepted (latency 1). ``i_stream.ready`` is low
    only while a pooled pixel waits for ``o_stream.ready`` (and it does not depend on
    ``i_stream.valid``).
    """

    def __init__(self, *, channels, height, width, kernel, stride=None):
        self._build(PoolPlan(channels=channels, height=height, width=width, kernel=kernel,
                             stride=stride))

    def _build(self, plan):
        self.plan = plan
        self.channels, self.height, self.width = plan.channels, plan.height, plan.width
        self.kernel, self.stride = plan.kernel, plan.stride
        super().__init__({
            "i_stream": In(pixel_signature(plan.channels)),
            "o_stream": Out(pixel_signature(plan.channels)),
        })

    def describe(self):
        """JSON-serialisable summary (:meth:`bnnhw.plan.stages.PoolPlan.describe`)."""
        return self.plan.describe()

    def reference(self, frames):
        """Expected ``o_stream`` payloads (:meth:`bnnhw.plan.stages.PoolPlan.reference`)."""
        return self.plan.reference(frames)

    def pixels(self, frames):
        """``i_stream`` payloads of ``frames`` (``[N, H, W, C]`` bits), in order."""
        return self.plan.pixels(frames)

    def elaborate(self, platform):
        m = Module()
        C, H, W, k, s = self.channels, self.height, self.width, self.kernel, self.stride
        Ho, Wo = self.out_height, self.out_width

        # Position of the incoming pixel and of the next window ends (column and row).
        x = Signal(range(W))
        y = Signal(range(H))
        ox = Signal(range(Wo + 1))
        xe = Signal(range(W + s + k), init=k - 1)
        oy = Signal(range(Ho + 1))
        ye = Signal(range(H + s + k), init=k - 1)

        o_valid = Signal()
        h_reg = Signal(C)
        advance = Signal()
        fire = Signal()
        m.d.comb += [
            advance.eq(~o_valid | self.o_stream.ready),
            self.i_stream.ready.eq(advance),
            fire.eq(self.i_stream.valid & advance),
        ]

        pixel = self.i_stream.payload
        # Horizontal OR over the window's row: the k-1 previous pixels and this one.
        prev = [Signal(C, name=f"prev{i}") for i in range(k - 1)]
        h = Signal(C)
        h_value = pixel
        for p in prev:
            h_value = h_value | p
        m.d.comb += h.eq(h_value)
        with m.If(fire):
            for i, p in enumerate(prev):
                m.d.sync += p.eq(pixel if i == 0 else prev[i - 1])

        x_event = Signal()
        y_event = Signal()
        m.d.comb += [
            x_event.eq((ox < Wo) & (x == xe)),
            y_event.eq((oy < Ho) & (y == ye)),
        ]

        if k > 1:
            # Slot j of word ox: h of the row y with y mod (k-1) == j. On a window's last row
            # the other k-2 slots and the slot being overwritten (read before the write: the
            # port is not transparent) are exactly the window's k-1 earlier rows.
            mem = memory.Memory(shape=(k - 1) * C, depth=Wo, init=[])
            m.submodules.mem = mem
            wp = mem.write_port(granularity=C)
            rp = mem.read_port(domain="sync")
            yslot = Signal(range(k - 1))
            m.d.comb += [
                wp.addr.eq(ox),
                wp.data.eq(h.replicate(k - 1)),
                wp.en.eq(Mux(fire & x_event, Const(1, k - 1) << yslot, 0)),
                rp.addr.eq(ox),
                rp.en.eq(advance),
            ]
            earlier = Const(0, C)
            for j in range(k - 1):
                earlier = earlier | rp.data[j * C:(j + 1) * C]
        else:
            earlier = Const(0, C)

        with m.If(advance):
            m.d.sync += [o_valid.eq(fire & x_event & y_event), h_reg.eq(h)]
        m.d.comb += [
            self.o_stream.valid.eq(o_valid),
            self.o_stream.payload.eq(h_reg | earlier),
        ]

        with m.If(fire):
            with m.If(x_event):
                m.d.sync += [ox.eq(ox + 1), xe.eq(xe + s)]
            with m.If(x == W - 1):
                m.d.sync += [x.eq(0), ox.eq(0), xe.eq(k - 1)]
                with m.If(y_event):
                    m.d.sync += [oy.eq(oy + 1), ye.eq(ye + s)]
                if k > 1:
                    m.d.sync += yslot.eq(Mux(yslot == k - 2, 0, yslot + 1))
                with m.If(y == H - 1):
                    m.d.sync += [y.eq(0), oy.eq(0), ye.eq(k - 1)]
                    if k > 1:
                        m.d.sync += yslot.eq(0)
                with m.Else():
                    m.d.sync += y.eq(y + 1)
            with m.Else():
                m.d.sync += x.eq(x + 1)
        return m
