"""Firmware backend: C headers for the NEON / scalar runner, builds, and runs under qemu-user.

:func:`generate` turns a :class:`~bnnhw.model.Network` into ``generated/bnn_model_data.h`` (packed
weights, folded thresholds, the layer table) and builds ``firmware/``'s runner for a target;
:func:`run` feeds raw input bytes to that runner (natively, or under ``qemu-aarch64`` /
``qemu-arm``) and returns the scores, which equal :func:`bnnhw.golden.forward` bit for bit.

What the generator decides (the C side only executes it):

* weights are packed by :mod:`bnnhw.model.packing` (the one bit convention), ``[oc][kh][kw][words]``
  for convolutions and ``[oc][words]`` for dense layers, 64-bit words;
* a clipping block in front of a threshold is folded into the threshold (SPEC §4-5): a threshold
  outside the clip range becomes one that always or never fires, and thresholds are clamped
  to the range the compared value can reach, so they fit ``int32``
  (:func:`bnnhw.plan.tables.value_thresholds`);
* the last compute layer writes ``int32`` values, from which the runner forms the scores of
  SPEC §8 (popcount, clipped or margin).
"""

import hashlib
import os
import re
import struct
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from .. import procs
from ..errors import ModelError, ToolError
from ..golden import check_input
from ..model.layers import (BinaryConv2d, BinaryDense, FixedPointQuantizer, MultibitConv2d,
                            ThresholdQuantizer)
from ..model.packing import pack_bits, to_bits
from ..plan.tables import value_thresholds
from ..outputs import atomic_write, write_marker
from ..tools import C_COMPILERS, EMULATORS, require

__all__ = ["TARGETS", "KERNELS", "firmware_dir", "header_text", "generate", "generate_folder",
           "build_runner", "run", "c_string", "run_runner", "write_input", "read_scores",
           "check_target", "host_runner", "runner_kernels", "chosen_kernel", "build_bench", "bench_args"]

#: Targets: C compiler, extra make variables, emulator (None: runs natively).
TARGETS = {target: {"cc": cc, "package": package, "emulator": EMULATORS.get(target)}
           for target, (cc, package) in C_COMPILERS.items()}

#: Kernel paths of the firmware (firmware/include/bnn.h, enum bnn_kernel), by name: a runner
#: built with ``impl="neon"`` holds the NEON kernels (through SIMDe on x86) and, on an x86-64
#: host, the AVX2 / AVX-512 ones, and picks the fastest the CPU runs unless told otherwise
#: (``kernel=``, or the ``BNNHW_KERNEL`` environment variable).
KERNELS = ("scalar", "neon", "avx2", "avx512bw", "avx512vpopcnt")

MAX_K = 65534          # firmware/include/bnn.h BNN_MAX_K (16-bit accumulator lanes)
MODEL_MAGIC = 0x4D4E4E42
MODEL_VERSION = 1
INPUT_MAGIC = b"BNNHWIN1"
SCORES_MAGIC = b"BNNHWSC1"
KIND = {MultibitConv2d: 1, BinaryConv2d: 2, BinaryDense: 3}
RULES = {"popcount": 0, "clipped": 1, "margin": 2}


def firmware_dir():
    """The firmware source folder (package data ``bnnhw.firmware``)."""
    here = Path(str(resources.files("bnnhw.firmware")))
    if not (here / "Makefile").exists():
        raise ToolError(f"firmware sources not found at {str(here)!r} (the bnnhw installation "
                        f"is incomplete)")
    return here


def check_target(target, *, emulator=True):
    """Validate ``target`` and check its tools; raise :class:`ToolError` naming what is missing."""
    if target not in TARGETS:
        raise ToolError(f"firmware target must be one of {', '.join(TARGETS)}, not {target!r}")
    info = TARGETS[target]
    require("make", "make", what="building the firmware")
    require(info["cc"], info["package"], what=f"firmware target {target!r}", kind="C compiler")
    if emulator and info["emulator"]:
        require(info["emulator"], "qemu-user", what=f"running firmware target {target!r}",
                kind="emulator")
    return info


# -- the layer table --------------------------------------------------------------------------

def _c_array(ctype, name, values, per_line=8, fmt=str):
    values = list(values)
    lines = []
    for i in range(0, len(values), per_line):
        lines.append("    " + ", ".join(fmt(v) for v in values[i:i + per_line]) + ",")
    body = "\n".join(lines) if lines else "    0"
    return f"static const {ctype} {name}[{max(len(values), 1)}] = {{\n{body}\n}};\n"


def _u64(v):
    return f"0x{int(v):016x}ULL"


_C_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-. ")


def c_string(text):
    """``text`` as a C string literal: characters outside ``[A-Za-z0-9_-. ]`` become octal
    escapes of their UTF-8 bytes (so no quote, backslash, newline, trigraph or comment
    delimiter can end the literal). Names are checked at load already; this is the second
    line of defence, in the one place that writes C."""
    out = []
    for ch in text:
        if ch in _C_SAFE:
            out.append(ch)
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode("utf-8"))
    return '"' + "".join(out) + '"'


def c_comment_text(text):
    """``text`` reduced to ``[A-Za-z0-9_-. ]`` for a C comment (never ``*/``)."""
    return "".join(ch if ch in _C_SAFE else "_" for ch in text)


def _layer_entries(net):
    """Per block: the C table fields and the arrays they point at."""
    blocks = net.blocks()
    entries = []
    first = True
    for index, block in enumerate(blocks):
        layer = block.compute.layer
        last = index == len(blocks) - 1
        shape = block.compute.input_shape
        e = {"name": layer.name, "kind": KIND[type(layer)], "oc": layer.out_channels,
             "kh": 1, "kw": 1, "stride": 1, "pad": 0, "pad_value": 1, "sat": 0, "clip": 0,
             "flatten": 0, "fc": 0, "fh": 0, "fw": 0, "pool_k": 0, "pool_s": 0,
             "out": 2 if last else 0, "arrays": {}}
        if isinstance(layer, BinaryDense):
            k = layer.fan_in
            e.update(c=k, h=1, w=1)
            if len(shape) == 3 and shape[1] * shape[2] > 1 and not first:
                e.update(flatten=1, fc=shape[0], fh=shape[1], fw=shape[2])
            bits = to_bits(layer.weight)                               # [oc, K]
            e["arrays"]["wbits"] = pack_bits(bits, 64).reshape(-1)
        else:
            c, h, w = shape
            kh, kw = layer.kernel
            e.update(c=c, h=h, w=w, kh=kh, kw=kw, stride=layer.stride, pad=layer.pad,
                     pad_value=layer.pad_value)
            if isinstance(layer, BinaryConv2d):
                bits = np.moveaxis(to_bits(layer.weight), 1, -1)          # [oc, kh, kw, c]
                e["arrays"]["wbits"] = pack_bits(bits, 64).reshape(-1)
            else:
                e["arrays"]["wcodes"] = layer.weight.reshape(-1).astype(np.int8)
        if isinstance(layer, MultibitConv2d):
            if layer.input_bits > 8:
                raise ModelError(f"layer {layer.name!r}: the firmware takes input codes of at "
                                 f"most 8 bits, not {layer.input_bits}")
            bound = layer.fan_in << (layer.input_bits - 1)
        else:
            if layer.fan_in > MAX_K:
                raise ModelError(f"layer {layer.name!r}: the firmware's 16-bit accumulators "
                                 f"hold K up to {MAX_K}, not K={layer.fan_in}")
            if layer.saturates:
                e["sat"] = (1 << layer.accumulator_bits) - 1
            bound = layer.fan_in
        clip = block.clip.layer.limit if block.clip else None
        if block.threshold and not last:
            t, neg = value_thresholds(block.threshold.layer, clip, bound)
            e["arrays"]["thr"] = t.astype(np.int32)
            e["arrays"]["neg"] = neg.astype(np.uint8)
        elif not last:
            raise ModelError(f"layer {layer.name!r}: the firmware needs a threshold after "
                             f"every compute layer but the last")
        if last:
            if clip is not None:
                e["clip"] = min(int(clip), 1 << 30)
        if block.pool:
            pool = block.pool.layer
            if last:
                raise ModelError(f"layer {pool.name!r}: the firmware cannot pool the last "
                                 f"layer's integer outputs")
            e.update(pool_k=pool.kernel, pool_s=pool.stride)
        entries.append(e)
        first = False
    return entries


def header_text(net):
    """The C text of ``bnn_model_data.h`` for ``net`` (deterministic for a given network)."""
    if net.output_rule not in RULES:
        raise ModelError(f"the firmware computes {', '.join(RULES)} scores, not "
                         f"{net.output_rule!r}")
    quant = net.quantizer
    out = ["/* Generated by bnnhw.gen.firmware from model "
           f"'{c_comment_text(net.name)}' (id {net.fingerprint()}). Do not edit. */",
           '#include "bnn_model.h"', ""]
    entries = _layer_entries(net)
    for i, e in enumerate(entries):
        for key, arr in e["arrays"].items():
            if key == "wbits":
                out.append(_c_array("uint64_t", f"L{i}_wbits", arr, 4, _u64))
            elif key == "wcodes":
                out.append(_c_array("int8_t", f"L{i}_wcodes", arr, 24))
            elif key == "thr":
                out.append(_c_array("int32_t", f"L{i}_thr", arr, 12))
            elif key == "neg":
                out.append(_c_array("uint8_t", f"L{i}_neg", arr, 24))
    if isinstance(quant, FixedPointQuantizer):
        if quant.bits > 8:
            raise ModelError(f"the firmware takes input codes of at most 8 bits, not "
                             f"{quant.bits}")
        lut = quant(np.arange(256, dtype=np.uint8)).astype(np.int8)
        out.append(_c_array("int8_t", "input_lut", lut, 16))
    rule = net.output_rule
    if rule == "margin":
        thr = net.layers[-2]
        out.append(_c_array("int64_t", "out_thr", np.asarray(thr.thresholds, np.int64), 8,
                            lambda v: f"{int(v)}LL"))
        out.append(_c_array("uint8_t", "out_neg", np.asarray(thr.negate, np.uint8), 24))
    out.append("static const bnn_layer_desc bnn_model_layers[] = {")
    for i, e in enumerate(entries):
        a = e["arrays"]

        def ref(key, name):
            if key in a:
                return f"L{i}_{name}, {len(a[key])}"
            return "0, 0"
        thr = f"L{i}_thr, L{i}_neg, {len(a['thr'])}" if "thr" in a else "0, 0, 0"
        out.append(
            f'    {{{c_string(e["name"])}, {e["kind"]}, {e["c"]}, {e["h"]}, {e["w"]}, {e["oc"]}, '
            f'{e["kh"]}, {e["kw"]}, {e["stride"]}, {e["pad"]}, {e["pad_value"]}, {e["out"]}, '
            f'{e["sat"]}, {e["clip"]}, {ref("wbits", "wbits")}, {ref("wcodes", "wcodes")}, '
            f'{thr}, {e["flatten"]}, {e["fc"]}, {e["fh"]}, {e["fw"]}, {e["pool_k"]}, '
            f'{e["pool_s"]}}},')
    out.append("};")
    c, h, w = net.input_shape
    if isinstance(quant, ThresholdQuantizer):
        qfields = f"0, {int(quant.threshold)}, 0, 0"
    else:
        qfields = "1, 0, input_lut, 256"
    margin = "out_thr, out_neg" if rule == "margin" else "0, 0"
    out.append(
        f"static const bnn_model_desc bnn_model_data = {{\n"
        f"    0x{MODEL_MAGIC:08x}u, {MODEL_VERSION}, {c_string(net.name)}, "
        f"{c_string(net.fingerprint())},\n"
        f"    {c}, {h}, {w}, {qfields},\n"
        f"    {len(entries)}, bnn_model_layers, {net.num_classes}, {RULES[rule]}, {margin}\n"
        f"}};")
    return "\n".join(out) + "\n"


def _write_if_changed(path, text):
    """Write ``text`` to ``path`` unless it holds it already (keeps make's timestamps), through
    a unique temporary file renamed onto it (safe when several processes write at once)."""
    path = Path(path)
    try:
        if path.is_file() and path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return True


#: Characters make and the shell take literally in a path (make splits words at spaces and
#: treats ``:``, ``%``, ``$``, ``#``... specially; recipes pass paths through ``sh``).
_MAKE_SAFE = re.compile(r"[A-Za-z0-9_./+-]+")


def _make_path(path, cwd):
    """``path`` as make should see it when run in ``cwd``: relative when that is safe, else
    through a symbolic link in ``cwd`` (a folder named with spaces or quotes still builds)."""
    path = Path(path).resolve()
    rel = os.path.relpath(path, cwd)
    if _MAKE_SAFE.fullmatch(rel):
        return rel
    link = Path(cwd) / (".make-" + hashlib.sha256(str(path).encode()).hexdigest()[:12])
    if not (link.is_symlink() and os.readlink(link) == str(path)):
        tmp = link.with_name(link.name + f".{os.getpid()}.tmp")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(path, tmp)
        os.replace(tmp, link)
    return link.name


def _make(args, cwd):
    try:
        proc = procs.run(["make", "--no-print-directory", *args], cwd=cwd)
    except OSError as e:
        raise ToolError(f"cannot run make ({e})") from None
    if proc.returncode:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        tail = lines[-1] if lines else "no output"
        raise ToolError(f"building the firmware failed: {tail}")


def generate(net, out_dir, *, target="host", impl="neon", build=True, sanitize=False,
             extra_cflags="", lib_dir=None):
    """Write the C headers for ``net`` and build its runner.

    Parameters
    ----------
    net : bnnhw.model.Network
    out_dir : path
        Receives ``generated/bnn_model_data.h`` and ``build-<target>-<impl>/bnn_runner``.
    target : ``"host"``, ``"aarch64"`` or ``"armv7"``
        ARM runners are linked statically so that qemu-user runs them directly.
    impl : ``"neon"`` or ``"scalar"``
        The SIMD kernels (NEON, through SIMDe on the host, and on an x86-64 host also AVX2 and
        AVX-512, chosen at run time) or only the portable scalar twin.
    build : bool
        Only write the headers when false.
    sanitize : bool
        Host only: build with AddressSanitizer and UndefinedBehaviorSanitizer.
    extra_cflags : str
        Appended to the compiler flags (e.g. ablation macros).
    lib_dir : path, optional
        Where the model-independent kernel library is compiled (default: inside
        ``out_dir``; nothing is ever written beside it).

    Returns
    -------
    pathlib.Path
        The runner executable (or the generated folder when ``build`` is false).

    Raises
    ------
    ModelError
        The network uses something the firmware cannot run (K > 65534, codes wider than 8 bits).
    ToolError
        A compiler, ``make`` or the sources are missing, or the build fails.
    """
    if impl not in ("neon", "scalar"):
        raise ToolError(f"firmware implementation must be 'neon' or 'scalar', not {impl!r}")
    if target not in TARGETS:
        raise ToolError(f"firmware target must be one of {', '.join(TARGETS)}, not {target!r}")
    if sanitize and target != "host":
        raise ToolError("sanitizer builds exist for the host target only")
    text = header_text(net)
    out_dir = Path(out_dir)
    gen = out_dir / "generated"
    _write_if_changed(gen / "bnn_model_data.h", text)
    if not build:
        return gen
    return build_runner(gen, out_dir, target=target, impl=impl, sanitize=sanitize,
                        extra_cflags=extra_cflags, lib_dir=lib_dir)


def generate_folder(net, folder, *, target="host", impl="neon"):
    """:func:`generate` into ``folder`` (a new, empty folder: ``bnnhw firmware -o`` passes the
    temporary folder of :class:`bnnhw.outputs.OutputFolder`), then write its marker
    ``firmware.json`` listing every file, so that a later ``bnnhw firmware -o`` may replace
    it. Returns the runner's path."""
    from ..outputs import folder_files
    runner = generate(net, folder, target=target, impl=impl)
    folder = Path(folder)
    write_marker(folder, "firmware", {
        "version": 1, "model": net.name, "fingerprint": net.fingerprint(), "target": target,
        "impl": impl, "header": "generated/bnn_model_data.h",
        "runner": runner.relative_to(folder).as_posix(),
        "files": [f for f in folder_files(folder) if (folder / f).is_file()
                  or (folder / f).is_symlink()]})
    return runner


def build_runner(gen_dir, out_dir, *, target="host", impl="neon", sanitize=False,
                 extra_cflags="", lib_dir=None):
    """Build the runner from a folder holding ``bnn_model_data.h``; return its path.

    :func:`generate` calls this after writing the header; tests call it on edited headers.
    """
    check_target(target, emulator=False)
    fw = firmware_dir()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{target}-{impl}" + ("-san" if sanitize else "")
    if extra_cflags:
        tag += "-" + hashlib.sha256(extra_cflags.encode()).hexdigest()[:8]
    build_dir = out_dir / f"build-{tag}"
    lib_dir = Path(lib_dir) if lib_dir is not None else out_dir / f"lib-{tag}"
    runner = build_dir / "bnn_runner"
    build_dir.mkdir(parents=True, exist_ok=True)
    lib_dir.mkdir(parents=True, exist_ok=True)
    # make runs in out_dir on relative paths (or links) without spaces: folder names with
    # spaces or shell characters build too.
    cwd = out_dir.resolve()
    gen = _make_path(gen_dir, cwd)
    args = ["-f", str(fw / "Makefile"), f"HERE={_make_path(fw, cwd)}/",
            f"TARGET={target}", f"IMPL={impl}", f"BUILD={_make_path(build_dir, cwd)}",
            f"LIBBUILD={_make_path(lib_dir, cwd)}", f"GEN={gen}",
            f"SAN={1 if sanitize else 0}"]
    if extra_cflags:
        args.append(f"EXTRA_CFLAGS={extra_cflags}")
    # Always relink (make -W: the header counts as new): a runner that was cut short (a full
    # disk, a killed build) is newer than its sources and make would keep it. The link goes
    # to a temporary name renamed onto the runner (firmware/Makefile), so a process running
    # the old runner is never disturbed; the library objects are reused.
    _make(args + ["-W", f"{gen}/bnn_model_data.h", "runner"], cwd)
    return runner


# -- input and output files -------------------------------------------------------------------

def write_input(net, x, path):
    """Write raw images ``x`` (validated like the golden model's input) as a runner input file."""
    raw = check_input(net, x)
    n = raw.shape[0]
    bpi = int(np.prod(raw.shape[1:]))
    header = INPUT_MAGIC + net.fingerprint().encode() + struct.pack("<II", n, bpi)
    with open(path, "wb") as f:
        f.write(header)
        f.write(np.ascontiguousarray(raw).tobytes())
    return n


def read_scores(path, n, classes):
    """Read a runner's scores file and check its header against what was asked."""
    data = Path(path).read_bytes()
    if len(data) < 24 or data[:8] != SCORES_MAGIC:
        raise ToolError(f"firmware scores file {str(path)!r} has no valid header")
    got_n, got_c, size, _ = struct.unpack("<IIII", data[8:24])
    if (got_n, got_c) != (n, classes) or size not in (4, 8) or \
            len(data) != 24 + n * classes * size:
        raise ToolError(f"firmware scores file {str(path)!r} holds {got_n}x{got_c} scores of "
                        f"{size} bytes, expected {n}x{classes}")
    dtype = "<i8" if size == 8 else "<i4"
    return np.frombuffer(data, dtype, offset=24).reshape(n, classes).astype(np.int64)


def run_runner(runner, target, args, timeout=3600):
    """Run a built runner (under qemu-user for ARM targets); return the CompletedProcess."""
    info = check_target(target)
    cmd = ([info["emulator"]] if info["emulator"] else []) + [str(runner), *map(str, args)]
    try:
        return procs.run(cmd, timeout=timeout)
    except OSError as e:
        raise ToolError(f"cannot run {cmd[0]!r} ({e})") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"firmware run timed out after {timeout} s") from None


def host_runner(net, *, target="host", impl="neon", sanitize=False, build_dir=None,
                root=None):
    """The built runner of ``net`` for ``target``: in ``build_dir`` when given, else from the
    build flow's ``firmware`` step (reused while the model, the firmware sources and the
    compiler are unchanged)."""
    if build_dir is not None:
        return generate(net, build_dir, target=target, impl=impl, sanitize=sanitize)
    from ..flow import Build
    from ..flow.steps import runner_path
    build = Build.of(net, root=root)
    return runner_path(build, build.run("firmware", target=target, impl=impl,
                                        sanitize=sanitize))


def run(net, x, *, target="host", build_dir=None, impl="neon", kernel=None, sanitize=False,
        root=None):
    """Scores of raw input bytes ``x`` computed by the C firmware.

    Parameters
    ----------
    net : bnnhw.model.Network
    x : numpy.ndarray of uint8
        As for :func:`bnnhw.golden.forward`.
    target : ``"host"``, ``"aarch64"`` or ``"armv7"``
        ARM targets run under qemu-user.
    build_dir : path, optional
        Where to generate and build (default: the build flow's folder of the model, under
        the build root).
    impl : ``"neon"`` or ``"scalar"``
        Which build (``"neon"``: the SIMD kernels, i.e. NEON, and on an x86-64 host also AVX2
        and AVX-512; ``"scalar"``: the portable scalar twin only).
    kernel : ``None``, ``"auto"`` or one of :data:`KERNELS`
        Which kernel path the runner uses. ``None`` / ``"auto"``: ``BNNHW_KERNEL`` from the
        environment when set, else the fastest path the build and CPU support
        (:func:`chosen_kernel` says which).
    sanitize : bool
        Host only: an ASan + UBSan build.
    root : path, optional
        The build root.

    Returns
    -------
    numpy.ndarray of int64, ``[N, classes]``
        Bit-identical to :func:`bnnhw.golden.forward`.
    """
    raw = check_input(net, x)
    check_target(target)
    _check_kernel(kernel)
    runner = host_runner(net, target=target, impl=impl, sanitize=sanitize,
                         build_dir=build_dir, root=root)
    with tempfile.TemporaryDirectory(prefix="bnnhw-fw-") as tmp:
        inp, outp = Path(tmp) / "input.bin", Path(tmp) / "scores.bin"
        n = write_input(net, raw, inp)
        args = (["-k", kernel] if kernel else []) + [inp, outp]
        proc = run_runner(runner, target, args)
        if proc.returncode:
            lines = proc.stderr.strip().splitlines()
            raise ToolError(f"firmware runner ({target}) failed: "
                            f"{lines[-1] if lines else f'exit code {proc.returncode}'}")
        return read_scores(outp, n, net.num_classes)


def _check_kernel(kernel):
    if kernel is not None and kernel != "auto" and kernel not in KERNELS:
        raise ToolError(f"firmware kernel must be auto or one of {', '.join(KERNELS)}, "
                        f"not {kernel!r}")


def _runner_line(runner, target, args, what):
    proc = run_runner(runner, target, args, timeout=120)
    if proc.returncode:
        lines = proc.stderr.strip().splitlines()
        raise ToolError(f"firmware runner ({target}) failed to {what}: "
                        f"{lines[-1] if lines else f'exit code {proc.returncode}'}")
    return proc.stdout.strip()


def runner_kernels(runner, target="host"):
    """The kernel paths a built runner can use on this machine, fastest first.

    Parameters
    ----------
    runner : path
        A runner from :func:`generate` / :func:`build_runner`.
    target : ``"host"``, ``"aarch64"`` or ``"armv7"``

    Returns
    -------
    list of str
        Names from :data:`KERNELS`, e.g. ``["avx512vpopcnt", "avx512bw", "avx2", "scalar",
        "neon"]`` on an x86-64 host with AVX-512 VPOPCNTDQ (NEON through SIMDe comes last: it
        is slower than the scalar twin there).
    """
    return _runner_line(runner, target, ["-l"], "list its kernels").split()


def chosen_kernel(net, *, target="host", impl="neon", kernel=None, build_dir=None, root=None):
    """The kernel path :func:`run` uses for ``net`` with these arguments on this machine.

    Builds the runner when needed (as :func:`run` does, in the same folder) and asks it, so the
    answer takes the CPU, the build and ``BNNHW_KERNEL`` into account.

    Returns
    -------
    str
        One of :data:`KERNELS`.

    Raises
    ------
    ToolError
        A build fails, or ``kernel`` (or ``BNNHW_KERNEL``) names a path this build and CPU
        cannot run.
    """
    check_target(target)
    _check_kernel(kernel)
    runner = host_runner(net, target=target, impl=impl, build_dir=build_dir, root=root)
    return _runner_line(runner, target, (["-k", kernel] if kernel else []) + ["-q"],
                        "choose its kernel")


def build_bench(out_dir, *, target="host", impl="neon", extra_cflags=""):
    """Build ``bnn_bench`` (the per-layer kernel benchmark, no model needed) in
    ``out_dir/bench-<target>-<impl>[-<cflags hash>]``; return its path.

    Like :func:`build_runner`, make runs in ``out_dir`` on relative paths, so folder names
    with spaces build too; the library objects live beside the bench.
    """
    check_target(target, emulator=False)
    fw = firmware_dir()
    out_dir = Path(out_dir)
    tag = f"{target}-{impl}"
    if extra_cflags:
        tag += "-" + hashlib.sha256(extra_cflags.encode()).hexdigest()[:8]
    build_dir = out_dir / f"bench-{tag}"
    lib_dir = build_dir / "lib"
    lib_dir.mkdir(parents=True, exist_ok=True)
    cwd = out_dir.resolve()
    args = ["-f", str(fw / "Makefile"), f"HERE={_make_path(fw, cwd)}/",
            f"TARGET={target}", f"IMPL={impl}", f"BUILD={_make_path(build_dir, cwd)}",
            f"LIBBUILD={_make_path(lib_dir, cwd)}"]
    if extra_cflags:
        args.append(f"EXTRA_CFLAGS={extra_cflags}")
    _make(args + ["bench"], cwd)
    return build_dir / "bnn_bench"


def bench_args(info):
    """``bnn_bench``'s arguments for one compute layer (a :class:`~bnnhw.model.LayerInfo` of a
    binary dense, binary or multi-bit convolution): ``op C H W O KH KW stride pad pad_value``;
    a dense layer is a 1x1 convolution over its fan-in."""
    from ..model.layers import BinaryDense, MultibitConv2d
    layer = info.layer
    if isinstance(layer, BinaryDense):
        return ["bconv", layer.fan_in, 1, 1, layer.out_channels, 1, 1, 1, 0, 1]
    c, h, w = info.input_shape
    kh, kw = layer.kernel
    op = "mbconv" if isinstance(layer, MultibitConv2d) else "bconv"
    return [op, c, h, w, layer.out_channels, kh, kw, layer.stride, layer.pad, layer.pad_value]
