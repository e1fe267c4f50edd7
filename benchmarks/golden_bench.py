"""Golden-model throughput (images/s) on CNV and LFC, beside a plain float-GEMM NumPy baseline.

Run: .venv/bin/python benchmarks/golden_bench.py [--batch 512] [--repeats 7]
Prints a table and writes the "Golden model" section of BENCHMARKS.md.

Both implementations run in the same process on the same random images, their repeats
interleaved (golden, baseline, golden, ...) so that both see the same machine load; the
reported rates are medians. The golden scores are checked bit for bit against the slow
independent reference of the tests on a few images first.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import bnnhw  # noqa: E402
from bnnhw import golden  # noqa: E402
from bnnhw.model import BinaryConv2d, BinaryDense, MaxPool, MultibitConv2d, Output, Threshold  # noqa: E402
from reference import forward_reference  # noqa: E402
from report import SHARED_DATA, markdown_table, update_section  # noqa: E402

GOALS = [("cnvW1A1_cifar10", 150), ("lfcW1A1_mnist", 20000)]

#: Pause after every timed call: OpenBLAS's own threads spin for ~0.1 s after a
#: multi-threaded call (the baseline's), and would otherwise compete with the next call.
SETTLE_SECONDS = 0.3


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


def interleaved_medians(fns, batch, repeats):
    """Median images/s of each function, the repeats of all functions interleaved; also the
    median images per CPU-second of this process (all its threads) for each."""
    wall = [[] for _ in fns]
    cpu = [[] for _ in fns]
    for _ in range(repeats):
        for fn, w, c in zip(fns, wall, cpu):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            w.append(time.perf_counter() - start)
            c.append(time.process_time() - start_cpu)
            time.sleep(SETTLE_SECONDS)
    return ([batch / statistics.median(t) for t in wall],
            [batch / statistics.median(t) for t in cpu])


def one_core_sgemm_gflops(repeats=5):
    """Median float32 GEMM rate of one BLAS thread on an LFC-sized product (512x1024x1024)."""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, (512, 1024)).astype(np.float32)
    w = rng.choice(np.float32([-1, 1]), (1024, 1024))
    times = []
    with threadpool_limits(1, user_api="blas"):
        a @ w.T
        for _ in range(repeats):
            start = time.process_time()
            for _ in range(4):
                a @ w.T
            times.append((time.process_time() - start) / 4)
    return 2 * 512 * 1024 * 1024 / statistics.median(times) / 1e9


def blas_description():
    try:
        from threadpoolctl import threadpool_info
        info = [i for i in threadpool_info() if i["user_api"] == "blas"]
    except ImportError:
        info = []
    blas = ", ".join(f"{i['internal_api']} {i['version']} ({i.get('architecture', '?')} "
                     f"kernels, {i['num_threads']} threads)" for i in info) or "unknown BLAS"
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    return blas + (f", OPENBLAS_CORETYPE={coretype}" if coretype else
                   ", OPENBLAS_CORETYPE not set")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512, help="images per call (>= 256)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    if args.batch < 256:
        parser.error("--batch must be at least 256")
    rng = np.random.default_rng(0)
    rows, limits = [], []
    load_start = os.getloadavg()[0]
    gflops = one_core_sgemm_gflops()
    for name, goal in GOALS:
        net = bnnhw.load_model(SHARED_DATA / "bnn-pynq" / f"{name}.npz")
        x = rng.integers(0, 256, (args.batch, *net.input_shape), dtype=np.uint8)
        assert np.array_equal(golden.forward(net, x[:4]), forward_reference(net, x[:4]))
        assert np.array_equal(plain_float_gemm(net, x[:8]), golden.predict(net, x[:8]))
        golden.forward(net, x[:64])                                   # warm-up
        (ours, base), (ours_cpu, _) = interleaved_medians(
            [lambda: golden.forward(net, x), lambda: plain_float_gemm(net, x)],
            args.batch, args.repeats)
        rows.append((name, args.batch, f"{ours:,.0f}", f"{base:,.0f}", f"{ours / base:.2f}x",
                     f"{goal:,}", "yes" if ours >= goal else "no", f"{ours_cpu:,.0f}"))
        macs = net.total_operations
        per_core = gflops * 1e9 / (2 * macs)
        limits.append(f"{name}: {macs / 1e6:.2f} M multiply-accumulates per image, so one "
                      f"core's float32 GEMM ({gflops:.0f} GFLOP/s measured here, one BLAS "
                      f"thread, CPU time) allows at most {per_core:,.0f} images/s; the golden "
                      f"model reaches {ours_cpu:,.0f} per CPU-second "
                      f"({100 * ours_cpu / per_core:.0f} % of it); {goal:,} images/s needs "
                      f"{goal / ours_cpu:.2f} cores' worth of CPU at that rate.")
    load_end = os.getloadavg()[0]
    header = ("model", "batch", "golden images/s", "plain float64 GEMM images/s", "ratio",
              "goal", "meets goal", "golden images per CPU-second")
    table = markdown_table(header, rows)
    print(table)
    cpus = golden.THREADS or len(os.sched_getaffinity(0))
    machine = (f"{platform.processor() or platform.machine()}, {cpus} CPUs for this process "
               f"(shared with other jobs: load average {load_start:.2f} at the start, "
               f"{load_end:.2f} at the end); NumPy {np.__version__}, {blas_description()}")
    print(machine)
    for line in limits:
        print(line)
    if not args.no_write:
        cmd = (f"`.venv/bin/python benchmarks/golden_bench.py --batch {args.batch} "
               f"--repeats {args.repeats}`")
        body = (f"Command: {cmd}  \n"
                f"Golden model (`bnnhw.golden.forward`, {cpus} worker threads with one BLAS "
                f"thread each) against the plain baseline (one float64 GEMM per layer over "
                f"the whole batch, multi-threaded BLAS), both in the same run on the same "
                f"random images, repeats interleaved; median of {args.repeats} calls each. "
                f"Machine: {machine}. Compare within this table, not across runs. The last "
                f"column divides by the CPU time of the process instead of wall time (its "
                f"workers do not spin-wait, so it is the rate per fully available core, about "
                f"half of what two idle cores would give); the baseline's multi-threaded BLAS "
                f"spin-waits, so no such column for it.\n\n{table}\n\n"
                f"What bounds the rate (the matrix products are most of the work; for CNV, "
                f"im2col and pooling take most of the rest):\n\n"
                + "\n".join(f"- {line}" for line in limits))
        update_section("Golden model", body)


if __name__ == "__main__":
    main()
