"""Golden-model throughput (images/s) on CNV and LFC, beside a plain float-GEMM NumPy baseline.

Run: .venv/bin/python benchmarks/golden_bench.py [--batch 512] [--repeats 5]
Prints a table and writes the "Golden model" section of BENCHMARKS.md.
"""

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bnnhw  # noqa: E402
from bnnhw import golden  # noqa: E402
from bnnhw.model import BinaryConv2d, BinaryDense, MaxPool, MultibitConv2d, Output, Threshold  # noqa: E402
from report import SHARED_DATA, markdown_table, update_section  # noqa: E402


def plain_float_gemm(net, raw):
    """The straightforward implementation the issue compares against: one float64 GEMM per
    layer over the whole batch, activations as +-1 floats, channels first."""
    x = net.quantizer(raw.reshape(raw.shape[0], *net.input_shape)).astype(np.float64)
    if net.quantizer.kind == "threshold":
        x = 2 * x - 1
    for layer in net.layers:
        if isinstance(layer, (BinaryConv2d, MultibitConv2d)):
            kh, kw = layer.kernel
            win = sliding_window_view(x, (kh, kw), axis=(2, 3))      # N C Ho Wo kh kw
            n, c, ho, wo = win.shape[:4]
            cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, -1)
            y = cols @ layer.weight.reshape(layer.weight.shape[0], -1).T.astype(np.float64)
            x = y.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)
        elif isinstance(layer, BinaryDense):
            flat = x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1) if x.ndim == 4 else x
            x = flat @ layer.weight.T.astype(np.float64)
        elif isinstance(layer, Threshold):
            shape = (1, -1) + (1,) * (x.ndim - 2)
            last = x
            x = np.where(x >= layer.thresholds.reshape(shape), 1.0, -1.0)
        elif isinstance(layer, MaxPool):
            x = sliding_window_view(x, (2, 2), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-2, -1))
        elif isinstance(layer, Output):
            if net.output_rule == "margin":
                return np.argmax(last - net.layers[-2].thresholds, axis=1)
            return np.argmax(x, axis=1)


def median_rate(fn, batch, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for name, goal in [("cnvW1A1_cifar10", 150), ("lfcW1A1_mnist", 20000)]:
        net = bnnhw.load_model(SHARED_DATA / "bnn-pynq" / f"{name}.npz")
        x = rng.integers(0, 256, (args.batch, *net.input_shape), dtype=np.uint8)
        assert np.array_equal(plain_float_gemm(net, x[:8]), golden.predict(net, x[:8]))
        golden.forward(net, x[:64])                                   # warm-up
        ours = median_rate(lambda: golden.forward(net, x), args.batch, args.repeats)
        base = median_rate(lambda: plain_float_gemm(net, x), args.batch, args.repeats)
        rows.append((name, args.batch, f"{ours:,.0f}", f"{base:,.0f}", f"{ours / base:.2f}x",
                     f"{goal:,}", "yes" if ours >= goal else "no"))
    header = ("model", "batch", "golden images/s", "plain float64 GEMM images/s", "ratio",
              "goal", "meets goal")
    table = markdown_table(header, rows)
    print(table)
    if not args.no_write:
        cmd = f"`.venv/bin/python benchmarks/golden_bench.py --batch {args.batch} --repeats {args.repeats}`"
        body = (f"Golden model (`bnnhw.golden.forward`) throughput, median of {args.repeats} runs, "
                f"both implementations in the same run on the same random images. "
                f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
                f"(shared, noisy). Command: {cmd}\n\n{table}")
        update_section("Golden model", body)


if __name__ == "__main__":
    main()
