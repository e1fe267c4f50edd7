"""The golden model: bnnhw's single arithmetic reference (SPEC §1-8).

Vectorised and batch first. Binary and multi-bit dot products are computed as float32 matrix
products: binary activations enter as 0 / 1 bits ``b`` against +1 / -1 weights, so that
``u = b . w`` and ``y = 2u - sum(w)`` (SPEC §2, with padded positions as ordinary inputs);
multi-bit codes enter as themselves. Every partial sum is an integer of magnitude at most
``K`` (``K 2^(b-1)`` for codes), far below ``2^24``, so BLAS returns them exactly whatever its
summation order; a layer whose worst case could reach ``2^24`` falls back to float64 (exact
below ``2^53``). Everything after the dot product is exact integer arithmetic, done in the
same float type where the values are known to be small integers.

A binary layer directly followed by its threshold is fused: the threshold is moved into the
``u`` domain once per network (``y >= T  <=>  u >= ceil((T + sum(w)) / 2)``, and for a negated
channel the weight column is negated so that every comparison fires upward), so the layer's
output bits come from one comparison of the matrix product. Weights are converted to these
matrices once per network (cached). Images are processed in chunks sized for the cache, taken
in turn by one worker thread per CPU, each with a single-threaded BLAS.

Activations flow in HWC order (channels last) inside; traces are returned channels first
(``[N, C, H, W]`` or ``[N, C]``), like the inputs.
"""

import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .model.layers import (BinaryConv2d, BinaryDense, Clip, MaxPool, MultibitConv2d, Output,
                           Threshold)

__all__ = ["check_input", "quantize", "forward", "predict", "CHUNK_BYTES", "THREADS"]

#: Target size in bytes of the largest per-chunk operand (the im2col matrix of the widest
#: convolution, or an activation matrix): two chunks in flight stay in a 32 MiB last-level
#: cache, and BLAS still gets thousands of rows (CNV: 4 images per chunk; LFC: 2048).
CHUNK_BYTES = 1 << 23

#: Worker threads of :func:`forward` (``None``: one per CPU this process may run on).
THREADS = None

#: Bounds on the images per chunk; within the cache budget, every matrix product keeps at
#: least ``_DENSE_MIN_ROWS`` rows per chunk (a dense layer has one row per image).
_CHUNK_MIN, _CHUNK_MAX, _DENSE_MIN_ROWS = 4, 4096, 256

_EXACT_FLOAT32 = 1 << 24


def check_input(net, x):
    """Validate raw input bytes for ``net`` and return them as ``[N, C, H, W]`` uint8.

    Parameters
    ----------
    net : bnnhw.model.Network
    x : array_like
        Raw bytes: ``[N, C, H, W]``; for single-channel models also ``[N, H, W]`` and
        ``[N, C*H*W]``.

    Returns
    -------
    numpy.ndarray of uint8, ``[N, C, H, W]``

    Raises
    ------
    bnnhw.errors.InputError
        Naming what is wrong (dtype, shape, empty batch).
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
    """The model's input quantizer applied to raw bytes.

    Parameters
    ----------
    net : bnnhw.model.Network
    x : array_like of uint8
        Raw bytes, as for :func:`check_input`.

    Returns
    -------
    numpy.ndarray, ``[N, C, H, W]``
        Bits (uint8 0 / 1) or signed codes (int16), by the model's quantizer (SPEC §6).
    """
    return net.quantizer(check_input(net, x))


# -- the per-network plan: weight matrices and fused thresholds, computed once ---------------

@dataclass(frozen=True, eq=False)
class _Compute:
    """One compute layer, ready for the matrix product."""
    layer: object
    w: np.ndarray          # [O, K] float, rows in window order (kh, kw, C); columns of fused
                           # negated channels negated
    dtype: type            # float32, or float64 when the exact bound reaches 2^24
    binary: bool
    wsum: np.ndarray       # [O] int64 sum of the (unnegated) weights: y = 2u - wsum
    sign: np.ndarray | None  # [O] +1 / -1 folded into w (None: nothing folded)
    fused_t: np.ndarray | None  # [O] thresholds in the (folded) u domain, or None
    pad_fill: float        # value of a padded input position (bit or code)
    bound: int             # |u| and |y| never exceed this


_PLANS = weakref.WeakKeyDictionary()


def _plan(net):
    plan = _PLANS.get(net)
    if plan is None:
        plan = _build_plan(net)
        _PLANS[net] = plan
    return plan


def _build_plan(net):
    plan = {}
    layers = net.layers
    for i, layer in enumerate(layers):
        if not isinstance(layer, (MultibitConv2d, BinaryConv2d, BinaryDense)):
            continue
        w = layer.weight.astype(np.int64)
        if w.ndim == 4:                                  # [O, C, kh, kw] -> [O, kh, kw, C]
            w = w.transpose(0, 2, 3, 1)
        w = w.reshape(w.shape[0], -1)
        k = layer.fan_in
        binary = not isinstance(layer, MultibitConv2d)
        if binary:
            bound = k
            pad_fill = (getattr(layer, "pad_value", 1) + 1) // 2   # bit of a padded +1 / -1
        else:
            bound = k << (layer.input_bits - 1)
            pad_fill = layer.pad_value
        dtype = np.float32 if bound + 2 < _EXACT_FLOAT32 else np.float64
        wsum = w.sum(axis=1)
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        sign = fused_t = None
        # Not fused: a saturating accumulator (the threshold sees the saturated y) and the last
        # threshold when the scores are its margins (they need y itself).
        fusable = (isinstance(nxt, Threshold) and not (binary and layer.saturates)
                   and not isinstance(layers[i + 2], Output))
        if fusable:
            s = np.where(nxt.negate, -1, 1).astype(np.int64)
            t = nxt.thresholds
            if binary:
                # y >= t  <=>  u >= ceil((t + wsum) / 2); negated: -u >= ceil(-(t + wsum) / 2).
                ft = -((-(s * (t + wsum))) // 2)
            else:
                ft = s * t                                # y >= t, or -y >= -t
            fused_t = np.clip(ft, -bound - 1, bound + 1).astype(dtype)
            if nxt.negate.any():
                sign = s
                w = w * s[:, None]
        plan[i] = _Compute(layer, np.ascontiguousarray(w, dtype=dtype), dtype, binary,
                           wsum, sign, fused_t, pad_fill, bound)
    return plan


# -- building blocks ---------------------------------------------------------------------------

def _im2col(act, kh, kw, stride, pad, fill):
    """``act`` [N, H, W, C] -> rows [N*Ho*Wo, kh*kw*C] in window order (kh, kw, C)."""
    if pad:
        n, h, w, c = act.shape
        padded = np.full((n, h + 2 * pad, w + 2 * pad, c), fill, act.dtype)
        padded[:, pad:pad + h, pad:pad + w] = act
        act = padded
    n, h, w, c = act.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    cols = np.empty((n, ho, wo, kh, kw, c), act.dtype)
    for ky in range(kh):
        for kx in range(kw):
            cols[:, :, :, ky, kx] = act[:, ky:ky + stride * (ho - 1) + 1:stride,
                                        kx:kx + stride * (wo - 1) + 1:stride]
    return cols.reshape(n * ho * wo, kh * kw * c), (n, ho, wo)


def _product(comp, act):
    """The layer's exact dot products ``u`` (float, integer valued), HWC shaped."""
    layer = comp.layer
    if isinstance(layer, BinaryDense):
        rows, shape = act.reshape(act.shape[0], -1), (act.shape[0],)
    else:
        kh, kw = layer.kernel
        rows, (n, ho, wo) = _im2col(act, kh, kw, layer.stride, layer.pad, comp.pad_fill)
        shape = (n, ho, wo)
    u = rows.astype(comp.dtype, copy=False) @ comp.w.T
    return u.reshape(*shape, -1)


def _compute_values(comp, u):
    """From ``u`` to the layer's (saturated) ``y`` and, for binary layers, its popcount."""
    layer = comp.layer
    if comp.sign is not None:
        u = u * comp.sign.astype(comp.dtype)              # undo the folded negation
    if not comp.binary:
        return u, None
    k = layer.fan_in
    p = u + ((k - comp.wsum) // 2).astype(comp.dtype)     # matches: u + (number of -1 weights)
    if layer.saturates:
        p = np.minimum(p, comp.dtype((1 << layer.accumulator_bits) - 1))
    return 2 * p - k, p


def _threshold(layer, v, bound):
    """Bits (0 / 1, in ``v``'s float type) of SPEC §5 for integer-valued ``v``, |v| <= bound.

    Thresholds beyond the range are clamped to just outside it, where they decide the same
    and are exact in ``v``'s float type.
    """
    t = np.clip(layer.thresholds, -bound - 1, bound + 1).astype(v.dtype)
    fires = v >= t
    if layer.negate.any():
        fires = np.where(layer.negate, v <= t, fires)
    return fires.astype(v.dtype)


def _maxpool(layer, bits):
    k, s = layer.kernel, layer.stride
    n, h, w, c = bits.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out = None
    for ky in range(k):
        for kx in range(k):
            tap = bits[:, ky:ky + s * (ho - 1) + 1:s, kx:kx + s * (wo - 1) + 1:s]
            out = tap.copy() if out is None else np.maximum(out, tap, out=out)
    return out


def _channels_first(a):
    return np.moveaxis(a, -1, 1) if a.ndim == 4 else a


def _ints(a):
    return np.rint(a).astype(np.int64) if a.dtype.kind == "f" else a.astype(np.int64)


# -- the forward pass --------------------------------------------------------------------------

def _shared_values(comp, lp_prog, act):
    """A binary convolution computed by its sharing plan (:mod:`bnnhw.sharing.execute`: the
    plan's steps compiled into one affine form): ``(y, P)`` like :func:`_compute_values`,
    never fused with its threshold."""
    from .sharing.execute import apply_affine
    layer = comp.layer
    kh, kw = layer.kernel
    rows, (n, ho, wo) = _im2col(act, kh, kw, layer.stride, layer.pad, comp.pad_fill)
    p = apply_affine(lp_prog, rows.astype(comp.dtype, copy=False)).reshape(n, ho, wo, -1)
    if layer.saturates:
        p = np.minimum(p, comp.dtype((1 << layer.accumulator_bits) - 1))
    return 2 * p - layer.fan_in, p


def _sharing_programs(net, sharing):
    """``{layer index: LayerProgram}`` of a sharing plan checked against ``net``."""
    from .sharing.execute import compile_layer
    from .sharing.plan import SharingPlan
    if not isinstance(sharing, SharingPlan):
        raise InputError(f"sharing must be a bnnhw.sharing.SharingPlan or None, "
                         f"not {type(sharing).__name__}")
    checked = sharing._cache.setdefault("checked", weakref.WeakSet())
    if net not in checked:
        sharing.check(net)
        checked.add(net)
    return {lp.index: compile_layer(sharing, lp) for lp in sharing.layers}


def _forward_chunk(net, plan, raw, trace, shared=None):
    q = net.quantizer(raw)                                 # [N, C, H, W] bits or codes
    value = np.ascontiguousarray(np.moveaxis(q, 1, -1), dtype=np.float32)   # HWC inside
    traces = {"input": q} if trace else None
    last_int = last_popcount = None                        # what a threshold / output reads
    bound = 1                                              # |value| <= bound while integer
    skip_threshold = False
    for i, layer in enumerate(net.layers):
        popcount = None
        if shared and i in shared:
            value, popcount = _shared_values(plan[i], shared[i], value)
            bound = plan[i].bound
        elif i in plan:
            comp = plan[i]
            u = _product(comp, value)
            if comp.fused_t is not None and not trace:
                # Fused compute + threshold: the output bits, in place.
                value = np.greater_equal(u, comp.fused_t, out=u)
                skip_threshold = True
                continue
            value, popcount = _compute_values(comp, u)
            bound = comp.bound
        elif isinstance(layer, Threshold):
            if skip_threshold:
                skip_threshold = False
                continue
            last_int = value
            value = _threshold(layer, value, bound)
        elif isinstance(layer, Clip):
            if layer.limit < bound:
                value = np.clip(value, -layer.limit, layer.limit)
                bound = layer.limit
        elif isinstance(layer, MaxPool):
            value = _maxpool(layer, value)
        elif isinstance(layer, Output):
            rule = net.output_rule
            if rule == "margin":
                before = net.layers[-2]
                t, neg = before.thresholds, before.negate
                v = _ints(last_int)
                value = np.where(neg, t - v, v - t)
            elif rule == "popcount":
                value = _ints(last_popcount)
            else:
                value = _ints(value)
            scores = value.astype(np.int64)
            if trace:
                traces[layer.name] = scores
            return scores, traces
        if popcount is not None:
            last_popcount = popcount
        if trace:
            is_bits = isinstance(layer, (Threshold, MaxPool))
            traces[layer.name] = _channels_first(value.astype(np.uint8) if is_bits
                                                 else _ints(value))
            if popcount is not None:
                traces[layer.name + ".popcount"] = _channels_first(_ints(popcount))
    raise AssertionError("network without an output layer")    # Network forbids it


def _chunk_images(net, n, workers):
    """Images per internal batch.

    At most the cache budget :data:`CHUNK_BYTES` over the largest per-image operand of any
    layer; the chunks are made equal and their count a multiple of ``workers`` (at least two
    per worker), so that no worker is left with a short last round; but every matrix product
    keeps ``_DENSE_MIN_ROWS`` rows when the cache budget allows.
    """
    largest, rows = 1, None
    for info in net.infos:
        k = info.fan_in or 1
        pixels = int(np.prod(info.output_shape[1:] or (1,)))
        largest = max(largest, pixels * k * 4, int(np.prod(info.output_shape)) * 4)
        if info.fan_in:
            rows = pixels if rows is None else min(rows, pixels)
    by_cache = min(_CHUNK_MAX, max(_CHUNK_MIN, CHUNK_BYTES // largest))
    # ``rows``: the fewest rows any matrix product sees per image (1 for a dense layer).
    least = max(_CHUNK_MIN, -(-_DENSE_MIN_ROWS // (rows or 1)))
    chunks = workers * max(2, -(-n // (workers * by_cache)))
    return int(min(by_cache, max(least, -(-n // chunks))))


def _available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_BLAS = {"lock": threading.Lock(), "users": 0, "limiter": None, "controller": None}


@contextmanager
def _blas_one_thread():
    """Limit BLAS to one thread while worker threads run (restored when the last one ends).

    With one BLAS thread per worker, every worker runs a whole chunk (im2col, product and
    threshold) on its own core: no synchronisation inside a product, and the element-wise
    steps run in parallel too. Concurrent :func:`forward` calls share one limit.
    """
    with _BLAS["lock"]:
        if _BLAS["users"] == 0:
            if _BLAS["controller"] is None:
                from threadpoolctl import ThreadpoolController
                _BLAS["controller"] = ThreadpoolController()
            _BLAS["limiter"] = _BLAS["controller"].limit(limits=1, user_api="blas")
        _BLAS["users"] += 1
    try:
        yield
    finally:
        with _BLAS["lock"]:
            _BLAS["users"] -= 1
            if _BLAS["users"] == 0:
                _BLAS["limiter"].restore_original_limits()
                _BLAS["limiter"] = None


def forward(net, x, trace=False, *, threads=None, sharing=None):
    """Run ``net`` on raw input bytes ``x``.

    Parameters
    ----------
    net : bnnhw.model.Network
    x : numpy.ndarray of uint8
        ``[N, C, H, W]`` (single-channel models also ``[N, H, W]`` or ``[N, C*H*W]``).
    trace : bool
        Also return every layer's output.
    threads : int, optional
        Worker threads (default :data:`THREADS`, else one per available CPU). The images are
        split into cache-sized chunks that the workers take in turn; while more than one
        worker runs, BLAS is limited to one thread (through ``threadpoolctl``) and restored
        afterwards. The scores never depend on it.
    sharing : bnnhw.sharing.SharingPlan, optional
        Compute the plan's binary convolutions by its shared 2-D popcounts, derivations and
        corrections (SPEC §9; :mod:`bnnhw.sharing.execute`). Exact plans give the same
        scores bit for bit; an ``"approx:D"`` plan gives the scores of the network whose
        kernels are the ones the plan reads. ``None``: the plain (fastest) path.

    Returns
    -------
    scores : numpy.ndarray of int64, ``[N, classes]``
        SPEC §8: popcounts, clipped values or margins, by :attr:`Network.output_rule`.
    traces : dict, only when ``trace``
        ``"input"``: the quantized input (bits or codes, ``[N, C, H, W]``); per layer name its
        output channels first (int64 integers ``y`` / ``z``, uint8 bits, or int64 scores); per
        binary layer also ``"<name>.popcount"``: the (saturated) popcount ``P`` (int64).

    Raises
    ------
    bnnhw.errors.InputError
        When ``x`` does not fit the model (see :func:`check_input`), ``threads`` < 1, or
        ``sharing`` is not a plan of this network.
    """
    raw = check_input(net, x)
    threads = threads if threads is not None else THREADS
    threads = _available_cpus() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise InputError(f"threads must be a positive integer, not {threads!r}")
    plan = _plan(net)
    shared = None if sharing is None else _sharing_programs(net, sharing)
    n = raw.shape[0]
    chunk = _chunk_images(net, n, threads)
    starts = range(0, n, chunk)

    def run(start):
        return _forward_chunk(net, plan, raw[start:start + chunk], trace, shared)

    workers = min(threads, len(starts))
    if workers == 1:
        results = [run(start) for start in starts]
    else:
        with _blas_one_thread(), ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(run, starts))
    scores = np.concatenate([part for part, _ in results])
    if not trace:
        return scores
    merged = {k: np.concatenate([t[k] for _, t in results]) for k in results[0][1]}
    return scores, merged


def predict(net, x, *, threads=None, sharing=None):
    """Predicted class per image: the first argmax of :func:`forward`'s scores.

    Parameters
    ----------
    net : bnnhw.model.Network
    x : numpy.ndarray of uint8
        Raw input bytes, as for :func:`forward`.
    threads : int, optional
        As for :func:`forward`.
    sharing : bnnhw.sharing.SharingPlan, optional
        As for :func:`forward`.

    Returns
    -------
    numpy.ndarray of int64, ``[N]``
    """
    return np.argmax(forward(net, x, threads=threads, sharing=sharing), axis=1)
