"""The plan of a whole streaming core: the stage chain of a network at a folding, derived once.

:class:`CorePlan` is computed from a :class:`~bnnhw.model.Network` and a folding, in pure
Python. It holds every stage's plan (:mod:`bnnhw.plan.stages`) in stream order, the per-layer
figures of the manifest, the beats per frame of every stage, cycles and the latency estimate.
:class:`bnnhw.hw.network.NetworkCore` elaborates a plan and derives nothing itself; the
manifest (:meth:`CorePlan.describe`), ``bnnhw info``, the reports and design-space sweeps read
the same plan without elaborating any hardware.

Stage chain (one stage per entry, connected stream to stream)::

    i_stream (raw bytes) ─> input quantizer ─> [width converter]
      per block:  conv:  [FIFO] ─> sliding window ─> [transpose] ─> MVTU ─> [pool]
                  dense: [width converter (pixels -> chunks) or packet serializer
                          (one-beat vector -> chunks)] ─> MVTU
                  hardwired conv: [FIFO] ─> sliding window (one pixel per beat) ─>
                          width converter (whole window vectors) ─> hardwired datapath ─> [pool]
      last block: MVTU (scores) ─> score serializer ─> o_stream (score beats)

A hardwired layer (folding ``"datapath": "hardwired"``, :mod:`bnnhw.plan.hardwired`) takes
one whole window vector per cycle; its sliding window emits one input pixel (all channels)
per beat, ``kh * kw`` beats per vector, so inside a core the layer runs at ``kh * kw`` cycles
per output pixel (the window's rate), which the stage cycles report.
"""

from dataclasses import dataclass

from ..errors import ModelError
from ..limits import check_size
from ..model.layers import BinaryConv2d, BinaryDense, MultibitConv2d
from ..model.network import Network
from .folding import load_folding, sharing_mode
from .hardwired import HardwiredPlan
from .stages import (FifoPlan, InputPlan, MVTUPlan, PoolPlan, ScoresPlan, TransposePlan,
                     WidthPlan, WindowPlan, chunker_plan)

__all__ = ["CorePlan", "Stage", "probe_key"]


def probe_key(stage_name):
    """The probe port member of a stage (dots in stage names become ``_``)."""
    return stage_name.replace(".", "_")


def _pool_plan(block):
    """The plan of the pooling after ``block``'s compute layer, or ``None``."""
    if block.pool is None:
        return None
    pc, ph, pw = block.pool.input_shape
    return PoolPlan(channels=pc, height=ph, width=pw, kernel=block.pool.layer.kernel,
                    stride=block.pool.layer.stride)


def _layer_error(name, e):
    """A plan's ``TypeError``/``ValueError`` as a :class:`ModelError` naming the layer."""
    msg = str(e)
    return ModelError(msg if msg.startswith("layer ") else f"layer {name!r}: {msg}")


@dataclass(frozen=True, eq=False)
class Stage:
    """One stage of the chain: its name, plan, output beats per frame and cycles per frame.

    ``layer`` is the manifest's entry of the compute layer for an MVTU stage, else ``None``.
    ``cycles`` is ``None`` for stages that never limit the rate by construction (FIFOs, width
    converters, the quantizer's pass-through, pooling).
    """
    name: str
    plan: object
    frame_beats: int
    cycles: int | None = None
    layer: dict | None = None

    @property
    def submodule(self):
        """The stage's submodule name in the elaborated core."""
        return probe_key(self.name)


def _transpose_input_simd(channels, taps, mvtu_cycles):
    """Channels per beat of the sliding window in front of a transpose: the fewest that keep
    the window (``taps * channels / simd`` beats per vector) no slower than the MVTU's
    ``mvtu_cycles`` per vector."""
    for simd in range(1, channels + 1):
        if channels % simd == 0 and taps * channels // simd <= mvtu_cycles:
            return simd
    return channels


class CorePlan:
    """The plan of a network's streaming core (see the module docstring).

    Parameters
    ----------
    net : bnnhw.model.Network
    folding : dict, str, pathlib.Path or None
        As :func:`bnnhw.plan.folding.load_folding` (``None``: the model's, else the default).
    input_bytes_per_beat : int or None
        Bytes per ``i_stream`` beat. Default: the input channels when the first layer is a
        convolution (one pixel per beat), else the largest of 16, 8, 4, 2, 1 dividing the
        image size.
    window_fifo : bool
        A FIFO of ``(k - 1) * W_in + k`` pixels in front of every sliding window after the
        first layer (see :class:`bnnhw.hw.network.NetworkCore`).
    probes : bool
        Per-stage frame-end probes (listed by :meth:`describe`).
    sharing : bnnhw.sharing.SharingPlan or None
        The result-sharing plan of the hardwired layers whose folding entry names a sharing
        mode; default: :func:`bnnhw.sharing.make_plan` of those layers in that mode.
    memory : dict or None
        Per MVTU stage, how its memories are built on a device:
        ``{stage: {"weights": ((lo, width, ram_style), ...), "table": ram_style}}``
        (:meth:`bnnhw.plan.memory.MemoryMap.core_memory`; :meth:`for_device` computes it).
        Default: one memory each, left to Yosys.

    Raises
    ------
    bnnhw.errors.ModelError
        A folding or a layer the hardware cannot build, naming the layer.
    """

    def __init__(self, net, folding=None, *, input_bytes_per_beat=None, window_fifo=True,
                 probes=False, memory=None, sharing=None):
        if not isinstance(net, Network):
            raise TypeError(f"Network must be a bnnhw Network, not {net!r}")
        self.net = net
        self.window_fifo = bool(window_fifo)
        self.probes = bool(probes)
        self.memory = memory or {}
        self.folding = load_folding(net, folding)
        blocks = net.blocks()
        if not blocks:
            raise ModelError(f"network {net.name!r} has no compute layer")
        mode = sharing_mode(self.folding)
        shared = [n for n, e in self.folding.items() if "sharing" in e]
        if sharing is None and mode is not None:
            from ..sharing import make_plan
            sharing = make_plan(net, mode, layers=shared)
        elif sharing is not None:
            if mode is not None and sharing.mode != mode:
                raise ModelError(f"the sharing plan is in mode {sharing.mode!r}, the "
                                 f"folding's hardwired layers say {mode!r}")
            sharing.check(net)
            names = {lp.name for lp in sharing.layers}
            missing = [n for n in shared if n not in names]
            if missing:
                raise ModelError(f"layer {missing[0]!r}: the sharing plan has no entry for it")
        self.sharing = sharing
        # The size of what would be built, checked before any stage is planned.
        lanes = sum(self.folding[b.name]["PE"] * self.folding[b.name]["SIMD"]
                    * getattr(b.compute.layer, "input_bits", 1) for b in blocks
                    if self.folding[b.name].get("datapath") != "hardwired")
        check_size("hw_lanes", lanes, f"the core of {net.name!r} at this folding "
                   f"(PE x SIMD x input bits, summed over its layers)", error=ModelError)
        c, h, w = net.input_shape
        image_bytes = c * h * w
        first = blocks[0].compute.layer
        if input_bytes_per_beat is None:
            if isinstance(first, BinaryDense):
                input_bytes_per_beat = next(b for b in (16, 8, 4, 2, 1) if image_bytes % b == 0)
            else:
                input_bytes_per_beat = c
        if isinstance(input_bytes_per_beat, bool) or not isinstance(input_bytes_per_beat, int) \
                or input_bytes_per_beat < 1:
            raise ModelError(f"input bytes per beat must be a positive integer, "
                             f"not {input_bytes_per_beat!r}")
        self.input_bytes_per_beat = B = input_bytes_per_beat
        self.input_beats_per_image = beats = -(-image_bytes // B)

        stages = []

        def add(name, plan, frame_beats, cycles=None, layer=None):
            stages.append(Stage(name, plan, frame_beats, cycles, layer))

        quant = InputPlan(quantizer=net.quantizer, lanes=B)
        add("input", quant, beats, beats)
        in_bits = quant.out_bits
        width = B * in_bits                 # width of the stream so far
        if not isinstance(first, BinaryDense) and width != c * in_bits:
            conv = WidthPlan(in_width=width, out_width=c * in_bits, total=image_bytes * in_bits)
            add("input.pixels", conv, conv.out_beats)
            width = c * in_bits
            beats = conv.out_beats

        self.layers = []
        for index, block in enumerate(blocks):
            layer = block.compute.layer
            last = index == len(blocks) - 1
            fold = self.folding[block.name]
            pe, simd = fold["PE"], fold["SIMD"]
            order = fold.get("order", "hwc")
            bits = layer.input_bits if isinstance(layer, MultibitConv2d) else 1
            entry = {"name": block.name, "kind": layer.kind}
            window = fifo = None
            if fold.get("datapath") == "hardwired":
                width, beats = self._hardwired(block, index, fold, width, beats, add, entry)
                continue
            if isinstance(layer, (BinaryConv2d, MultibitConv2d)):
                cin, hin, win = block.compute.input_shape
                kh, kw = layer.kernel
                if kh != kw:
                    raise ModelError(f"layer {block.name!r}: the hardware supports square "
                                     f"kernels only, not {kh}x{kw}")
                if index > 0 and self.window_fifo:
                    # Lets the layer before keep producing the next frame's first rows while
                    # this window's line buffer still holds the last rows of the current one;
                    # without it, frame boundaries cost bubbles when stages run at close rates.
                    fifo = FifoPlan(width=width, depth=(kh - 1) * win + kh)
                    add(f"{block.name}.fifo", fifo, beats)
                window_simd = simd if order == "hwc" else \
                    _transpose_input_simd(cin, kh * kw, -(-layer.out_channels // pe)
                                          * -(-layer.fan_in // simd))
                try:
                    window = WindowPlan(channels=cin, bits=bits, height=hin, width=win,
                                        kernel=kh, stride=layer.stride, pad=layer.pad,
                                        pad_value=layer.pad_value, simd=window_simd)
                except (TypeError, ValueError) as e:
                    raise ModelError(f"layer {block.name!r}: {e}") from None
                add(f"{block.name}.window", window, window.frame_beats, window.cycles_per_frame)
                beats = window.frame_beats
                out_pixels = block.compute.output_shape[1] * block.compute.output_shape[2]
                if order == "chw":
                    transpose = TransposePlan(channels=cin, kernel=kh, bits=bits,
                                              in_simd=window_simd, out_simd=simd,
                                              vectors_per_frame=out_pixels)
                    add(f"{block.name}.transpose", transpose, transpose.frame_beats,
                        transpose.cycles_per_frame)
                    beats = transpose.frame_beats
                    entry["transpose"] = transpose.describe()
            else:
                if width != simd * bits or layer.fan_in % simd:
                    chunks = chunker_plan(width, simd * bits, layer.fan_in * bits)
                    add(f"{block.name}.chunks", chunks, chunks.out_beats)
                    beats = chunks.out_beats
                out_pixels = 1
            if last and block.pool is not None:
                raise ModelError(f"layer {block.pool.name!r}: the last block cannot pool")
            if not last and block.threshold is None:
                raise ModelError(f"layer {block.name!r}: a block before the last needs a "
                                 f"threshold")
            mem = self.memory.get(block.name, {})
            try:
                mvtu = MVTUPlan(layer=layer, pe=pe, simd=simd,
                                weight_map=mem.get("weights"), table_style=mem.get("table"),
                                threshold=None if block.threshold is None
                                else block.threshold.layer,
                                clip=None if block.clip is None else block.clip.layer,
                                output="scores" if last else "bits",
                                rule=net.output_rule if last else None,
                                input_order=order, stage=fold.get("stage"))
            except (TypeError, ValueError) as e:
                raise _layer_error(block.name, e) from None
            add(block.name, mvtu, out_pixels, mvtu.cycles_per_vector * out_pixels, entry)
            width = mvtu.out_width
            beats = out_pixels
            pool = _pool_plan(block)
            if pool is not None:
                add(block.pool.name, pool, pool.frame_beats)
                width, beats = pool.channels, pool.frame_beats
            entry.update({
                "PE": pe, "SIMD": simd, "K": layer.fan_in, "O": layer.out_channels,
                "NF": mvtu.nf, "SF": mvtu.sf, "out_pixels": out_pixels,
                "acc_bits": mvtu.acc_width, "weight_bits": layer.weight_bits,
                "threshold_bits": mvtu.table_memory_bits,
                "memory_bits": (mvtu.weight_memory_bits + mvtu.table_memory_bits
                                + mvtu.buffer_memory_bits
                                + (window.memory_bits if window is not None else 0)
                                + (pool.memory_bits if pool is not None else 0)
                                + (fifo.memory_bits if fifo is not None else 0)),
                "cycles_per_vector": mvtu.cycles_per_vector,
                "pipeline_cycles": mvtu.latency - mvtu.cycles_per_vector,
                "cycles_per_image": mvtu.cycles_per_vector * out_pixels,
                "window": window.describe() if window is not None else None,
                "pool": None if pool is None else {"name": block.pool.name, **pool.describe()},
                "chunk_stage": mvtu.chunk.describe(),
            })
            self.layers.append(entry)
            if last:
                self.score_width = mvtu.score_width
                scores = ScoresPlan(classes=layer.out_channels, score_width=mvtu.score_width)
                add("output", scores, scores.classes, scores.classes)
        self.stages = tuple(stages)
        self.num_classes = net.num_classes

    def _hardwired(self, block, index, fold, width, beats, add, entry):
        """The stages of a hardwired layer (module docstring); returns the stream's width and
        beats per frame after it."""
        layer = block.compute.layer
        cin, hin, win = block.compute.input_shape
        kh, kw = layer.kernel
        if kh != kw:
            raise ModelError(f"layer {block.name!r}: the hardware supports square kernels "
                             f"only, not {kh}x{kw}")
        fifo = None
        if index > 0 and self.window_fifo:
            fifo = FifoPlan(width=width, depth=(kh - 1) * win + kh)
            add(f"{block.name}.fifo", fifo, beats)
        try:
            window = WindowPlan(channels=cin, bits=1, height=hin, width=win, kernel=kh,
                                stride=layer.stride, pad=layer.pad, pad_value=layer.pad_value,
                                simd=cin)
        except (TypeError, ValueError) as e:
            raise ModelError(f"layer {block.name!r}: {e}") from None
        add(f"{block.name}.window", window, window.frame_beats, window.cycles_per_frame)
        out_pixels = block.compute.output_shape[1] * block.compute.output_shape[2]
        gather = WidthPlan(in_width=cin, out_width=layer.fan_in, total=layer.fan_in)
        add(f"{block.name}.vectors", gather, out_pixels)
        lp = None
        if "sharing" in fold:
            lp = self.sharing.layer(block.name)
        try:
            hw = HardwiredPlan(layer=layer, threshold=block.threshold.layer,
                               clip=None if block.clip is None else block.clip.layer,
                               sharing=lp, sharing_mode=fold.get("sharing"),
                               adders=fold.get("adders"),
                               lowering=fold.get("lowering", "chains"))
        except (TypeError, ValueError) as e:
            raise _layer_error(block.name, e) from None
        add(block.name, hw, out_pixels, out_pixels, entry)
        width, beats = layer.out_channels, out_pixels
        pool = _pool_plan(block)
        if pool is not None:
            add(block.pool.name, pool, pool.frame_beats)
            width, beats = pool.channels, pool.frame_beats
        d = hw.describe()
        entry.update({
            "PE": layer.out_channels, "SIMD": layer.fan_in, "K": layer.fan_in,
            "O": layer.out_channels, "NF": 1, "SF": 1, "out_pixels": out_pixels,
            "acc_bits": None, "weight_bits": 0, "threshold_bits": 0,
            "memory_bits": (window.memory_bits + (pool.memory_bits if pool is not None else 0)
                            + (fifo.memory_bits if fifo is not None else 0)),
            "cycles_per_vector": 1,
            "pipeline_cycles": hw.latency - 1,
            # The window feeds one pixel per beat: kh * kw beats per vector.
            "cycles_per_image": window.cycles_per_frame,
            "window": window.describe(),
            "pool": None if pool is None else {"name": block.pool.name, **pool.describe()},
            "datapath": "hardwired", "adders": hw.adders, "sharing": fold.get("sharing"),
            "hardwired": {k: d[k] for k in ("graph", "hardware", "latency", "cost_model",
                                            "lowering")},
        })
        self.layers.append(entry)
        return width, beats

    @classmethod
    def for_device(cls, net, folding=None, device=None, *, bram_budget=None, **kwargs):
        """The plan of ``net`` with its memories mapped onto ``device`` (a
        :class:`bnnhw.plan.devices.Device`): ``(plan, memory_map)``."""
        from .memory import MemoryMap
        first = cls(net, folding, **kwargs)
        mm = MemoryMap(first, device, bram_budget=bram_budget)
        return cls(net, first.folding, memory=mm.core_memory(), **kwargs), mm

    # -- derived views -------------------------------------------------------------------------

    def stage(self, name):
        """The :class:`Stage` called ``name``."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def mvtu(self, layer_name):
        """The :class:`~bnnhw.plan.stages.MVTUPlan` of compute layer ``layer_name``."""
        return self.stage(layer_name).plan

    @property
    def stage_cycles(self):
        """``{stage: cycles per image}`` of the stages that can limit the rate."""
        return {s.name: s.cycles for s in self.stages if s.cycles is not None}

    @property
    def cycles_per_image(self):
        """Steady-state cycles per image: the slowest stage."""
        return max(self.stage_cycles.values())

    @property
    def bottleneck(self):
        cycles = self.stage_cycles
        return max(cycles, key=cycles.get)

    @property
    def latency_cycles_estimate(self):
        """An upper estimate of one image's latency: input beats plus, per layer, a full image
        of compute, its buffer fill (SF), its pipeline and one cycle of width conversion, as if
        layers did not overlap (a transposed window vector reaches the MVTU only once
        collected whole), plus the score beats."""
        return self.input_beats_per_image + sum(
            e["cycles_per_image"] + e["SF"] + e["pipeline_cycles"] + 1
            + (e["transpose"]["in_beats"] + 1 if e.get("transpose") else 0)
            for e in self.layers) + self.num_classes

    def describe(self):
        """The manifest's view of this core (JSON-serialisable), see the hardware contract.

        ``cycles_per_image`` is the largest per-image cycle count of any stage
        (``stage_cycles_per_image``; MVTUs: ``ceil(O/PE) * ceil(K/SIMD)`` per output pixel).
        It is exact when one MVTU is the bottleneck; when a sliding window runs at exactly
        the rate of its MVTU, its line buffer can add a few cycles per image at frame
        boundaries. ``latency_cycles_estimate`` is an upper estimate (see
        :attr:`latency_cycles_estimate`).
        """
        return {
            "name": self.net.name,
            "fingerprint": self.net.fingerprint(),
            "input_bytes_per_beat": self.input_bytes_per_beat,
            "input_beats_per_image": self.input_beats_per_image,
            "score_width": self.score_width,
            "num_classes": self.num_classes,
            "output_rule": self.net.output_rule,
            "cycles_per_image": self.cycles_per_image,
            "bottleneck": self.bottleneck,
            "latency_cycles_estimate": self.latency_cycles_estimate,
            "stage_cycles_per_image": self.stage_cycles,
            "folding": self.folding,
            "sharing": None if self.sharing is None else {
                "mode": self.sharing.mode,
                "layers": [lp.name for lp in self.sharing.layers]},
            "layers": [dict(e) for e in self.layers],
            "probes": [{"stage": s.name, "port": f"probe__{probe_key(s.name)}",
                        "beats_per_frame": s.frame_beats}
                       for s in self.stages] if self.probes else [],
        }
