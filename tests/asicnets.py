"""A tiny CNV-like network for the ASIC flow's tests (tests/test_asic.py, tests/sim/).

Small enough to synthesize in seconds and to simulate at gate level in a few seconds, yet it
has every kind of stage: multi-bit input convolution, sliding windows with line buffers, a
window FIFO, a pool, a dense layer, ROMs (weights, thresholds) and RAMs.
"""

import numpy as np

from bnnhw.model.layers import (BinaryConv2d, BinaryDense, FixedPointQuantizer, MaxPool,
                                MultibitConv2d, Output, Threshold)
from bnnhw.model.network import Network


def tiny_conv_net(seed=3):
    rng = np.random.default_rng(seed)
    pm1 = np.array([-1, 1], np.int8)
    c0, c1, c2, hw, classes = 2, 4, 8, 6, 3
    layers = (
        MultibitConv2d("conv0", rng.choice(pm1, size=(c1, c0, 3, 3)), input_bits=8),
        Threshold("thr0", rng.integers(-200, 200, size=c1), rng.integers(0, 2, size=c1)),
        BinaryConv2d("conv1", rng.choice(pm1, size=(c2, c1, 3, 3))),
        Threshold("thr1", rng.integers(-6, 7, size=c2), rng.integers(0, 2, size=c2)),
        MaxPool("pool1", 2),
        BinaryDense("fc2", rng.choice(pm1, size=(classes, c2))),
        Output("output"),
    )
    return Network(name="asic_tiny", input_shape=(c0, hw, hw),
                   quantizer=FixedPointQuantizer(8), layers=layers)
