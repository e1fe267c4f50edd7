"""Running a layer's sharing plan: the arithmetic of the golden model with ``sharing=``.

The plan's arithmetic is: the scratch entries' popcounts from the window bits, every derived
entry from its source (``n - p`` when inverted) plus its correction terms
``2 XNOR(x_i, w_i) - 1 = +-(2 x_i - 1)``, and each output channel's ``P[o]`` as the sum over
input channels of the entry it reads (``n - p`` when inverted). Nothing is taken from the
network's weights, nor from a derived entry's declared ``bits``: the kernels of derived
entries come only from their sources and corrections, so a wrong scratch kernel, correction
position, source, inversion or read in the plan gives a wrong ``P``.

Every step is affine in the window bits with integer coefficients, so the plan is evaluated
in two equivalent ways:

* :func:`run_steps` follows it step by step on the data, as hardware does (all entries of one
  derivation depth, across all channels, at once);
* :func:`compile_layer` follows the same steps once on the coefficients (scratch: ``2w - 1``
  and the count of -1 taps; inversion: negate, ``n - const``; a correction at ``i``: add
  ``+-2`` to coefficient ``i`` and ``-+1`` to the constant; a read: add the entry's form into
  the output's), giving ``P[o] = offset[o] + sum_j matrix[o, j] x_j``. The golden model applies
  that with one matrix product, at the speed of the unshared layer. The integers are the same
  as step by step (exact integer arithmetic, only reassociated); the tests check both.

Values are small integers, held exactly in float32 (float64 when a bound reaches 2^24).
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["LayerProgram", "compile_layer", "run_steps", "apply_affine"]

#: Elements of the gather in one block of the final sum (bounds its temporary).
_GATHER_BLOCK = 1 << 20


@dataclass(frozen=True, eq=False)
class LayerProgram:
    """A :class:`~bnnhw.sharing.plan.LayerPlan` as index arrays.

    Entries are numbered globally (channel by channel); window rows are in the golden
    model's order ``(kh, kw, C)``: tap ``i`` of channel ``c`` is column ``i * C + c``.
    """
    n: int
    channels: int
    outputs: int
    total_entries: int
    scratch_entry: np.ndarray    # [C, S] global entry index of each scratch entry, -1: padding
    scratch_pm1: np.ndarray      # [C, n, S] 2w - 1 of the scratch kernels (0 in padding)
    scratch_zeros: np.ndarray    # [C, S] number of -1 taps: p = zeros + sum_i b_i (2w_i - 1)
    levels: tuple                # per depth >= 1: (dst, src, invert, cols [E, k], signs [E, k])
    read: np.ndarray             # [C, O] global entry index each output reads
    read_sign: np.ndarray        # [C, O] +1, or -1 when read inverted
    read_const: np.ndarray       # [O] n * (inverted reads of each output)
    matrix: np.ndarray           # [O, n * C] int64: P = offset + matrix @ window bits
    offset: np.ndarray           # [O] int64


def compile_layer(plan, lp):
    """The :class:`LayerProgram` of layer plan ``lp`` of ``plan`` (cached on the plan)."""
    cache = plan._cache.setdefault("programs", {})
    prog = cache.get(lp.index)
    if prog is None:
        prog = _compile(lp)
        cache[lp.index] = prog
    return prog


def _compile(lp):
    n, cin, cout = lp.kernel_size, lp.in_channels, lp.out_channels
    offsets = np.cumsum([0] + [len(ch.entries) for ch in lp.channels])
    scratch = [[i for i, e in enumerate(ch.entries) if e.source is None] for ch in lp.channels]
    s_max = max(len(s) for s in scratch)
    scratch_entry = np.full((cin, s_max), -1, np.int64)
    scratch_pm1 = np.zeros((cin, n, s_max), np.float64)
    scratch_zeros = np.zeros((cin, s_max), np.float64)
    taps = np.arange(n)
    levels = {}
    for c, ch in enumerate(lp.channels):
        for j, i in enumerate(scratch[c]):
            w = (ch.entries[i].bits >> taps) & 1
            scratch_entry[c, j] = offsets[c] + i
            scratch_pm1[c, :, j] = 2 * w - 1
            scratch_zeros[c, j] = n - w.sum()
        for i, d in enumerate(ch.depths()):
            if d:
                levels.setdefault(d, []).append((c, i))
    compiled = []
    for d in sorted(levels):
        items = levels[d]
        k = max(1, max(len(lp.channels[c].entries[i].corrections) for c, i in items))
        dst = np.empty(len(items), np.int64)
        src = np.empty(len(items), np.int64)
        inv = np.zeros(len(items), bool)
        cols = np.zeros((len(items), k), np.int64)
        signs = np.zeros((len(items), k), np.float64)
        for j, (c, i) in enumerate(items):
            e = lp.channels[c].entries[i]
            dst[j], src[j], inv[j] = offsets[c] + i, offsets[c] + e.source, e.invert
            for t, pos in enumerate(e.corrections):
                cols[j, t] = pos * cin + c
                # 2 XNOR(x, w) - 1 is 2x - 1 for w = +1 and 1 - 2x for w = -1.
                signs[j, t] = 1.0 if e.bits >> pos & 1 else -1.0
        compiled.append((dst, src, inv, cols, signs))
    read = np.array([[offsets[c] + e for e in ch.entry] for c, ch in enumerate(lp.channels)],
                    np.int64)
    inverted = np.array([ch.inverted for ch in lp.channels], bool)
    read_sign = np.where(inverted, -1.0, 1.0)
    read_const = n * inverted.sum(axis=0).astype(np.float64)
    matrix, offset = _affine(n, cin, cout, int(offsets[-1]), scratch_entry, scratch_pm1,
                             scratch_zeros, compiled, read, inverted)
    return LayerProgram(n, cin, cout, int(offsets[-1]), scratch_entry, scratch_pm1,
                        scratch_zeros, tuple(compiled), read, read_sign, read_const, matrix,
                        offset)


def _affine(n, cin, cout, total, scratch_entry, scratch_pm1, scratch_zeros, levels, read,
            inverted):
    """The plan's steps applied to coefficients: ``p_e = const[e] + coef[e] . x_c``."""
    coef = np.zeros((total, n), np.int64)
    const = np.zeros(total, np.int64)
    valid = scratch_entry >= 0
    coef[scratch_entry[valid]] = np.rint(scratch_pm1.transpose(0, 2, 1)[valid]).astype(np.int64)
    const[scratch_entry[valid]] = np.rint(scratch_zeros[valid]).astype(np.int64)
    for dst, src, inv, cols, signs in levels:
        c_src, k_src = coef[src], const[src]
        c_new = np.where(inv[:, None], -c_src, c_src)
        k_new = np.where(inv, n - k_src, k_src)
        s = np.rint(signs).astype(np.int64)
        # +-(2 x_i - 1): +-2 on coefficient i, -+1 on the constant (padding has sign 0).
        np.add.at(c_new, (np.repeat(np.arange(len(dst)), cols.shape[1]),
                          (cols // cin).reshape(-1)), 2 * s.reshape(-1))
        coef[dst] = c_new
        const[dst] = k_new - s.sum(axis=1)
    matrix = np.zeros((cout, n, cin), np.int64)
    offset = np.zeros(cout, np.int64)
    for c in range(cin):
        e = read[c]
        sign = np.where(inverted[c], -1, 1)
        matrix[:, :, c] = sign[:, None] * coef[e]
        offset += np.where(inverted[c], n - const[e], const[e])
    return matrix.reshape(cout, n * cin), offset


def run_steps(prog, rows):
    """``P`` of every output channel at every window row, by the plan, step by step.

    Parameters
    ----------
    prog : LayerProgram
    rows : numpy.ndarray of float, ``[R, n * C]``
        Window bits (0 / 1) in ``(kh, kw, C)`` order.

    Returns
    -------
    numpy.ndarray, ``[R, O]``, in ``rows``' float type: unsaturated popcounts.
    """
    dtype = rows.dtype
    r = rows.shape[0]
    n, cin = prog.n, prog.channels
    # Entry-major layout: every gather below takes whole contiguous rows of R values.
    x = np.ascontiguousarray(rows.T)                                  # [n * C, R]
    p = np.empty((prog.total_entries, r), dtype)
    # Scratch entries: one small product per channel, all channels in one batched matmul.
    per_channel = x.reshape(n, cin, r).transpose(1, 0, 2)             # [C, n, R]
    pm1 = prog.scratch_pm1.astype(dtype, copy=False).transpose(0, 2, 1)   # [C, S, n]
    scratch = np.matmul(pm1, per_channel)                             # [C, S, R]
    scratch += prog.scratch_zeros.astype(dtype, copy=False)[:, :, None]
    valid = prog.scratch_entry >= 0
    p[prog.scratch_entry[valid]] = scratch[valid]
    # Derived entries, one derivation depth at a time.
    for dst, src, inv, cols, signs in prog.levels:
        base = p[src]
        if inv.any():
            base[inv] = dtype.type(n) - base[inv]
        if cols.shape[1] == 1:
            corr = x[cols[:, 0]] * (2 * signs[:, :1]).astype(dtype)
        else:
            corr = np.einsum("ekr,ek->er", x[cols], 2 * signs.astype(dtype))
        corr -= signs.sum(axis=1).astype(dtype)[:, None]
        p[dst] = base + corr
    # P[o] = sum_c +-p(entry read by o in c) + n * (inverted reads of o).
    out = np.empty((prog.outputs, r), dtype)
    out[:] = prog.read_const.astype(dtype)[:, None]
    block = max(1, _GATHER_BLOCK // max(1, r * prog.outputs))
    sign = prog.read_sign.astype(dtype)
    for c0 in range(0, cin, block):
        g = p[prog.read[c0:c0 + block]]                                # [b, O, R]
        g *= sign[c0:c0 + block, :, None]
        out += g.sum(axis=0)
    return out.T


def apply_affine(prog, rows):
    """``P`` by the compiled form: ``offset + rows @ matrix.T`` (the golden model's way).

    Parameters and result as for :func:`run_steps`. The float type is widened to float64
    when the form's bound could reach 2^24 (never for a valid plan).
    """
    cache = prog.__dict__.setdefault("_float", {})
    if "bound" not in cache:
        cache["bound"] = int(np.abs(prog.matrix).sum(axis=1).max() + np.abs(prog.offset).max())
    dtype = rows.dtype
    if dtype == np.float32 and cache["bound"] + 2 >= 1 << 24:
        dtype = np.dtype(np.float64)
    mt = cache.get(dtype)
    if mt is None:
        mt = cache[dtype] = (np.ascontiguousarray(prog.matrix.T, dtype=dtype),
                             prog.offset.astype(dtype))
    return rows.astype(dtype, copy=False) @ mt[0] + mt[1]
