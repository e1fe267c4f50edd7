"""Batch norm + sign folded into an integer threshold and a polarity bit (SPEC §5)."""

import numpy as np

from ..errors import ModelError

__all__ = ["bn_sign_reference", "fold_batchnorm"]


def bn_sign_reference(v, gamma, beta, mean, var, eps):
    """The float reference ``sign(BN(v))`` as bits (1 = +1), with ``sign(0) = +1``.

    ``BN(v) = gamma * (v - mean) / sqrt(var + eps) + beta``, evaluated in float64 exactly in
    this order. ``v`` broadcasts against the per-channel parameters.
    """
    v = np.asarray(v, dtype=np.float64)
    b = np.asarray(gamma, np.float64) * (v - np.asarray(mean, np.float64)) \
        / np.sqrt(np.asarray(var, np.float64) + float(eps)) + np.asarray(beta, np.float64)
    return (b >= 0).astype(np.uint8)


def _check_params(layer, gamma, beta, mean, var, eps):
    arrays = {}
    n = None
    for field_name, value in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)):
        a = np.asarray(value)
        if a.dtype.kind not in "iuf" or a.ndim != 1:
            raise ModelError(f"layer {layer!r}: batch-norm {field_name} must be a numeric "
                             f"vector, not {a.dtype} of shape {tuple(a.shape)}")
        a = a.astype(np.float64)
        if n is None:
            n = a.shape[0]
        elif a.shape[0] != n:
            raise ModelError(f"layer {layer!r}: batch-norm {field_name} has {a.shape[0]} "
                             f"channels, not {n}")
        bad = ~np.isfinite(a)
        if bad.any():
            i = int(np.argmax(bad))
            raise ModelError(f"layer {layer!r}: batch-norm {field_name}[{i}] must be finite, "
                             f"not {a[i].item()!r}")
        arrays[field_name] = a
    bad = arrays["var"] < 0
    if bad.any():
        i = int(np.argmax(bad))
        raise ModelError(f"layer {layer!r}: batch-norm var[{i}] must be non-negative, "
                         f"not {arrays['var'][i].item()!r}")
    eps = float(eps)
    if not np.isfinite(eps) or eps < 0:
        raise ModelError(f"layer {layer!r}: batch-norm eps must be finite and non-negative, "
                         f"not {eps!r}")
    zero = arrays["var"] + eps == 0
    if zero.any():
        i = int(np.argmax(zero))
        raise ModelError(f"layer {layer!r}: batch-norm var[{i}] + eps must be positive, not 0")
    return arrays, eps


def fold_batchnorm(gamma, beta, mean, var, eps, value_range, *, layer="?"):
    """Fold per-channel batch norm + sign into ``(thresholds, negate)``.

    Parameters
    ----------
    gamma, beta, mean, var : array_like, shape ``[C]``
    eps : float
    value_range : (int, int)
        The smallest and largest integer the thresholded value ``v`` can take (the layer's
        ``y`` range, or the clip range when a clipping block comes first).
    layer : str
        The layer's name, for error messages.

    Returns
    -------
    thresholds : numpy.ndarray of int64
    negate : numpy.ndarray of bool
        Output +1 iff ``v >= T`` (``negate`` false) or ``v <= T`` (``negate`` true). This
        equals :func:`bn_sign_reference` for every integer ``v`` in ``value_range``.
        Thresholds that fire always or never are clamped to ``lo`` / ``hi + 1`` (or ``hi`` /
        ``lo - 1`` when negated), so they stay small integers.
    """
    p, eps = _check_params(layer, gamma, beta, mean, var, eps)
    lo, hi = (int(v) for v in value_range)
    if lo > hi:
        raise ModelError(f"layer {layer!r}: value range [{lo}, {hi}] is empty")
    g, b, mu, var_ = p["gamma"], p["beta"], p["mean"], p["var"]
    n = g.shape[0]
    thresholds = np.empty(n, np.int64)
    negate = g < 0

    def fires(c, v):
        return bn_sign_reference(v, g[c], b[c], mu[c], var_[c], eps) == 1

    with np.errstate(divide="ignore", invalid="ignore"):
        tau = mu - b * np.sqrt(var_ + eps) / g
    for c in range(n):
        if g[c] == 0:
            always = b[c] >= 0
            thresholds[c] = lo if always else hi + 1
            continue
        # Start from the closed form, then settle the boundary against the float reference
        # itself, so that rounding in tau can never disagree with sign(BN(v)) at a tie.
        if negate[c]:
            t = np.floor(tau[c])
            t = int(min(max(t, lo - 1), hi)) if np.isfinite(t) else (hi if tau[c] > 0 else lo - 1)
            while t + 1 <= hi and fires(c, t + 1):
                t += 1
            while t >= lo and not fires(c, t):
                t -= 1
        else:
            t = np.ceil(tau[c])
            t = int(min(max(t, lo), hi + 1)) if np.isfinite(t) else (lo if tau[c] < 0 else hi + 1)
            while t - 1 >= lo and fires(c, t - 1):
                t -= 1
            while t <= hi and not fires(c, t):
                t += 1
        thresholds[c] = t
    return thresholds, negate
