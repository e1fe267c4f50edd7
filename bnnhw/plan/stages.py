"""Stage plans: every parameter and derived figure of one hardware stage, without Amaranth.

Each plan is a frozen dataclass in the pattern of :mod:`amaranth.lib.crc`'s ``Parameters``: it
validates its parameters (Amaranth's message form, :mod:`bnnhw.plan.params`), derives the
stage's figures once (widths, beats, cycles, latency, memory bits, constant tables), offers a
software model (``reference``) where the stage transforms data, and builds its hardware
(``create()``, which imports :mod:`bnnhw.hw` only then). The components in :mod:`bnnhw.hw`
build the same plan from their keyword parameters and read every figure from it, so nothing
is derived twice; tests compare ``plan.reference(...)`` with the simulated component.
"""

from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

from ..model.layers import (BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer,
                            MultibitConv2d, Threshold, ThresholdQuantizer, popcount_bits,
                            signed_bits)
from ..model.packing import (VECTOR_ORDERS, bits_to_int, channel_major_order, conv_weight_rows,
                             pack_fields)
from .params import check_choice, check_int
from .tables import (IntShape, accumulator_range, score_table, shape_for, threshold_table)

__all__ = ["StagePlan", "InputPlan", "WidthPlan", "SerializerPlan", "FifoPlan", "WindowPlan",
           "TransposePlan", "ChunkStagePlan", "MVTUPlan", "PoolPlan", "ScoresPlan",
           "CHUNK_STAGES", "RAM_STYLES", "tree_levels", "default_stages", "window_vectors",
           "or_pool_reference"]


class StagePlan:
    """Common interface of the stage plans.

    ``component`` names the hardware class (``"module:Class"`` under :mod:`bnnhw.hw`); its
    keyword parameters are this plan's fields (:meth:`params`).
    """
    component: ClassVar[str] = ""

    def params(self):
        """The component's keyword parameters (the dataclass fields)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def create(self, **extra):
        """Build the hardware component of this very plan (imports Amaranth).

        The component is built from the plan object itself (its ``_build(plan)``), not from
        a copy of its parameters, so whatever the plan holds is what the hardware holds.
        """
        import importlib
        module, name = self.component.split(":")
        cls = getattr(importlib.import_module(f"bnnhw.hw.{module}"), name)
        component = cls.__new__(cls)
        component._build(self, **extra)
        return component


def _set(obj, name, value):
    object.__setattr__(obj, name, value)


# -- stream adapters ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class InputPlan(StagePlan):
    """The model's input quantizer on ``lanes`` raw bytes per beat (SPEC §6)."""
    quantizer: object
    lanes: int
    component: ClassVar[str] = "convert:InputQuantizer"

    def __post_init__(self):
        if not isinstance(self.quantizer, (ThresholdQuantizer, FixedPointQuantizer)):
            raise TypeError(f"Quantizer must be an input quantizer, not {self.quantizer!r}")
        _set(self, "lanes", check_int("Lane count", self.lanes, 1))

    @property
    def out_bits(self):
        return self.quantizer.output_bits

    @property
    def out_width(self):
        return self.lanes * self.out_bits

    @property
    def table(self):
        """The 256 codes (or bits) of the input bytes."""
        return [int(v) for v in self.quantizer(np.arange(256, dtype=np.uint8))]


@dataclass(frozen=True, eq=False)
class WidthPlan(StagePlan):
    """Packets of ``total`` bits re-cut from ``in_width``- into ``out_width``-bit beats."""
    in_width: int
    out_width: int
    total: int
    component: ClassVar[str] = "convert:WidthConverter"

    def __post_init__(self):
        check_int("Input width", self.in_width, 1)
        check_int("Output width", self.out_width, 1)
        check_int("Packet size", self.total, 1)

    @property
    def in_beats(self):
        return -(-self.total // self.in_width)

    @property
    def out_beats(self):
        return -(-self.total // self.out_width)


@dataclass(frozen=True, eq=False)
class SerializerPlan(WidthPlan):
    """A one-beat packet cut into ``out_width``-bit beats (constant slices, latency 0)."""
    component: ClassVar[str] = "convert:PacketSerializer"
    latency: ClassVar[int] = 0

    def __post_init__(self):
        super().__post_init__()
        if self.total > self.in_width:
            raise ValueError(f"Packet size must be at most the input width {self.in_width}, "
                             f"not {self.total}")


def chunker_plan(in_width, out_width, total):
    """The width converter in front of a dense layer: a :class:`SerializerPlan` when the packet
    arrives in one beat (an MVTU's output vector), else a :class:`WidthPlan` (pixels of a
    feature map, input bytes)."""
    if total <= in_width:
        return SerializerPlan(in_width=in_width, out_width=out_width, total=total)
    return WidthPlan(in_width=in_width, out_width=out_width, total=total)


@dataclass(frozen=True, eq=False)
class FifoPlan(StagePlan):
    """A synchronous stream FIFO of ``depth`` beats of ``width`` bits."""
    width: int
    depth: int
    component: ClassVar[str] = "convert:StreamFIFO"

    def __post_init__(self):
        check_int("FIFO width", self.width, 1)
        check_int("FIFO depth", self.depth, 1)

    @property
    def memory_bits(self):
        return self.width * self.depth


@dataclass(frozen=True, eq=False)
class ScoresPlan(StagePlan):
    """One beat of ``classes`` scores in, one score beat per class out."""
    classes: int
    score_width: int
    component: ClassVar[str] = "convert:ScoreSerializer"

    def __post_init__(self):
        check_int("Class count", self.classes, 1)
        check_int("Score width", self.score_width, 1)


# -- sliding window ----------------------------------------------------------------------------

def window_vectors(frames, *, kernel, stride=1, pad=0, pad_value=0):
    """Window vectors of a batch of feature maps, the slow and obvious way (SPEC §2).

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


@dataclass(frozen=True, eq=False)
class WindowPlan(StagePlan):
    """Sliding-window (im2col) generator: pixels in, ``[ky][kx][c]`` chunks out.

    See :class:`bnnhw.hw.window.SlidingWindow` for the hardware; every figure here is the one
    it is built with.
    """
    channels: int
    bits: int
    height: int
    width: int
    kernel: int
    stride: int = 1
    pad: int = 0
    pad_value: int | None = None
    simd: int = field(default=None)
    component: ClassVar[str] = "window:SlidingWindow"

    def __post_init__(self):
        check_int("Channel count", self.channels, 1)
        check_int("Element width", self.bits, 1)
        check_int("Height", self.height, 1)
        check_int("Width", self.width, 1)
        check_int("Kernel size", self.kernel, 1)
        check_int("Stride", self.stride, 1)
        check_int("Padding", self.pad, 0)
        check_int("SIMD", self.simd, 1)
        kernel, pad = self.kernel, self.pad
        if pad >= kernel:
            raise ValueError(f"Padding must be less than the kernel size {kernel}, not {pad}")
        for name, size in (("height", self.height), ("width", self.width)):
            if size + 2 * pad < kernel:
                raise ValueError(f"Kernel size {kernel} does not fit the {name} {size} with "
                                 f"padding {pad}")
        if self.channels % self.simd:
            raise ValueError(f"SIMD must divide the channel count {self.channels}, "
                             f"not {self.simd}")
        pad_value = self.pad_value
        if pad_value is None:
            pad_value = 0 if self.bits > 1 else 1           # the IR layers' defaults
            _set(self, "pad_value", pad_value)
        if isinstance(pad_value, bool) or not isinstance(pad_value, int):
            raise TypeError(f"Padding value must be an integer, not {pad_value!r}")
        if self.bits == 1:
            if pad_value not in (1, -1):
                raise ValueError(f"Padding value of a binary map must be +1 or -1, "
                                 f"not {pad_value}")
        else:
            lo, hi = -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
            if not lo <= pad_value <= hi:
                raise ValueError(f"Padding value must be a {self.bits}-bit code in "
                                 f"[{lo}, {hi}], not {pad_value}")

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
        """``R``: rows of the input map held in the line buffer.

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
        """Steady-state cycles per frame: the larger of output beats and input pixels."""
        return max(self.out_height * self.out_width * self.beats_per_vector,
                   self.height * self.width)

    @property
    def frame_beats(self):
        """Output beats per frame."""
        return self.out_height * self.out_width * self.beats_per_vector

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

    def _check_frames(self, frames):
        frames = np.asarray(frames)
        want = (self.height, self.width, self.channels)
        if frames.ndim != 4 or frames.shape[1:] != want:
            raise ValueError(f"frames must have shape [N, {want[0]}, {want[1]}, {want[2]}], "
                             f"not {list(frames.shape)}")
        return frames

    def reference(self, frames):
        """The expected output beats for ``frames`` (``[N, H, W, C]`` element values).

        Returns a list of Python ints, one per ``o_stream`` beat, in order.
        """
        frames = self._check_frames(frames)
        vec = window_vectors(frames, kernel=self.kernel, stride=self.stride, pad=self.pad,
                             pad_value=self.pad_element)
        return pack_fields(vec.reshape(-1, self.simd), self.bits)

    def pixels(self, frames):
        """``i_stream`` payloads of ``frames`` (``[N, H, W, C]`` element values), in order."""
        frames = np.asarray(frames)
        return pack_fields(frames.reshape(-1, self.channels), self.bits)


@dataclass(frozen=True, eq=False)
class TransposePlan(StagePlan):
    """Re-cut tap-major window vectors into channel-major chunks (SPEC §9's 2-D windows)."""
    channels: int
    kernel: int
    bits: int = 1
    in_simd: int = None
    out_simd: int = None
    vectors_per_frame: int = 1
    component: ClassVar[str] = "window:WindowTranspose"

    def __post_init__(self):
        for name, value in (("Channel count", self.channels), ("Kernel size", self.kernel),
                            ("Element width", self.bits), ("Input SIMD", self.in_simd),
                            ("Output SIMD", self.out_simd),
                            ("Vectors per frame", self.vectors_per_frame)):
            check_int(name, value, 1)
        if self.channels % self.in_simd:
            raise ValueError(f"Input SIMD must divide the {self.channels} channels, "
                             f"not {self.in_simd}")
        if self.out_simd > self.fan_in:
            raise ValueError(f"Output SIMD must be at most K={self.fan_in}, "
                             f"not {self.out_simd}")

    @property
    def fan_in(self):
        return self.kernel * self.kernel * self.channels

    @property
    def in_beats(self):
        return self.fan_in // self.in_simd

    @property
    def out_beats(self):
        return -(-self.fan_in // self.out_simd)

    @property
    def cycles_per_vector(self):
        """Steady-state cycles per window vector: ``max(in beats, out beats)``."""
        return max(self.in_beats, self.out_beats)

    @property
    def cycles_per_frame(self):
        """Steady-state cycles per frame: :attr:`cycles_per_vector` per window vector."""
        return self.cycles_per_vector * self.vectors_per_frame

    @property
    def frame_beats(self):
        return self.vectors_per_frame * self.out_beats

    @property
    def memory_bits(self):
        """Bits of the two vector registers."""
        return 2 * self.fan_in * self.bits

    @property
    def order(self):
        """Tap-major positions of the channel-major elements (:func:`channel_major_order`)."""
        return channel_major_order(self.kernel, self.channels)

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
        order = np.asarray(self.order)
        beats = []
        for vec in np.asarray(vectors):
            flat = list(vec[order]) + [0] * (self.out_beats * self.out_simd - self.fan_in)
            beats += pack_fields(np.asarray(flat).reshape(self.out_beats, self.out_simd),
                                 self.bits)
        return beats


# -- pooling -----------------------------------------------------------------------------------

def or_pool_reference(frames, *, kernel, stride=None):
    """OR of every ``kernel x kernel`` window, step ``stride`` (default ``kernel``), no padding.

    Parameters
    ----------
    frames : array_like of 0 / 1, ``[N, H, W, C]``

    Returns
    -------
    numpy.ndarray of uint8, ``[N, Ho, Wo, C]``, ``Ho = (H - kernel) // stride + 1``.
    """
    stride = kernel if stride is None else stride
    frames = np.asarray(frames).astype(bool)
    n, h, w, c = frames.shape
    ho, wo = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    out = np.zeros((n, ho, wo, c), dtype=np.uint8)
    for oy in range(ho):
        for ox in range(wo):
            win = frames[:, oy * stride:oy * stride + kernel, ox * stride:ox * stride + kernel]
            out[:, oy, ox] = win.any(axis=(1, 2))
    return out


@dataclass(frozen=True, eq=False)
class PoolPlan(StagePlan):
    """OR max-pooling of a binary pixel stream (SPEC §7)."""
    channels: int
    height: int
    width: int
    kernel: int
    stride: int | None = None
    component: ClassVar[str] = "pool:OrMaxPool"

    def __post_init__(self):
        check_int("Channel count", self.channels, 1)
        check_int("Height", self.height, 1)
        check_int("Width", self.width, 1)
        check_int("Kernel size", self.kernel, 1)
        if self.stride is None:
            _set(self, "stride", self.kernel)
        check_int("Stride", self.stride, 1)
        for name, size in (("height", self.height), ("width", self.width)):
            if size < self.kernel:
                raise ValueError(f"Kernel size {self.kernel} does not fit the {name} {size}")

    @property
    def out_height(self):
        return (self.height - self.kernel) // self.stride + 1

    @property
    def out_width(self):
        return (self.width - self.kernel) // self.stride + 1

    @property
    def memory_bits(self):
        """Line buffer bits: ``(kernel - 1) * out_width * channels``."""
        return (self.kernel - 1) * self.out_width * self.channels

    @property
    def frame_beats(self):
        return self.out_height * self.out_width

    def describe(self):
        """JSON-serialisable summary: parameters, memory, cycle estimates."""
        return {
            "kind": "or_maxpool", "channels": self.channels, "height": self.height,
            "width": self.width, "kernel": self.kernel, "stride": self.stride,
            "out_height": self.out_height, "out_width": self.out_width,
            "memory_bits": self.memory_bits, "latency_cycles": 1,
            "cycles_per_frame": self.height * self.width,
        }

    def reference(self, frames):
        """Expected ``o_stream`` payloads for ``frames`` (``[N, H, W, C]`` bits), in order."""
        frames = np.asarray(frames)
        want = (self.height, self.width, self.channels)
        if frames.ndim != 4 or frames.shape[1:] != want:
            raise ValueError(f"frames must have shape [N, {want[0]}, {want[1]}, {want[2]}], "
                             f"not {list(frames.shape)}")
        return pack_fields(or_pool_reference(frames, kernel=self.kernel, stride=self.stride), 1)

    def pixels(self, frames):
        """``i_stream`` payloads of ``frames`` (``[N, H, W, C]`` bits), in order."""
        return pack_fields(frames, 1)


# -- the chunk stage (the MVTU's seam) ---------------------------------------------------------

def tree_levels(n):
    """Adder levels of a balanced tree over ``n`` terms: ``ceil(log2(n))``."""
    return max(0, (int(n) - 1).bit_length())


def default_stages(lanes):
    """Default register ranks of an adder tree over ``lanes`` terms: one per three levels."""
    return max(1, -(-tree_levels(lanes) // 3))


#: Chunk stage kinds: name -> (hardware class, needs "chw" order, holds its own weights).
#: ``"popcount"`` and ``"dot"`` are the plain XNOR-popcount and multi-bit dot-product stages;
#: ``"kernel_popcount"`` computes every 2-D popcount ``p(o, c)`` first (SPEC §9), the stage a
#: shared-result filter bank replaces; ``"kernel_popcount_rom"`` is the same stage holding its
#: weight rows itself (the MVTU then has no weight memory).
CHUNK_STAGES = {
    "popcount": {"component": "pe:ChunkPopcount", "order": None, "holds_weights": False},
    "dot": {"component": "pe:ChunkDot", "order": None, "holds_weights": False},
    "kernel_popcount": {"component": "pe:KernelPopcount", "order": "chw",
                        "holds_weights": False},
    "kernel_popcount_rom": {"component": "pe:KernelPopcount", "order": "chw",
                            "holds_weights": True},
}


@dataclass(frozen=True, eq=False)
class ChunkStagePlan(StagePlan):
    """One chunk of ``simd`` lanes against ``pe`` weight rows -> ``pe`` partial sums.

    Parameters
    ----------
    kind : str
        A key of :data:`CHUNK_STAGES`.
    pe, simd : int
    in_bits : int
        1 for binary layers; the code width for ``"dot"``.
    kernel_elements : int or None
        ``kh * kw`` for the kernel stages.
    stages : int or None
        Register ranks of the (last) adder tree; ``None``: :func:`default_stages`.
    weight_rows : tuple of int or None
        The weight rows (``PE * SIMD``-bit words, one per ``nf * SF + sf``) for a stage that
        holds its own weights.
    """
    kind: str
    pe: int
    simd: int
    in_bits: int = 1
    kernel_elements: int | None = None
    stages: int | None = None
    weight_rows: tuple | None = None

    def __post_init__(self):
        check_choice("Chunk stage", self.kind, tuple(CHUNK_STAGES))
        check_int("PE count", self.pe, 1)
        check_int("SIMD width", self.simd, 1)
        if self.kind == "dot":
            check_int("Input code width", self.in_bits, 2)
        elif self.in_bits != 1:
            raise ValueError(f"Chunk stage {self.kind!r} takes binary inputs, not "
                             f"{self.in_bits}-bit codes")
        if self.kind.startswith("kernel_popcount"):
            check_int("Kernel element count", self.kernel_elements, 1)
            if self.simd % self.kernel_elements:
                raise ValueError(f"SIMD must be a multiple of the {self.kernel_elements} "
                                 f"elements of a 2-D kernel, not {self.simd}")
        if self.stages is None:
            _set(self, "stages", default_stages(self.tree_terms))
        check_int("Pipeline stage count", self.stages, 0)
        if self.holds_weights and self.weight_rows is None:
            raise ValueError(f"Chunk stage {self.kind!r} holds its weights: it needs the "
                             f"weight rows")

    @property
    def component(self):
        return CHUNK_STAGES[self.kind]["component"]

    @property
    def holds_weights(self):
        """Whether the stage keeps its weight rows (indexed by ``row``) instead of reading
        the MVTU's weight memory through ``w``."""
        return CHUNK_STAGES[self.kind]["holds_weights"]

    @property
    def groups(self):
        """2-D windows per chunk (kernel stages)."""
        return self.simd // self.kernel_elements

    @property
    def tree_terms(self):
        return self.groups if self.kind.startswith("kernel_popcount") else self.simd

    @property
    def latency(self):
        """Enabled cycles from ``x`` / ``w`` to ``p``."""
        return self.stages + (1 if self.kind.startswith("kernel_popcount") else 0)

    @property
    def count_shape(self):
        """Shape of one partial sum ``p``."""
        if self.kind == "dot":
            bound = self.simd << (self.in_bits - 1)
            return IntShape(signed_bits(-bound, bound), True)
        return IntShape(popcount_bits(self.simd), False)

    @property
    def x_width(self):
        return self.simd * self.in_bits

    @property
    def w_width(self):
        return self.pe * self.simd

    def params(self):
        p = {"pe": self.pe, "simd": self.simd, "stages": self.stages}
        if self.kind == "dot":
            p["in_bits"] = self.in_bits
        if self.kind.startswith("kernel_popcount"):
            p["kernel_elements"] = self.kernel_elements
            # Given only when the stage holds them; then the MVTU has no weight memory.
            if self.holds_weights:
                p["weight_rows"] = self.weight_rows
        return p

    def describe(self):
        return {"kind": self.kind, "latency": self.latency, "holds_weights": self.holds_weights}


# -- the matrix-vector-threshold unit ----------------------------------------------------------

@dataclass(frozen=True, eq=False)
class MVTUPlan(StagePlan):
    """One compute layer with its clip and threshold, folded ``pe`` x ``simd``.

    The parameters are those of :class:`bnnhw.hw.mvtu.MVTU`; ``stage`` names the chunk stage
    (:data:`CHUNK_STAGES`; default ``"dot"`` for a multi-bit layer, else ``"popcount"``).

    ``weight_map`` builds the weight ROM as column slices ``((lo, width, style), ...)``
    covering bits ``[0, PE*SIMD)`` in order, each its own memory with Yosys' ``ram_style``
    (``"block"``, ``"logic"``, ``"distributed"``), as :class:`bnnhw.plan.memory.MemoryMap`
    chooses for a device; ``table_style`` does the same for the threshold table. ``None``
    (default): one memory each, left to Yosys.
    """
    layer: object
    pe: int
    simd: int
    threshold: object = None
    clip: object = None
    output: str = "bits"
    rule: str | None = None
    acc_bits: int | None = None
    overflow: str | None = None
    stages: int | None = None
    input_order: str = "hwc"
    stage: str | None = None
    weight_map: tuple | None = None
    table_style: str | None = None
    component: ClassVar[str] = "mvtu:MVTU"

    def __post_init__(self):
        layer = self.layer
        if not isinstance(layer, (BinaryConv2d, BinaryDense, MultibitConv2d)):
            raise TypeError(f"Layer must be a BinaryConv2d, BinaryDense or MultibitConv2d, "
                            f"not {layer!r}")
        for name, value in (("PE", self.pe), ("SIMD", self.simd)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        threshold, clip, output = self.threshold, self.clip, self.output
        if threshold is not None and not isinstance(threshold, Threshold):
            raise TypeError(f"Threshold must be a Threshold layer or None, not {threshold!r}")
        if clip is not None and not isinstance(clip, Clip):
            raise TypeError(f"Clip must be a Clip layer or None, not {clip!r}")
        if output not in ("bits", "scores"):
            raise ValueError(f"Output must be 'bits' or 'scores', not {output!r}")
        if output == "bits" and threshold is None:
            raise ValueError(f"layer {layer.name!r}: output 'bits' needs a threshold")
        if threshold is not None and threshold.channels != layer.out_channels:
            raise ValueError(f"layer {layer.name!r}: {threshold.channels} thresholds for "
                             f"{layer.out_channels} output channels")
        if self.input_order not in VECTOR_ORDERS:
            raise ValueError(f"Input order must be 'hwc' or 'chw', not {self.input_order!r}")
        conv = isinstance(layer, (BinaryConv2d, MultibitConv2d))
        if conv and self.input_order == "hwc" and layer.in_channels % self.simd:
            raise ValueError(f"layer {layer.name!r}: SIMD must divide the "
                             f"{layer.in_channels} input channels, not {self.simd}")
        if self.simd > layer.fan_in:
            raise ValueError(f"layer {layer.name!r}: SIMD must be at most K={layer.fan_in}, "
                             f"not {self.simd}")
        if self.multibit:
            if self.acc_bits is not None:
                raise ValueError(f"layer {layer.name!r}: a multi-bit layer's accumulator is "
                                 f"exact; acc_bits must be None")
            _set(self, "_acc_bits", layer.signed_bits)
            _set(self, "_saturates", False)
        else:
            overflow = layer.overflow if self.overflow is None else self.overflow
            acc_bits = layer.accumulator_bits if self.acc_bits is None else self.acc_bits
            try:
                acc_bits = check_accumulator(layer.fan_in, acc_bits, overflow)
            except ValueError as e:
                raise ValueError(f"layer {layer.name!r}: {e}") from None
            _set(self, "_acc_bits", acc_bits)
            _set(self, "_saturates", acc_bits < layer.min_acc_bits)
        stage = self.stage
        if stage is None:
            stage = "dot" if self.multibit else "popcount"
        if stage not in CHUNK_STAGES:
            raise ValueError(f"layer {layer.name!r}: chunk stage must be one of "
                             f"{', '.join(repr(s) for s in CHUNK_STAGES)}, not {stage!r}")
        if (stage == "dot") != self.multibit:
            raise ValueError(f"layer {layer.name!r}: chunk stage {stage!r} does not compute a "
                             f"{'multi-bit' if self.multibit else 'binary'} layer")
        need = CHUNK_STAGES[stage]["order"]
        if need is not None and self.input_order != need:
            raise ValueError(f"layer {layer.name!r}: chunk stage {stage!r} needs the {need!r} "
                             f"vector order, not {self.input_order!r}")
        kernel_elements = None
        if stage.startswith("kernel_popcount"):
            if not conv:
                raise ValueError(f"layer {layer.name!r}: chunk stage {stage!r} is for "
                                 f"convolutions only")
            kh, kw = layer.kernel
            kernel_elements = kh * kw
        _set(self, "stage", stage)
        try:
            chunk = ChunkStagePlan(
                kind=stage, pe=self.pe, simd=self.simd, in_bits=self.in_bits,
                kernel_elements=kernel_elements, stages=self.stages,
                weight_rows=tuple(self.weight_rows) if CHUNK_STAGES[stage]["holds_weights"]
                else None)
        except ValueError as e:
            raise ValueError(f"layer {layer.name!r}: {e}") from None
        _set(self, "chunk", chunk)
        if self.weight_map is not None:
            _set(self, "weight_map", _check_weight_map(layer.name, self.weight_map,
                                                       self.pe * self.simd))
        if self.table_style is not None and self.table_style not in RAM_STYLES:
            raise ValueError(f"layer {layer.name!r}: table style must be one of "
                             f"{', '.join(map(repr, RAM_STYLES))}, not {self.table_style!r}")
        if output == "scores" and self.rule is None:
            raise ValueError(f"layer {layer.name!r}: output 'scores' needs a score rule")

    # -- shape of the layer ---------------------------------------------------------------

    @property
    def multibit(self):
        return isinstance(self.layer, MultibitConv2d)

    @property
    def fan_in(self):
        return self.layer.fan_in

    @property
    def out_channels(self):
        return self.layer.out_channels

    @property
    def in_bits(self):
        return self.layer.input_bits if self.multibit else 1

    @property
    def sf(self):
        """``SF = ceil(K / SIMD)``: chunks per vector."""
        return -(-self.fan_in // self.simd)

    @property
    def nf(self):
        """``NF = ceil(O / PE)``: neuron folds per vector."""
        return -(-self.out_channels // self.pe)

    @property
    def acc_width(self):
        """Accumulator width in use (``acc_bits`` resolved)."""
        return self._acc_bits

    @property
    def acc_shape(self):
        return IntShape(self._acc_bits, self.multibit)

    @property
    def saturates(self):
        return self._saturates

    @property
    def acc_range(self):
        return accumulator_range(self.layer, None if self.multibit else self._acc_bits)

    # -- constants ------------------------------------------------------------------------

    def _tables(self):
        cached = self.__dict__.get("_tables_cache")
        if cached is not None:
            return cached
        layer, acc = self.layer, None if self.multibit else self._acc_bits
        lo, hi = self.acc_range
        if self.output == "bits":
            compare, neg = threshold_table(layer, self.threshold, self.clip, acc)
            table_shape = shape_for(lo, hi + 1)
            score = None
        else:
            compare, neg, (s_lo, s_hi) = score_table(layer, self.rule, self.threshold,
                                                     self.clip, acc)
            table_shape = shape_for(min(0, int(compare.min())), int(compare.max()))
            score_width = max(2, shape_for(min(s_lo, -1), s_hi).width)
            score = (IntShape(score_width, True), (s_lo, s_hi))
        tw = table_shape.width
        rows = self.nf * self.pe
        cmp_pad = np.zeros(rows, np.int64)
        cmp_pad[:self.out_channels] = compare
        neg_pad = np.zeros(rows, np.int64)
        neg_pad[:self.out_channels] = neg
        fields_ = (cmp_pad & ((1 << tw) - 1)) | (neg_pad << tw)
        table_init = pack_fields(fields_.reshape(self.nf, self.pe), tw + 1)
        cached = {"compare": compare, "neg": neg, "table_shape": table_shape,
                  "score": score, "table_init": table_init}
        _set(self, "_tables_cache", cached)
        return cached

    @property
    def table_shape(self):
        """Shape of one per-channel constant (threshold ``C`` or score bias ``T``)."""
        return self._tables()["table_shape"]

    @property
    def table_init(self):
        """Table memory words, one per neuron fold: lane ``p`` = constant + negate bit."""
        return self._tables()["table_init"]

    @property
    def compare(self):
        """Per output channel: the threshold in the accumulator domain (or score bias)."""
        return self._tables()["compare"]

    @property
    def negate(self):
        return self._tables()["neg"]

    @property
    def score_shape(self):
        score = self._tables()["score"]
        return None if score is None else score[0]

    @property
    def score_width(self):
        score = self._tables()["score"]
        return None if score is None else score[0].width

    @property
    def score_range(self):
        score = self._tables()["score"]
        return None if score is None else score[1]

    @property
    def weight_rows(self):
        """Weight memory words ``[NF * SF]`` of ``PE * SIMD`` bits: chunk ``sf`` of neuron fold
        ``nf`` at ``nf * SF + sf``, row ``r`` lane ``j`` at bit ``r * SIMD + j``. Padded rows
        are 0, padded lanes 1 (they never match the 0 that padded inputs carry)."""
        cached = self.__dict__.get("_weight_rows")
        if cached is not None:
            return cached
        rows, K, O, simd = self.nf * self.pe, self.fan_in, self.out_channels, self.simd
        wbits = np.zeros((rows, self.sf * simd), np.uint8)
        wbits[:, K:] = 1
        wbits[:O, :K] = conv_weight_rows(self.layer.weight, self.input_order) == 1
        wbits = wbits.reshape(self.nf, self.pe, self.sf, simd).transpose(0, 2, 1, 3)
        cached = [bits_to_int(row) for row in wbits.reshape(self.nf * self.sf, self.pe * simd)]
        _set(self, "_weight_rows", cached)
        return cached

    # -- software model -------------------------------------------------------------------

    def reference(self, vectors):
        """Output beats (ints) for input vectors, computed from this plan's constants.

        Parameters
        ----------
        vectors : array_like, ``[N, K]``
            Element values in this unit's vector order (``input_order``): bits 0 / 1 of a
            binary layer, signed codes of a multi-bit one.

        Returns
        -------
        list of int
            One ``o_stream`` payload per vector: bit ``o`` = output channel ``o``
            (``output="bits"``), or the scores as ``score_width``-bit two's-complement fields.
        """
        x = np.asarray(vectors, dtype=np.int64)
        w = conv_weight_rows(self.layer.weight, self.input_order).astype(np.int64)
        if self.multibit:
            a = x @ w.T
        else:
            a = (2 * x - 1) @ w.T                                   # y = 2P - K
            a = np.minimum((a + self.fan_in) // 2, (1 << self._acc_bits) - 1)   # P
        compare, neg = self.compare[None, :], self.negate[None, :]
        if self.output == "bits":
            bits = (a >= compare) ^ neg
            return pack_fields(bits.astype(np.int64), 1)
        from .tables import value_of
        if self.rule == "popcount":
            scores = a
        else:
            v = value_of(self.layer, a, self.clip)
            scores = np.where(neg, compare - v, v - compare) if self.rule == "margin" else v
        return pack_fields(scores, self.score_width)

    # -- figures --------------------------------------------------------------------------

    @property
    def holds_weights(self):
        """The chunk stage keeps the weights: the MVTU has no weight memory."""
        return self.chunk.holds_weights

    @property
    def cycles_per_vector(self):
        """``ceil(O / PE) * ceil(K / SIMD)``: steady-state cycles per input vector."""
        return self.nf * self.sf

    @property
    def latency(self):
        """Cycles from accepting a vector's last chunk to presenting its output beat."""
        return self.nf * self.sf + self.chunk.latency + 3

    @property
    def weight_memory_bits(self):
        """Bits of the weight rows (in the MVTU's memory, or in a stage that holds them)."""
        return self.nf * self.sf * self.pe * self.simd

    @property
    def table_memory_bits(self):
        return self.nf * self.pe * (self.table_shape.width + 1)

    @property
    def buffer_memory_bits(self):
        return 2 * self.sf * self.simd * self.in_bits

    @property
    def in_width(self):
        return self.simd * self.in_bits

    @property
    def out_width(self):
        """Output beat width: ``O`` bits, or ``O * score_width`` scores."""
        return self.out_channels if self.output == "bits" else \
            self.out_channels * self.score_width


#: Yosys ``ram_style`` values a memory slice may ask for.
RAM_STYLES = ("block", "logic", "distributed")


def _check_weight_map(name, weight_map, width):
    """Validate weight ROM slices ``((lo, width, style), ...)`` covering ``[0, width)``."""
    out, lo = [], 0
    try:
        items = list(weight_map)
    except TypeError:
        raise TypeError(f"layer {name!r}: weight map must be a sequence of (lo, width, style), "
                        f"not {weight_map!r}") from None
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 3):
            raise TypeError(f"layer {name!r}: weight map entry must be (lo, width, style), "
                            f"not {item!r}")
        a, w, style = item
        if a != lo:
            raise ValueError(f"layer {name!r}: weight map slice must start at bit {lo}, "
                             f"not {a!r}")
        check_int("Weight slice width", w, 1)
        if style not in RAM_STYLES:
            raise ValueError(f"layer {name!r}: weight slice style must be one of "
                             f"{', '.join(map(repr, RAM_STYLES))}, not {style!r}")
        out.append((int(a), int(w), style))
        lo += w
    if lo != width:
        raise ValueError(f"layer {name!r}: weight map covers {lo} bits, the rows have {width}")
    return tuple(out)


def check_accumulator(fan_in, acc_bits, overflow):
    """Validate a popcount accumulator width (SPEC §3) and return it.

    ``None`` gives the minimal exact width ``A_min = ceil(log2(K + 1))``. A narrower width is
    an error unless ``overflow == "saturate"``.
    """
    if overflow not in ("error", "saturate"):
        raise ValueError(f"overflow must be 'error' or 'saturate', not {overflow!r}")
    a_min = popcount_bits(fan_in)
    if acc_bits is None:
        return a_min
    check_int("Accumulator width", acc_bits, 1)
    if acc_bits < a_min and overflow != "saturate":
        raise ValueError(f"accumulator width must be at least {a_min} for K={fan_in}, "
                         f"not {acc_bits}")
    return acc_bits
