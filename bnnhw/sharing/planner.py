"""The planner: from a network's weights to a :class:`~bnnhw.sharing.plan.SharingPlan`.

Per binary convolution and input channel ``c``, the output channels' 2-D kernels
``W[o, c]`` (``n = kh * kw`` bits) are grouped into *classes*: a kernel and its inverse are
one class, since ``p(NOT w) = n - p(w)`` comes free with ``p(w)`` (an output channel reads
an entry inverted). What is then computed per class depends on the mode.

``"exact"``
    One scratch entry per class. This is optimal: without corrections each distinct class
    needs its own popcount.

``"similar:D"``
    The cost of a channel is its XNOR bits: ``n`` per scratch entry plus one per correction
    position (SPEC §9 counts a ``d``-bit correction as ``d / n`` of a 2-D op). Between two
    classes the cheapest derivation costs their distance
    ``delta(u, v) = min(hamming(u, v), n - hamming(u, v))`` (from ``v`` or from ``NOT v``).
    A plan is a spanning arborescence over the classes plus a root "compute from scratch"
    with arcs of cost ``n``; since ``delta`` is symmetric, the minimum arborescence is the
    minimum spanning tree of that undirected graph, which Prim's algorithm finds exactly.
    Two options change the graph:

    * ``intermediates=False``: only arcs with ``delta <= D`` exist (a kernel derived from
      another kernel of the channel only). The plan is then the exact optimum.
    * ``intermediates=True`` (default): an arc with ``delta > D`` is realised by a chain of
      ``ceil(delta / D) - 1`` intermediate entries (kernels no output reads) on a shortest
      path, each step at most ``D`` corrections, at the same cost ``delta``. For ``n = 9``
      every ``delta <= 4 < 9``, so each channel needs one scratch popcount only. With
      intermediates the problem is a Steiner tree problem in the hypercube (NP-hard); the
      MST over the classes is never worse than the plan without intermediates, and a lower
      bound for *any* plan is ``n + (m - 1)`` bits for ``m`` classes (one scratch entry, and
      at least one correction bit for every other class). :func:`lower_bound_bits` gives it;
      the benchmark reports the gap (on the three CNV networks at most 9 % in conv1 and 3 %
      in conv2-conv5; 36 % on the example model's conv1, whose kernels are more spread). The
      MST does not share intermediates between chains (the iterated 1-Steiner heuristic
      would; on cnvW1A1_cifar10 conv1 it took the gap from 8.4 % to 5.8 % in a throw-away
      trial, at a hundred times the planning time).

``max_depth`` bounds the derivation steps from a scratch entry (a hardware adder chain):
Prim then only attaches a class where the depth allows, a heuristic (the bounded-depth
spanning tree is NP-hard).

``"approx:D"``
    First *representatives* are chosen among the channel's classes so that every class is
    within ``delta <= D`` of one (a dominating set of the distance-``D`` graph, found
    greedily: the class covering most uncovered classes, then most uncovered output
    channels, then the smallest kernel); each class reads its nearest representative and
    reuses its popcount unchanged. The representatives are then shared exactly as in
    ``"similar:D"``. The fewest representatives are at least ``ceil(m / V)``, ``V`` the
    number of kernels within ``D`` of one (``sum_{i <= D} C(n, i)``; the sphere-covering
    bound, :func:`cover_lower_bound`). On cnvW1A1_cifar10 the greedy cover is 5-13 % above
    the optimum found by a MILP for D = 1 (benchmarks/sharing_bench.py).

Everything is deterministic: classes in increasing order of their smaller kernel, ties
broken by index.
"""

import math

import numpy as np

from ..errors import InputError, ModelError
from ..model.layers import BinaryConv2d
from .plan import (ChannelPlan, KernelEntry, LayerPlan, SharingPlan, kernel_bits, parse_mode)

__all__ = ["make_plan", "plan_channel", "binary_convolutions", "kernel_classes",
           "class_distances", "lower_bound_bits", "cover_lower_bound", "greedy_cover"]


def binary_convolutions(net):
    """``[LayerInfo]`` of the network's binary convolutions (what result sharing applies to).

    Raises
    ------
    bnnhw.errors.ModelError
        When the network has none.
    """
    infos = [i for i in net.infos if isinstance(i.layer, BinaryConv2d)]
    if not infos:
        raise ModelError(f"model {net.name!r} has no binary convolution (BinaryConv2d): "
                         f"result sharing applies to 2-D kernels of binary convolutions only")
    return infos


def kernel_classes(kernels, n):
    """Classes of 2-D kernels under inversion.

    Parameters
    ----------
    kernels : array of int64, ``[O]``
        Bit patterns of ``n`` bits.

    Returns
    -------
    classes : numpy.ndarray of int64, ``[m]``
        The smaller of ``w`` and ``NOT w`` per class, increasing.
    of : numpy.ndarray of int64, ``[O]``
        The class of each kernel.
    """
    kernels = np.asarray(kernels, np.int64)
    mask = (1 << n) - 1
    canon = np.minimum(kernels, kernels ^ mask)
    classes, of = np.unique(canon, return_inverse=True)
    return classes, of.reshape(-1)


def class_distances(classes, n):
    """``delta(u, v) = min(hamming, n - hamming)`` between classes, int64 ``[m, m]``."""
    c = np.asarray(classes, np.int64)
    h = np.bitwise_count((c[:, None] ^ c[None, :]).astype(np.uint64)).astype(np.int64)
    return np.minimum(h, n - h)


def lower_bound_bits(m, n):
    """A lower bound on the XNOR bits of any exact plan of a channel with ``m`` classes."""
    return 0 if m == 0 else n + (m - 1)


def cover_lower_bound(m, n, distance):
    """Sphere-covering bound on the representatives of ``m`` classes at distance ``D``."""
    ball = sum(math.comb(n, i) for i in range(min(distance, n) + 1))
    return -(-m // ball)


def greedy_cover(delta, weight, distance):
    """Representatives (class indices, in the order chosen) of a greedy dominating set.

    Parameters
    ----------
    delta : array ``[m, m]``
        Class distances.
    weight : array ``[m]``
        Output channels per class.
    distance : int
        Every class must be within this distance of a representative.
    """
    within = np.asarray(delta) <= distance
    weight = np.asarray(weight, np.int64)
    m = within.shape[0]
    uncovered = np.ones(m, bool)
    reps = []
    while uncovered.any():
        classes = within[:, uncovered].sum(axis=1)
        outputs = (within[:, uncovered] * weight[uncovered]).sum(axis=1)
        # Lexicographic (classes, outputs, -index): the first of the best.
        score = classes * (weight.sum() + 1) + outputs
        r = int(np.argmax(score))
        reps.append(r)
        uncovered &= ~within[r]
    return reps


def _prim(delta, n, distance, intermediates, max_depth):
    """Minimum spanning tree over classes plus the scratch root.

    Returns ``order`` (classes in the order attached, a valid computation order) and
    ``parent`` (class index, -1: scratch).
    """
    m = delta.shape[0]
    direct = delta <= distance
    steps = np.where(direct, 1, -(-delta // distance)) if intermediates else np.ones_like(delta)
    # Key (cost, steps) as one number: ties in cost prefer the shorter chain.
    big = float(n + 2)
    cand = delta * big + steps
    if not intermediates:
        cand = np.where(direct, cand, np.inf)
    key = np.full(m, n * big)                    # the scratch arc: cost n, no steps
    done = np.zeros(m, bool)
    parent = np.full(m, -1)
    depth = np.zeros(m, np.int64)
    order = []
    for _ in range(m):
        v = int(np.argmin(key))
        order.append(v)
        if parent[v] >= 0:
            depth[v] = depth[parent[v]] + steps[parent[v], v]
        key[v] = np.inf                          # never picked again
        done[v] = True
        better = (cand[v] < key) & ~done
        if max_depth is not None:
            better &= depth[v] + steps[v] <= max_depth
        key[better] = cand[v][better]
        parent[better] = v
    return order, parent


def _chain(source_bits, target_bits, distance):
    """Correction sets from ``source_bits`` to ``target_bits``: one per step, each of at most
    ``distance`` positions, increasing positions first (the last step reaches the target)."""
    diff = source_bits ^ target_bits
    positions = [i for i in range(diff.bit_length()) if diff >> i & 1]
    return [tuple(positions[s:s + distance]) for s in range(0, len(positions), distance)]


def plan_channel(kernels, n, mode, *, intermediates=True, max_depth=None):
    """The :class:`~bnnhw.sharing.plan.ChannelPlan` of one input channel.

    Parameters
    ----------
    kernels : array of int64, ``[O]``
        The output channels' 2-D kernels ``W[o, c]`` as bits (:func:`kernel_bits`).
    n : int
        ``kh * kw``.
    mode : str
        ``"exact"``, ``"similar:D"`` or ``"approx:D"``.
    intermediates : bool
        Allow intermediate entries on chains longer than ``D``.
    max_depth : int, optional
        At most this many derivation steps from a scratch entry.
    """
    kind, distance = parse_mode(mode)
    kernels = np.asarray(kernels, np.int64)
    mask = (1 << n) - 1
    classes, of = kernel_classes(kernels, n)
    m = len(classes)
    delta = class_distances(classes, n)
    weight = np.bincount(of, minlength=m)

    # Representatives (terminals of the tree) and the representative each class reads.
    if kind == "approx":
        reps = sorted(greedy_cover(delta, weight, distance))
        rep_of = np.asarray(reps)[np.argmin(delta[:, reps], axis=1)]
    else:
        reps = list(range(m))
        rep_of = np.arange(m)

    terminal = {r: t for t, r in enumerate(reps)}
    sub = delta[np.ix_(reps, reps)]
    if kind == "exact":
        order, parent = list(range(len(reps))), np.full(len(reps), -1)
    else:
        order, parent = _prim(sub, n, distance, intermediates, max_depth)

    # Orientation. Reading an entry inverted costs one n - p per reader, deriving an entry as
    # the inverse of its source one n - p for all readers: per terminal, take the cheaper
    # (fewest inversions; a scratch entry's orientation is free). Plain Python ints: the
    # groups are tiny.
    ks_all = [int(k) for k in kernels]
    term_of = [terminal[int(rep_of[c])] for c in of]
    readers = [[] for _ in reps]
    for k, t in zip(ks_all, term_of):
        readers[t].append(k)

    def direct(ks, bits):
        """Readers that read ``bits`` without inversion."""
        return sum(1 for k in ks if 2 * (k ^ bits).bit_count() <= n)

    entries, entry_of = [], {}
    for t in order:
        cls = int(classes[reps[t]])
        ks = readers[t]
        if parent[t] < 0:
            bits = cls if 2 * direct(ks, cls) >= len(ks) else cls ^ mask
            entry_of[t] = len(entries)
            entries.append(KernelEntry(bits))
            continue
        src = entry_of[int(parent[t])]
        src_bits = entries[src].bits
        h = (src_bits ^ cls).bit_count()
        target = cls if h <= n - h else cls ^ mask
        a = direct(ks, target)
        invert = len(ks) - a > a + 1
        steps = _chain(src_bits, target, distance)
        bits = src_bits
        for j, step in enumerate(steps):
            bits ^= sum(1 << p for p in step)
            if invert and j == len(steps) - 1:
                entries.append(KernelEntry(bits ^ mask, src, True, step))
            else:
                entries.append(KernelEntry(bits, src, False, step))
            src = len(entries) - 1
        entry_of[t] = src

    entry, inverted = [], []
    for k, t in zip(ks_all, term_of):
        e = entry_of[t]
        entry.append(e)
        inverted.append(2 * (k ^ entries[e].bits).bit_count() > n)
    return ChannelPlan(tuple(entries), tuple(entry), tuple(inverted))


def make_plan(net, mode="similar:1", *, intermediates=True, max_depth=None, layers=None):
    """Plan result sharing for the binary convolutions of ``net``.

    Parameters
    ----------
    net : bnnhw.model.Network
    mode : str
        ``"exact"``, ``"similar:D"`` or ``"approx:D"`` (see the module docstring).
    intermediates : bool
        Allow intermediate entries (chains through kernels no output reads).
    max_depth : int, optional
        Bound on derivation steps from a scratch entry.
    layers : iterable of str, optional
        Names of the binary convolutions to share (default: all).

    Returns
    -------
    SharingPlan

    Raises
    ------
    bnnhw.errors.ModelError
        When the network has no binary convolution.
    bnnhw.errors.InputError
        A malformed mode, ``max_depth`` < 1, or a named layer that is not a binary
        convolution of the network.
    """
    parse_mode(mode)
    if max_depth is not None and (isinstance(max_depth, bool) or
                                  not isinstance(max_depth, (int, np.integer)) or max_depth < 1):
        raise InputError(f"max_depth must be an integer >= 1 or None, not {max_depth!r}")
    infos = binary_convolutions(net)
    if layers is not None:
        wanted = list(layers)
        names = [i.name for i in infos]
        for name in wanted:
            if name not in names:
                raise InputError(f"layer {name!r} is not a binary convolution of model "
                                 f"{net.name!r} (those are: {', '.join(names)})")
        infos = [i for i in infos if i.name in wanted]
        if not infos:
            raise InputError("no layer to share: the list of layers is empty")
    plans = []
    for info in infos:
        layer = info.layer
        kh, kw = layer.kernel
        bits = kernel_bits(layer.weight)
        channels = tuple(plan_channel(bits[:, c], kh * kw, mode, intermediates=intermediates,
                                      max_depth=max_depth)
                         for c in range(layer.in_channels))
        plans.append(LayerPlan(layer.name, info.index, (kh, kw), layer.in_channels,
                               layer.out_channels, tuple(info.output_shape[1:]), channels))
    return SharingPlan(mode, net.fingerprint(), net.name, tuple(plans),
                       bool(intermediates), None if max_depth is None else int(max_depth))
