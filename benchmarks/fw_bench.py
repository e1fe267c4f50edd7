"""Firmware benchmarks: AArch64 instructions (qemu-insn), llvm-mca cycle estimates, host time.

Run: .venv/bin/python benchmarks/fw_bench.py [--build build/fw_bench] [--repeats 15]
     [--llvm-mca PATH] [--lce-venv /tmp/lce-venv]
Prints the tables and writes the "Firmware" section of BENCHMARKS.md.

Three kinds of numbers, never mixed:
* **instructions**: AArch64 (or ARMv7) guest instructions executed under qemu-user, counted by
  the TCG plugin /work/shared/tools/qemu-insn/insnmix.c (built here into the build folder).
  Exact and repeatable; one call = count(run with the call) - count(run without it), both in
  bnn_bench's count mode (-c: no timing code in the difference).
* **model estimates**: llvm-mca cycles of the inner block for Cortex-A53 / Cortex-A72
  (L1 hits, perfect branches: lower bounds), turned into time at an assumed clock. The newest
  llvm-mca found is used (llvm-mca-N on PATH or /usr/lib/llvm-N/bin, else plain llvm-mca;
  `--llvm-mca PATH` picks one); its version is printed and recorded with the table.
* **measured time**: host (x86) wall time, medians of repeated runs, all variants in one run.
"""

import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
import bnnhw  # noqa: E402
from bnnhw.gen import firmware as fw  # noqa: E402
from bnnhw.model import BinaryDense, MultibitConv2d  # noqa: E402
from report import SHARED_DATA, markdown_table, update_section  # noqa: E402

FIRMWARE = ROOT / "firmware"
QEMU_INSN = ROOT.parent / "shared" / "tools" / "qemu-insn" / "insnmix.c"
REF = ["64", "56", "56", "64", "3", "3", "1", "1", "1"]   # 3x3, 56x56x64 -> 64, pad 1 (+1)
REF_GROUPS = 56 * 56 * 64 // 16                           # (pixel, 16-channel group) blocks
ROUNDS = 5                                                # interleaved host timing rounds
REF_QUAD_HALVES = 28 * 28 * 64 // 8                       # (2x2 pixels, 8 channels) blocks
PEERS = {"Larq Compute Engine (AArch64 asm, indirect BGEMM)": 4.34e6,
         "daBNN bconv_3x3 (im2col + kernel)": 5.03e6}
CLOCKS = {"cortex-a53": 1.2e9, "cortex-a72": 1.5e9}        # Raspberry Pi 3 / Pi 4 clocks


def sh(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode:
        raise SystemExit(f"command failed: {' '.join(map(str, cmd))}\n{proc.stderr[-2000:]}")
    return proc


def make_bench(build, name, target, impl, extra=""):
    out = build / name
    sh(["make", "-s", "-f", str(FIRMWARE / "Makefile"), f"TARGET={target}", f"IMPL={impl}",
        f"BUILD={out}", f"EXTRA_CFLAGS={extra}", "bench"])
    return out / "bnn_bench"


class Insns:
    """Executed guest instructions under qemu-user with the insnmix plugin."""

    def __init__(self, build):
        self.plugin = build / "libinsnmix.so"
        glib = sh(["pkg-config", "--cflags", "--libs", "glib-2.0"]).stdout.split()
        sh(["gcc", "-shared", "-fPIC", "-O2", "-o", str(self.plugin), str(QEMU_INSN), *glib])

    def total(self, binary, args, emulator="qemu-aarch64"):
        proc = sh([emulator, "-plugin", str(self.plugin), "-d", "plugin", str(binary),
                   *map(str, args)])
        m = re.search(r"insns_total (\d+)", proc.stderr + proc.stdout)
        return int(m.group(1))

    def per_call(self, binary, args, emulator="qemu-aarch64"):
        """Instructions of one bench call: run with -r 1 minus run with -r 0, in count mode
        (-c: no clock reads or printed median, whose formatting costs a value-dependent number
        of instructions), so the difference is the call alone, the same on every run."""
        return (self.total(binary, ["-c", "-r", "1", *args], emulator)
                - self.total(binary, ["-c", "-r", "0", *args], emulator))


def host_ns(binary, args, repeats):
    out = sh([str(binary), "-r", str(repeats), *map(str, args)]).stdout
    return float(re.search(r"ns_median ([0-9.]+)", out).group(1))


#: the x86 kernel paths of a host SIMD build, in the order of the tables
X86_PATHS = {"avx2": "AVX2 (vpshufb nibble popcount)",
             "avx512bw": "AVX-512 BW (vpshufb nibble popcount)",
             "avx512vpopcnt": "AVX-512 VPOPCNTDQ (vpopcntq)"}


def bench_kernels(binary):
    """The kernel paths a host bench binary runs on this CPU (bnn_bench -l), best first."""
    return sh([str(binary), "-l"]).stdout.split()


def bench_output(binary, args, emulator=None):
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        sh(([emulator] if emulator else []) + [str(binary), "-r", "1", "-o", f.name,
                                                 *map(str, args)])
        return Path(f.name).read_bytes()


def find_llvm_mca(explicit=None):
    """(path, version) of the llvm-mca to use: the newest versioned one, else plain llvm-mca."""
    if explicit:
        path = shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
        if path is None:
            raise SystemExit(f"fw_bench: --llvm-mca {explicit}: not found")
        candidates = [path]
    else:
        found = {}
        for d in [*os.environ.get("PATH", "").split(os.pathsep), *glob.glob("/usr/lib/llvm-*/bin")]:
            for f in glob.glob(os.path.join(d or ".", "llvm-mca*")):
                m = re.fullmatch(r"llvm-mca(?:-(\d+))?", os.path.basename(f))
                if m and os.access(f, os.X_OK):
                    found.setdefault(os.path.realpath(f), f)
        candidates = list(found.values())
        if not candidates:
            raise SystemExit("fw_bench needs llvm-mca (Debian 12: apt-get install llvm-19; "
                             "scripts/setup.sh tries it)")
    best = None
    for path in candidates:
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"LLVM version (\d+)\.(\d+)\.(\d+)", out)
        if m is None:
            continue
        version = tuple(int(v) for v in m.groups())
        if best is None or version > best[1]:
            best = (path, version)
    if best is None:
        raise SystemExit(f"fw_bench: no working llvm-mca among {candidates}")
    return best[0], ".".join(map(str, best[1]))


class Mca:
    """llvm-mca cycles of straight-line blocks compiled from bnn_neon.c with -DBNN_MCA."""

    def __init__(self, build, llvm_mca):
        self.build, self.tool = build, llvm_mca
        self.cache = {}

    def block(self, name, defines):
        """The instructions of function `name` compiled with `defines` (up to its ret)."""
        tag = name + "".join("_" + d.replace("=", "") for d in defines)
        if tag in self.cache:
            return self.cache[tag]
        asm = self.build / f"mca_{tag}.s"
        # complete unrolling of the constant-length loops (window words, multi-bit fan-in),
        # as the fixed-shape kernel bodies are unrolled
        sh(["aarch64-linux-gnu-gcc", "-std=c99", "-O3", "-march=armv8-a", "-DBNN_HAVE_NEON",
            "-DBNN_MCA", *[f"-D{d}" for d in defines], "--param", "max-completely-peel-times=300",
            "--param", "max-completely-peeled-insns=100000", f"-I{FIRMWARE / 'include'}",
            "-S", "-o", str(asm), str(FIRMWARE / "src" / "bnn_neon.c")])
        lines = asm.read_text().splitlines()
        start = lines.index(f"{name}:")
        body = []
        for line in lines[start + 1:]:
            t = line.strip()
            if t == "ret":
                break
            if t and not t.startswith((".", "//", "#")) and not t.endswith(":"):
                body.append("\t" + t)
        branches = [t for t in body if re.match(r"\s*(b|b\.\w+|bl|cbn?z|tbn?z)\s", t)]
        if branches:
            raise SystemExit(f"fw_bench: {name} {defines} is not straight-line: {branches[:3]}")
        path = self.build / f"mca_{tag}_body.s"
        path.write_text("\n".join(body) + "\n")
        self.cache[tag] = (path, len(body))
        return self.cache[tag]

    def cycles(self, name, defines, cpu):
        path, n = self.block(name, defines)
        out = sh([self.tool, "-mtriple=aarch64", f"-mcpu={cpu}", "-iterations=200",
                  str(path)]).stdout
        return int(re.search(r"Total Cycles:\s+(\d+)", out).group(1)) / 200, n


def mca_reference(m, cpu):
    """llvm-mca cycles per (pixel, 16-channel group) block of the 3x3, C = 64 kernel."""
    return m.cycles("bnn_mca_group16", [], cpu)


#: window shapes (kh, words per row) with a constant-size kernel body (bnn_neon.c, BNN_FIXED)
FIXED_BODIES = {(3, 3), (3, 6), (3, 12), (1, 1), (1, 2), (1, 4)}


def mca_layer(m, info, cpu):
    """Estimated cycles of one compute layer: block cycles x blocks, and the block used."""
    layer = info.layer
    if isinstance(layer, MultibitConv2d):
        _, ho, wo = info.output_shape
        k = layer.fan_in
        if k > 255:
            return None, "fan-in > 255: int32 path, no block"
        cyc, n = m.cycles("bnn_mca_mb64", [f"BNN_MCA_K={k}"], cpu)
        return cyc * ho * wo * -(-layer.out_channels // 64), f"1 px x 64 ch, k={k} ({n} insns)"
    if isinstance(layer, BinaryDense):
        kh, rw, pixels = 1, -(-layer.fan_in // 64), 1
    else:
        c = info.input_shape[0]
        kh, kw = layer.kernel
        rw = kw * -(-c // 64)
        _, ho, wo = info.output_shape
        pixels = ho * wo
    nw = kh * rw
    regs = (kh, rw) in FIXED_BODIES and nw <= 9
    groups = -(-layer.out_channels // 16)
    if (not isinstance(layer, BinaryDense) and (kh, kw, rw) == (3, 3, 3)
            and layer.stride == 1 and groups % 4 == 0):
        # the 2x2-block kernel; an odd last row / column in single pixels
        _, ho, wo = info.output_shape
        quads = (ho // 2) * (wo // 2)
        cq, nq = m.cycles("bnn_mca_quad_half", [], cpu)
        c1, _ = mca_reference(m, cpu)
        cyc = cq * quads * groups * 2 + c1 * (pixels - 4 * quads) * groups
        return cyc, f"2x2 px x 8 ch, 9 words ({nq} insns)"
    if nw == 9 and regs:
        cyc, n = mca_reference(m, cpu)
    else:
        cyc, n = m.cycles("bnn_mca_layer16", [f"BNN_MCA_NW={nw}", f"BNN_MCA_REGS={int(regs)}"],
                          cpu)
    return cyc * pixels * groups, f"1 px x 16 ch, {nw} words ({n} insns)"


class Lce:
    """Larq Compute Engine on the reference layer (benchmarks/lce_bench.py --serve in its own
    venv): converted and checked once, then timed in rounds interleaved with bnnhw's."""

    def __init__(self, python, build, repeats):
        rng = np.random.default_rng(0)
        x = (rng.random((56, 56, 64)) < 0.5).astype(np.uint8)            # bits, 1 = +1
        w = np.where(rng.random((64, 64, 3, 3)) < 0.5, 1, -1).astype(np.int8)
        xp = np.ones((58, 58, 64), np.float32)                          # padding +1
        xp[1:57, 1:57] = x * 2.0 - 1
        cols = np.stack([xp[dy:dy + 56, dx:dx + 56] for dy in range(3) for dx in range(3)],
                        axis=2)
        wm = np.transpose(w, (2, 3, 1, 0)).reshape(9, 64, 64).astype(np.float32)
        y = np.einsum("hwkc,kco->hwo", cols, wm).astype(np.int32)        # exact: |y| <= 576
        means = rng.integers(-20, 21, 64)
        data = build / "lce_data.npz"
        np.savez(data, x_bits=x, w=w, means=means, y=y, bits=(y >= means).astype(np.int8))
        print("fw_bench: Larq Compute Engine (starting TensorFlow, converting, checking: "
              "1-2 min)", flush=True)
        self.proc = subprocess.Popen([str(python), str(HERE / "lce_bench.py"), str(data),
                                      "--repeats", str(repeats), "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.first = self._line()

    def _line(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("fw_bench: lce_bench.py stopped (see its messages above)")
        return json.loads(line)

    def round(self, repeats):
        """{run name: median ns over `repeats` calls} of one round."""
        self.proc.stdin.write(f"time {repeats}\n")
        self.proc.stdin.flush()
        return {r["name"]: r["ns_median"] for r in self._line()["runs"]}

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        self.proc.wait()


def fmt_m(n):
    return f"{n / 1e6:.3f} M"


def fmt_t(ns):
    return f"{ns / 1e3:.1f} µs" if ns < 1e6 else f"{ns / 1e6:.2f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build" / "fw_bench"))
    ap.add_argument("--repeats", type=int, default=15, help="host timing repetitions")
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--llvm-mca", help="the llvm-mca to use (default: the newest found)")
    ap.add_argument("--lce-venv", help="a virtual environment with Larq Compute Engine (see "
                    "benchmarks/lce_bench.py): adds its x86 interpreter to the host timings")
    args = ap.parse_args()
    lce_python = None
    if args.lce_venv:
        lce_python = Path(args.lce_venv) / "bin" / "python"
        if not lce_python.exists():
            raise SystemExit(f"fw_bench: --lce-venv {args.lce_venv}: no bin/python there")
    for tool in ("make", "gcc", "aarch64-linux-gnu-gcc", "arm-linux-gnueabihf-gcc",
                 "qemu-aarch64", "qemu-arm", "pkg-config"):
        if shutil.which(tool) is None:
            raise SystemExit(f"fw_bench needs {tool} on PATH")
    mca_tool, mca_version = find_llvm_mca(args.llvm_mca)
    mca_name = f"llvm-mca {mca_version}"
    print(f"fw_bench: cycle models from {mca_tool} (LLVM {mca_version})", flush=True)
    cpu = "unknown CPU"
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    build = Path(args.build).resolve()
    build.mkdir(parents=True, exist_ok=True)
    R = args.repeats
    insns = Insns(build)
    mcas = Mca(build, mca_tool)
    b = {
        "a64": make_bench(build, "a64", "aarch64", "neon", "-DBNN_ABLATION"),
        "a64_intr": make_bench(build, "a64_intr", "aarch64", "neon",
                               "-DBNN_ABLATION -DBNN_NO_ASM"),
        "a64_acc32": make_bench(build, "a64_acc32", "aarch64", "neon",
                                "-DBNN_ABLATION -DBNN_ACC32"),
        "a64_pairs": make_bench(build, "a64_pairs", "aarch64", "neon",
                                "-DBNN_ABLATION -DBNN_NO_QUADS"),
        "a64_scalar": make_bench(build, "a64_scalar", "aarch64", "scalar"),
        "v7": make_bench(build, "v7", "armv7", "neon", "-DBNN_ABLATION"),
        "host_scalar": make_bench(build, "host_scalar", "host", "scalar"),
        "host_simde": make_bench(build, "host_simde", "host", "neon", "-DBNN_ABLATION"),
        "host_simde_acc32": make_bench(build, "host_simde_acc32", "host", "neon",
                                       "-DBNN_ABLATION -DBNN_ACC32"),
        "host_native": make_bench(build, "host_native", "host", "scalar", "-march=native"),
    }
    host_paths = [k for k in X86_PATHS if k in bench_kernels(b["host_simde"])]
    best = bench_kernels(b["host_simde"])[0]
    print(f"fw_bench: host kernel paths {', '.join(host_paths) or 'none'}; default {best}",
          flush=True)
    lines = []

    # -- the reference layer ----------------------------------------------------------------
    ref_bits = REF + ["0"]
    rows = []
    a64 = insns.per_call(b["a64"], ["bconv", *ref_bits])
    a64_pack = insns.per_call(b["a64"], ["-p", "bconv", *ref_bits])
    a64_intr = insns.per_call(b["a64_intr"], ["bconv", *ref_bits])
    a64_pairs = insns.per_call(b["a64_pairs"], ["bconv", *ref_bits])
    a64_scalar = insns.per_call(b["a64_scalar"], ["-k", "scalar", "bconv", *ref_bits])
    v7 = insns.per_call(b["v7"], ["bconv", *ref_bits], "qemu-arm")
    rows.append(["bnnhw NEON, AArch64 (asm block: 2x2 pixels x 8 channels per weight load), "
                 "packed in -> thresholded packed out", fmt_m(a64), "1.00"])
    rows.append(["bnnhw NEON, AArch64, previous asm block (pixel pairs, -DBNN_NO_QUADS)",
                 fmt_m(a64_pairs), f"{a64_pairs / a64:.2f}"])
    rows.append(["bnnhw NEON, AArch64, + packing the input from bytes (NEON)", fmt_m(a64_pack),
                 f"{a64_pack / a64:.2f}"])
    rows.append(["bnnhw NEON intrinsics only (-DBNN_NO_ASM), AArch64", fmt_m(a64_intr),
                 f"{a64_intr / a64:.2f}"])
    rows.append(["bnnhw NEON intrinsics, ARMv7 (qemu-arm, A32 instructions)", fmt_m(v7),
                 f"{v7 / a64:.2f}"])
    rows.append(["bnnhw scalar twin, AArch64", fmt_m(a64_scalar), f"{a64_scalar / a64:.2f}"])
    for name, n in PEERS.items():
        rows.append([f"{name} (README of tools/qemu-insn)", fmt_m(n), f"{n / a64:.2f}"])
    lines.append("### Reference layer: 3x3 binary convolution, 56x56x64 -> 64, padding +1\n")
    lines.append("115.6 M binary multiply-accumulates per call. **Instructions executed** "
                 "(qemu-user + insnmix plugin), one call, including the threshold (folded batch "
                 "norm) and packing of the output bits; goal <= 2.9 M (1.5x fewer than LCE's "
                 "assembly kernel; the eor / cnt / accumulate arithmetic alone is 2.71 M). "
                 "Counted in bnn_bench's "
                 "count mode (-c): the call alone, identical on every run (tables before it "
                 "also counted the ~4 k instructions of reading the clock and printing the "
                 "median, whose number varies with the printed value).\n")
    lines.append(markdown_table(["kernel", "instructions", "ratio"], rows))
    lines.append(f"\n**Goal (AArch64 reference layer <= 2.9 M instructions)**: {fmt_m(a64)}, "
                 f"{PEERS['Larq Compute Engine (AArch64 asm, indirect BGEMM)'] / a64:.2f}x fewer "
                 f"than LCE: {'met' if a64 <= 2.9e6 else '**not met**'}.\n")

    # llvm-mca
    rows = []
    for core, clock in CLOCKS.items():
        cyc, n = mca_reference(mcas, core)
        rows.append([core, f"{cyc:.0f}", n, f"{clock / 1e9:.1f} GHz",
                     f"{cyc * REF_GROUPS / clock * 1e3:.2f} ms"])
    lines.append(f"\n**Model estimate** ({mca_name} on the compiled inner block of the "
                 "single-pixel kernel: one pixel x 16 channels = window load, 9 x (2 weight loads, "
                 "8 veor, 8 vcnt, 8 vpadal), reduction, thresholds, packing), times "
                 f"{REF_GROUPS} blocks for the layer. L1 hits and perfect branches: lower bounds "
                 "at the assumed clock.\n")
    lines.append(markdown_table(["CPU model", "cycles / block", "instructions / block",
                                 "clock (assumed)", "layer estimate"], rows))
    rows = []
    for core, clock in CLOCKS.items():
        cyc, n = mcas.cycles("bnn_mca_quad_half", [], core)
        rows.append([core, f"{cyc:.0f}", n, f"{clock / 1e9:.1f} GHz",
                     f"{cyc * REF_QUAD_HALVES / clock * 1e3:.2f} ms"])
    lines.append(f"\nThe same model on the block the kernel runs (2x2 pixels x 8 channels: 9 x "
                 "(1 weight load, 4 x (4 eor, 4 cnt, 3 addp, 1 uadalp)), thresholds, mask "
                 f"packing), times {REF_QUAD_HALVES} blocks for the layer (window loads and the "
                 "final packing of each 2x2 block not counted):\n")
    lines.append(markdown_table(["CPU model", "cycles / block", "instructions / block",
                                 "clock (assumed)", "layer estimate"], rows))

    # host time: every path and LCE, interleaved in ROUNDS rounds (medians of the rounds'
    # medians), so that all rows see the same load of a shared machine
    lce = Lce(lce_python, build, R) if lce_python else None
    variants = {"scalar": (b["host_scalar"], ["-k", "scalar"]),
                "neon": (b["host_simde"], ["-k", "neon"]),
                "native": (b["host_native"], ["-k", "scalar"])}
    variants.update({k: (b["host_simde"], ["-k", k]) for k in host_paths})
    if best in X86_PATHS:
        variants["pack"] = (b["host_simde"], ["-k", best, "-p"])
    per_round = {k: [] for k in variants}
    lce_rounds = []
    for _ in range(ROUNDS):
        for k, (binary, opts) in variants.items():
            per_round[k].append(host_ns(binary, [*opts, "bconv", *ref_bits], R))
        if lce:
            lce_rounds.append(lce.round(R))
    med = {k: statistics.median(v) for k, v in per_round.items()}
    t_scalar, t_simde, t_native = med["scalar"], med["neon"], med["native"]
    t_x86 = {k: med[k] for k in host_paths}
    t_best_pack = med.get("pack")
    # bit-exact: every host path's output equals the scalar twin's
    ref_out = bench_output(b["host_scalar"], ["-k", "scalar", "bconv", *ref_bits])
    exact = {k: bench_output(b["host_simde"], ["-k", k, "bconv", *ref_bits]) == ref_out
             for k in ["neon", *host_paths]}
    if lce:
        lce.close()
        lce_first = lce.first
        lce = dict(lce_first)
        lce["runs"] = [dict(r, ns_median=statistics.median(rd[r["name"]] for rd in lce_rounds))
                       for r in lce_first["runs"]]
    lce_best = min((r["ns_median"] for r in lce["runs"]), default=None) if lce else None

    def vs_lce(ns):
        return f"{lce_best / ns:.2f}" if lce_best else "-"
    rows = [["bnnhw scalar twin (gcc -O3, x86-64 baseline)", fmt_t(t_scalar), "1.00",
             vs_lce(t_scalar), "reference"],
            ["bnnhw NEON intrinsics through SIMDe (x86-64 baseline)", fmt_t(t_simde),
             f"{t_scalar / t_simde:.2f}", vs_lce(t_simde), "yes" if exact["neon"] else "**NO**"],
            ["bnnhw scalar twin with -march=native (hardware popcnt, AVX2 autovectorisation)",
             fmt_t(t_native), f"{t_scalar / t_native:.2f}", vs_lce(t_native), ""]]
    for k in host_paths:
        rows.append([f"**bnnhw {X86_PATHS[k]}**, `-k {k}`" + (" (the default here)"
                                                               if k == best else ""),
                     fmt_t(t_x86[k]), f"{t_scalar / t_x86[k]:.2f}", vs_lce(t_x86[k]),
                     "yes" if exact[k] else "**NO**"])
    if t_best_pack:
        rows.append([f"bnnhw {best}, + packing the input from bytes (AVX2 movemask)",
                     fmt_t(t_best_pack), f"{t_scalar / t_best_pack:.2f}", vs_lce(t_best_pack),
                     ""])
    lce_note = ("Larq Compute Engine: not measured in this run (`--lce-venv PATH`, see "
                "benchmarks/lce_bench.py).")
    if lce:
        for run in lce["runs"]:
            rows.append([f"Larq Compute Engine {lce['versions']['larq-compute-engine']} "
                         f"interpreter, 1 thread: {run['name']}", fmt_t(run["ns_median"]),
                         f"{t_scalar / run['ns_median']:.2f}", vs_lce(run["ns_median"]),
                         "yes" if run["exact"] else "**NO**"])
        exact_lce = all(r["exact"] for r in lce["runs"])
        lce_note = (f"Larq Compute Engine {lce['versions']['larq-compute-engine']} (x86-64 "
                    f"wheel: portable C++ kernels, no ARM assembly; TensorFlow "
                    f"{lce['versions']['tensorflow']} for the conversion, in a separate "
                    "environment), same run: the same layer converted from larq with random "
                    "weights, times of Interpreter.predict (including its packing of the float "
                    "+-1 input and the Python call; bnnhw's rows take packed bits, the "
                    "'+ packing' row bytes). Its outputs (float y, and bits thresholded at "
                    "integer batch-norm means) equal the NumPy reference: " +
                    ("yes, all exact." if exact_lce else "**NO**: " + ", ".join(
                        f"{r['name']} {r['mismatches']} mismatches" for r in lce["runs"]
                        if not r["exact"])))
        fastest = t_x86[best] if best in t_x86 else min(t_scalar, t_native)
        goal = lce_best / fastest
        lce_note += (f"\n\n**Goal (reference layer >= 3x faster than LCE's fastest x86 mode, "
                     f"same run): {goal:.2f}x ({fmt_t(fastest)} vs {fmt_t(lce_best)}): "
                     f"{'met' if goal >= 3 else '**not met**'}.**")
    lines.append(f"\n**Measured host time** ({cpu}; {ROUNDS} rounds of {R} calls of every "
                 "row, LCE's included, one after the other; the median of the rounds' medians; "
                 f"load "
                 f"average {load} at the start: the machine is shared, so compare within a "
                 "table, not across runs). 'Bit-exact': the output equals the scalar twin's, "
                 "byte for byte (the tests compare every path with the golden model):\n")
    lines.append(markdown_table(["build / kernel path", "time per call", "speed-up vs scalar",
                                 "speed-up vs LCE's fastest", "bit-exact"], rows))
    lines.append("\n" + lce_note)

    # -- ablation (paper 1) ---------------------------------------------------------------------
    lines.append("\n### Ablation (paper 1: data flow choices), reference layer\n")
    base_out = bench_output(b["a64_intr"], ["bconv", *ref_bits], "qemu-aarch64")
    acc32_out = bench_output(b["a64_acc32"], ["bconv", *ref_bits], "qemu-aarch64")
    fbn_out = bench_output(b["a64"], ["-f", "bconv", *ref_bits], "qemu-aarch64")
    thr_out = bench_output(b["a64"], ["bconv", *ref_bits], "qemu-aarch64")
    int8_out = np.frombuffer(bench_output(b["a64"], ["bconv", *REF, "1"], "qemu-aarch64"), np.int8)
    int32_out = np.frombuffer(bench_output(b["a64"], ["bconv", *REF, "2"], "qemu-aarch64"),
                              "<i4")
    acc32 = insns.per_call(b["a64_acc32"], ["bconv", *ref_bits])
    fbn = insns.per_call(b["a64"], ["-f", "bconv", *ref_bits])
    i8 = insns.per_call(b["a64"], ["bconv", *REF, "1"])
    i32 = insns.per_call(b["a64"], ["bconv", *REF, "2"])
    h_acc16 = host_ns(b["host_simde"], ["-k", "neon", "bconv", *ref_bits], R)
    h_acc32 = host_ns(b["host_simde_acc32"], ["-k", "neon", "bconv", *ref_bits], R)
    h_fbn = host_ns(b["host_simde"], ["-f", "bconv", *ref_bits], R)
    h_i8 = host_ns(b["host_simde"], ["-k", "neon", "bconv", *REF, "1"], R)
    h_i32 = host_ns(b["host_simde"], ["-k", "neon", "bconv", *REF, "2"], R)
    same = lambda a, c: "yes" if a == c else "NO"  # noqa: E731
    rows = [
        ["accumulators", "16-bit lanes (vcnt + vpadal.u8), intrinsics", fmt_m(a64_intr),
         fmt_t(h_acc16), "reference"],
        ["", "32-bit lanes (vpaddl.u8 + vpadal.u16), intrinsics", fmt_m(acc32), fmt_t(h_acc32),
         same(acc32_out, base_out)],
        ["batch norm", "folded integer threshold, packed bits", fmt_m(a64), fmt_t(t_simde),
         "reference"],
        ["", "float BN (int32 y, vcvt, vmla, vcge) then packing", fmt_m(fbn), fmt_t(h_fbn),
         same(fbn_out, thr_out)],
        ["intermediate data", "int8 clipped (SPEC §4), 1 byte per value", fmt_m(i8),
         fmt_t(h_i8), "reference"],
        ["", "int32 y, 4 bytes per value", fmt_m(i32), fmt_t(h_i32),
         "yes" if np.array_equal(np.clip(int32_out, -127, 127), int8_out) else "NO"],
    ]
    lines.append("AArch64 instructions per call and host time (NEON through SIMDe, so host "
                 "times only rank the variants). 'Bit-exact' compares each variant's output "
                 "with the first row of its group (for int32: clip(y, -127, 127) == the int8 "
                 "output); the float batch norm uses parameters that are multiples of 1/64, "
                 "so float arithmetic is exact and must agree with the folded thresholds.\n")
    lines.append(markdown_table(["choice", "variant", "AArch64 instructions",
                                 "host time (SIMDe)", "bit-exact"], rows))

    # -- per layer and whole networks ---------------------------------------------------------
    # host columns: (title, bench binary, kernel path, runner build)
    host_cols = [("host scalar", b["host_scalar"], "scalar", "scalar"),
                 ("host NEON (SIMDe)", b["host_simde"], "neon", "neon"),
                 ("host native", b["host_native"], "scalar", "native")]
    host_cols += [(f"host {k}", b["host_simde"], k, "neon") for k in host_paths]
    for model in ("cnvW1A1_cifar10", "lfcW1A1_mnist"):
        net = bnnhw.load_model(SHARED_DATA / "bnn-pynq" / f"{model}.npz")
        rows, est_rows = [], []
        tot = [0] + [0.0] * len(host_cols)
        est_tot = dict.fromkeys(CLOCKS, 0.0)
        for block in net.blocks():
            info = block.compute
            la = [str(a) for a in fw.bench_args(info)]
            vals = [insns.per_call(b["a64"], la)]
            rounds = [[host_ns(binary, ["-k", kern, *la], R) for _, binary, kern, _ in host_cols]
                      for _ in range(3)]
            vals += [statistics.median(col) for col in zip(*rounds)]
            for i, v in enumerate(vals):
                tot[i] += v
            shape = "x".join(map(str, info.input_shape))
            rows.append([info.name, info.kind, shape, f"{info.operations / 1e6:.2f} M",
                         fmt_m(vals[0]), *map(fmt_t, vals[1:])])
            est = [info.name]
            for core, clock in CLOCKS.items():
                cyc, what = mca_layer(mcas, info, core)
                est_tot[core] += cyc
                est.append(f"{cyc:,.0f} = {fmt_t(cyc / clock * 1e9)}")
            est_rows.append([*est[:1], what, *est[1:]])
        rows.append(["sum of layers", "", "", f"{net.total_operations / 1e6:.2f} M",
                     fmt_m(tot[0]), *map(fmt_t, tot[1:])])
        est_rows.append(["sum of layers", "", *[
            f"{c:,.0f} = {fmt_t(c / CLOCKS[core] * 1e9)}" for core, c in est_tot.items()]])
        # whole network through the generated runner
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            root = build / "nets"
            r_a64 = fw.generate(net, root / model, target="aarch64")
            runners = {"scalar": fw.generate(net, root / model, target="host", impl="scalar"),
                       "neon": fw.generate(net, root / model, target="host", impl="neon"),
                       "native": fw.generate(net, root / model, target="host", impl="scalar",
                                             extra_cflags="-march=native")}
            x = np.random.default_rng(0).integers(0, 256, (2, *net.input_shape), dtype=np.uint8)
            fw.write_input(net, x[:1], tmp / "one.bin")
            fw.write_input(net, x, tmp / "two.bin")
            per_image = (insns.total(r_a64, [tmp / "two.bin", tmp / "s.bin"])
                         - insns.total(r_a64, [tmp / "one.bin", tmp / "s.bin"]))
            batch = 16 if model.startswith("cnv") else 256
            xb = np.random.default_rng(1).integers(0, 256, (batch, *net.input_shape),
                                                   dtype=np.uint8)
            fw.write_input(net, xb, tmp / "b.bin")

            def runner_ns(runner, kernel):
                err = sh([str(runner), "-k", kernel, "-r", str(R), tmp / "b.bin",
                          tmp / "s.bin"]).stderr
                return float(re.search(r"time_per_image_ns_median ([0-9.]+)", err).group(1))
            # all columns in each of ROUNDS rounds: the same load for every column
            rounds = [[runner_ns(runners[build_], kern) for _, _, kern, build_ in host_cols]
                      for _ in range(ROUNDS)]
            whole = [statistics.median(col) for col in zip(*rounds)]
        rows.append(["**whole network** (runner, per image)", "", "", "", fmt_m(per_image),
                     *map(fmt_t, whole)])
        lines.append(f"\n### {model}: per layer and whole network\n")
        lines.append("Per layer: the compute kernel with its threshold and output packing (pool, "
                     "input quantisation and flatten are only in the whole-network row). "
                     "Instructions: AArch64 under qemu-insn; times: measured on the host, "
                     f"median of 3 rounds of {R} calls (whole network: median of {ROUNDS} "
                     f"rounds of {R} passes of a batch, per image, one core; every column in "
                     "each round); host avx2 / avx512bw / avx512vpopcnt: the x86 kernel "
                     "paths of the default (SIMD) build, forced with -k.\n")
        lines.append(markdown_table(
            ["layer", "kind", "input", "MACs", "AArch64 instructions",
             *[c[0] for c in host_cols]], rows))
        if model.startswith("cnv") and best in host_paths:
            t = whole[[c[2] for c in host_cols].index(best)]
            lines.append(f"\n**Goal (whole CNV per image on one x86 core <= 0.5 ms)**: "
                         f"{fmt_t(t)} with {best}, the default path here: "
                         f"{'met' if t <= 0.5e6 else '**not met**'}.\n")
        lines.append(f"\n**Model estimate per layer** ({mca_name}): the layer's inner block "
                     "(one output pixel x 16 channels, or x 64 for the multi-bit first layer; "
                     "window loads, XOR-popcount or multiply-accumulate steps, thresholds, "
                     "packing), compiled with the layer's window size as a constant, times the "
                     "blocks of the layer; cycles, and time at the assumed clock. L1 hits, "
                     "perfect branches, per-pixel overhead outside the block not counted: lower "
                     "bounds.\n")
        lines.append(markdown_table(
            ["layer", "block", *[f"{core}: cycles = time @ {clock / 1e9:.1f} GHz"
                                 for core, clock in CLOCKS.items()]], est_rows))

    gcc = sh(["gcc", "--version"]).stdout.splitlines()[0]
    qemu = sh(["qemu-aarch64", "--version"]).stdout.splitlines()[0]
    lce_arg = f" --lce-venv {args.lce_venv}" if args.lce_venv else ""
    header = (f"Command: `.venv/bin/python benchmarks/fw_bench.py --repeats {R}{lce_arg}`  \n"
              f"Host: {cpu}, {gcc}; {qemu}; cross compilers aarch64-linux-gnu-gcc / "
              f"arm-linux-gnueabihf-gcc 12 (-O3); cycle models: {mca_name} "
              f"({Path(mca_tool).name}). No ARM hardware here: ARM numbers are "
              "instruction counts (exact, from qemu) or llvm-mca model estimates, never "
              "measured ARM time.\n")
    text = header + "\n" + "\n".join(lines)
    print(text)
    if not args.no_write:
        update_section("Firmware", text)


if __name__ == "__main__":
    main()
