"""A small stream component with the network core's port contract, for testing the tooling.

``BeatSum`` reads images of ``beats_per_image`` input beats of ``bytes_per_beat`` bytes and
emits one ``{"score", "last"}`` beat per input beat: the sum of the beat's bytes. A FIFO between
input and output decouples them, so random valid gaps and backpressure exercise the
testbench's source, sink and monitor. Its reference is :func:`beatsum_reference`.
"""

import numpy as np
from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out


class BeatSum(wiring.Component):
    def __init__(self, *, bytes_per_beat, beats_per_image, fifo_depth=4):
        if not isinstance(bytes_per_beat, int) or bytes_per_beat < 1:
            raise TypeError(f"bytes_per_beat must be a positive integer, not {bytes_per_beat!r}")
        self.bytes_per_beat = bytes_per_beat
        self.beats_per_image = beats_per_image
        self.fifo_depth = fifo_depth
        self.score_width = (255 * bytes_per_beat).bit_length() + 1
        self.out_layout = data.StructLayout({"score": signed(self.score_width), "last": 1})
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(8 * bytes_per_beat))),
            "o_stream": Out(stream.Signature(self.out_layout)),
        })

    def describe(self):
        return {"input_bytes_per_beat": self.bytes_per_beat,
                "input_beats_per_image": self.beats_per_image,
                "score_width": self.score_width, "num_classes": self.beats_per_image,
                "output_rule": "beat_sum", "cycles_per_image": self.beats_per_image,
                "latency_cycles_estimate": self.beats_per_image + 2, "layers": []}

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = buf = fifo.SyncFIFOBuffered(width=self.out_layout.size,
                                                        depth=self.fifo_depth)
        count = Signal(range(self.beats_per_image))
        total = 0
        for j in range(self.bytes_per_beat):
            total = total + self.i_stream.payload[8 * j:8 * j + 8]
        entry = Signal(self.out_layout)
        m.d.comb += [
            entry.score.eq(total),
            entry.last.eq(count == self.beats_per_image - 1),
            buf.w_data.eq(entry),
            buf.w_en.eq(self.i_stream.valid),
            self.i_stream.ready.eq(buf.w_rdy),
            self.o_stream.payload.eq(buf.r_data),
            self.o_stream.valid.eq(buf.r_rdy),
            buf.r_en.eq(self.o_stream.ready),
        ]
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += count.eq(0 if self.beats_per_image == 1 else
                                 Mux(count == self.beats_per_image - 1,
                                                            0, count + 1))
        return m


def beatsum_reference(input_beats):
    """Independent NumPy reference: per image, per beat, the sum of the beat's bytes."""
    return np.asarray(input_beats, dtype=np.int64).sum(axis=2)
