"""The whole streaming network: :class:`NetworkCore`, built from an IR network and a folding.

Stage chain (one component per stage, connected stream to stream)::

    i_stream (raw bytes) ─> InputQuantizer ─> [WidthConverter]
      per block:  conv:  [StreamFIFO] ─> SlidingWindow ─> MVTU ─> [pool]
                  dense: [WidthConverter (pixels -> chunks)] ─> MVTU
      last block: MVTU (scores) ─> ScoreSerializer ─> o_stream (score beats)
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import ModelError
from ..model.layers import BinaryConv2d, BinaryDense, MultibitConv2d
from ..model.network import Network
from .convert import InputQuantizer, ScoreSerializer, StreamFIFO, WidthConverter
from .folding import load_folding
from .layouts import ScoreLayout
from .mvtu import MVTU
from .pool import OrMaxPool
from .window import SlidingWindow

__all__ = ["NetworkCore"]


def _stream_width(component):
    return component.o_stream.payload.shape().width


class NetworkCore(wiring.Component):
    """A complete binarized network as one streaming core.

    Parameters
    ----------
    net : bnnhw.model.Network
    folding : dict, str, pathlib.Path or None
        ``{compute_layer: {"PE": int, "SIMD": int}}``, or a JSON file holding one; ``None``
        uses ``net.meta["folding"]`` when present, else
        :func:`bnnhw.hw.folding.default_folding`.
    input_bytes_per_beat : int or None
        Bytes per ``i_stream`` beat. Default: the input channels when the first layer is a
        convolution (one pixel per beat), else the largest of 16, 8, 4, 2, 1 dividing the
        image size.
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

    def __init__(self, *, net, folding=None, input_bytes_per_beat=None, window_fifo=True):
        if not isinstance(net, Network):
            raise TypeError(f"Network must be a bnnhw Network, not {net!r}")
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
                window = SlidingWindow(channels=cin, bits=bits, height=hin, width=win,
                                       kernel=kh, stride=layer.stride, pad=layer.pad,
                                       pad_value=layer.pad_value, simd=simd)
                stages.append((f"{block.name}.window", window, None))
                out_pixels = block.compute.output_shape[1] * block.compute.output_shape[2]
            else:
                if width != simd * bits or layer.fan_in % simd:
                    stages.append((f"{block.name}.chunks",
                                   WidthConverter(in_width=width, out_width=simd * bits,
                                                  total=layer.fan_in * bits), None))
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
                            rule=net.output_rule if last else None)
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
        super().__init__({
            "i_stream": In(stream.Signature(8 * B)),
            "o_stream": Out(stream.Signature(ScoreLayout(self.score_width))),
        })

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
        # (chunk stage + 3) and one cycle of width conversion in front of it.
        latency = self.input_beats_per_image + sum(
            e["cycles_per_image"] + e["SF"] + e["pipeline_cycles"] + 1
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
        return m
