"""The golden model: bnnhw's single arithmetic reference (SPEC §1-8).

Vectorised and batch first. Binary and multi-bit dot products are computed as float32 matrix
products of +1 / -1 values (and signed codes): every partial sum is an integer far below
``2^24``, so BLAS returns them exactly; a layer whose worst case could exceed that falls back to
float64 (exact below ``2^53``). Everything after the dot product is integer arithmetic.

Activations flow in HWC order (channels last) inside; traces are returned channels first
(``[N, C, H, W]`` or ``[N, C]``), like the inputs.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import InputError
from .model.layers import (BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer, MaxPool,
                           MultibitConv2d, Output, Threshold)

__all__ = ["check_input", "quantize", "forward", "predict"]

#: Bytes of im2col matrix per internal batch: large enough for efficient BLAS calls, small
#: enough to stay in memory (CNV: 64 images; LFC: thousands).
CHUNK_BYTES = 1 << 27

_EXACT_FLOAT32 = 1 << 24


def check_input(net, x):
    """Validate raw input bytes for ``net`` and return them as ``[N, C, H, W]`` uint8.

    Accepts ``[N, C, H, W]``; for single-channel models also ``[N, H, W]`` and
    ``[N, C*H*W]``. Raises :class:`~bnnhw.errors.InputError` naming what is wrong.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise InputError(f"input must be raw bytes (uint8), not {x.dtype}")
    c, h, w = net.input_shape
    n = x.shape[0] if x.ndim >= 1 else 0
    accepted = [(c, h, w)]
    if c == 1:
        accepted += [(h, w), (h * w,)]
    if x.ndim < 2 or tuple(x.shape[1:]) not in accepted:
        want = " or ".join("[N, " + ", ".join(map(str, s)) + "]" for s in accepted)
        raise InputError(f"input of model {net.name!r} must have shape {want}, "
                         f"not {list(x.shape)}")
    if n == 0:
        raise InputError("input holds no images (N = 0)")
    return x.reshape(n, c, h, w)


def quantize(net, x):
    """The model's input quantizer applied to raw bytes: bits or codes, ``[N, C, H, W]``."""
    return net.quantizer(check_input(net, x))


def _im2col(act_nhwc, kh, kw, stride, pad, pad_value):
    if pad:
        act_nhwc = np.pad(act_nhwc, ((0, 0), (pad, pad), (pad, pad), (0, 0)),
                          constant_values=pad_value)
    win = sliding_window_view(act_nhwc, (kh, kw), axis=(1, 2))  # [N, Ho, Wo, C, kh, kw]
    win = win[:, ::stride, ::stride]
    n, ho, wo = win.shape[:3]
    return win.reshape(n * ho * wo, -1), (n, ho, wo)


def _matmul_exact(a, w_rows, bound):
    """``a @ w_rows.T`` exactly, for integer operands whose |partial sums| stay below ``bound``."""
    dtype = np.float32 if bound < _EXACT_FLOAT32 else np.float64
    out = a.astype(dtype, copy=False) @ w_rows.astype(dtype).T
    # The products are exact integers already; the cast only changes the representation.
    return out.astype(np.int64)


def _weight_rows(layer):
    w = layer.weight
    # Conv weights [O, C, kh, kw] to rows in the im2col order [C, kh, kw] (window layout).
    return w.reshape(w.shape[0], -1)


def _popcount_from_y(layer, y):
    """Exact popcount, saturated per SPEC §3, and the signed ``y`` that goes with it."""
    k = layer.fan_in
    p = (y + k) // 2
    if layer.saturates:
        p = np.minimum(p, (1 << layer.accumulator_bits) - 1)
        y = 2 * p - k
    return p, y


def _binary_conv(layer, act):
    kh, kw = layer.kernel
    cols, (n, ho, wo) = _im2col(act, kh, kw, layer.stride, layer.pad, layer.pad_value)
    y = _matmul_exact(cols, _weight_rows(layer), layer.fan_in).reshape(n, ho, wo, -1)
    return _popcount_from_y(layer, y)


def _multibit_conv(layer, codes):
    kh, kw = layer.kernel
    cols, (n, ho, wo) = _im2col(codes, kh, kw, layer.stride, layer.pad, layer.pad_value)
    bound = layer.fan_in << (layer.input_bits - 1)
    return _matmul_exact(cols, _weight_rows(layer), bound).reshape(n, ho, wo, -1)


def _binary_dense(layer, act):
    flat = act.reshape(act.shape[0], -1)  # HWC flatten: channels innermost
    y = _matmul_exact(flat, layer.weight, layer.fan_in)
    return _popcount_from_y(layer, y)


def _threshold(layer, v):
    t, neg = layer.thresholds, layer.negate
    fires = v >= t
    if neg.any():
        fires = np.where(neg, v <= t, fires)
    return fires.view(np.uint8)


def _maxpool(layer, bits):
    win = sliding_window_view(bits, (layer.kernel, layer.kernel), axis=(1, 2))
    win = win[:, ::layer.stride, ::layer.stride]
    return win.max(axis=(-2, -1))


def _channels_first(a):
    return np.moveaxis(a, -1, 1) if a.ndim == 4 else a


_PM1 = np.array([-1, 1], np.float32)


def _pm1(bits):
    return _PM1[bits]


def _forward_chunk(net, raw, trace):
    q = net.quantizer(raw)                                 # [N, C, H, W]
    value = np.moveaxis(q, 1, -1)                          # HWC inside
    kind = "codes" if isinstance(net.quantizer, FixedPointQuantizer) else "bits"
    last_int = None                                        # value a threshold compared
    traces = {"input": q} if trace else None
    scores = None
    for layer in net.layers:
        popcount = None
        if isinstance(layer, MultibitConv2d):
            value = _multibit_conv(layer, value)
        elif isinstance(layer, BinaryConv2d):
            popcount, value = _binary_conv(layer, _pm1(value))
        elif isinstance(layer, BinaryDense):
            popcount, value = _binary_dense(layer, _pm1(value))
        elif isinstance(layer, Clip):
            value = np.clip(value, -layer.limit, layer.limit)
        elif isinstance(layer, Threshold):
            last_int = value
            value = _threshold(layer, value)
        elif isinstance(layer, MaxPool):
            value = _maxpool(layer, value)
        elif isinstance(layer, Output):
            rule = net.output_rule
            if rule == "margin":
                before = net.layers[-2]
                t, neg = before.thresholds, before.negate
                value = np.where(neg, t - last_int, last_int - t)
            elif rule == "popcount":
                value = last_popcount
            scores = value.astype(np.int64)
        if popcount is not None:
            last_popcount = popcount
        if trace:
            traces[layer.name] = _channels_first(value)
            if popcount is not None:
                traces[layer.name + ".popcount"] = _channels_first(popcount)
    return scores, traces


def _chunk_images(net):
    """Images per internal batch, from the largest per-image operand of any layer."""
    largest = 1
    for info in net.infos:
        k = info.fan_in or 1
        largest = max(largest, int(np.prod(info.output_shape[1:] or (1,))) * k * 4,
                      int(np.prod(info.output_shape)) * 8)
    return int(min(512, max(16, CHUNK_BYTES // largest)))


def forward(net, x, trace=False):
    """Run ``net`` on raw input bytes ``x``.

    Parameters
    ----------
    net : bnnhw.model.Network
    x : numpy.ndarray of uint8
        ``[N, C, H, W]`` (single-channel models also ``[N, H, W]`` or ``[N, C*H*W]``).
    trace : bool
        Also return every layer's output.

    Returns
    -------
    scores : numpy.ndarray of int64, ``[N, classes]``
        SPEC §8: popcounts, clipped values or margins, by :attr:`Network.output_rule`.
    traces : dict, only when ``trace``
        ``"input"``: the quantized input (bits or codes, ``[N, C, H, W]``); per layer name its
        output channels first (integers ``y`` / ``z``, bits, or scores); per binary layer also
        ``"<name>.popcount"``: the (saturated) popcount ``P``.
    """
    raw = check_input(net, x)
    parts, trace_parts = [], []
    chunk = _chunk_images(net)
    for start in range(0, raw.shape[0], chunk):
        scores, traces = _forward_chunk(net, raw[start:start + chunk], trace)
        parts.append(scores)
        trace_parts.append(traces)
    scores = np.concatenate(parts)
    if not trace:
        return scores
    merged = {k: np.concatenate([t[k] for t in trace_parts]) for k in trace_parts[0]}
    return scores, merged


def predict(net, x):
    """Predicted class per image: the first argmax of :func:`forward`'s scores."""
    return np.argmax(forward(net, x), axis=1)
