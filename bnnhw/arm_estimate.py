"""Latency of the firmware on a named ARM core without one: an **estimate**, never a measurement.

No ARM hardware is needed (or used): the AArch64 firmware runs under qemu-user, whose TCG
plugin (``insnmix.c`` from the machine's shared tools, see :func:`insnmix_source`) counts the
guest instructions it executes, exactly and repeatably; ``llvm-mca``'s scheduling model of the
core turns instructions into cycles. Per compute layer:

* **instructions**: ``bnn_bench`` (AArch64, NEON) on the layer's shape in count mode, one call
  (``count(-r 1) - count(-r 0)``), the kernel with its threshold and output packing;
* **cycles per instruction**: llvm-mca's cycles of the layer's compiled inner block (the same
  straight-line blocks as ``benchmarks/fw_bench.py``: ``bnn_mca_group16`` /
  ``bnn_mca_layer16`` / ``bnn_mca_quad_half`` / ``bnn_mca_mb64`` from ``bnn_neon.c``) divided
  by the block's instructions;
* **estimate** = instructions x that CPI, at the core's assumed clock (:data:`ARM_CORES`).

The whole network: the instructions of one image (the AArch64 runner under qemu with two
images minus one image: input quantisation, pooling and every layer included), the layers'
estimated cycles plus the other instructions at the layers' average CPI. llvm-mca assumes L1
hits and perfect branch prediction, so these are **lower bounds** of the real time.
"""

import glob
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .errors import InputError, ToolError

__all__ = ["ARM_CORES", "arm_estimate", "find_llvm_mca", "insnmix_source"]

#: Named cores: the llvm-mca model, the clock assumed and the board that has one.
ARM_CORES = {
    "cortex-a53": {"mcpu": "cortex-a53", "clock_ghz": 1.2, "board": "Raspberry Pi 3"},
    "cortex-a72": {"mcpu": "cortex-a72", "clock_ghz": 1.5, "board": "Raspberry Pi 4"},
}

#: Window shapes (kh, words per row) with a constant-size kernel body (bnn_neon.c BNN_FIXED).
_FIXED_BODIES = {(3, 3), (3, 6), (3, 12), (1, 1), (1, 2), (1, 4)}


def _run(cmd, what, **kw):
    try:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    except OSError as e:
        raise ToolError(f"{what}: cannot run {cmd[0]!s} ({e})") from None
    if proc.returncode:
        raise ToolError(f"{what} failed (exit {proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    return proc


def insnmix_source():
    """The qemu TCG plugin source: ``$BNNHW_QEMU_INSN`` (the file or its folder), else
    ``tools/qemu-insn/insnmix.c`` in the shared folder beside the repository."""
    env = os.environ.get("BNNHW_QEMU_INSN")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "tools" / "qemu-insn" for p in here.parents[1:4]]
    for c in candidates:
        f = c / "insnmix.c" if c.is_dir() else c
        if f.is_file():
            return f
    raise ToolError("the ARM estimate needs the qemu instruction-counting plugin insnmix.c "
                    "(set BNNHW_QEMU_INSN to it; looked in "
                    + ", ".join(str(c) for c in candidates) + ")")


def find_llvm_mca():
    """``(path, version)`` of the newest llvm-mca on ``PATH`` or in ``/usr/lib/llvm-*/bin``."""
    found = {}
    for d in [*os.environ.get("PATH", "").split(os.pathsep), *glob.glob("/usr/lib/llvm-*/bin")]:
        for f in glob.glob(os.path.join(d or ".", "llvm-mca*")):
            if re.fullmatch(r"llvm-mca(?:-\d+)?", os.path.basename(f)) and os.access(f, os.X_OK):
                found.setdefault(os.path.realpath(f), f)
    best = None
    for path in found.values():
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"LLVM version (\d+)\.(\d+)\.(\d+)", out)
        if m:
            version = tuple(int(v) for v in m.groups())
            if best is None or version > best[1]:
                best = (path, version)
    if best is None:
        raise ToolError("the ARM estimate needs llvm-mca (Debian 12: apt-get install llvm-19)")
    return best[0], ".".join(map(str, best[1]))


class _Insns:
    """Executed AArch64 instructions under qemu-aarch64 with the insnmix plugin."""

    def __init__(self, work):
        self.plugin = Path(work) / "libinsnmix.so"
        if not self.plugin.exists():
            glib = _run(["pkg-config", "--cflags", "--libs", "glib-2.0"],
                        "pkg-config glib-2.0 (Debian: libglib2.0-dev)").stdout.split()
            tmp = self.plugin.with_name(".libinsnmix.so.tmp")
            _run(["gcc", "-shared", "-fPIC", "-O2", "-o", tmp, insnmix_source(), *glib],
                 "building the qemu plugin")
            tmp.replace(self.plugin)

    def total(self, binary, args):
        proc = _run(["qemu-aarch64", "-plugin", self.plugin, "-d", "plugin", binary, *args],
                    f"qemu-aarch64 {Path(binary).name}")
        m = re.search(r"insns_total (\d+)", proc.stderr + proc.stdout)
        if m is None:
            raise ToolError("the qemu plugin printed no instruction count")
        return int(m.group(1))


class _Mca:
    """llvm-mca cycles of the straight-line blocks of ``bnn_neon.c`` compiled with -DBNN_MCA."""

    #: Compiled blocks per (work folder, block), shared by the cores of one process.
    _blocks = {}

    def __init__(self, work, tool):
        self.work, self.tool = Path(work), tool
        self.cache = self._blocks.setdefault(str(self.work), {})

    def block(self, name, defines):
        from .gen.firmware import firmware_dir
        tag = name + "".join("_" + d.replace("=", "") for d in defines)
        if tag in self.cache:
            return self.cache[tag]
        src = firmware_dir()
        asm = self.work / f"mca_{tag}.s"
        # Complete unrolling of the constant-length loops, as the fixed-shape bodies are.
        _run(["aarch64-linux-gnu-gcc", "-std=c99", "-O3", "-march=armv8-a", "-DBNN_HAVE_NEON",
              "-DBNN_MCA", *[f"-D{d}" for d in defines], "--param",
              "max-completely-peel-times=300", "--param", "max-completely-peeled-insns=100000",
              f"-I{src / 'include'}", "-S", "-o", asm, src / "src" / "bnn_neon.c"],
             f"compiling the llvm-mca block {name}")
        lines = asm.read_text().splitlines()
        body = []
        for line in lines[lines.index(f"{name}:") + 1:]:
            t = line.strip()
            if t == "ret":
                break
            if t and not t.startswith((".", "//", "#")) and not t.endswith(":"):
                body.append("\t" + t)
        if any(re.match(r"\s*(b|b\.\w+|bl|cbn?z|tbn?z)\s", t) for t in body):
            raise ToolError(f"the llvm-mca block {name} {defines} is not straight-line code")
        path = self.work / f"mca_{tag}_body.s"
        path.write_text("\n".join(body) + "\n")
        self.cache[tag] = (path, len(body))
        return self.cache[tag]

    def cycles(self, name, defines, mcpu):
        """``(cycles per block, instructions per block)``."""
        path, n = self.block(name, defines)
        out = _run([self.tool, "-mtriple=aarch64", f"-mcpu={mcpu}", "-iterations=200", path],
                   "llvm-mca").stdout
        return int(re.search(r"Total Cycles:\s+(\d+)", out).group(1)) / 200, n


def _layer_block(mca, info, mcpu):
    """``(cycles, instructions, description)`` of the inner block the layer's kernel runs, or
    ``None`` when no straight-line block models it (the multi-bit layer's int32 path)."""
    from .model.layers import BinaryDense, MultibitConv2d
    layer = info.layer
    if isinstance(layer, MultibitConv2d):
        k = layer.fan_in
        if k > 255:
            return None
        cyc, n = mca.cycles("bnn_mca_mb64", [f"BNN_MCA_K={k}"], mcpu)
        return cyc, n, f"1 px x 64 ch, k={k}"
    if isinstance(layer, BinaryDense):
        kh, kw, rw = 1, 1, -(-layer.fan_in // 64)
    else:
        c = info.input_shape[0]
        kh, kw = layer.kernel
        rw = kw * -(-c // 64)
    nw = kh * rw
    regs = (kh, rw) in _FIXED_BODIES and nw <= 9
    groups = -(-layer.out_channels // 16)
    if (not isinstance(layer, BinaryDense) and (kh, kw, rw) == (3, 3, 3)
            and layer.stride == 1 and groups % 4 == 0):
        cyc, n = mca.cycles("bnn_mca_quad_half", [], mcpu)
        return cyc, n, "2x2 px x 8 ch, 9 words"
    if nw == 9 and regs:
        cyc, n = mca.cycles("bnn_mca_group16", [], mcpu)
    else:
        cyc, n = mca.cycles("bnn_mca_layer16", [f"BNN_MCA_NW={nw}", f"BNN_MCA_REGS={int(regs)}"],
                            mcpu)
    return cyc, n, f"1 px x 16 ch, {nw} words"




def _counts(net, work, insns, root):
    """Instructions of one image (whole runner) and of each compute layer's call."""
    from .flow import Build
    from .flow.steps import runner_path
    from .gen import firmware as fw
    from .model.layers import COMPUTE_TYPES
    key = (net.fingerprint(), str(work))
    if key in _COUNTS:
        return _COUNTS[key]
    build = Build.of(net, root=root)
    # One image through the whole AArch64 runner: two images minus one.
    runner = runner_path(build, build.run("firmware", target="aarch64", impl="neon"))
    x = np.random.default_rng(0).integers(0, 256, (2, *net.input_shape), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="bnnhw-arm-") as tmp:
        counts = []
        for n in (1, 2):
            inp = Path(tmp) / f"in{n}.bin"
            fw.write_input(net, x[:n], inp)
            counts.append(insns.total(runner, ["-k", "neon", inp, Path(tmp) / f"out{n}.bin"]))
    # Per compute layer: bnn_bench on its shape, count mode (no clock reads, no printing).
    bench = fw.build_bench(work, target="aarch64", impl="neon")
    layers = {}
    for info in net.infos:
        if isinstance(info.layer, COMPUTE_TYPES):
            shape = list(map(str, fw.bench_args(info)))
            layers[info.name] = (insns.total(bench, ["-k", "neon", "-c", "-r", "1", *shape])
                                 - insns.total(bench, ["-k", "neon", "-c", "-r", "0", *shape]))
    _COUNTS[key] = (counts[1] - counts[0], layers)
    return _COUNTS[key]


#: Instruction counts per (model fingerprint, work folder), for several cores in one process.
_COUNTS = {}


def arm_estimate(net, core, *, clock_ghz=None, work=None, root=None):
    """Estimated single-image latency of ``net``'s firmware on the ARM ``core``.

    Parameters
    ----------
    net : bnnhw.model.Network
    core : str
        A name in :data:`ARM_CORES`.
    clock_ghz : float or None
        The clock assumed (default the core's, :data:`ARM_CORES`).
    work : path-like or None
        Folder for the plugin, the bench binary and the llvm-mca blocks (default: the
        model's build folder, ``arm/``).

    Returns
    -------
    dict
        ``{"core", "clock_ghz", "estimate": True, "method", "llvm_mca", "total_us",
        "instructions_per_image", "layers": {layer: us}, "per_layer": [{layer,
        instructions, block, block_cycles, block_instructions, cpi, cycles, us}]}``.
    """
    from .flow import Build
    if core not in ARM_CORES:
        raise InputError(f"ARM core must be one of {', '.join(ARM_CORES)}, not {core!r}")
    spec = ARM_CORES[core]
    clock = float(clock_ghz or spec["clock_ghz"])
    if not 0 < clock < 10:
        raise InputError(f"ARM clock must be in GHz between 0 and 10, not {clock:g}")
    for tool in ("qemu-aarch64", "aarch64-linux-gnu-gcc", "gcc", "make", "pkg-config"):
        if shutil.which(tool) is None:
            raise ToolError(f"the ARM estimate needs {tool} on PATH (scripts/setup.sh installs "
                            f"it)")
    mca_tool, mca_version = find_llvm_mca()
    work = Path(work) if work is not None else Build.of(net, root=root).path("arm")
    work.mkdir(parents=True, exist_ok=True)
    image_insns, layer_counts = _counts(net, work, _Insns(work), root)
    mca = _Mca(work, mca_tool)
    infos = {info.name: info for info in net.infos}
    rows = []
    for name, n in layer_counts.items():
        block = _layer_block(mca, infos[name], spec["mcpu"])
        rows.append({"layer": name, "instructions": n,
                     "block": block[2] if block else None,
                     "block_cycles": block[0] if block else None,
                     "block_instructions": block[1] if block else None,
                     "cpi": block[0] / block[1] if block else None})
    modeled = [r for r in rows if r["cpi"] is not None]
    if not modeled:
        raise ToolError(f"no layer of {net.name!r} has an llvm-mca block to model")
    avg = sum(r["instructions"] * r["cpi"] for r in modeled) / sum(r["instructions"]
                                                                    for r in modeled)
    for r in rows:
        r["cycles"] = r["instructions"] * (r["cpi"] if r["cpi"] is not None else avg)
        r["us"] = r["cycles"] / (clock * 1e3)
    rest = max(0, image_insns - sum(r["instructions"] for r in rows))
    total_cycles = sum(r["cycles"] for r in rows) + rest * avg
    return {"core": core, "clock_ghz": clock, "board": spec["board"], "estimate": True,
            "llvm_mca": f"llvm-mca {mca_version}",
            "method": "AArch64 instructions executed (qemu-user + insnmix, exact) x cycles "
                      "per instruction of the layer's inner block (llvm-mca model: L1 hits, "
                      "perfect branches), at the assumed clock: a lower bound",
            "instructions_per_image": image_insns, "other_instructions": rest,
            "average_cpi": avg, "total_cycles": total_cycles,
            "total_us": total_cycles / (clock * 1e3),
            "layers": {r["layer"]: r["us"] for r in rows}, "per_layer": rows}
