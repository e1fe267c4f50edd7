"""Malformed input files and malformed model tables give one-line errors, never a crash."""

import re
import struct

import numpy as np
import pytest

from bnnhw.errors import ToolError
from bnnhw.gen import firmware as fw

from fw_helpers import random_networks

pytestmark = pytest.mark.firmware


@pytest.fixture(scope="module")
def codes_net():
    return random_networks(21)[0]        # multi-bit conv, pool, flatten, clip, popcount


@pytest.fixture(scope="module")
def runners(codes_net, tmp_path_factory):
    root = tmp_path_factory.mktemp("fwerr")
    return {"host": fw.generate(codes_net, root / "m", target="host"),
            "san": fw.generate(codes_net, root / "m", target="host", sanitize=True),
            "aarch64": fw.generate(codes_net, root / "m", target="aarch64")}


def valid_input(net, n=2):
    x = np.random.default_rng(0).integers(0, 256, (n, *net.input_shape), dtype=np.uint8)
    header = fw.INPUT_MAGIC + net.fingerprint().encode() + struct.pack("<II", n, x[0].size)
    return header + x.tobytes()


def run_file(runner, target, data, tmp_path):
    inp, out = tmp_path / "in.bin", tmp_path / "out.bin"
    if out.exists():
        out.unlink()
    if data is not None:
        inp.write_bytes(data)
    elif inp.exists():
        inp.unlink()
    proc = fw.run_runner(runner, "host" if target == "san" else target, [inp, out])
    return proc, out.exists()


def corrupt_inputs(net):
    good = valid_input(net)
    fp = net.fingerprint().encode()
    return {
        "bad magic": (b"XNNHWIN1" + good[8:], "bad magic"),
        "other model": (good[:8] + b"0123456789abcdef" + good[24:], "made for another model"),
        "short header": (good[:20], "too short"),
        "empty": (b"", "too short"),
        "zero images": (fw.INPUT_MAGIC + fp + struct.pack("<II", 0, 243), "image count"),
        "bytes per image": (fw.INPUT_MAGIC + fp + struct.pack("<II", 2, 244) + good[32:],
                            "244 bytes per image, expected 243"),
        "truncated data": (good[:-1], "holds 485 data bytes"),
        "extra data": (good + b"\0", "holds 487 data bytes"),
        "huge count": (fw.INPUT_MAGIC + fp + struct.pack("<II", 2 ** 32 - 1, 243) + good[32:],
                       "image count"),
        "missing file": (None, "cannot open input file"),
    }


@pytest.mark.parametrize("target", ["host", "san", "aarch64"])
def test_malformed_input_files(runners, codes_net, tmp_path, target):
    proc, made = run_file(runners[target], target, valid_input(codes_net), tmp_path)
    assert proc.returncode == 0 and made, proc.stderr
    for what, (data, message) in corrupt_inputs(codes_net).items():
        proc, made = run_file(runners[target], target, data, tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode in (2, 4), f"{what}: exit {proc.returncode}, {proc.stderr}"
        assert len(lines) == 1 and lines[0].startswith("bnn_runner: "), f"{what}: {lines}"
        assert message in lines[0], f"{what}: {lines[0]}"
        assert not made, f"{what}: an output file was left behind"


@pytest.mark.parametrize("target", ["host", "aarch64"])
def test_bad_kernel_choice(runners, codes_net, tmp_path, target, monkeypatch):
    """An unknown kernel name or a path this build / CPU lacks, from -k or BNNHW_KERNEL: exit 2,
    one line naming it and what is available, no output file."""
    inp, out = tmp_path / "in.bin", tmp_path / "out.bin"
    inp.write_bytes(valid_input(codes_net))
    runner = runners[target]
    missing = "avx2" if target == "aarch64" else "bogus"
    cases = [(["-k", "avx1024"], {}, "kernel must be auto, scalar, neon, avx2, avx512bw or "
                                     "avx512vpopcnt, not 'avx1024'"),
             ([], {"BNNHW_KERNEL": "neon2"}, "BNNHW_KERNEL must be auto"),
             (["-k", missing], {}, "not available" if target == "aarch64" else "not 'bogus'")]
    if target == "aarch64":
        cases.append(([], {"BNNHW_KERNEL": "avx512vpopcnt"},
                      "BNNHW_KERNEL avx512vpopcnt: not available in this build on this CPU "
                      "(available: neon scalar)"))
    for args, env, message in cases:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        proc = fw.run_runner(runner, target, [*args, inp, out])
        for key in env:
            monkeypatch.delenv(key)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (args, env, proc.stderr)
        assert lines[0].startswith("bnn_runner: ") and message in lines[0], lines[0]
        assert not out.exists()
    # -k wins over BNNHW_KERNEL; -q says which path runs
    monkeypatch.setenv("BNNHW_KERNEL", "nonsense")
    proc = fw.run_runner(runner, target, ["-k", "scalar", "-q"])
    assert proc.returncode == 0 and proc.stdout.strip() == "scalar", proc.stderr


def test_random_garbage_never_crashes(runners, codes_net, tmp_path):
    """Fuzz: random bytes and random corruptions of a valid file, under ASan + UBSan."""
    rng = np.random.default_rng(3)
    good = bytearray(valid_input(codes_net))
    for i in range(25):
        if i % 2:
            data = bytes(rng.integers(0, 256, int(rng.integers(0, 600)), dtype=np.uint8))
        else:
            data = bytearray(good)
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, 32))] = int(rng.integers(0, 256))
            data = bytes(data)
        proc, _ = run_file(runners["san"], "san", data, tmp_path)
        assert proc.returncode in (0, 2), f"case {i}: exit {proc.returncode}: {proc.stderr}"
        if proc.returncode:
            assert proc.stderr.startswith("bnn_runner: "), proc.stderr


# -- malformed model tables --------------------------------------------------------------------

FIELDS = ["name", "kind", "c", "h", "w", "oc", "kh", "kw", "stride", "pad", "pad_value", "out",
          "sat", "clip", "wbits", "wbits_len", "wcodes", "wcodes_len", "thr", "neg", "thr_len",
          "flatten", "fc", "fh", "fw", "pool_k", "pool_s"]


def edit_layer(text, index, field, value):
    rows = [m for m in re.finditer(r"^    \{\"[^\n]*\},$", text, re.M)]
    row = rows[index]
    parts = row.group(0)[5:-2].split(", ")
    assert len(parts) == len(FIELDS), parts
    i = FIELDS.index(field)
    parts[i] = value(parts[i]) if callable(value) else str(value)
    return text[:row.start()] + "    {" + ", ".join(parts) + "}," + text[row.end():]


def edit_model(text, old, new):
    assert text.count(old) == 1, old
    return text.replace(old, new)


def model_edits(net, text):
    tail = f"bnn_model_layers, {net.num_classes}, 0, 0, 0"
    return {
        "magic": (edit_model(text, "0x4d4e4e42u", "0x4d4e4e43u"), "bad magic or version"),
        "version": (edit_model(text, "0x4d4e4e42u, 1,", "0x4d4e4e42u, 2,"),
                    "bad magic or version"),
        "input shape": (edit_layer(text, 0, "c", 4), "input 4x9x9 does not match"),
        "weight count": (edit_layer(text, 1, "wbits_len", lambda v: str(int(v) - 1)),
                         "weight words, expected"),
        "codes count": (edit_layer(text, 0, "wcodes_len", lambda v: str(int(v) + 1)),
                        "weights, expected"),
        "pool too big": (edit_layer(text, 1, "pool_k", 9), "does not fit"),
        "kind": (edit_layer(text, 1, "kind", 7), "kind 7 is not valid"),
        "thresholds": (edit_layer(text, 1, "thr_len", 3), "3 thresholds for 20 channels"),
        "pad value": (edit_layer(text, 1, "pad_value", 0), "pad_value must be +1 or -1"),
        "stride": (edit_layer(text, 1, "stride", 0), "layer 1 (c1)"),
        "flatten": (edit_layer(text, 2, "flatten", 0), "flatten 0 for a 2x2 map"),
        "output mode": (edit_layer(text, 0, "out", 2), "output mode 2"),
        "classes": (edit_model(text, tail, f"bnn_model_layers, 11, 0, 0, 0"),
                    "for 11 classes"),
        "rule": (edit_model(text, tail, f"bnn_model_layers, {net.num_classes}, 5, 0, 0"),
                 "output rule 5"),
        "layer count": (edit_model(text, f"    4, {tail}", f"    0, {tail}"), "layer count 0"),
        "input table": (edit_model(text, "input_lut, 256", "input_lut, 255"), "256 entries"),
        "weight value": (re.sub(r"(L0_wcodes\[432\] = \{\n    )-?1,", r"\g<1>2,", text),
                         "weight 0 is 2, not +1 or -1"),
    }


def test_malformed_model_tables(codes_net, tmp_path):
    text = fw.header_text(codes_net)
    assert "0x4d4e4e42u, 1," in text
    data = valid_input(codes_net)
    for what, (edited, message) in model_edits(codes_net, text).items():
        assert edited != text, what
        gen = tmp_path / what.replace(" ", "_") / "generated"
        gen.mkdir(parents=True)
        (gen / "bnn_model_data.h").write_text(edited)
        for sanitize in (False, True):
            runner = fw.build_runner(gen, gen.parent, sanitize=sanitize,
                                     lib_dir=tmp_path / f"lib{int(sanitize)}")
            proc, made = run_file(runner, "host", data, tmp_path)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 3, f"{what}: exit {proc.returncode}: {proc.stderr}"
            assert len(lines) == 1 and lines[0].startswith("bnn_runner: model header: "), lines
            assert message in lines[0], f"{what}: {lines[0]}"
            assert not made


def test_missing_tools_are_named(codes_net, tmp_path, monkeypatch):
    import shutil
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))             # nothing on PATH
    with pytest.raises(ToolError, match="needs 'make'"):
        fw.generate(codes_net, tmp_path / "x", target="host")
    (bin_dir / "make").symlink_to(shutil.which("make", path="/usr/bin:/bin"))
    with pytest.raises(ToolError, match="C compiler 'aarch64-linux-gnu-gcc'"):
        fw.generate(codes_net, tmp_path / "x", target="aarch64")
    (bin_dir / "arm-linux-gnueabihf-gcc").symlink_to(
        shutil.which("arm-linux-gnueabihf-gcc", path="/usr/bin:/bin"))
    with pytest.raises(ToolError, match="emulator 'qemu-arm'"):
        fw.check_target("armv7")
    with pytest.raises(ToolError, match="must be one of host, aarch64, armv7, not 'riscv'"):
        fw.check_target("riscv")
