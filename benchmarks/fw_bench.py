"""Firmware benchmarks: AArch64 instructions (qemu-insn), llvm-mca cycle estimates, host time.

Run: .venv/bin/python benchmarks/fw_bench.py [--build build/fw_bench] [--repeats 15]
Prints the tables and writes the "Firmware" section of BENCHMARKS.md.

Three kinds of numbers, never mixed:
* **instructions**: AArch64 (or ARMv7) guest instructions executed under qemu-user, counted by
  the TCG plugin /work/shared/tools/qemu-insn/insnmix.c (built here into the build folder).
  Exact and repeatable; one call = count(run with the call) - count(run without it).
* **model estimates**: llvm-mca-19 cycles of the inner block for Cortex-A53 / Cortex-A72
  (L1 hits, perfect branches: lower bounds), turned into time at an assumed clock.
* **measured time**: host (x86) wall time, medians of repeated runs, all variants in one run.
"""

import argparse
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
from bnnhw.model import BinaryConv2d, BinaryDense, MultibitConv2d  # noqa: E402
from report import SHARED_DATA, markdown_table, update_section  # noqa: E402

FIRMWARE = ROOT / "firmware"
QEMU_INSN = ROOT.parent / "shared" / "tools" / "qemu-insn" / "insnmix.c"
REF = ["64", "56", "56", "64", "3", "3", "1", "1", "1"]   # 3x3, 56x56x64 -> 64, pad 1 (+1)
REF_GROUPS = 56 * 56 * 64 // 16                           # (pixel, 16-channel group) blocks
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
        """Instructions of one bench call: run with -r 1 minus run with -r 0."""
        return (self.total(binary, ["-r", "1", *args], emulator)
                - self.total(binary, ["-r", "0", *args], emulator))


def host_ns(binary, args, repeats):
    out = sh([str(binary), "-r", str(repeats), *map(str, args)]).stdout
    return float(re.search(r"ns_median ([0-9.]+)", out).group(1))


def bench_output(binary, args, emulator=None):
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        sh(([emulator] if emulator else []) + [str(binary), "-r", "1", "-o", f.name,
                                                 *map(str, args)])
        return Path(f.name).read_bytes()


def mca(build, cpu):
    """llvm-mca cycles per (pixel, 16-channel group) block of the 3x3, C = 64 kernel."""
    asm = build / "mca.s"
    sh(["aarch64-linux-gnu-gcc", "-std=c99", "-O3", "-march=armv8-a", "-DBNN_HAVE_NEON",
        "-DBNN_MCA", f"-I{FIRMWARE / 'include'}", "-S", "-o", str(asm),
        str(FIRMWARE / "src" / "bnn_neon.c")])
    lines = asm.read_text().splitlines()
    start = lines.index("bnn_mca_group16:")
    body = []
    for line in lines[start + 1:]:
        t = line.strip()
        if t == "ret":
            break
        if t and not t.startswith((".", "//", "#")) and not t.endswith(":"):
            body.append("\t" + t)
    (build / "mca_body.s").write_text("\n".join(body) + "\n")
    out = sh(["llvm-mca-19", "-mtriple=aarch64", f"-mcpu={cpu}", "-iterations=200",
              str(build / "mca_body.s")]).stdout
    cycles = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1)) / 200
    return cycles, len(body)


def layer_args(info):
    """bnn_bench arguments for one compute layer of a network."""
    layer = info.layer
    if isinstance(layer, BinaryDense):
        return ["bconv", layer.fan_in, 1, 1, layer.out_channels, 1, 1, 1, 0, 1]
    c, h, w = info.input_shape
    kh, kw = layer.kernel
    op = "mbconv" if isinstance(layer, MultibitConv2d) else "bconv"
    return [op, c, h, w, layer.out_channels, kh, kw, layer.stride, layer.pad, layer.pad_value]


def fmt_m(n):
    return f"{n / 1e6:.3f} M"


def fmt_t(ns):
    return f"{ns / 1e3:.1f} µs" if ns < 1e6 else f"{ns / 1e6:.2f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=str(ROOT / "build" / "fw_bench"))
    ap.add_argument("--repeats", type=int, default=15, help="host timing repetitions")
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = ap.parse_args()
    for tool in ("make", "gcc", "aarch64-linux-gnu-gcc", "arm-linux-gnueabihf-gcc",
                 "qemu-aarch64", "qemu-arm", "llvm-mca-19", "pkg-config"):
        if shutil.which(tool) is None:
            raise SystemExit(f"fw_bench needs {tool} on PATH")
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
    b = {
        "a64": make_bench(build, "a64", "aarch64", "neon", "-DBNN_ABLATION"),
        "a64_intr": make_bench(build, "a64_intr", "aarch64", "neon",
                               "-DBNN_ABLATION -DBNN_NO_ASM"),
        "a64_acc32": make_bench(build, "a64_acc32", "aarch64", "neon",
                                "-DBNN_ABLATION -DBNN_ACC32"),
        "a64_scalar": make_bench(build, "a64_scalar", "aarch64", "scalar"),
        "v7": make_bench(build, "v7", "armv7", "neon", "-DBNN_ABLATION"),
        "host_scalar": make_bench(build, "host_scalar", "host", "scalar"),
        "host_simde": make_bench(build, "host_simde", "host", "neon", "-DBNN_ABLATION"),
        "host_simde_acc32": make_bench(build, "host_simde_acc32", "host", "neon",
                                       "-DBNN_ABLATION -DBNN_ACC32"),
        "host_native": make_bench(build, "host_native", "host", "scalar", "-march=native"),
    }
    lines = []

    # -- the reference layer ----------------------------------------------------------------
    ref_bits = REF + ["0"]
    rows = []
    a64 = insns.per_call(b["a64"], ["bconv", *ref_bits])
    a64_pack = insns.per_call(b["a64"], ["-p", "bconv", *ref_bits])
    a64_intr = insns.per_call(b["a64_intr"], ["bconv", *ref_bits])
    a64_scalar = insns.per_call(b["a64_scalar"], ["-k", "scalar", "bconv", *ref_bits])
    v7 = insns.per_call(b["v7"], ["bconv", *ref_bits], "qemu-arm")
    rows.append(["bnnhw NEON, AArch64 (asm block: pixel pairs), packed in -> thresholded packed "
                 "out", fmt_m(a64), "1.00"])
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
                 "norm) and packing of the output bits; goal <= 3.3 M.\n")
    lines.append(markdown_table(["kernel", "instructions", "ratio"], rows))

    # llvm-mca
    rows = []
    for core, clock in CLOCKS.items():
        cyc, n = mca(build, core)
        rows.append([core, f"{cyc:.0f}", n, f"{clock / 1e9:.1f} GHz",
                     f"{cyc * REF_GROUPS / clock * 1e3:.2f} ms"])
    lines.append("\n**Model estimate** (llvm-mca-19 on the compiled inner block of the "
                 "single-pixel kernel: one pixel x 16 channels = window load, 9 x (2 weight loads, "
                 "8 veor, 8 vcnt, 8 vpadal), reduction, thresholds, packing), times "
                 f"{REF_GROUPS} blocks for the layer. L1 hits and perfect branches: lower bounds "
                 "at the assumed clock. (The pixel-pair block in the table above executes ~5 % "
                 "fewer instructions than this block.)\n")
    lines.append(markdown_table(["CPU model", "cycles / block", "instructions / block",
                                 "clock (assumed)", "layer estimate"], rows))

    # host time
    t_scalar = host_ns(b["host_scalar"], ["-k", "scalar", "bconv", *ref_bits], R)
    t_simde = host_ns(b["host_simde"], ["bconv", *ref_bits], R)
    t_native = host_ns(b["host_native"], ["-k", "scalar", "bconv", *ref_bits], R)
    rows = [["scalar twin (gcc -O3, x86-64 baseline)", fmt_t(t_scalar), "1.00"],
            ["NEON intrinsics through SIMDe (x86-64 baseline)", fmt_t(t_simde),
             f"{t_scalar / t_simde:.2f}"],
            ["scalar twin with -march=native (hardware popcnt, AVX2 autovectorisation)",
             fmt_t(t_native), f"{t_scalar / t_native:.2f}"]]
    lines.append(f"\n**Measured host time** ({cpu}; median of {R} calls, same run; load "
                 f"average {load} at the start: the machine is shared, so compare within a "
                 "table, not across runs):\n")
    lines.append(markdown_table(["build", "time per call", "speed-up vs scalar"], rows))

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
    h_acc16 = host_ns(b["host_simde"], ["bconv", *ref_bits], R)
    h_acc32 = host_ns(b["host_simde_acc32"], ["bconv", *ref_bits], R)
    h_fbn = host_ns(b["host_simde"], ["-f", "bconv", *ref_bits], R)
    h_i8 = host_ns(b["host_simde"], ["bconv", *REF, "1"], R)
    h_i32 = host_ns(b["host_simde"], ["bconv", *REF, "2"], R)
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
    for model in ("cnvW1A1_cifar10", "lfcW1A1_mnist"):
        net = bnnhw.load_model(SHARED_DATA / "bnn-pynq" / f"{model}.npz")
        rows = []
        tot = [0, 0.0, 0.0, 0.0]
        for block in net.blocks():
            info = block.compute
            la = [str(a) for a in layer_args(info)]
            n = insns.per_call(b["a64"], la)
            ts = host_ns(b["host_scalar"], ["-k", "scalar", *la], R)
            tn = host_ns(b["host_simde"], la, R)
            tv = host_ns(b["host_native"], ["-k", "scalar", *la], R)
            for i, v in enumerate((n, ts, tn, tv)):
                tot[i] += v
            shape = "x".join(map(str, info.input_shape))
            rows.append([info.name, info.kind, shape, f"{info.operations / 1e6:.2f} M",
                         fmt_m(n), fmt_t(ts), fmt_t(tn), fmt_t(tv)])
        rows.append(["sum of layers", "", "", f"{net.total_operations / 1e6:.2f} M",
                     fmt_m(tot[0]), fmt_t(tot[1]), fmt_t(tot[2]), fmt_t(tot[3])])
        # whole network through the generated runner
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            root = build / "nets"
            r_a64 = fw.generate(net, root / model, target="aarch64")
            r_s = fw.generate(net, root / model, target="host", impl="scalar")
            r_n = fw.generate(net, root / model, target="host", impl="neon")
            r_v = fw.generate(net, root / model, target="host", impl="scalar",
                              extra_cflags="-march=native")
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
            ws, wn, wv = runner_ns(r_s, "scalar"), runner_ns(r_n, "neon"), \
                runner_ns(r_v, "scalar")
        rows.append(["**whole network** (runner, per image)", "", "", "", fmt_m(per_image),
                     fmt_t(ws), fmt_t(wn), fmt_t(wv)])
        lines.append(f"\n### {model}: per layer and whole network\n")
        lines.append("Per layer: the compute kernel with its threshold and output packing (pool, "
                     "input quantisation and flatten are only in the whole-network row). "
                     "Instructions: AArch64 under qemu-insn; times: measured on the host, "
                     f"median of {R} (whole network: median over {R} passes of a batch, per "
                     "image).\n")
        lines.append(markdown_table(
            ["layer", "kind", "input", "MACs", "AArch64 instructions", "host scalar",
             "host NEON (SIMDe)", "host native"], rows))

    gcc = sh(["gcc", "--version"]).stdout.splitlines()[0]
    qemu = sh(["qemu-aarch64", "--version"]).stdout.splitlines()[0]
    header = (f"Command: `.venv/bin/python benchmarks/fw_bench.py --repeats {R}`  \n"
              f"Host: {cpu}, {gcc}; {qemu}; cross compilers aarch64-linux-gnu-gcc / "
              "arm-linux-gnueabihf-gcc 12 (-O3). No ARM hardware here: ARM numbers are "
              "instruction counts (exact, from qemu) or llvm-mca model estimates, never "
              "measured ARM time.\n")
    text = header + "\n" + "\n".join(lines)
    print(text)
    if not args.no_write:
        update_section("Firmware", text)


if __name__ == "__main__":
    main()
