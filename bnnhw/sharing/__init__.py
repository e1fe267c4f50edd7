"""Result sharing for binary convolutions (SPEC §9; Chang et al., DATE 2020). Pure NumPy.

A binary convolution's 3-D filters decompose into 2-D kernels ``W[o, c]``; within an input
channel, repeated kernels share one popcount, inverse kernels read it as ``n - p``, and
similar kernels derive it with a few correction bits (or, in the explicitly requested
approximate mode, reuse it unchanged).

* :mod:`bnnhw.sharing.plan`: the :class:`SharingPlan` data structure (what the golden model,
  the hardware generator, the manifest and the reports read), its invariants and JSON form;
* :mod:`bnnhw.sharing.planner`: :func:`make_plan`, the algorithm and its bounds;
* :mod:`bnnhw.sharing.counts`: operation counts per SPEC §9;
* :mod:`bnnhw.sharing.execute`: the plan's arithmetic, run by
  ``bnnhw.golden.forward(net, x, sharing=plan)``;
* :mod:`bnnhw.sharing.report`: the table and plot of ``bnnhw share``.
"""

from .counts import LayerCounts, layer_counts, plan_counts
from .plan import (ChannelPlan, KernelEntry, LayerPlan, SharingPlan, bits_to_kernel,
                   kernel_bits, parse_mode)
from .planner import binary_convolutions, lower_bound_bits, make_plan, plan_channel

__all__ = ["SharingPlan", "LayerPlan", "ChannelPlan", "KernelEntry", "make_plan",
           "plan_channel", "parse_mode", "kernel_bits", "bits_to_kernel", "binary_convolutions",
           "lower_bound_bits", "LayerCounts", "layer_counts", "plan_counts"]
