"""Train bnnhw's own example network on scikit-learn's 8x8 digits, in plain NumPy.

The network is small enough to simulate quickly in hardware and still uses every kind of layer
of the IR: a multi-bit first convolution (8-bit input codes, like CNV), a binary convolution
with a clipping block (SPEC §4), max-pooling, binary dense layers and popcount scores
(SPEC §8)::

    raw bytes [1, 8, 8] --FixedPointQuantizer(8)--> codes in [-128, 127]
    conv0  MultibitConv2d 1 -> 16, 3x3, pad 1 (pad code -128, the quantized background)
    thr0   batch norm + sign, folded
    conv1  BinaryConv2d 16 -> 32, 3x3, pad 1 (pad value -1), K = 144
    clip1  Clip(8 bits): z = clip(y, -127, 127)
    thr1   batch norm + sign, folded over the clip range
    pool1  MaxPool 2 (OR of the +1 bits)
    fc2    BinaryDense 512 -> 64 (HWC flatten), K = 512
    clip2  Clip(8 bits)
    thr2   batch norm + sign, folded over the clip range
    fc3    BinaryDense 64 -> 10
    output popcount scores, first argmax

Training (paper 1's scheme, written out by hand, float64 throughout):

* latent float weights in [-1, 1], binarized with ``sign`` (``sign(0) = +1``) in the forward
  pass; the straight-through estimator passes their gradient unchanged and Adam updates the
  latent weights, which are clipped back to [-1, 1] after every step;
* activations: batch norm (batch statistics in training, running statistics in evaluation)
  then ``sign``; the backward pass uses the hard-tanh gradient (1 where ``|BN(v)| <= 1``,
  else 0);
* clipping block on the integer pre-activation of the binary hidden layers, exactly as in the
  exported network: ``z = clip(y, -127, 127)``, gradient 1 inside the range and 0 outside.
  With ``K = 144`` (conv1) it binds only when at least 136 of 144 products agree; with
  ``K = 512`` (fc2) it binds more often. The report records how often it bound on the
  held-out images;
* max-pooling after the sign is computed as ``sign(maxpool(BN(z)))``: ``sign`` is
  non-decreasing, so this equals OR-pooling of the bits for either batch-norm polarity, and the
  gradient is routed to the (first) largest batch-norm output of each window;
* the last layer's integer ``y = 2P - K`` times a learned positive scale gives the logits of a
  softmax cross-entropy loss; ``argmax y = argmax P``, so the popcount scores of the exported
  network rank the classes identically.

Export folds each batch norm into integer thresholds with
:func:`bnnhw.model.fold_batchnorm` over the exact integer range of the value the threshold
sees (the layer's ``output_range``, or the clip range). The evaluation-mode float network (the
"float twin") computes the same function with floats; its accuracy is reported next to the
golden model's accuracy of the exported network.

Reproducibility: the data split and the training use their own ``numpy.random.Generator``
seeds, the arithmetic is float64 and the model file (written with
:func:`bnnhw.model.save_model`) holds no time stamps, so the same seed gives a byte-identical
model file on the same machine and NumPy/BLAS build. Another CPU or BLAS may round a float
differently somewhere in training and so end with a slightly different (equally valid) model;
the committed file and its JSON report record the versions used.
"""

import json
import platform
import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import golden
from ..errors import InputError
from ..model import (BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer, MaxPool,
                     MultibitConv2d, Network, Output, Threshold, fold_batchnorm)
from ..model.datasets import DIGITS_SPLIT, digits_bytes, digits_split
from ..model.io import model_writer
from ..outputs import atomic_write_many, check_output_file

__all__ = ["train_digits", "train_float", "export", "threshold_ranges", "digits_bytes",
           "digits_split", "FloatBNN", "DEFAULTS", "EXAMPLE_MODEL", "EXAMPLE_REPORT"]

#: The committed example model and its report, inside the package.
EXAMPLE_MODEL = Path(__file__).with_name("digits_bnn.npz")
EXAMPLE_REPORT = Path(__file__).with_name("digits_bnn.json")

#: Training settings of the committed model (``train_digits`` defaults).
DEFAULTS = {
    "epochs": 60,
    "batch_size": 32,
    "lr": 0.01,           # Adam, cosine-decayed to lr_min over all steps
    "lr_min": 1e-4,
    "betas": (0.9, 0.999),
    "adam_eps": 1e-8,
    "bn_momentum": 0.1,   # running = (1 - m) * running + m * batch
    "bn_eps": 1e-5,
    "init_scale": 0.5,    # latent weights start uniform in [-init_scale, init_scale]
    **DIGITS_SPLIT,
}

CLIP_BITS = 8
CLIP_LIMIT = (1 << (CLIP_BITS - 1)) - 1
INPUT_BITS = 8
#: Pad code of the first layer: the quantized code of a background (ink 0) pixel.
PAD_CODE = int(FixedPointQuantizer(INPUT_BITS)(np.uint8(0)))
#: Pad value of the binary convolution.
PAD_BIT = -1
CHANNELS = (16, 32, 64)
CLASSES = 10


# -- building blocks -------------------------------------------------------------------------

def _sign(a):
    """+1 / -1 with ``sign(0) = +1`` (SPEC §1)."""
    return np.where(a >= 0, 1.0, -1.0)


def _im2col(x, pad, pad_value):
    """3x3 stride-1 windows of NHWC ``x`` as rows in the IR's weight order ``[C, kh, kw]``."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=pad_value)
    win = sliding_window_view(xp, (3, 3), axis=(1, 2))        # [N, Ho, Wo, C, 3, 3]
    n, ho, wo = win.shape[:3]
    return win.reshape(n * ho * wo, -1), (n, ho, wo)


def _col2im(dcols, shape, channels, pad):
    """Adjoint of :func:`_im2col`: scatter window gradients back onto the input pixels."""
    n, ho, wo = shape
    d = dcols.reshape(n, ho, wo, channels, 3, 3)
    dx = np.zeros((n, ho + 2 * pad, wo + 2 * pad, channels))
    for i in range(3):
        for j in range(3):
            dx[:, i:i + ho, j:j + wo, :] += d[..., i, j]
    return dx[:, pad:pad + ho, pad:pad + wo, :] if pad else dx


class _BatchNorm:
    """Per-channel batch norm over all but the last axis, with running statistics."""

    def __init__(self, channels, momentum, eps):
        self.gamma = np.ones(channels)
        self.beta = np.zeros(channels)
        self.mean = np.zeros(channels)
        self.var = np.ones(channels)
        self.momentum, self.eps = momentum, eps
        self.first = True

    def forward(self, v, train):
        if not train:
            # Same expression, same order as bnnhw.model.bn_sign_reference, so that the float
            # twin and the folded thresholds agree even at ties.
            return self.gamma * (v - self.mean) / np.sqrt(self.var + self.eps) + self.beta
        axes = tuple(range(v.ndim - 1))
        mu, var = v.mean(axis=axes), v.var(axis=axes)
        if self.first:
            # Start the running statistics at the first batch's: the integer pre-activations
            # have scales (up to 1152) far from the (0, 1) initial guess.
            self.mean, self.var, self.first = mu.copy(), var.copy(), False
        else:
            m = self.momentum
            self.mean = (1 - m) * self.mean + m * mu
            self.var = (1 - m) * self.var + m * var
        inv = 1.0 / np.sqrt(var + self.eps)
        xhat = (v - mu) * inv
        self._cache = (xhat, inv, axes)
        return self.gamma * xhat + self.beta

    def backward(self, dout):
        xhat, inv, axes = self._cache
        m = np.prod([xhat.shape[a] for a in axes])
        self.dgamma = (dout * xhat).sum(axis=axes)
        self.dbeta = dout.sum(axis=axes)
        dxhat = dout * self.gamma
        return inv / m * (m * dxhat - dxhat.sum(axis=axes)
                          - xhat * (dxhat * xhat).sum(axis=axes))


class _Adam:
    def __init__(self, shape, betas, eps):
        self.m, self.v = np.zeros(shape), np.zeros(shape)
        self.b1, self.b2 = betas
        self.eps, self.t = eps, 0

    def step(self, param, grad, lr):
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad * grad
        mhat = self.m / (1 - self.b1 ** self.t)
        vhat = self.v / (1 - self.b2 ** self.t)
        param -= lr * mhat / (np.sqrt(vhat) + self.eps)


# -- the float network -------------------------------------------------------------------------

class FloatBNN:
    """The float training network (latent weights, batch norms) of the digits example.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the initial latent weights.
    settings : dict
        :data:`DEFAULTS`-like training settings.

    Members
    -------
    weights : dict of numpy.ndarray
        Latent float weights in the IR's shapes: ``conv0`` ``[16, 1, 3, 3]``, ``conv1``
        ``[32, 16, 3, 3]``, ``fc2`` ``[64, 512]`` (HWC flatten order), ``fc3`` ``[10, 64]``.
    bn : dict of batch norms, keyed by the threshold layer they become (``thr0``-``thr2``).
    """

    def __init__(self, rng, settings):
        c0, c1, c2 = CHANNELS
        s = settings["init_scale"]
        shapes = {"conv0": (c0, 1, 3, 3), "conv1": (c1, c0, 3, 3),
                  "fc2": (c2, 16 * c1), "fc3": (CLASSES, c2)}
        self.weights = {k: rng.uniform(-s, s, shape) for k, shape in shapes.items()}
        self.bn = {name: _BatchNorm(c, settings["bn_momentum"], settings["bn_eps"])
                   for name, c in (("thr0", c0), ("thr1", c1), ("thr2", c2))}
        # Logits = exp(log_scale) * y of the last layer.
        self.log_scale = np.array(np.log(1.0 / np.sqrt(c2)))

    def binary_weights(self, name):
        """The latent weights of layer ``name`` binarized: +1 / -1 with ``sign(0) = +1``."""
        return _sign(self.weights[name])

    def forward(self, codes, train=False):
        """Run the network on input codes ``[N, 1, 8, 8]`` (the quantizer's output).

        Returns
        -------
        y3 : numpy.ndarray ``[N, 10]``
            The last layer's integer ``y = 2P - K`` (as floats).
        trace : dict
            Channels-first values named like the exported layers (``conv0``, ``thr0`` (bits
            0/1), ``conv1``, ``clip1``, ``thr1``, ``pool1``, ``fc2``, ``clip2``, ``thr2``,
            ``fc3``), for comparing layer by layer with :func:`bnnhw.golden.forward`.
        """
        c0, c1, c2 = CHANNELS
        w = {k: self.binary_weights(k) for k in self.weights}
        x = np.moveaxis(np.asarray(codes, np.float64), 1, -1)      # NHWC
        n = x.shape[0]
        cols0, sh0 = _im2col(x, 1, PAD_CODE)
        y0 = (cols0 @ w["conv0"].reshape(c0, -1).T).reshape(*sh0, c0)
        a0 = self.bn["thr0"].forward(y0, train)
        s0 = _sign(a0)
        cols1, sh1 = _im2col(s0, 1, PAD_BIT)
        y1 = (cols1 @ w["conv1"].reshape(c1, -1).T).reshape(*sh1, c1)
        z1 = np.clip(y1, -CLIP_LIMIT, CLIP_LIMIT)
        a1 = self.bn["thr1"].forward(z1, train)
        # 2x2 windows, then sign of the max == OR-pooling of the signs (sign is monotone).
        h, wd = a1.shape[1] // 2, a1.shape[2] // 2
        win = a1.reshape(n, h, 2, wd, 2, c1).transpose(0, 1, 3, 5, 2, 4).reshape(n, h, wd, c1, 4)
        arg = win.argmax(axis=-1)
        pooled = np.take_along_axis(win, arg[..., None], -1)[..., 0]
        s1 = _sign(pooled)
        f1 = s1.reshape(n, -1)                                      # HWC flatten
        y2 = f1 @ w["fc2"].T
        z2 = np.clip(y2, -CLIP_LIMIT, CLIP_LIMIT)
        a2 = self.bn["thr2"].forward(z2, train)
        s2 = _sign(a2)
        y3 = s2 @ w["fc3"].T
        if train:
            self._cache = dict(w=w, cols0=cols0, sh0=sh0, a0=a0, cols1=cols1, sh1=sh1, y1=y1,
                               win_shape=win.shape, arg=arg, pooled=pooled, s1_shape=s1.shape,
                               f1=f1, y2=y2, a2=a2, s2=s2, y3=y3)
        cf = lambda a: np.moveaxis(a, -1, 1)
        bit = lambda s: (s > 0).astype(np.uint8)
        trace = {"conv0": cf(y0), "thr0": cf(bit(s0)), "conv1": cf(y1), "clip1": cf(z1),
                 "thr1": cf(bit(_sign(a1))), "pool1": cf(bit(s1)), "fc2": y2, "clip2": z2,
                 "thr2": bit(s2), "fc3": y3}
        return y3, trace

    def backward(self, dy3):
        """Gradients of every parameter from ``dL/dy3`` (after a training-mode forward)."""
        c = self._cache
        w = c["w"]
        c0, c1, c2 = CHANNELS
        g = {"fc3": dy3.T @ c["s2"]}
        ds2 = dy3 @ w["fc3"]
        da2 = ds2 * (np.abs(c["a2"]) <= 1)                           # hard-tanh STE
        dz2 = self.bn["thr2"].backward(da2)
        dy2 = dz2 * (np.abs(c["y2"]) <= CLIP_LIMIT)                  # clip STE
        g["fc2"] = dy2.T @ c["f1"]
        ds1 = (dy2 @ w["fc2"]).reshape(c["s1_shape"])
        dpooled = ds1 * (np.abs(c["pooled"]) <= 1)
        dwin = np.zeros(c["win_shape"])
        np.put_along_axis(dwin, c["arg"][..., None], dpooled[..., None], -1)
        n, h, wd = dwin.shape[:3]
        da1 = dwin.reshape(n, h, wd, c1, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(
            n, 2 * h, 2 * wd, c1)
        dz1 = self.bn["thr1"].backward(da1)
        dy1 = (dz1 * (np.abs(c["y1"]) <= CLIP_LIMIT)).reshape(-1, c1)
        g["conv1"] = (dy1.T @ c["cols1"]).reshape(w["conv1"].shape)
        ds0 = _col2im(dy1 @ w["conv1"].reshape(c1, -1), c["sh1"], c0, 1)
        da0 = ds0 * (np.abs(c["a0"]) <= 1)
        dy0 = self.bn["thr0"].backward(da0).reshape(-1, c0)
        g["conv0"] = (dy0.T @ c["cols0"]).reshape(w["conv0"].shape)
        return g


def _softmax_xent(logits, labels):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(p[np.arange(n), labels] + 1e-300).mean()
    p[np.arange(n), labels] -= 1
    return loss, p / n


def train_float(x_train, y_train, seed=0, settings=None):
    """Train a :class:`FloatBNN` on raw bytes ``x_train`` ``[N, 1, 8, 8]`` and labels.

    Parameters
    ----------
    x_train : numpy.ndarray of uint8
    y_train : numpy.ndarray of int
    seed : int
        Seeds the initial weights and the batch order.
    settings : dict or None
        Overrides of :data:`DEFAULTS` (e.g. ``{"epochs": 2}``).

    Returns
    -------
    model : FloatBNN
    losses : list of float
        Mean training loss of each epoch.
    """
    settings = dict(DEFAULTS, **(settings or {}))
    with _one_blas_thread():
        return _train_loop(x_train, y_train, seed, settings)


def _train_loop(x_train, y_train, seed, settings):
    rng = np.random.default_rng(seed)
    model = FloatBNN(rng, settings)
    codes = FixedPointQuantizer(INPUT_BITS)(x_train)
    # One Adam state per parameter, by name; the arrays are updated in place.
    params = {k: model.weights[k] for k in model.weights}
    for name, bn in model.bn.items():
        params[name + ".gamma"], params[name + ".beta"] = bn.gamma, bn.beta
    params["log_scale"] = model.log_scale
    opt = {k: _Adam(np.shape(v), settings["betas"], settings["adam_eps"])
           for k, v in params.items()}
    bs, epochs = settings["batch_size"], settings["epochs"]
    # Only full batches: a batch of a few images would give the dense layers' batch norms
    # meaningless statistics. The permutation changes every epoch, so no image is left out.
    per_epoch = len(y_train) // bs
    steps = epochs * per_epoch
    step, losses = 0, []
    for _ in range(epochs):
        order = rng.permutation(len(y_train))
        total = 0.0
        for start in range(0, per_epoch * bs, bs):
            idx = order[start:start + bs]
            lr = settings["lr_min"] + 0.5 * (settings["lr"] - settings["lr_min"]) * (
                1 + np.cos(np.pi * step / steps))
            y3, _ = model.forward(codes[idx], train=True)
            scale = np.exp(model.log_scale)
            loss, dlogits = _softmax_xent(scale * y3, y_train[idx])
            total += loss * len(idx)
            grads = model.backward(dlogits * scale)
            grads["log_scale"] = np.sum(dlogits * y3) * scale
            for name, bn in model.bn.items():
                grads[name + ".gamma"], grads[name + ".beta"] = bn.dgamma, bn.dbeta
            for k, param in params.items():
                opt[k].step(param, grads[k], lr)
            for w in model.weights.values():
                np.clip(w, -1, 1, out=w)
            step += 1
        losses.append(total / (per_epoch * bs))
    return model, losses


# -- export ----------------------------------------------------------------------------------

def export(model, meta=None):
    """The bnnhw :class:`~bnnhw.model.Network` of a trained :class:`FloatBNN`.

    Batch norms are folded into thresholds over the exact integer range of the value each
    threshold sees: the first layer's ``output_range``, or the clip range of the binary layers.
    """
    conv0 = MultibitConv2d("conv0", model.binary_weights("conv0"), input_bits=INPUT_BITS,
                           pad=1, pad_value=PAD_CODE)
    conv1 = BinaryConv2d("conv1", model.binary_weights("conv1"), pad=1, pad_value=PAD_BIT)
    clip1, clip2 = Clip("clip1", CLIP_BITS), Clip("clip2", CLIP_BITS)
    fc2 = BinaryDense("fc2", model.binary_weights("fc2"))
    fc3 = BinaryDense("fc3", model.binary_weights("fc3"))

    layers = [conv0]

    def thr(name):
        # Fold over the exact integer range of the value this threshold sees.
        bn = model.bn[name]
        t, neg = fold_batchnorm(bn.gamma, bn.beta, bn.mean, bn.var, bn.eps,
                                _seen_range(layers), layer=name)
        return Threshold(name, t, neg)

    layers += [thr("thr0"), conv1, clip1]
    layers += [thr("thr1"), MaxPool("pool1", 2), fc2, clip2]
    layers += [thr("thr2"), fc3, Output("output")]
    return Network(name="digits_bnn", input_shape=(1, 8, 8),
                   quantizer=FixedPointQuantizer(INPUT_BITS), layers=tuple(layers),
                   classes=tuple(str(i) for i in range(CLASSES)), meta=dict(meta or {}))


def _seen_range(layers):
    """``(lo, hi)`` of the integer value after ``layers``: the last compute layer's
    ``output_range``, narrowed by a clipping block after it."""
    lo_hi = None
    for layer in layers:
        if isinstance(layer, (MultibitConv2d, BinaryConv2d, BinaryDense)):
            lo_hi = layer.output_range
        elif isinstance(layer, Clip):
            lo_hi = (max(lo_hi[0], -layer.limit), min(lo_hi[1], layer.limit))
    return tuple(int(v) for v in lo_hi)


def threshold_ranges(net):
    """``{threshold name: (lo, hi)}``: the integer range of the value each threshold sees."""
    return {layer.name: _seen_range(net.layers[:i]) for i, layer in enumerate(net.layers)
            if isinstance(layer, Threshold)}


def _accuracy(pred, labels):
    return float(np.mean(np.asarray(pred) == labels))


# -- entry point -----------------------------------------------------------------------------

def _one_blas_thread():
    """Limit BLAS to one thread while training.

    The matrices are small: with two threads on a loaded 2-core machine, OpenBLAS spends most
    of its time waiting (measured: 3 s with one thread, 40 s with two, for 5 epochs), and one
    thread also keeps the summation order independent of the machine's core count.
    threadpoolctl comes with scikit-learn, which training needs anyway.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def train_digits(seed=0, epochs=None, out=None):
    """Train, export and measure the digits example network.

    Parameters
    ----------
    seed : int
        Seeds the initial weights and the batch order (the train / held-out split has its own
        fixed seed, ``DEFAULTS["split_seed"]``).
    epochs : int or None
        ``None``: ``DEFAULTS["epochs"]``, the committed model's.
    out : path-like or None
        Where to write the model (bnnhw's format, :func:`bnnhw.model.save_model`); its report
        goes next to it with the suffix ``.json``. ``None`` writes nothing.

    Returns
    -------
    net : bnnhw.model.Network
    report : dict
        Settings, the held-out accuracy of the exported network measured with
        :func:`bnnhw.golden.predict` (``accuracy["golden_test"]``) and of the float twin
        (``accuracy["float_test"]``), training time, how often the clipping blocks bound,
        and the float batch-norm parameters with the range each was folded over.
    """
    if epochs is None:
        epochs = DEFAULTS["epochs"]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"training seed must be a non-negative integer, not {seed!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise InputError(f"training epochs must be a positive integer, not {epochs!r}")
    if out is not None:
        # Checked before training, so that a bad path fails in a second, not after it.
        out = Path(out)
        if out.suffix == ".json":
            raise InputError(f"model output {str(out)!r} must not end in .json: the report "
                             f"is written next to the model with that suffix")
        if out.is_dir():
            raise InputError(f"model output {str(out)!r} is a directory")
        # Both files, before training: neither is replaced unless both can be written.
        check_output_file(out, "model output")
        check_output_file(out.with_suffix(".json"), "report output")
    settings = dict(DEFAULTS, epochs=int(epochs))
    x_train, y_train, x_test, y_test = digits_split(settings["split_seed"],
                                                    settings["test_fraction"])
    started = time.perf_counter()
    model, losses = train_float(x_train, y_train, int(seed), settings)
    seconds = time.perf_counter() - started

    meta = {"source": "bnnhw.examples.train_digits", "dataset": "sklearn.datasets.load_digits",
            "seed": int(seed), "epochs": int(epochs),
            "input": "p = round(v * 255 / 16) of the 0..16 pixel values"}
    net = export(model, meta)

    quantizer = net.quantizer
    float_pred = {}
    for part, x in (("train", x_train), ("test", x_test)):
        y3, _ = model.forward(quantizer(x), train=False)
        float_pred[part] = np.argmax(y3, axis=1)
    golden_test = golden.predict(net, x_test)
    golden_train = golden.predict(net, x_train)
    _, trace = golden.forward(net, x_test, trace=True)
    clipped = {}
    for compute, clip in (("conv1", "clip1"), ("fc2", "clip2")):
        clipped[clip] = float(np.mean(trace[compute] != trace[clip]))

    ranges = threshold_ranges(net)
    report = {
        "model": net.name,
        "fingerprint": net.fingerprint(),
        "seed": int(seed),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
        "split": {"seed": settings["split_seed"], "test_fraction": settings["test_fraction"],
                  "train_images": int(len(y_train)), "test_images": int(len(y_test))},
        "accuracy": {
            "golden_test": _accuracy(golden_test, y_test),
            "float_test": _accuracy(float_pred["test"], y_test),
            "golden_train": _accuracy(golden_train, y_train),
            "float_train": _accuracy(float_pred["train"], y_train),
        },
        "test_correct": int(np.sum(golden_test == y_test)),
        "train_seconds": round(seconds, 2),
        "final_train_loss": round(float(losses[-1]), 6),
        "clip_fraction_test": clipped,
        "notes": [
            "accuracy: fraction of correct first-argmax predictions on the held-out split; "
            "golden_* from bnnhw.golden.predict on the exported integer network, float_* from "
            "the evaluation-mode float training network with binarized weights",
            "clip_fraction_test: fraction of pre-activations the 8-bit clipping block changed "
            "on the held-out images; conv1 (K = 144) can only reach |y| > 127 when at least "
            "136 of its 144 products agree, which the trained network rarely or never does",
            "train_seconds: wall-clock training time, one BLAS thread",
        ],
        "batchnorm": {name: {"gamma": bn.gamma.tolist(), "beta": bn.beta.tolist(),
                             "mean": bn.mean.tolist(), "var": bn.var.tolist(), "eps": bn.eps,
                             "range": list(ranges[name])}
                      for name, bn in model.bn.items()},
        "versions": {"numpy": np.__version__, "python": platform.python_version(),
                     "machine": platform.machine()},
    }
    try:
        import sklearn
        report["versions"]["scikit-learn"] = sklearn.__version__
    except ImportError:  # pragma: no cover - digits_bytes already needed it
        pass
    if out is not None:
        text = json.dumps(report, indent=1, sort_keys=True, allow_nan=False) + "\n"
        # The model and its report are renamed into place only when both are written.
        atomic_write_many([(out, model_writer(net)),
                           (out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))])
    return net, report
