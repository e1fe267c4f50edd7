"""An independent, slow reference of result sharing (SPEC §9), for the tests only.

It shares no code with ``bnnhw.golden`` or ``bnnhw.sharing``: every binary convolution is
computed as SPEC §9 states it, ``P[o] = sum_c p(o, c)`` with
``p(o, c) = popcount(XNOR(window_c, K[o, c]))`` counted tap by tap in int64 on 0/1 bits
(channels first, no im2col, no float), where ``K[o, c]`` is the layer's own 2-D kernel
``W[o, c]``, or, for an approximate plan, the kernel of the entry that output channel reads
(inverted when it reads it inverted), decoded here from the plan's raw fields. Every other
layer follows SPEC §1-8 the slow way, as tests/reference.py does.
"""

import numpy as np

from bnnhw.model import (BinaryConv2d, BinaryDense, Clip, MaxPool, MultibitConv2d, Output,
                         Threshold)


def plan_kernels(plan, name):
    """The +1/-1 kernels ``[O, C, kh, kw]`` that ``plan`` makes layer ``name`` read:
    ``entries[entry[o]].bits`` of each channel, inverted where ``inverted[o]``."""
    lp = [lp for lp in plan.layers if lp.name == name][0]
    kh, kw = lp.kernel
    out = np.zeros((lp.out_channels, lp.in_channels, kh, kw), np.int64)
    for c, ch in enumerate(lp.channels):
        for o in range(lp.out_channels):
            bits = ch.entries[ch.entry[o]].bits
            for ky in range(kh):
                for kx in range(kw):
                    bit = (bits >> (ky * kw + kx)) & 1
                    if ch.inverted[o]:
                        bit ^= 1
                    out[o, c, ky, kx] = 1 if bit else -1
    return out


def popcount_2d_sum(bits, kernels, stride, pad, pad_bit):
    """SPEC §9: ``P[n, o, y, x] = sum_c popcount(XNOR(window_c, K[o, c]))``.

    ``bits`` int64 0/1 ``[N, C, H, W]``; ``kernels`` +1/-1 ``[O, C, kh, kw]``.
    """
    n, c, h, w = bits.shape
    o, _, kh, kw = kernels.shape
    xp = np.full((n, c, h + 2 * pad, w + 2 * pad), pad_bit, np.int64)
    xp[:, :, pad:pad + h, pad:pad + w] = bits
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (w + 2 * pad - kw) // stride + 1
    k01 = (np.asarray(kernels) > 0).astype(np.int64)
    total = np.zeros((n, o, ho, wo), np.int64)
    for ch in range(c):
        p = np.zeros((n, o, ho, wo), np.int64)          # p(o, ch) at every window
        for ky in range(kh):
            for kx in range(kw):
                tap = xp[:, ch, ky:ky + stride * (ho - 1) + 1:stride,
                         kx:kx + stride * (wo - 1) + 1:stride]
                p += (tap[:, None] == k01[None, :, ch, ky, kx, None, None])
        total += p
    return total


def forward_sharing_reference(net, raw, plan=None):
    """Scores of ``net`` on raw uint8 inputs; binary convolutions per SPEC §9.

    With an approximate ``plan``, its layers read the kernels of :func:`plan_kernels`.
    """
    raw = raw.reshape(raw.shape[0], *net.input_shape).astype(np.int64)
    q = net.quantizer(raw).astype(np.int64)
    x = q if net.quantizer.kind == "fixed_point" else 2 * q - 1
    approx = plan is not None and plan.mode.startswith("approx")
    shared = {lp.name for lp in plan.layers} if approx else set()
    last_y = last_p = None
    for layer in net.layers:
        if isinstance(layer, BinaryConv2d):
            kernels = plan_kernels(plan, layer.name) if layer.name in shared else layer.weight
            p = popcount_2d_sum((x > 0).astype(np.int64), kernels, layer.stride, layer.pad,
                                1 if layer.pad_value > 0 else 0)
            p = np.minimum(p, 2 ** layer.accumulator_bits - 1)
            x, last_p = 2 * p - layer.fan_in, p
        elif isinstance(layer, MultibitConv2d):
            n, c, h, w = x.shape
            pad, s = layer.pad, layer.stride
            xp = np.full((n, c, h + 2 * pad, w + 2 * pad), layer.pad_value, np.int64)
            xp[:, :, pad:pad + h, pad:pad + w] = x
            o, _, kh, kw = layer.weight.shape
            ho, wo = (h + 2 * pad - kh) // s + 1, (w + 2 * pad - kw) // s + 1
            y = np.zeros((n, o, ho, wo), np.int64)
            for ky in range(kh):
                for kx in range(kw):
                    patch = xp[:, :, ky:ky + s * (ho - 1) + 1:s, kx:kx + s * (wo - 1) + 1:s]
                    y += np.einsum("nchw,oc->nohw", patch,
                                   layer.weight[:, :, ky, kx].astype(np.int64))
            x = y
        elif isinstance(layer, BinaryDense):
            flat = x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1) if x.ndim == 4 else x
            p = ((flat > 0)[:, None, :] == (layer.weight > 0)[None]).sum(-1).astype(np.int64)
            p = np.minimum(p, 2 ** layer.accumulator_bits - 1)
            x, last_p = 2 * p - layer.fan_in, p
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
                    out = np.maximum(out, x[:, :, ky:ky + s * (ho - 1) + 1:s,
                                            kx:kx + s * (wo - 1) + 1:s])
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
