"""Sliding-window generator: turns a pixel stream into the chunk stream of a convolution.

The window vector of output pixel ``(oy, ox)`` is the ``k x k x C`` patch of the padded input
map at rows ``oy*s .. oy*s+k-1`` and columns ``ox*s .. ox*s+k-1``, ordered ``[ky][kx][c]``
(channels innermost, :mod:`bnnhw.hw.layouts`' chunk convention). Padded pixels are ordinary
inputs carrying ``pad_value`` (SPEC §2), so every vector has ``K = k*k*C`` elements.

:func:`bnnhw.plan.stages.window_vectors` and :meth:`WindowPlan.reference
<bnnhw.plan.stages.WindowPlan.reference>` are the software model (NumPy, written from SPEC §2
independently of :mod:`bnnhw.golden`); tests compare the two, and the software model with the
golden model's convolution. Every figure (buffer rows, cycles, latency, memory) is the plan's.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..plan.stages import TransposePlan, WindowPlan
from .layouts import chunk_signature, from_plan, pixel_signature

__all__ = ["SlidingWindow", "WindowTranspose"]


def _add_mod(value, step, modulus):
    """``(value + step) mod modulus`` for ``0 <= value < modulus`` and a constant ``step``."""
    step %= modulus
    total = value + step
    return Mux(total >= modulus, total - modulus, total)


@from_plan("out_height", "out_width", "fan_in", "beats_per_vector", "buffer_rows",
           "memory_bits", "pad_element", "latency_cycles", "cycles_per_frame")
class SlidingWindow(wiring.Component):
    """Sliding-window (im2col) generator on streams.

    Parameters
    ----------
    channels : int
        ``C``, channels per pixel.
    bits : int
        Element width: 1 for binary maps, e.g. 8 for the first layer's signed codes.
    height, width : int
        Size of the (unpadded) input map.
    kernel : int
        ``k`` of the ``k x k`` window.
    stride : int
        Window step, at least 1.
    pad : int
        Padded border, ``0 <= pad < kernel``.
    pad_value : int
        Value of each padded element: +1 or -1 for binary maps (bit 1 / 0), a ``bits``-bit
        two's-complement code otherwise. Default: +1 for binary maps, 0 for codes (as in
        :class:`~bnnhw.model.layers.BinaryConv2d` / ``MultibitConv2d``).
    simd : int
        Lanes per output beat; must divide ``channels``.

    Members
    -------
    i_stream : ``In(pixel_signature(channels, bits))``
        One pixel per beat, raster order; frames (images) follow each other back to back
        without any marker or reset.
    o_stream : ``Out(chunk_signature(simd, bits))``
        Per output pixel (raster order) its ``K / simd`` beats, ``K = kernel*kernel*channels``,
        ``[ky][kx][c]`` order, element ``j`` of the vector at lane ``j % simd`` of beat
        ``j // simd``.

    Notes
    -----
    **Buffer.** One :class:`amaranth.lib.memory.Memory` of ``R`` rows of the *unpadded* map,
    one pixel per word: ``R * width * channels * bits`` bits (:attr:`memory_bits`). Padding is
    never stored: a read outside the map yields ``pad_value`` lanes. Rows are stored
    round-robin by a global row count that runs on across frames, so consecutive frames share
    the buffer seamlessly. ``R`` (:attr:`buffer_rows`) is sized, by space alone, so that the
    reader never waits at a change of output row or of frame however the input arrives: at
    each such change the buffer holds the current output row's rows (its last window still
    reads them) and all rows up to the last one the next output row's first window reads,
    the newest sharing the oldest one's slot when its needed columns are free by then. For
    stride 1 and pad 0 that is ``2*kernel - 1`` rows (the next frame's first ``kernel - 1``
    rows complete while the last window still reads the current frame's last ``kernel``
    rows); for a 3x3 window with stride 1 and pad 1 it is ``kernel``; tiny maps may need a
    little more. An input that can burst one pixel per cycle right after the change (the
    first layer, or a FIFO in front) could do with fewer rows, as the next first window reads
    its bottom row last (``kernel + 1`` suffice for 3x3, pad 0); an input that trickles in at
    the rate of the matrix-vector unit before cannot: then each row less loses cycles at
    every frame (``tests/hw/test_window.py::test_one_row_less_stalls``).

    **Throughput.** The reader issues one beat per cycle whenever the pixel it needs has been
    written (or is padding) and the output is free; with the output always ready it emits one
    chunk per cycle. The writer overwrites a pixel as soon as no window still needs it: rows
    above the current window at once, the current window's rows column by column behind its
    left edge when no later output row reads them (on a frame's last output row, all of
    them). So the next output row's rows, and the next frame's first rows, arrive while the
    current one is still emitted: with an input valid every cycle and an output always ready,
    every frame after the first takes exactly :attr:`cycles_per_frame` cycles (one output
    beat per cycle, or one input pixel per cycle if there are more pixels than beats); only
    the first frame waits for its first rows (``tests/hw/test_window.py::test_steady_state_*``
    measure this).

    **Backpressure.** ``o_stream.ready`` low stalls the reader (the memory read data is held).
    ``i_stream.ready`` is low only when the next pixel would overwrite a pixel that a window
    still needs (a row of the current window at or right of its left edge, a row a later
    output row of the frame reads, or a row of the next frame). Input acceptance is thus
    limited by the line buffer alone. ``i_stream.ready`` does not depend on
    ``i_stream.valid``.

    **Latency.** A chunk leaves 2 cycles after the pixel it reads was accepted (write, then
    a registered memory read); :attr:`latency_cycles` gives the cycles from accepting the first
    input pixel to the transfer of the last chunk of the first window, for an input valid
    every cycle and an output always ready.
    """

    def __init__(self, *, channels, bits, height, width, kernel, stride=1, pad=0,
                 pad_value=None, simd):
        self._build(WindowPlan(channels=channels, bits=bits, height=height, width=width,
                               kernel=kernel, stride=stride, pad=pad, pad_value=pad_value,
                               simd=simd))

    def _build(self, plan):
        self.plan = plan
        self.channels, self.bits = plan.channels, plan.bits
        self.height, self.width = plan.height, plan.width
        self.kernel, self.stride, self.pad = plan.kernel, plan.stride, plan.pad
        self.pad_value, self.simd = plan.pad_value, plan.simd
        super().__init__({
            "i_stream": In(pixel_signature(plan.channels, plan.bits)),
            "o_stream": Out(chunk_signature(plan.simd, plan.bits)),
        })

    def describe(self):
        """JSON-serialisable summary (:meth:`bnnhw.plan.stages.WindowPlan.describe`)."""
        return self.plan.describe()

    def reference(self, frames):
        """Expected output beats for ``frames`` (:meth:`bnnhw.plan.stages.WindowPlan.reference`)."""
        return self.plan.reference(frames)

    def pixels(self, frames):
        """``i_stream`` payloads of ``frames`` (:meth:`bnnhw.plan.stages.WindowPlan.pixels`)."""
        return self.plan.pixels(frames)

    # -- hardware -----------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        C, B, H, W = self.channels, self.bits, self.height, self.width
        k, s, p, S = self.kernel, self.stride, self.pad, self.simd
        G = C // S                              # beats per window pixel
        R = self.buffer_rows
        Ho, Wo = self.out_height, self.out_width
        # Global row numbers run on across frames (frame f, row y -> f*H + y), and row g sits
        # in memory row slot g mod R. The reader's reference row Gr is the (unpadded) top row
        # of its current window, possibly negative inside the frame; the writer is at row Gw.
        # Only D = Gw - Gr is kept. Frame change moves Gr by `jump` (may be <= 0 for large pad).
        jump = H - (Ho - 1) * s
        span = H + R + 2 * s + 2 * k + 2 * p + 2
        d_shape = signed(span.bit_length() + 1)

        mem = memory.Memory(shape=C * B, depth=R * W, init=[])
        m.submodules.mem = mem
        wp = mem.write_port()
        # Not transparent: the writer never touches a pixel the reader may read in the same
        # cycle (see the freeing rule below), and the read needs the old contents otherwise.
        rp = mem.read_port(domain="sync")

        D = Signal(d_shape, init=p)

        # -- writer ---------------------------------------------------------------------------
        wx = Signal(range(W), init=0)
        wslot = Signal(range(R), init=0)

        # -- reader (stage A: which beat to fetch next) ---------------------------------------
        g = Signal(range(G), init=0)
        kx = Signal(range(k), init=0)
        ky = Signal(range(k), init=0)
        ox = Signal(range(Wo), init=0)
        oy = Signal(range(Ho), init=0)
        c0 = Signal(signed((W + 2 * p + 2).bit_length() + 1), init=-p)   # window left column
        r0 = Signal(signed((H + 2 * p + 2).bit_length() + 1), init=-p)   # window top row
        rslot = Signal(range(R), init=(-p) % R)                          # slot of row Gr

        # -- stage B: the registered memory read and its tags ---------------------------------
        b_valid = Signal()
        b_g = Signal(range(G))
        b_pad = Signal()

        # Writer: it writes row Gw into slot Gw mod R, which holds row Gw - R = Gr + j, row
        # r0 + j of the reader's frame. It may overwrite that row (at column wx) unless the
        # reader still needs it there:
        # - rows above the window (j < 0) or of the previous frame (r0 + j < 0) are dead;
        # - rows below the frame (r0 + j >= H) are the next frame's, not read yet;
        # - a later output row of this frame needs rows r0 + j, s <= j, up to its last one;
        # - the current output row needs rows j < k at columns >= c0 (its windows move right).
        # On the frame's last output row every row is thus freed behind the window, so the
        # next frame's first rows stream in while the last windows are still emitted.
        j = Signal(d_shape)
        rr = Signal(signed(max(d_shape.width, r0.shape().width) + 1))
        m.d.comb += [j.eq(D - R), rr.eq(r0 + j)]
        last_used = (Ho - 1) * s - p + k - 1       # last row any output row reads (may be pad)
        needed_later = Signal()
        m.d.comb += needed_later.eq((oy != Ho - 1) & (j >= s) & (rr <= last_used))
        may_write = Signal()
        m.d.comb += may_write.eq((j < 0) | (rr < 0)
                                 | ((rr < H) & ~needed_later & ((wx < c0) | (j >= k))))
        m.d.comb += self.i_stream.ready.eq(may_write)
        w_fire = Signal()
        w_row_done = Signal()
        m.d.comb += [
            w_fire.eq(self.i_stream.valid & self.i_stream.ready),
            w_row_done.eq(w_fire & (wx == W - 1)),
            wp.addr.eq(wslot * W + wx),
            wp.data.eq(self.i_stream.payload),
            wp.en.eq(w_fire),
        ]
        with m.If(w_fire):
            with m.If(wx == W - 1):
                m.d.sync += wx.eq(0)
                m.d.sync += wslot.eq(Mux(wslot == R - 1, 0, wslot + 1))
            with m.Else():
                m.d.sync += wx.eq(wx + 1)

        # Reader stage A.
        x = Signal(c0.shape())
        y = Signal(r0.shape())
        m.d.comb += [x.eq(c0 + kx), y.eq(r0 + ky)]
        is_pad = Signal()
        m.d.comb += is_pad.eq((y < 0) | (y >= H) | (x < 0) | (x >= W))
        # Row Gr + ky is complete once the writer is past it; the writer's current row counts
        # up to (excluding) column wx.
        available = Signal()
        m.d.comb += available.eq(is_pad | (D > ky) | ((D == ky) & (wx > x)))
        slot_sum = Signal(range(2 * R))
        m.d.comb += slot_sum.eq(rslot + ky)
        slot = Signal(range(R))
        m.d.comb += slot.eq(Mux(slot_sum >= R, slot_sum - R, slot_sum))

        advance = Signal()
        a_fire = Signal()
        m.d.comb += [
            advance.eq(~b_valid | self.o_stream.ready),
            a_fire.eq(advance & available),
            rp.en.eq(advance),
            rp.addr.eq(slot * W + x[:max(1, (W - 1).bit_length())]),
        ]
        with m.If(advance):
            m.d.sync += [b_valid.eq(available), b_g.eq(g), b_pad.eq(is_pad)]

        last_g, last_kx, last_ky = g == G - 1, kx == k - 1, ky == k - 1
        window_done = Signal()
        row_done = Signal()
        frame_done = Signal()
        m.d.comb += [
            window_done.eq(a_fire & last_g & last_kx & last_ky),
            row_done.eq(window_done & (ox == Wo - 1)),
            frame_done.eq(row_done & (oy == Ho - 1)),
        ]
        with m.If(a_fire):
            m.d.sync += g.eq(Mux(last_g, 0, g + 1))
            with m.If(last_g):
                m.d.sync += kx.eq(Mux(last_kx, 0, kx + 1))
                with m.If(last_kx):
                    m.d.sync += ky.eq(Mux(last_ky, 0, ky + 1))
        with m.If(window_done):
            m.d.sync += [ox.eq(ox + 1), c0.eq(c0 + s)]
        with m.If(row_done):
            m.d.sync += [ox.eq(0), c0.eq(-p)]
            with m.If(frame_done):
                m.d.sync += [oy.eq(0), r0.eq(-p)]
                m.d.sync += rslot.eq(_add_mod(rslot, jump, R))
            with m.Else():
                m.d.sync += [oy.eq(oy + 1), r0.eq(r0 + s)]
                m.d.sync += rslot.eq(_add_mod(rslot, s, R))

        # D = Gw - Gr: +1 when the writer completes a row, -s (-jump) when the reader moves on.
        dec = Signal(d_shape)
        m.d.comb += dec.eq(Mux(frame_done, jump, Mux(row_done, s, 0)))
        m.d.sync += D.eq(D + w_row_done - dec)

        # Output: lanes of group b_g of the pixel read, or padding.
        pad_lanes = sum((self.pad_element & ((1 << B) - 1)) << (i * B) for i in range(S))
        lanes = rp.data.word_select(b_g, S * B) if G > 1 else rp.data
        m.d.comb += [
            self.o_stream.valid.eq(b_valid),
            self.o_stream.payload.eq(Mux(b_pad, pad_lanes, lanes)),
        ]
        return m


@from_plan("fan_in", "in_beats", "out_beats", "cycles_per_vector", "cycles_per_frame",
           "memory_bits")
class WindowTranspose(wiring.Component):
    """Re-cut a sliding window's tap-major vectors into channel-major chunks.

    :class:`SlidingWindow` emits each window vector ``[ky][kx][c]`` (channels innermost, the
    pixel stream's order) as ``K / in_simd`` beats. This stage collects one vector and emits it
    in ``[c][ky][kx]`` order (:func:`bnnhw.model.packing.channel_major_order`) as
    ``ceil(K / out_simd)`` chunks, the
    last one zero-padded. With ``out_simd`` a multiple of ``kernel**2``, every chunk holds
    whole 2-D windows of ``out_simd / kernel**2`` input channels: the chunk stage after it can
    then be the per-input-channel 2-D popcount stage (:class:`~bnnhw.hw.pe.KernelPopcount`)
    that a shared-result filter bank (SPEC §9) replaces.

    Parameters
    ----------
    channels : int
        Input channels ``C``.
    kernel : int
        Window size ``k`` (``K = k * k * C`` elements).
    bits : int
        Bits per element (1 for binary layers, the code width for a multi-bit first layer).
    in_simd : int
        Channels per input beat (the window's SIMD); must divide ``channels``.
    out_simd : int
        Elements per output chunk, at most ``K``.
    vectors_per_frame : int
        Window vectors per frame (output pixels), for :attr:`cycles_per_frame`.

    Members
    -------
    i_stream : In(stream.Signature(unsigned(in_simd * bits)))
    o_stream : Out(stream.Signature(unsigned(out_simd * bits)))

    Notes
    -----
    Two vector registers (``2 * K * bits`` flip-flops) alternate: one fills while the other is
    emitted, so the stage takes ``max(K / in_simd, ceil(K / out_simd))`` cycles per vector in
    steady state, one beat per cycle on each side. The permutation is wiring; the output is a
    constant-slice multiplexer of the full register. Latency: the first chunk of a vector is
    valid the cycle after its last input beat is accepted. ``i_stream.ready`` and
    ``o_stream.valid`` depend on registers only; ``o_stream.ready`` low holds the chunk.
    """

    def __init__(self, *, channels, kernel, bits=1, in_simd, out_simd, vectors_per_frame=1):
        self._build(TransposePlan(channels=channels, kernel=kernel, bits=bits, in_simd=in_simd,
                                  out_simd=out_simd, vectors_per_frame=vectors_per_frame))

    def _build(self, plan):
        self.plan = plan
        self.channels, self.kernel, self.bits = plan.channels, plan.kernel, plan.bits
        self.in_simd, self.out_simd = plan.in_simd, plan.out_simd
        self.vectors_per_frame = plan.vectors_per_frame
        super().__init__({
            "i_stream": In(chunk_signature(plan.in_simd, plan.bits)),
            "o_stream": Out(chunk_signature(plan.out_simd, plan.bits)),
        })

    def describe(self):
        """JSON-serialisable summary (:meth:`bnnhw.plan.stages.TransposePlan.describe`)."""
        return self.plan.describe()

    def reference(self, vectors):
        """Expected output chunks (:meth:`bnnhw.plan.stages.TransposePlan.reference`)."""
        return self.plan.reference(vectors)

    def elaborate(self, platform):
        m = Module()
        b, K = self.bits, self.fan_in
        iw = self.in_simd * b
        banks = [Signal(K * b, name=f"vector{i}") for i in range(2)]
        full = Signal(2)
        wbank, rbank = Signal(), Signal()
        wcnt = Signal(range(self.in_beats))
        rcnt = Signal(range(self.out_beats))

        i_fire = self.i_stream.valid & self.i_stream.ready
        o_fire = self.o_stream.valid & self.o_stream.ready
        m.d.comb += [self.i_stream.ready.eq(~full.bit_select(wbank, 1)),
                     self.o_stream.valid.eq(full.bit_select(rbank, 1))]
        set_full, clr_full = Signal(2), Signal(2)
        with m.If(i_fire):
            for i, bank in enumerate(banks):
                with m.If(wbank == i):
                    with m.Switch(wcnt):
                        for beat in range(self.in_beats):
                            with m.Case(beat):
                                m.d.sync += bank[beat * iw:(beat + 1) * iw].eq(
                                    self.i_stream.payload)
            with m.If(wcnt == self.in_beats - 1):
                m.d.sync += [wcnt.eq(0), wbank.eq(~wbank)]
                m.d.comb += set_full.eq(Mux(wbank, 0b10, 0b01))
            with m.Else():
                m.d.sync += wcnt.eq(wcnt + 1)

        order = self.plan.order
        ow = self.out_simd * b
        padded = self.out_beats * ow

        def chunks(bank):
            elems = [bank[i * b:(i + 1) * b] for i in order]
            flat = Signal(padded, name=f"{bank.name}_chw")
            for j, e in enumerate(elems):
                m.d.comb += flat[j * b:(j + 1) * b].eq(e)
            return flat

        flats = [chunks(bank) for bank in banks]
        with m.Switch(rbank):
            for i, flat in enumerate(flats):
                with m.Case(i):
                    m.d.comb += self.o_stream.payload.eq(flat.word_select(rcnt, ow))
        with m.If(o_fire):
            with m.If(rcnt == self.out_beats - 1):
                m.d.sync += [rcnt.eq(0), rbank.eq(~rbank)]
                m.d.comb += clr_full.eq(Mux(rbank, 0b10, 0b01))
            with m.Else():
                m.d.sync += rcnt.eq(rcnt + 1)
        m.d.sync += full.eq((full | set_full) & ~clr_full)
        return m
