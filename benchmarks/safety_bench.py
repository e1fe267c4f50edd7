"""What the untrusted-input checks cost: checked readers against NumPy's, side by side.

For each file the checked reader of bnnhw (header first, sizes against the limits, read into
one array) and the plain NumPy / gzip reader it replaced run alternately in one process;
the table gives medians of the repeats and their ratio. Also: ``load_model`` as a whole, and
the cost of verifying a skipped build step's outputs by digest (what makes a cut-short
runner rebuild instead of breaking every later run).

    .venv/bin/python benchmarks/safety_bench.py [--repeats 15] [--no-write]
"""

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from report import SHARED_DATA, markdown_table, update_section  # noqa: E402


def _median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _pair(name, checked, plain, repeats):
    # Alternate so that both see the same caches and machine load.
    a, b = [], []
    for _ in range(repeats):
        a.append(_median_ms(checked, 1))
        b.append(_median_ms(plain, 1))
    ca, pb = statistics.median(a), statistics.median(b)
    return [name, f"{ca:.2f}", f"{pb:.2f}", f"{ca / pb:.2f}x"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    from bnnhw import load_model
    from bnnhw.model.safeio import NpzArchive, read_idx, read_npy

    rows = []
    for name in ("lfcW1A1_mnist", "cnvW1A1_cifar10"):
        path = SHARED_DATA / "bnn-pynq" / f"{name}.npz"

        def checked(path=path):
            with NpzArchive(path) as archive:
                archive.read_all()

        def plain(path=path):
            with np.load(path, allow_pickle=False) as data:
                {k: data[k] for k in data.files}
        rows.append(_pair(f"{name}.npz: all arrays", checked, plain, args.repeats))

    with tempfile.TemporaryDirectory() as tmp:
        x = np.random.default_rng(0).integers(0, 256, (10000, 3, 32, 32), dtype=np.uint8)
        npy = Path(tmp) / "x.npy"
        np.save(npy, x)
        rows.append(_pair("inputs .npy, 10000x3x32x32 uint8 (30 MB)",
                          lambda: read_npy(npy), lambda: np.load(npy, allow_pickle=False),
                          args.repeats))

        idx = SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz"

        def plain_idx():
            with gzip.open(idx, "rb") as f:
                raw = f.read()
            dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(raw[3])]
            np.frombuffer(raw, np.uint8, offset=4 + 4 * raw[3]).reshape(dims)
        rows.append(_pair("MNIST images IDX .gz (7.8 MB inflated)", lambda: read_idx(idx),
                          plain_idx, args.repeats))

        # A skipped step: outputs checked by size and SHA-256 against build.json, or only
        # for existence (what the flow did before).
        from bnnhw.demo import example_model_path
        from bnnhw.flow import Build
        build = Build.of(load_model(example_model_path()), root=Path(tmp) / "root")
        record = build.run("generate")
        size = sum(build.path(p).stat().st_size for p in record["outputs"])
        rows.append(_pair(f"skip check of a generate step ({size / 1e3:.0f} kB of outputs)",
                          lambda: build._intact(record, full=True),
                          lambda: all(build.path(p).exists() for p in record["outputs"]),
                          args.repeats))

    load_rows = []
    for name in ("lfcW1A1_mnist", "cnvW1A1_cifar10"):
        path = SHARED_DATA / "bnn-pynq" / f"{name}.npz"
        load_rows.append([f"load_model({name}.npz)",
                          f"{_median_ms(lambda: load_model(path), args.repeats):.1f}"])

    table = markdown_table(["what", "checked (ms)", "plain (ms)", "checked / plain"], rows)
    loads = markdown_table(["what", "median (ms)"], load_rows)
    body = (f"Command: `.venv/bin/python benchmarks/safety_bench.py --repeats {args.repeats}` "
            f"(medians of {args.repeats} alternating runs, one process, a shared 2-core "
            f"machine).\n\nThe checked readers (`bnnhw.model.safeio`: header first, sizes "
            f"against `bnnhw.limits`, read into one array) against the NumPy / gzip readers "
            f"they replaced, and the digest check of a skipped build step against the "
            f"existence check it replaced:\n\n{table}\n\nWhole model loads (schema, readers, "
            f"layer checks, BN folding):\n\n{loads}\n")
    print(body)
    if not args.no_write:
        update_section("Untrusted-input checks", body)


if __name__ == "__main__":
    main()
