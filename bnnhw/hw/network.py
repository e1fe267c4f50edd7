"""The whole streaming network: :class:`NetworkCore`, the elaboration of a core plan.

The stage chain, every width, table and figure come from :class:`bnnhw.plan.core.CorePlan`
(pure Python); this module only builds each stage's component from its plan and connects them
stream to stream::

    i_stream (raw bytes) ─> InputQuantizer ─> [WidthConverter]
      per block:  conv:  [StreamFIFO] ─> SlidingWindow ─> [WindowTranspose] ─> MVTU ─> [pool]
                  dense: [WidthConverter (pixels -> chunks) or PacketSerializer
                          (one-beat vector -> chunks)] ─> MVTU
      last block: MVTU (scores) ─> ScoreSerializer ─> o_stream (score beats)
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..plan.core import CorePlan, probe_key
from .layouts import ScoreLayout

__all__ = ["NetworkCore"]


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
    plan : bnnhw.plan.core.CorePlan or None
        A plan computed beforehand, instead of ``net`` and its parameters. A layer's chunk
        stage (the MVTU's seam, :mod:`bnnhw.hw.pe`) is chosen by name in its folding entry
        (``"stage"``), so the folding file, the manifest and the build key all see it.
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

    def __init__(self, *, net=None, folding=None, input_bytes_per_beat=None, window_fifo=True,
                 probes=False, plan=None):
        if plan is None:
            plan = CorePlan(net, folding, input_bytes_per_beat=input_bytes_per_beat,
                            window_fifo=window_fifo, probes=probes)
        elif not isinstance(plan, CorePlan):
            raise TypeError(f"Plan must be a CorePlan, not {plan!r}")
        elif net is not None or folding is not None or input_bytes_per_beat is not None:
            raise TypeError("Give either a plan or the network and its parameters, not both")
        self.plan = plan
        self.net, self.folding = plan.net, plan.folding
        self.window_fifo, self.probes = plan.window_fifo, plan.probes
        self.input_bytes_per_beat = plan.input_bytes_per_beat
        self.input_beats_per_image = plan.input_beats_per_image
        self.num_classes, self.score_width = plan.num_classes, plan.score_width
        self.layer_info = plan.layers
        self._stages = [(s.name, s.plan.create()) for s in plan.stages]
        members = {
            "i_stream": In(stream.Signature(8 * plan.input_bytes_per_beat)),
            "o_stream": Out(stream.Signature(ScoreLayout(plan.score_width))),
        }
        if plan.probes:
            members["probe"] = Out(wiring.Signature(
                {probe_key(s.name): Out(1) for s in plan.stages}))
        super().__init__(members)

    @property
    def stages(self):
        """``(name, component)`` of every stage, input to output."""
        return list(self._stages)

    def describe(self):
        """The manifest's view of this core (:meth:`bnnhw.plan.core.CorePlan.describe`)."""
        return self.plan.describe()

    def elaborate(self, platform):
        m = Module()
        comps = [c for _, c in self._stages]
        for stage, (_, comp) in zip(self.plan.stages, self._stages):
            m.submodules[stage.submodule] = comp
        wiring.connect(m, wiring.flipped(self.i_stream), comps[0].i_stream)
        for a, b in zip(comps, comps[1:]):
            wiring.connect(m, a.o_stream, b.i_stream)
        wiring.connect(m, comps[-1].o_stream, wiring.flipped(self.o_stream))
        if self.probes:
            for stage, (_, comp) in zip(self.plan.stages, self._stages):
                out = comp.o_stream
                key = probe_key(stage.name)
                count = Signal(range(stage.frame_beats), name=f"probe_count_{key}")
                pulse = getattr(self.probe, key)
                m.d.sync += pulse.eq(0)
                with m.If(out.valid & out.ready):
                    with m.If(count == stage.frame_beats - 1):
                        m.d.sync += [count.eq(0), pulse.eq(1)]
                    with m.Else():
                        m.d.sync += count.eq(count + 1)
        return m
