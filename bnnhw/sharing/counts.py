"""Operation counts of a sharing plan (SPEC §9), per layer and in total, per image.

One "2-D op" is one ``kh x kw`` XNOR-popcount at one output pixel. Unshared, a binary
convolution does ``C_out * C_in * H_out * W_out`` of them. After sharing it computes its
scratch entries (one 2-D op each per pixel) and its correction bits (a ``d``-bit correction
counts as ``d / (kh * kw)`` of a 2-D op); the inversions (``n - p``: output channels that read
an entry inverted, and inverse entries) are listed separately, as SPEC §9 asks. The sum of
the ``C_in`` per-channel popcounts of each output channel is the same with and without
sharing and is not counted.
"""

from dataclasses import dataclass, fields

__all__ = ["LayerCounts", "layer_counts", "plan_counts"]


@dataclass(frozen=True)
class LayerCounts:
    """Per-image operation counts of one shared layer (or a total over layers).

    All fields are integers per image (already multiplied by the output pixels).

    Attributes
    ----------
    name : str
    unshared : int
        ``C_out * C_in * H_out * W_out`` 2-D ops.
    computed : int
        2-D popcounts computed from scratch.
    correction_bits : int
        XNOR bits of the corrections.
    correction_ops : float
        ``correction_bits`` in 2-D ops (each bit ``1 / (kh * kw)`` of one).
    inverted_reads : int
        ``n - p`` of an output channel that reads an entry inverted.
    inverse_entries : int
        ``n - p`` of an entry that is the inverse of another.
    entries, intermediates : int
        Entries of the plan (per image pixel: not multiplied), and how many of them no output
        channel reads.
    max_depth : int
        Longest derivation chain (steps from a scratch entry).
    """
    name: str
    unshared: int
    computed: int
    correction_bits: int
    correction_ops: float
    inverted_reads: int
    inverse_entries: int
    entries: int
    intermediates: int
    max_depth: int

    @property
    def shared(self):
        """2-D ops after sharing: ``computed + correction_ops``."""
        return self.computed + self.correction_ops

    @property
    def inversions(self):
        """All ``n - p`` operations: ``inverted_reads + inverse_entries``."""
        return self.inverted_reads + self.inverse_entries

    @property
    def reduction(self):
        """Fraction of the unshared 2-D ops saved, ``1 - shared / unshared``."""
        return 1.0 - self.shared / self.unshared if self.unshared else 0.0

    def to_dict(self):
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(shared=self.shared, inversions=self.inversions, reduction=self.reduction)
        return d


def layer_counts(lp):
    """The :class:`LayerCounts` of a :class:`~bnnhw.sharing.plan.LayerPlan`."""
    n, px = lp.kernel_size, lp.pixels
    computed = corr = inv_reads = inv_entries = entries = inter = depth = 0
    for ch in lp.channels:
        read = set(ch.entry)
        entries += len(ch.entries)
        inter += sum(1 for i in range(len(ch.entries)) if i not in read)
        for e in ch.entries:
            if e.source is None:
                computed += 1
            else:
                corr += len(e.corrections)
                inv_entries += bool(e.invert)
        inv_reads += sum(bool(v) for v in ch.inverted)
        depth = max(depth, max(ch.depths()))
    return LayerCounts(lp.name, lp.out_channels * lp.in_channels * px, computed * px,
                       corr * px, corr * px / n, inv_reads * px, inv_entries * px, entries,
                       inter, depth)


def plan_counts(plan):
    """Per-layer :class:`LayerCounts` of a plan and their total (named ``"total"``)."""
    rows = [layer_counts(lp) for lp in plan.layers]
    total = LayerCounts("total", *(sum(getattr(r, f.name) for r in rows)
                                   for f in fields(LayerCounts)[1:-1]),
                        max(r.max_depth for r in rows))
    return rows, total
