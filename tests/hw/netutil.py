"""Helpers for whole-network amaranth.sim tests: random small networks, drive and compare."""

import numpy as np

from bnnhw.model import (BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer, MaxPool,
                         MultibitConv2d, Network, Output, Threshold, ThresholdQuantizer)

from .streams import StreamDriver, StreamMonitor, run_streams


def pm1(rng, shape):
    return rng.choice(np.array([-1, 1], np.int8), size=shape)


def thresholds(rng, name, n, k, neg_prob=0.3):
    return Threshold(name, rng.integers(-k - 2, k + 3, n), rng.random(n) < neg_prob)


def random_dense_net(seed, *, shape=(1, 4, 6), hidden=(12,), classes=10, clip_last=False,
                     last_threshold=True):
    """An LFC-like network: threshold-quantized bytes, dense layers, thresholds."""
    rng = np.random.default_rng(seed)
    layers, k = [], int(np.prod(shape))
    for i, h in enumerate(hidden):
        layers += [BinaryDense(f"fc{i}", pm1(rng, (h, k))), thresholds(rng, f"thr{i}", h, k)]
        k = h
    n = len(hidden)
    layers.append(BinaryDense(f"fc{n}", pm1(rng, (classes, k))))
    if clip_last:
        layers.append(Clip("clip", bits=4))
    if last_threshold:
        layers.append(thresholds(rng, f"thr{n}", classes, k))
    layers.append(Output())
    return Network("dense", shape, ThresholdQuantizer(128), tuple(layers))


def image_beats(images_nchw, bytes_per_beat):
    """Raw bytes in HWC raster order, ``bytes_per_beat`` per beat (last beat zero-padded)."""
    beats = []
    for img in images_nchw:
        flat = np.moveaxis(img, 0, -1).reshape(-1).astype(np.uint8)
        pad = (-flat.size) % bytes_per_beat
        flat = np.concatenate([flat, np.zeros(pad, np.uint8)])
        for s in range(0, flat.size, bytes_per_beat):
            beats.append(int.from_bytes(flat[s:s + bytes_per_beat].tobytes(), "little"))
    return beats


def run_core(core, images, *, valid_prob=1.0, ready_prob=1.0, seed=0, max_cycles=200_000):
    """Simulate ``core`` on ``images`` ([N, C, H, W] uint8); returns (scores, lasts, cycles)."""
    beats = image_beats(images, core.input_bytes_per_beat)
    drv = StreamDriver(core.i_stream, beats, valid_prob=valid_prob, seed=seed)
    mon = StreamMonitor(core.o_stream, len(images) * core.num_classes, ready_prob=ready_prob,
                        seed=seed + 1, convert=lambda v: (int(v.score), int(v.last)))
    run_streams(core, [drv], [mon], max_cycles=max_cycles)
    scores = np.array([s for s, _ in mon.beats], np.int64).reshape(len(images), -1)
    lasts = np.array([l for _, l in mon.beats]).reshape(len(images), -1)
    return scores, lasts, mon.cycles


def expected_lasts(n, classes):
    lasts = np.zeros((n, classes), int)
    lasts[:, -1] = 1
    return lasts


def random_conv_net(seed, *, pad=1, pad_value=-1):
    """A tiny CNV-like network: 8-bit codes, multi-bit conv, binary conv + pool, dense."""
    rng = np.random.default_rng(seed)
    layers = [
        MultibitConv2d("conv0", pm1(rng, (4, 3, 3, 3)), input_bits=8),
        Threshold("thr0", rng.integers(-300, 300, 4), rng.random(4) < 0.3),
        BinaryConv2d("conv1", pm1(rng, (6, 4, 3, 3)), pad=pad, pad_value=pad_value),
        thresholds(rng, "thr1", 6, 36),
        MaxPool("pool1", 2),
        BinaryDense("fc2", pm1(rng, (5, 24))),
        thresholds(rng, "thr2", 5, 24),
        BinaryDense("fc3", pm1(rng, (3, 5))),
        Output(),
    ]
    return Network("conv", (3, 6, 6), FixedPointQuantizer(8), tuple(layers))
