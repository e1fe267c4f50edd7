"""An independent, slow integer reference of SPEC §1-8, written for the tests only.

It shares no code with ``bnnhw.golden``: convolutions are shift-and-add loops over kernel
taps in int64 on +1/-1 values (no im2col, no float), activations stay channels first.
"""

import numpy as np

from bnnhw.model import (BinaryConv2d, BinaryDense, Clip, MaxPool, MultibitConv2d, Output,
                         Threshold)


def conv_int(x, w, stride, pad, pad_value):
    """``x`` int64 [N, C, H, W], ``w`` [O, C, kh, kw] -> y int64 [N, O, Ho, Wo]."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.full((n, c, h + 2 * pad, wd + 2 * pad), pad_value, np.int64)
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, o, ho, wo), np.int64)
    w = w.astype(np.int64)
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
    return y


def forward_reference(net, raw):
    """Scores of ``net`` on raw uint8 ``[N, C, H, W]``, per SPEC, the slow way."""
    raw = raw.reshape(raw.shape[0], *net.input_shape).astype(np.int64)
    q = net.quantizer(raw).astype(np.int64)
    x = q if net.quantizer.kind == "fixed_point" else 2 * q - 1   # +-1 or codes
    last_y = last_p = None
    for layer in net.layers:
        if isinstance(layer, (BinaryConv2d, MultibitConv2d)):
            y = conv_int(x, layer.weight, layer.stride, layer.pad, layer.pad_value)
        elif isinstance(layer, BinaryDense):
            flat = x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1) if x.ndim == 4 else x
            y = flat @ layer.weight.astype(np.int64).T
        if isinstance(layer, (BinaryConv2d, BinaryDense)):
            k = layer.fan_in
            p = (y + k) // 2
            p = np.minimum(p, 2 ** layer.accumulator_bits - 1)
            y = 2 * p - k
            x, last_p = y, p
        elif isinstance(layer, MultibitConv2d):
            x = y
        elif isinstance(layer, Clip):
            x = np.clip(x, -(2 ** (layer.bits - 1) - 1), 2 ** (layer.bits - 1) - 1)
        elif isinstance(layer, Threshold):
            shape = (1, -1) + (1,) * (x.ndim - 2)
            t = layer.thresholds.reshape(shape)
            neg = layer.negate.reshape(shape)
            last_y = x
            x = np.where(neg, x <= t, x >= t).astype(np.int64) * 2 - 1
        elif isinstance(layer, MaxPool):
            k, s = layer.kernel, layer.stride
            n, c, h, w = x.shape
            ho, wo = (h - k) // s + 1, (w - k) // s + 1
            out = np.full((n, c, ho, wo), -1, np.int64)
            for ky in range(k):
                for kx in range(k):
                    out = np.maximum(out, x[:, :, ky:ky + s * (ho - 1) + 1:s, kx:kx + s * (wo - 1) + 1:s])
            x = out
        elif isinstance(layer, Output):
            rule = net.output_rule
            if rule == "margin":
                thr = net.layers[-2]
                return np.where(thr.negate, thr.thresholds - last_y, last_y - thr.thresholds)
            if rule == "popcount":
                return last_p
            return x
    raise AssertionError("network without output layer")
