"""The whole streaming network: :class:`NetworkCore`, built from an IR network and a folding.

Stage chain (one component per stage, connected stream to stream)::

    i_stream (raw bytes) ─> InputQuantizer ─> [WidthConverter]
      per block:  conv:  [StreamFIFO] ─> SlidingWindow ─> [WindowTranspose] ─> MVTU ─> [pool]
                  dense: [WidthConverter (pixels -> chunks) or PacketSerializer
                          (one-beat vector -> chunks)] ─> MVTU
      last block: MVTU (scores) ─> ScoreSerializer ─> o_stream (score beats)
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import ModelError
from ..model.layers import BinaryConv2d, BinaryDense, MultibitConv2d
from ..model.network import Network
from .convert import (InputQuantizer, PacketSerializer, ScoreSerializer, StreamFIFO,
                      WidthConverter)
from ..plan.folding import load_folding
from .layouts import ScoreLayout
from .mvtu import MVTU
from .pool import OrMaxPool
from .window import SlidingWindow, WindowTranspose

__all__ = ["NetworkCore"]


def _stream_width(component):
    return component.o_stream.payload.shape().width


def _transpose_input_simd(channels, taps, mvtu_cycles):
    """Channels per beat of the sliding window in front of a :class:`WindowTranspose`: the
    fewest that keep the window (``taps * channels / simd`` beats per vector) no slower than
    the MVTU's ``mvtu_cycles`` per vector."""
    for simd in range(1, channels + 1):
        if channels % simd == 0 and taps * channels // simd <= mvtu_cycles:
            return simd
    return channels


def _probe_key(stage_name):
    return stage_name.replace(".", "_")


def _frame_beats(stages, input_beats):
    """Output beats per image (frame) of every stage, input to output."""
    out, beats = [], input_beats
    for name, comp, entry in stages:
        if isinstance(comp, InputQuantizer):
            beats = input_beats
        elif isinstance(comp, (WidthConverter, PacketSerializer)):
            beats = comp.out_beats           # one packet per image
        elif isinstance(comp, SlidingWindow):
            beats = comp.out_height * comp.out_width * comp.beats_per_vector
        elif isinstance(comp, WindowTranspose):
            beats = comp.vectors_per_frame * comp.out_beats
        elif isinstance(comp, MVTU):
            beats = entry["out_pixels"]
        elif isinstance(comp, OrMaxPool):
            beats = comp.out_height * comp.out_width
        elif isinstance(comp, ScoreSerializer):
            beats = comp.classes
        elif not isinstance(comp, StreamFIFO):      # a FIFO passes its input's beats on
            raise TypeError(f"stage {name!r}: no frame size for {type(comp).__name__}")
        out.append(beats)
    return out


def _chunker(in_width, out_width, total):
    """The width converter in front of a dense layer: a :class:`PacketSerializer` when the
    packet arrives in one beat (an MVTU's output vector), else a :class:`WidthConverter`
    (pixels of a feature map, input bytes)."""
    if total <= in_width:
        return PacketSerializer(in_width=in_width, out_width=out_width, total=total)
    return WidthConverter(in_width=in_width, out_width=out_width, total=total)


class NetworkCore(wiring.Component):
    """A complete binarized network as one streaming core.

    Parameters
    ----------
    net : bnnhw.model.Network
    folding : dict, str, pathlib.Path or None
        ``{compute_layer: {"PE": int, "SIMD": int}}``, or a JSON file holding one; ``None``
        uses ``net.meta["folding"]`` when present, else
        :func:`bnnhw.plan.folding.default_folding`.
    input_bytes_per_beat : int or None
        Bytes per ``i_stream`` beat. Default: the input channels when the first layer is a
        convolution (one pixel per beat), else the largest of 16, 8, 4, 2, 1 dividing the
        image size.
    chunk_stages : dict or None
        ``{compute_layer: factory}``, ``factory(pe=, simd=)`` returning the chunk stage of that
        layer's MVTU (the seam of :mod:`bnnhw.hw.pe`; e.g. a per-channel 2-D popcount stage or
        a shared-result filter bank for a ``"chw"`` convolution). Default: the plain stages.
    probes : bool
        Add one output ``probe__<stage>`` per stage (dots in stage names become ``_``): a
        registered pulse, one cycle after the stage's output transferred the last beat of a
        frame (an image's worth of beats). Testbenches time every stage with it (per-stage
        cycles per image and latency); off by default, as it adds a beat counter per stage.
    window_fifo : bool
        Put a :class:`~bnnhw.hw.convert.StreamFIFO` of ``(k - 1) * W_in + k`` pixels in front of
        every sliding window after the first layer (default ``True``). It lets the layer before
        run on into the next frame while the window's ``k``-row line buffer still holds the end
        of the current one; without it the real CNV at FINN's folding measured 33,495 instead
        of 32,768 cycles per image in amaranth.sim, with it exactly 32,768.

    Members
    -------
    i_stream : In(stream.Signature(unsigned(8 * input_bytes_per_beat)))
        The image's raw bytes in HWC raster order, byte ``j`` of a beat at bits
        ``[8j, 8j+8)``; images follow each other without markers.
    o_stream : Out(stream.Signature(ScoreLayout(score_width)))
        One beat per class in class order, ``last`` on the final class of each image; scores
        per SPEC §8 (``net.output_rule``).

    Throughput: one image per :meth:`describe`'s ``cycles_per_image`` in steady state (the
    slowest stage; every MVTU takes exactly ``ceil(O/PE) * ceil(K/SIMD)`` cycles per output
    pixel). Backpressure on ``o_stream`` propagates back stage by stage up to ``i_stream``.
    """

    def __init__(self, *, net, folding=None, input_bytes_per_beat=None, window_fifo=True,
                 chunk_stages=None, probes=False):
        if not isinstance(net, Network):
            raise TypeError(f"Network must be a bnnhw Network, not {net!r}")
        chunk_stages = dict(chunk_stages or {})
        compute_names = {b.name for b in net.blocks()}
        for name, factory in chunk_stages.items():
            if name not in compute_names:
                raise ModelError(f"chunk stage given for {name!r}, which is not a compute "
                                 f"layer of {net.name!r}")
            if not callable(factory):
                raise TypeError(f"Chunk stage of layer {name!r} must be a callable "
                                f"(pe=, simd=) -> component, not {factory!r}")
        self.net = net
        self.window_fifo = bool(window_fifo)
        self.folding = load_folding(net, folding)
        blocks = net.blocks()
        if not blocks:
            raise ModelError(f"network {net.name!r} has no compute layer")
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
        self.input_beats_per_image = -(-image_bytes // B)

        stages = []          # (name, component, info dict or None)
        quant = InputQuantizer(quantizer=net.quantizer, lanes=B)
        stages.append(("input", quant, None))
        in_bits = quant.out_bits
        width = B * in_bits                 # width of the stream so far
        if not isinstance(first, BinaryDense) and width != c * in_bits:
            conv = WidthConverter(in_width=width, out_width=c * in_bits,
                                  total=image_bytes * in_bits)
            stages.append(("input.pixels", conv, None))
            width = c * in_bits

        self.layer_info = []
        for index, block in enumerate(blocks):
            layer = block.compute.layer
            last = index == len(blocks) - 1
            fold = self.folding[block.name]
            pe, simd = fold["PE"], fold["SIMD"]
            bits = layer.input_bits if isinstance(layer, MultibitConv2d) else 1
            entry = {"name": block.name, "kind": layer.kind}
            window = fifo = None
            if isinstance(layer, (BinaryConv2d, MultibitConv2d)):
                cin, hin, win = block.compute.input_shape
                kh, kw = layer.kernel
                if kh != kw:
                    raise ModelError(f"layer {block.name!r}: the hardware supports square "
                                     f"kernels only, not {kh}x{kw}")
                fifo = None
                if index > 0 and self.window_fifo:
                    # Lets the layer before keep producing the next frame's first rows while
                    # this window's line buffer still holds the last rows of the current one;
                    # without it, frame boundaries cost bubbles when stages run at close rates.
                    fifo = StreamFIFO(width=width, depth=(kh - 1) * win + kh)
                    stages.append((f"{block.name}.fifo", fifo, None))
                order = fold.get("order", "hwc")
                window_simd = simd if order == "hwc" else \
                    _transpose_input_simd(cin, kh * kw, -(-layer.out_channels // pe)
                                          * -(-layer.fan_in // simd))
                window = SlidingWindow(channels=cin, bits=bits, height=hin, width=win,
                                       kernel=kh, stride=layer.stride, pad=layer.pad,
                                       pad_value=layer.pad_value, simd=window_simd)
                stages.append((f"{block.name}.window", window, None))
                out_pixels = block.compute.output_shape[1] * block.compute.output_shape[2]
                if order == "chw":
                    transpose = WindowTranspose(channels=cin, kernel=kh, bits=bits,
                                                in_simd=window_simd, out_simd=simd,
                                                vectors_per_frame=out_pixels)
                    stages.append((f"{block.name}.transpose", transpose, None))
                    entry["transpose"] = transpose.describe()
            else:
                if width != simd * bits or layer.fan_in % simd:
                    stages.append((f"{block.name}.chunks",
                                   _chunker(width, simd * bits, layer.fan_in * bits), None))
                out_pixels = 1
            if last and block.pool is not None:
                raise ModelError(f"layer {block.pool.name!r}: the last block cannot pool")
            if not last and block.threshold is None:
                raise ModelError(f"layer {block.name!r}: a block before the last needs a "
                                 f"threshold")
            try:
                mvtu = MVTU(layer=layer, pe=pe, simd=simd,
                            threshold=None if block.threshold is None
                            else block.threshold.layer,
                            clip=None if block.clip is None else block.clip.layer,
                            output="scores" if last else "bits",
                            rule=net.output_rule if last else None,
                            input_order=fold.get("order", "hwc"),
                            chunk_stage=chunk_stages.get(block.name))
            except (TypeError, ValueError) as e:
                msg = str(e)
                if not msg.startswith("layer "):
                    msg = f"layer {block.name!r}: {msg}"
                raise ModelError(msg) from None
            stages.append((block.name, mvtu, entry))
            width = _stream_width(mvtu)
            pool = None
            if block.pool is not None:
                pool = self._make_pool(block)
                stages.append((block.pool.name, pool, None))
                width = _stream_width(pool)
            weight_bits = layer.weight_bits
            entry.update({
                "PE": pe, "SIMD": simd, "K": layer.fan_in, "O": layer.out_channels,
                "NF": mvtu.nf, "SF": mvtu.sf, "out_pixels": out_pixels,
                "acc_bits": mvtu.acc_bits, "weight_bits": weight_bits,
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
            })
            self.layer_info.append(entry)
            if last:
                self.score_width = mvtu.score_width
                ser = ScoreSerializer(classes=layer.out_channels, score_width=mvtu.score_width)
                stages.append(("output", ser, None))
        self._stages = stages
        self.num_classes = net.num_classes
        self._frame_beats = _frame_beats(stages, self.input_beats_per_image)
        self.probes = bool(probes)
        members = {
            "i_stream": In(stream.Signature(8 * B)),
            "o_stream": Out(stream.Signature(ScoreLayout(self.score_width))),
        }
        if self.probes:
            members["probe"] = Out(wiring.Signature(
                {_probe_key(name): Out(1) for name, _, _ in stages}))
        super().__init__(members)

    @staticmethod
    def _make_pool(block):
        c, h, w = block.pool.input_shape
        layer = block.pool.layer
        return OrMaxPool(channels=c, height=h, width=w, kernel=layer.kernel,
                         stride=layer.stride)

    @property
    def stages(self):
        """``(name, component)`` of every stage, input to output."""
        return [(n, c) for n, c, _ in self._stages]

    def describe(self):
        """The manifest's view of this core (JSON-serialisable), see the hardware contract.

        ``cycles_per_image`` is the largest per-image cycle count of any stage
        (``stage_cycles_per_image``; MVTUs: ``ceil(O/PE) * ceil(K/SIMD)`` per output pixel).
        It is exact when one MVTU is the bottleneck; when a sliding window runs at exactly
        the rate of its MVTU, its line buffer can add a few cycles per image at frame
        boundaries. ``latency_cycles_estimate`` is an upper estimate (input beats plus, per
        layer, a full image of compute and its buffer fill, as if layers did not overlap).
        """
        stage_cycles = {"input": self.input_beats_per_image}
        for name, comp, entry in self._stages:
            if entry is not None:
                stage_cycles[name] = entry["cycles_per_image"]
            elif isinstance(comp, SlidingWindow):
                stage_cycles[name] = comp.cycles_per_frame
            elif isinstance(comp, ScoreSerializer):
                stage_cycles[name] = comp.classes
            elif hasattr(comp, "cycles_per_frame"):
                stage_cycles[name] = comp.cycles_per_frame
        # Per layer: a full image of compute, the fill of its input buffer (SF), its pipeline
        # (chunk stage + 3) and at most one cycle of width conversion in front of it (a
        # WidthConverter's 1; a PacketSerializer's is 0, so the estimate stays an upper bound).
        latency = self.input_beats_per_image + sum(
            e["cycles_per_image"] + e["SF"] + e["pipeline_cycles"] + 1
            # A transposed window vector reaches the MVTU only once collected whole.
            + (e["transpose"]["in_beats"] + 1 if e.get("transpose") else 0)
            for e in self.layer_info) + self.num_classes
        return {
            "name": self.net.name,
            "fingerprint": self.net.fingerprint(),
            "input_bytes_per_beat": self.input_bytes_per_beat,
            "input_beats_per_image": self.input_beats_per_image,
            "score_width": self.score_width,
            "num_classes": self.num_classes,
            "output_rule": self.net.output_rule,
            "cycles_per_image": max(stage_cycles.values()),
            "bottleneck": max(stage_cycles, key=stage_cycles.get),
            "latency_cycles_estimate": latency,
            "stage_cycles_per_image": stage_cycles,
            "folding": self.folding,
            "layers": [dict(e) for e in self.layer_info],
            "probes": [{"stage": name, "port": f"probe__{_probe_key(name)}",
                        "beats_per_frame": beats}
                       for (name, _, _), beats in zip(self._stages, self._frame_beats)]
            if self.probes else [],
        }

    def elaborate(self, platform):
        m = Module()
        comps = [c for _, c, _ in self._stages]
        for (name, comp, _) in self._stages:
            m.submodules[name.replace(".", "_")] = comp
        wiring.connect(m, wiring.flipped(self.i_stream), comps[0].i_stream)
        for a, b in zip(comps, comps[1:]):
            wiring.connect(m, a.o_stream, b.i_stream)
        wiring.connect(m, comps[-1].o_stream, wiring.flipped(self.o_stream))
        if self.probes:
            for (name, comp, _), beats in zip(self._stages, self._frame_beats):
                out = comp.o_stream
                count = Signal(range(beats), name=f"probe_count_{_probe_key(name)}")
                pulse = getattr(self.probe, _probe_key(name))
                m.d.sync += pulse.eq(0)
                with m.If(out.valid & out.ready):
                    with m.If(count == beats - 1):
                        m.d.sync += [count.eq(0), pulse.eq(1)]
                    with m.Else():
                        m.d.sync += count.eq(count + 1)
        return m
