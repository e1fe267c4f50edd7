"""Sliding-window generator: turns a pixel stream into the chunk stream of a convolution.

The window vector of output pixel ``(oy, ox)`` is the ``k x k x C`` patch of the padded input
map at rows ``oy*s .. oy*s+k-1`` and columns ``ox*s .. ox*s+k-1``, ordered ``[ky][kx][c]``
(channels innermost, :mod:`bnnhw.hw.layouts`' chunk convention). Padded pixels are ordinary
inputs carrying ``pad_value`` (SPEC §2), so every vector has ``K = k*k*C`` elements.

:func:`window_vectors` and :meth:`SlidingWindow.reference` are the software model (NumPy,
written from SPEC §2 independently of :mod:`bnnhw.golden`); tests compare the two, and the
software model with the golden model's convolution.
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .layouts import chunk_signature, pixel_signature

__all__ = ["window_vectors", "pack_lanes", "SlidingWindow", "channel_major_order", "WindowTranspose"]


def window_vectors(frames, *, kernel, stride=1, pad=0, pad_value=0):
    """Window vectors of a batch of feature maps, the slow and obvious way.

    Parameters
    ----------
    frames : array_like of int, ``[N, H, W, C]``
        Element values as they travel on the bus: bits (0 / 1) for binary maps, signed codes
        for multi-bit maps.
    kernel, stride, pad : int
    pad_value : int
        Element value of a padded pixel (a bit for binary maps: 1 for +1, 0 for -1).

    Returns
    -------
    numpy.ndarray of int64, ``[N, Ho, Wo, kernel*kernel*C]``
        Vectors in ``[ky][kx][c]`` order; ``Ho = (H + 2 pad - kernel) // stride + 1``.
    """
    frames = np.asarray(frames, dtype=np.int64)
    n, h, w, c = frames.shape
    padded = np.full((n, h + 2 * pad, w + 2 * pad, c), pad_value, dtype=np.int64)
    padded[:, pad:pad + h, pad:pad + w, :] = frames
    ho = (h + 2 * pad - kernel) // stride + 1
    wo = (w + 2 * pad - kernel) // stride + 1
    out = np.empty((n, ho, wo, kernel * kernel * c), dtype=np.int64)
    for oy in range(ho):
        for ox in range(wo):
            patch = padded[:, oy * stride:oy * stride + kernel, ox * stride:ox * stride + kernel]
            out[:, oy, ox] = patch.reshape(n, -1)          # [ky][kx][c], channels innermost
    return out


def pack_lanes(values, bits):
    """Pack the last axis of ``values`` into bus words: lane ``j`` at bits ``[j*bits, ...)``.

    Signed values become two's complement lanes. Returns a list of Python ints (one per
    vector along the other axes, in C order).
    """
    values = np.asarray(values, dtype=np.int64)
    mask = (1 << bits) - 1
    flat = values.reshape(-1, values.shape[-1]) & mask
    shifts = [j * bits for j in range(values.shape[-1])]
    return [sum(int(v) << sh for v, sh in zip(row, shifts)) for row in flat]


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def _buffer_rows(height, width, kernel, stride, pad):
    """Line buffer rows for a generator that never waits at row or frame changes.

    At each change of output row (the next frame's first row included) the buffer must hold,
    at once, the real rows of the current output row (its last window still reads them) and
    every input row up to the last real row of the next output row, whose first window
    follows at once. Rows are stored round-robin, so that is every row between the two
    (unused rows included): ``newest - oldest + 1`` rows, minus one when the newest row can
    share the oldest one's slot, i.e. when the oldest row is not needed by the next output
    row and the columns the next first window needs of the newest row (``<= kernel-1-pad``)
    lie left of the current last window (``(Wo-1)*stride - pad``), which frees them first.
    Space alone decides, not timing: the rows are there however slowly the input arrives.
    At least ``kernel`` rows are kept so that a window's rows never wrap twice.
    """
    ho = (height + 2 * pad - kernel) // stride + 1
    wo = (width + 2 * pad - kernel) // stride + 1
    columns_free = min(kernel - 1 - pad, width - 1) < (wo - 1) * stride - pad
    rows = kernel
    for oy in range(ho):
        top = oy * stride - pad                           # frame-relative rows, may be < 0
        oldest = max(top, 0)
        if oy + 1 < ho:                                    # next output row, same frame
            nxt = top + stride
            newest = min(nxt + kernel - 1, height - 1)
            shares = columns_free and oldest < nxt
        else:                                              # first output row of the next frame
            newest = height + min(kernel - 1 - pad, height - 1)
            shares = columns_free
        rows = max(rows, newest - oldest + 1 - int(shares))
    return rows


def _add_mod(value, step, modulus):
    """``(value + step) mod modulus`` for ``0 <= value < modulus`` and a constant ``step``."""
    step %= modulus
    total = value + step
    return Mux(total >= modulus, total - modulus, total)


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
        _check_int("Channel count", channels, 1)
        _check_int("Element width", bits, 1)
        _check_int("Height", height, 1)
        _check_int("Width", width, 1)
        _check_int("Kernel size", kernel, 1)
        _check_int("Stride", stride, 1)
        _check_int("Padding", pad, 0)
        _check_int("SIMD", simd, 1)
        if pad >= kernel:
            raise ValueError(f"Padding must be less than the kernel size {kernel}, not {pad}")
        for name, size in (("height", height), ("width", width)):
            if size + 2 * pad < kernel:
                raise ValueError(f"Kernel size {kernel} does not fit the {name} {size} with "
                                 f"padding {pad}")
        if channels % simd:
            raise ValueError(f"SIMD must divide the channel count {channels}, not {simd}")
        if pad_value is None:
            pad_value = 0 if bits > 1 else 1           # the IR layers' defaults
        if isinstance(pad_value, bool) or not isinstance(pad_value, int):
            raise TypeError(f"Padding value must be an integer, not {pad_value!r}")
        if bits == 1:
            if pad_value not in (1, -1):
                raise ValueError(f"Padding value of a binary map must be +1 or -1, "
                                 f"not {pad_value}")
        else:
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            if not lo <= pad_value <= hi:
                raise ValueError(f"Padding value must be a {bits}-bit code in [{lo}, {hi}], "
                                 f"not {pad_value}")
        self.channels = channels
        self.bits = bits
        self.height = height
        self.width = width
        self.kernel = kernel
        self.stride = stride
        self.pad = pad
        self.pad_value = pad_value
        self.simd = simd
        super().__init__({
            "i_stream": In(pixel_signature(channels, bits)),
            "o_stream": Out(chunk_signature(simd, bits)),
        })

    # -- derived quantities -----------------------------------------------------------------

    @property
    def out_height(self):
        return (self.height + 2 * self.pad - self.kernel) // self.stride + 1

    @property
    def out_width(self):
        return (self.width + 2 * self.pad - self.kernel) // self.stride + 1

    @property
    def fan_in(self):
        """``K = kernel * kernel * channels``."""
        return self.kernel * self.kernel * self.channels

    @property
    def beats_per_vector(self):
        """``K / simd``: output beats per output pixel."""
        return self.fan_in // self.simd

    @property
    def buffer_rows(self):
        """``R``: rows of the input map held in the line buffer (see the class notes).

        ``2*kernel - 1`` for stride 1 and pad 0 (CNV's convolutions), ``kernel`` for a 3x3
        window with stride 1 and pad 1; never less than ``kernel``.
        """
        return _buffer_rows(self.height, self.width, self.kernel, self.stride, self.pad)

    @property
    def memory_bits(self):
        """Line buffer size in bits: ``R * width * channels * bits``."""
        return self.buffer_rows * self.width * self.channels * self.bits

    @property
    def pad_element(self):
        """The padded element as it sits in a lane (bit 1 / 0 for binary maps, else the code)."""
        if self.bits == 1:
            return 1 if self.pad_value == 1 else 0
        return self.pad_value

    @property
    def latency_cycles(self):
        """Cycles from accepting the first pixel to the transfer of the first window's last chunk.

        Assumes an input valid every cycle from the first cycle after reset and an output
        always ready. A chunk that reads the pixel accepted at cycle ``n`` can transfer at cycle
        ``n + 2`` at the earliest, and chunk ``i`` of the window (padding included) at cycle
        ``i + 1``.
        """
        groups = self.channels // self.simd
        k, p, w = self.kernel, self.pad, self.width
        last = self.beats_per_vector
        for ky in range(k):
            for kx in range(k):
                y, x = ky - p, kx - p
                if 0 <= y < self.height and 0 <= x < w:
                    first_beat = (ky * k + kx) * groups
                    last = max(last, y * w + x + 2 + self.beats_per_vector - 1 - first_beat)
        return last

    @property
    def cycles_per_frame(self):
        """Steady-state cycles per frame: the larger of output beats and input pixels.

        Exact for back-to-back frames with an input valid every cycle and an output always
        ready: the line buffer (:attr:`buffer_rows`) is sized so that neither side waits at
        row or frame changes.
        """
        return max(self.out_height * self.out_width * self.beats_per_vector,
                   self.height * self.width)

    def describe(self):
        """JSON-serialisable summary: parameters, memory, cycle estimates."""
        return {
            "kind": "sliding_window", "channels": self.channels, "bits": self.bits,
            "height": self.height, "width": self.width, "kernel": self.kernel,
            "stride": self.stride, "pad": self.pad, "pad_value": self.pad_value,
            "simd": self.simd, "out_height": self.out_height, "out_width": self.out_width,
            "K": self.fan_in, "beats_per_vector": self.beats_per_vector,
            "buffer_rows": self.buffer_rows, "memory_bits": self.memory_bits,
            "latency_cycles": self.latency_cycles, "cycles_per_frame": self.cycles_per_frame,
        }

    # -- software model -----------------------------------------------------------------------

    def reference(self, frames):
        """The expected output beats for ``frames`` (``[N, H, W, C]`` element values).

        Returns a list of Python ints, one per ``o_stream`` beat, in order.
        """
        frames = np.asarray(frames)
        want = (self.height, self.width, self.channels)
        if frames.ndim != 4 or frames.shape[1:] != want:
            raise ValueError(f"frames must have shape [N, {want[0]}, {want[1]}, {want[2]}], "
                             f"not {list(frames.shape)}")
        vec = window_vectors(frames, kernel=self.kernel, stride=self.stride, pad=self.pad,
                             pad_value=self.pad_element)
        return pack_lanes(vec.reshape(-1, self.simd), self.bits)

    def pixels(self, frames):
        """``i_stream`` payloads of ``frames`` (``[N, H, W, C]`` element values), in order."""
        frames = np.asarray(frames)
        return pack_lanes(frames.reshape(-1, self.channels), self.bits)

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


def channel_major_order(kernel, channels):
    """Positions, in the window's ``[ky][kx][c]`` vector, of the ``[c][ky][kx]`` elements.

    Element ``j`` of the channel-major vector is element ``order[j]`` of the tap-major one, so
    that channel ``c``'s 2-D window (``kernel * kernel`` elements) is contiguous at
    ``[c*k*k, (c+1)*k*k)``: the per-input-channel 2-D kernels of SPEC §9.
    """
    taps = kernel * kernel
    return [tap * channels + c for c in range(channels) for tap in range(taps)]


class WindowTranspose(wiring.Component):
    """Re-cut a sliding window's tap-major vectors into channel-major chunks.

    :class:`SlidingWindow` emits each window vector ``[ky][kx][c]`` (channels innermost, the
    pixel stream's order) as ``K / in_simd`` beats. This stage collects one vector and emits it
    in ``[c][ky][kx]`` order (:func:`channel_major_order`) as ``ceil(K / out_simd)`` chunks, the
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
        for name, value in (("Channel count", channels), ("Kernel size", kernel),
                            ("Element width", bits), ("Input SIMD", in_simd),
                            ("Output SIMD", out_simd), ("Vectors per frame", vectors_per_frame)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if channels % in_simd:
            raise ValueError(f"Input SIMD must divide the {channels} channels, not {in_simd}")
        self.channels, self.kernel, self.bits = channels, kernel, bits
        self.in_simd, self.out_simd = in_simd, out_simd
        self.vectors_per_frame = vectors_per_frame
        self.fan_in = K = kernel * kernel * channels
        if out_simd > K:
            raise ValueError(f"Output SIMD must be at most K={K}, not {out_simd}")
        self.in_beats = K // in_simd
        self.out_beats = -(-K // out_simd)
        super().__init__({
            "i_stream": In(chunk_signature(in_simd, bits)),
            "o_stream": Out(chunk_signature(out_simd, bits)),
        })

    @property
    def cycles_per_vector(self):
        """Steady-state cycles per window vector: ``max(in beats, out beats)``."""
        return max(self.in_beats, self.out_beats)

    @property
    def cycles_per_frame(self):
        """Steady-state cycles per frame: :attr:`cycles_per_vector` per window vector."""
        return self.cycles_per_vector * self.vectors_per_frame

    @property
    def memory_bits(self):
        """Bits of the two vector registers."""
        return 2 * self.fan_in * self.bits

    def describe(self):
        """JSON-serialisable summary."""
        return {"kind": "window_transpose", "channels": self.channels, "kernel": self.kernel,
                "bits": self.bits, "in_simd": self.in_simd, "out_simd": self.out_simd,
                "in_beats": self.in_beats, "out_beats": self.out_beats,
                "cycles_per_vector": self.cycles_per_vector,
                "cycles_per_frame": self.cycles_per_frame, "memory_bits": self.memory_bits}

    def reference(self, vectors):
        """Expected output chunks (ints) for tap-major element vectors ``[N, K]`` (``bits``-bit
        unsigned element values)."""
        order = np.asarray(channel_major_order(self.kernel, self.channels))
        beats = []
        for vec in np.asarray(vectors):
            flat = list(vec[order]) + [0] * (self.out_beats * self.out_simd - self.fan_in)
            beats += pack_lanes(np.asarray(flat).reshape(self.out_beats, self.out_simd),
                                self.bits)
        return beats

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

        order = channel_major_order(self.kernel, self.channels)
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
