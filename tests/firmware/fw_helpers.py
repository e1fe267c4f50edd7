"""Helpers of the firmware tests: builds, the kernel harness, independent NumPy references."""

import platform
import shutil
import struct
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np

from bnnhw.model.layers import (BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer, MaxPool,
                                MultibitConv2d, Output, Threshold, ThresholdQuantizer)
from bnnhw.model.network import Network

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_file(*parts):
    """A file under ../shared/data; fails (never skips) when it is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        raise AssertionError(f"shared data file {path} is missing")
    return path

#: name -> (make TARGET, make IMPL, emulator)
CONFIGS = {
    "host-scalar": ("host", "scalar", None),
    "host-neon": ("host", "neon", None),        # NEON intrinsics through SIMDe
    "aarch64": ("aarch64", "neon", "qemu-aarch64"),
    "armv7": ("armv7", "neon", "qemu-arm"),
}

#: kernel path ids of the harness (firmware/include/bnn.h, enum bnn_kernel)
KERNEL_IDS = {"scalar": 0, "neon": 1, "avx2": 2, "avx512bw": 3, "avx512vpopcnt": 4}
KERNEL_NAMES = {v: k for k, v in KERNEL_IDS.items()}
X86_KERNELS = ("avx2", "avx512bw", "avx512vpopcnt")

#: (config, kind of test) -> kernel paths that ran: printed at the end of the session
#: (conftest.py) so that a run shows which paths it exercised
PATHS_RUN = defaultdict(set)


def host_cpu_flags():
    """The CPU flags of /proc/cpuinfo (what the CPU and the OS support), or an empty set."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def expected_x86_kernels():
    """The x86 kernel paths this machine must run, from /proc/cpuinfo (independent of the
    firmware's own CPUID check, which the tests check against it)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    f = host_cpu_flags()
    out = []
    if {"avx2", "popcnt"} <= f:
        out.append("avx2")
        if {"avx512f", "avx512bw", "avx512vl"} <= f:
            out.append("avx512bw")
            if "avx512_vpopcntdq" in f:
                out.append("avx512vpopcnt")
    return out


def check_host_paths(kernels, what):
    """Fail unless a host build offers exactly the x86 paths this CPU has (so no SIMD path is
    ever skipped silently on a machine that could run it)."""
    have = [k for k in kernels if k in X86_KERNELS]
    want = expected_x86_kernels()
    assert sorted(have) == sorted(want), (
        f"{what} offers x86 kernel paths {have}, but this CPU (/proc/cpuinfo) supports {want}")
    if "avx2" in host_cpu_flags():
        assert have, f"{what} runs no SIMD path on an x86 CPU with AVX2"

BITS, INT8, INT32 = 0, 1, 2
OP_PACK_FM, OP_PACK_CONV_W, OP_PACK_DENSE_W, OP_BCONV, OP_MBCONV, OP_POOL, OP_QUANT, \
    OP_FLATTEN, OP_SCORES = range(1, 10)


def require_tools(*names):
    """Fail loudly (never skip) when a tool the tests need is missing."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise AssertionError(f"firmware tests need {', '.join(missing)} on PATH")


def make(*args):
    proc = subprocess.run(["make", "--no-print-directory", "-s", "-f",
                           str(FIRMWARE / "Makefile"), *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"make {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
    warnings = [l for l in proc.stderr.splitlines() if "warning:" in l]
    assert not warnings, "compiler warnings:\n" + "\n".join(warnings)


def build_harness(config, build_root, sanitize=False, extra=""):
    target, impl, emulator = CONFIGS[config]
    require_tools("make", "gcc" if target == "host" else
                  {"aarch64": "aarch64-linux-gnu-gcc", "armv7": "arm-linux-gnueabihf-gcc"}[target])
    if emulator:
        require_tools(emulator)
    tag = "".join(c if c.isalnum() else "_" for c in extra)
    build = Path(build_root) / (config + ("-san" if sanitize else "") + tag)
    make(f"TARGET={target}", f"IMPL={impl}", f"BUILD={build}", f"SAN={int(sanitize)}",
         f"EXTRA_CFLAGS={extra}", "harness")
    h = Harness(build / "bnn_harness", emulator, impl == "neon",
                name=config + ("-san" if sanitize else ""))
    if target == "host":
        if impl == "neon":
            check_host_paths(h.kernels, f"the {h.name} harness")
        else:
            assert h.kernels == ["scalar"], f"{h.name} harness offers {h.kernels}"
    return h


class HarnessError(Exception):
    pass


class Harness:
    """One built kernel harness (firmware/tests/bnn_harness.c) and how to run it.

    ``impls``: the kernel path ids it can run on this machine (asked from the harness itself,
    whose CPUID check the host fixtures compare with /proc/cpuinfo), scalar first."""

    def __init__(self, path, emulator, has_neon, name=None):
        self.path, self.emulator, self.has_neon = Path(path), emulator, has_neon
        self.name = name or self.path.parent.name
        cmd = ([emulator] if emulator else []) + [str(self.path), "--kernels"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{cmd}: {proc.stderr}"
        self.kernels = proc.stdout.split()
        self.impls = tuple(sorted(KERNEL_IDS[k] for k in self.kernels))
        assert self.impls[0] == 0 and (1 in self.impls) == has_neon, self.kernels

    def call(self, op, impl, params, arrays, workdir):
        workdir = Path(workdir)
        req, out = workdir / "req.bin", workdir / "out.bin"
        blob = struct.pack("<3i", op, impl, len(params)) + struct.pack(f"<{len(params)}i",
                                                                      *params)
        blob += b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)
        req.write_bytes(blob)
        if out.exists():
            out.unlink()
        cmd = ([self.emulator] if self.emulator else []) + [str(self.path), str(req), str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode:
            raise HarnessError(proc.stderr.strip())
        PATHS_RUN[(self.name, "kernels")].add(KERNEL_NAMES.get(impl, str(impl)))
        return out.read_bytes()


# -- independent references (plain NumPy loops, written for the tests) ------------------------

def ref_conv_int(x_hwc, w_oihw, stride, pad, pad_value):
    """Cross-correlation of integer inputs [H, W, C] with weights [O, C, kh, kw] -> [Ho, Wo, O]."""
    h, w, c = x_hwc.shape
    o, _, kh, kw = w_oihw.shape
    xp = np.full((h + 2 * pad, w + 2 * pad, c), pad_value, np.int64)
    xp[pad:pad + h, pad:pad + w] = x_hwc
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (w + 2 * pad - kw) // stride + 1
    out = np.zeros((ho, wo, o), np.int64)
    wt = w_oihw.astype(np.int64)
    for oy in range(ho):
        for ox in range(wo):
            win = xp[oy * stride:oy * stride + kh, ox * stride:ox * stride + kw]  # kh kw c
            out[oy, ox] = np.einsum("yxc,ocyx->o", win, wt)
    return out


def ref_binary_conv(bits_hwc, w, stride, pad, pad_value, sat=0):
    """SPEC §2-3: y = 2 min(P, cap) - K of +-1 values (bits 1 = +1)."""
    x = bits_hwc.astype(np.int64) * 2 - 1
    y = ref_conv_int(x, w, stride, pad, pad_value)
    k = int(np.prod(w.shape[1:]))
    if sat:
        p = np.minimum((y + k) // 2, sat)
        y = 2 * p - k
    return y


def ref_threshold(y, t, neg):
    return np.where(neg.astype(bool), y <= t, y >= t).astype(np.uint8)


# -- random networks for whole-network tests ----------------------------------------------------

def _pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, 1, -1).astype(np.int8)


def _thr(rng, name, n, spread, neg_prob=0.3, offset=0):
    t = np.round(rng.normal(offset, spread, n)).astype(np.int64)
    neg = rng.random(n) < neg_prob
    return Threshold(name, t, neg)


def random_networks(seed):
    """Small networks covering every layer kind and option the firmware supports."""
    rng = np.random.default_rng(seed)
    nets = []
    # A: 8-bit codes, multi-bit conv with pad / code padding, strided binary conv with -1
    # padding, pool, dense after a map with C % 64 != 0, clip before a threshold, popcount rule
    k0 = 3 * 9
    nets.append(Network("rand_codes", (3, 9, 9), FixedPointQuantizer(8), [
        MultibitConv2d("c0", _pm1(rng, (16, 3, 3, 3)), pad=1, pad_value=-7),
        _thr(rng, "t0", 16, 60 * np.sqrt(k0)),
        BinaryConv2d("c1", _pm1(rng, (20, 16, 3, 3)), stride=2, pad=1, pad_value=-1),
        _thr(rng, "t1", 20, 6),
        MaxPool("p1", 2),
        BinaryDense("d2", _pm1(rng, (12, 80))),
        Clip("k2", 4),
        _thr(rng, "t2", 12, 4),
        BinaryDense("d3", _pm1(rng, (10, 12))),
        Output(),
    ]))
    # B: binary input, 1x1 conv to 57 channels, 3x3 conv with +1 padding and a saturating
    # accumulator, dense over a 64-channel map, clipped scores
    nets.append(Network("rand_bits", (2, 6, 6), ThresholdQuantizer(100), [
        BinaryConv2d("c0", _pm1(rng, (57, 2, 1, 1))),
        _thr(rng, "t0", 57, 1),
        # K = 513, P ~ 256 +- 11: the 8-bit accumulator (cap 255) saturates about half the time
        BinaryConv2d("c1", _pm1(rng, (64, 57, 3, 3)), pad=1, pad_value=1, acc_bits=8,
                     overflow="saturate"),
        _thr(rng, "t1", 64, 10, offset=-15),
        BinaryDense("d2", _pm1(rng, (10, 64 * 36))),
        Clip("k2", 6),
        Output(),
    ]))
    # C: LFC-like dense chain with margins (negated last channels)
    nets.append(Network("rand_dense", (1, 8, 8), ThresholdQuantizer(128), [
        BinaryDense("d0", _pm1(rng, (30, 64))),
        _thr(rng, "t0", 30, 6),
        BinaryDense("d1", _pm1(rng, (7, 30))),
        _thr(rng, "t1", 7, 4, neg_prob=0.5),
        Output(),
    ]))
    # D: margins of a clipped value; 3x3 stride-2 conv without padding; 2x2 pool stride 1
    nets.append(Network("rand_clipmargin", (5, 8, 8), ThresholdQuantizer(60), [
        BinaryConv2d("c0", _pm1(rng, (33, 5, 3, 3)), stride=2),
        _thr(rng, "t0", 33, 5),
        MaxPool("p0", 2, stride=1),
        BinaryDense("d1", _pm1(rng, (9, 33 * 2 * 2))),
        Clip("k1", 3),
        _thr(rng, "t1", 9, 2, neg_prob=0.5),
        Output(),
    ]))
    return nets


def random_images(net, n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *net.input_shape), dtype=np.uint8)
