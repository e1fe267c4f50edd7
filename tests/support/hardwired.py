"""Cases for the hardwired datapath tests: a layer, its window vectors and the golden model's
output pixels for them (bnnhw.golden.forward, with and without a sharing plan)."""

from dataclasses import dataclass

import numpy as np

from bnnhw import golden
from bnnhw.plan.hardwired import conv_slice
from bnnhw.plan.stages import window_vectors

from .data import shared_file

#: The forms tested in simulation.
SIM_FORMS = ("naive", "grouped", "kernels", "rows", "auto", "cse", "minority", "split",
             "filters")
#: Forms that read no sharing plan.
UNSHARED_FORMS = ("naive", "grouped", "minority", "split", "filters")


def pack(rows):
    """Rows of bits -> ints (bit ``i`` = element ``i``)."""
    rows = np.asarray(rows, np.int64)
    weights = [1 << i for i in range(rows.shape[1])]
    return [int(sum(int(b) * w for b, w in zip(r, weights))) for r in rows]


@dataclass
class Case:
    """A binary convolution block of ``net`` (its name ``layer``) and raw network inputs."""
    net: object
    layer: str
    inputs: np.ndarray               # raw input bytes of ``net``

    @property
    def block(self):
        return next(b for b in self.net.blocks() if b.name == self.layer)

    @property
    def maps(self):
        """The block's input maps ``[N, C, H, W]`` (bits), by the unshared golden model (the
        layers before it are not shared in these cases)."""
        _, tr = golden.forward(self.net, self.inputs, trace=True)
        names = [layer.name for layer in self.net.layers]
        i = names.index(self.layer)
        return tr[names[i - 1]] if i else tr["input"]

    def vectors(self, count=None, seed=0):
        """``(picked, vectors)``: window vectors ``[M, K]`` of the maps (``[ky][kx][c]``) and
        their flat indices ``n * Ho * Wo + y * Wo + x``; ``count`` picks that many at random."""
        conv = self.block.compute.layer
        pad = 1 if conv.pad_value > 0 else 0
        v = window_vectors(np.moveaxis(self.maps, 1, -1), kernel=conv.kernel[0],
                           stride=conv.stride, pad=conv.pad, pad_value=pad)
        v = v.reshape(-1, v.shape[-1])
        picked = np.arange(len(v))
        if count is not None and count < len(v):
            picked = np.sort(np.random.default_rng(seed).choice(len(v), count, replace=False))
        return picked, v[picked]

    def expected(self, picked, sharing=None):
        """Output pixels (ints, bit ``o`` = channel ``o``) of the block's threshold at the
        picked windows, by the golden model of ``net`` (with ``sharing``)."""
        thr = self.block.threshold.layer.name
        _, tr = golden.forward(self.net, self.inputs, trace=True,
                               sharing=sharing)
        bits = np.moveaxis(tr[thr], 1, -1)
        return pack(bits.reshape(-1, bits.shape[-1])[picked])


def cnv_maps(cnv, images=2):
    """Golden traces of CNV on the first CIFAR-10 test images: ``{layer: input map bits}``
    of every binary convolution and ``{threshold: output bits}``."""
    data = np.load(shared_file("cifar10", "test.npz"))
    _, tr = golden.forward(cnv, data["images"][:images], trace=True)
    names = [layer.name for layer in cnv.layers]
    maps = {}
    for b in cnv.blocks():
        i = names.index(b.name)
        if b.compute.layer.kind == "binary_conv2d" and i > 0:
            maps[b.name] = tr[names[i - 1]]
    return maps, tr


def cnv_slice_case(cnv, maps, layer, outputs, random_maps=2, seed=0):
    """A slice of CNV layer ``layer`` (``outputs``) on its real input maps plus ``random_maps``
    random ones (CNV's last layers have few windows per image)."""
    net = conv_slice(cnv, layer, outputs)
    real = maps[layer]
    rnd = np.random.default_rng(seed).integers(0, 2, (random_maps, *real.shape[1:]))
    return Case(net, layer, np.concatenate([real, rnd]).astype(np.uint8)), len(real)
