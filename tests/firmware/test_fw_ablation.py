"""Paper 1's ablation variants (benchmarks/fw_bench.py) agree bit for bit where they should."""

import subprocess

import numpy as np
import pytest

from fw_helpers import CONFIGS, make

pytestmark = pytest.mark.firmware


def bench_out(binary, emulator, args, tmp_path):
    out = tmp_path / "o.bin"
    cmd = ([emulator] if emulator else []) + [str(binary), "-r", "1", "-o", str(out),
                                              *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def build_ablation_bench(fw_root, config):
    target, impl, emulator = CONFIGS[config]
    build = fw_root / "ablation" / config
    make(f"TARGET={target}", f"IMPL={impl}", f"BUILD={build}", "EXTRA_CFLAGS=-DBNN_ABLATION",
         "bench")
    return build / "bnn_bench", emulator


def variant_outputs(binary, emulator, shape, tmp_path):
    """Outputs of one layer: folded thresholds (the reference), float batch norm, int8, int32,
    and the scalar twin's thresholded and int32 outputs (the twin is checked against NumPy
    references in test_fw_kernels.py)."""
    thr = bench_out(binary, emulator, ["bconv", *shape, 0], tmp_path)
    fbn = bench_out(binary, emulator, ["-f", "bconv", *shape, 0], tmp_path)
    i8 = np.frombuffer(bench_out(binary, emulator, ["bconv", *shape, 1], tmp_path), np.int8)
    i32 = np.frombuffer(bench_out(binary, emulator, ["bconv", *shape, 2], tmp_path), "<i4")
    twin = (bench_out(binary, emulator, ["-k", "scalar", "bconv", *shape, 0], tmp_path),
            np.frombuffer(bench_out(binary, emulator, ["-k", "scalar", "bconv", *shape, 2],
                                    tmp_path), "<i4"))
    return thr, fbn, i8, i32, twin


def check_variants(thr, fbn, i8, i32, twin):
    """The ablation's comparisons: float BN == folded thresholds, clip(int32) == int8, and the
    NEON outputs == the scalar twin's."""
    assert len(twin[0]) == len(thr) and twin[0] == thr, "thresholded bits != scalar twin's"
    assert np.array_equal(twin[1], i32), "int32 y != scalar twin's"
    assert len(fbn) == len(thr) and fbn == thr, \
        "float batch norm (exact parameters) != folded thresholds"
    assert i8.shape == i32.shape and np.array_equal(np.clip(i32, -127, 127), i8), \
        "clip(int32 y) != int8 output"
    # the thresholded bits are the int32 values against the bench's thresholds: check that
    # they are not constant (the comparison above would be vacuous)
    assert len(set(thr)) > 2


SHAPES = ([64, 6, 7, 64, 3, 3, 1, 1, 1], [48, 5, 5, 40, 3, 3, 2, 1, -1])


@pytest.mark.parametrize("config", ["host-neon", "aarch64", "armv7"])
def test_float_bn_and_int8_variants(fw_root, tmp_path, config):
    binary, emulator = build_ablation_bench(fw_root, config)
    for shape in SHAPES:
        check_variants(*variant_outputs(binary, emulator, shape, tmp_path))


def flip_bit(data, bit):
    """bytes or an int8 array with bit number `bit` (of its bytes, LSB first) flipped."""
    raw = bytearray(data if isinstance(data, bytes) else np.asarray(data).tobytes())
    raw[bit // 8] ^= 1 << (bit % 8)
    return bytes(raw) if isinstance(data, bytes) else np.frombuffer(bytes(raw), data.dtype)


@pytest.mark.parametrize("config", ["host-neon", "aarch64"])
def test_ablation_one_corrupted_bit_fails(fw_root, tmp_path, config):
    """One bit flipped in either reference output (folded thresholds, int8) is caught."""
    binary, emulator = build_ablation_bench(fw_root, config)
    thr, fbn, i8, i32, twin = variant_outputs(binary, emulator, SHAPES[1], tmp_path)
    check_variants(thr, fbn, i8, i32, twin)
    rng = np.random.default_rng(0)
    for _ in range(3):
        # the folded-threshold output is the reference of the float batch-norm variant
        bad = flip_bit(thr, int(rng.integers(0, 8 * len(thr))))
        with pytest.raises(AssertionError, match="float batch norm"):
            check_variants(bad, fbn, i8, i32, (bad, twin[1]))
        # the scalar twin's output is the reference of the NEON kernel
        bad = flip_bit(twin[0], int(rng.integers(0, 8 * len(thr))))
        with pytest.raises(AssertionError, match="scalar twin"):
            check_variants(thr, fbn, i8, i32, (bad, twin[1]))
        # int8 output: the reference of clip(int32)
        bad = flip_bit(i8, int(rng.integers(0, 8 * i8.size)))
        with pytest.raises(AssertionError, match="int8 output"):
            check_variants(thr, fbn, bad, i32, twin)
