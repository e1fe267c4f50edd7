"""Random small networks (the one builder of every test folder), and the amaranth.sim drive of
whole cores."""

import numpy as np

from bnnhw.model import (BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer, MaxPool,
                         MultibitConv2d, Network, Output, Threshold, ThresholdQuantizer)

from .streams import StreamDriver, StreamMonitor, run_streams


def pm1(rng, shape):
    return rng.choice(np.array([-1, 1], np.int8), size=shape)


def thresholds(rng, name, n, k, neg_prob=0.3):
    return Threshold(name, rng.integers(-k - 2, k + 3, n), rng.random(n) < neg_prob)


def _rng(seed):
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def random_dense_net(seed, *, shape=(1, 4, 6), hidden=(12,), classes=10, clip_last=False,
                     last_threshold=True, name="dense", sizes=None):
    """An LFC-like network: threshold-quantized bytes, dense layers, thresholds.

    ``seed`` is a seed or a ``numpy.random.Generator``. ``sizes`` (every layer's width, the
    classes last) may replace ``hidden`` and ``classes``. The last layer's scores are margins
    (``last_threshold``), clipped values (``clip_last``) or popcounts.
    """
    if sizes is not None:
        hidden, classes = tuple(sizes[:-1]), sizes[-1]
    rng = _rng(seed)
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
    return Network(name, shape, ThresholdQuantizer(128), tuple(layers))


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


def random_conv_net(seed, *, pad=1, pad_value=-1, hw=6, channels=(3, 4, 6), hidden=5,
                    classes=3, name="conv"):
    """A tiny CNV-like network: 8-bit codes, multi-bit conv, binary conv + pool, dense.

    ``channels`` are the input, conv0 and conv1 channels; ``hidden`` the width of the dense
    layer before the classifier (0: the classifier follows the pool), whose popcounts are the
    scores. ``seed`` is a seed or a ``numpy.random.Generator``.
    """
    rng = _rng(seed)
    c0, c1, c2 = channels
    h1 = hw - 2                                         # conv0: 3x3, no padding
    h2 = (h1 + 2 * pad - 2) // 2                        # conv1: 3x3, pad; pool 2x2
    flat = c2 * h2 * h2
    layers = [
        MultibitConv2d("conv0", pm1(rng, (c1, c0, 3, 3)), input_bits=8),
        Threshold("thr0", rng.integers(-300, 300, c1), rng.random(c1) < 0.3),
        BinaryConv2d("conv1", pm1(rng, (c2, c1, 3, 3)), pad=pad, pad_value=pad_value),
        thresholds(rng, "thr1", c2, 9 * c1),
        MaxPool("pool1", 2),
    ]
    if hidden:
        layers += [BinaryDense("fc2", pm1(rng, (hidden, flat))),
                   thresholds(rng, "thr2", hidden, flat),
                   BinaryDense("fc3", pm1(rng, (classes, hidden)))]
    else:
        layers.append(BinaryDense("fc2", pm1(rng, (classes, flat))))
    layers.append(Output())
    return Network(name, (c0, hw, hw), FixedPointQuantizer(8), tuple(layers))
