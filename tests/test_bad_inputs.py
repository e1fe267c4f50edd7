"""Hostile and careless inputs: every one ends in one line, exit 2, and touches no output.

Each case is a command line that a hostile or careless user could type, with crafted files
(model headers, archives, arrays, IDX files, foldings, paths). Every case checks that bnnhw

* exits with status 2 and prints exactly one line ``bnnhw: error: ...`` naming the problem
  (file, layer, field, value: the case's pattern), and no traceback;
* leaves the output folder exactly as it was: no new file at or beside the output path, no
  temporary, and the previous output (a score file, a generate or firmware folder) intact;
* does so within seconds (nothing is built, allocated or inflated before the refusal).

The cases run in-process through :func:`bnnhw.cli.main`; ``test_entry_point_*`` run a few
through the real ``python -m bnnhw`` to check the same from outside.
"""

import io
import json
import math
import os
import re
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from bnnhw.cli import main
from bnnhw.model import (BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer, MaxPool,
                         MultibitConv2d, Network, Output, Threshold, ThresholdQuantizer,
                         save_model)
from support.data import BNN_PYNQ

# -- crafted files ------------------------------------------------------------------------------


def pm1(rng, shape):
    return rng.choice(np.array([-1, 1], np.int8), size=shape)


def tiny_nets():
    """Small valid networks whose files the cases then corrupt one field at a time."""
    rng = np.random.default_rng(0)
    dense = Network("tiny", (1, 4, 4), ThresholdQuantizer(128), (
        BinaryDense("fc0", pm1(rng, (8, 16))),
        Threshold("thr0", rng.integers(-4, 5, 8), rng.random(8) < 0.5),
        BinaryDense("fc1", pm1(rng, (3, 8))), Output("out")))
    conv = Network("tinyconv", (2, 5, 5), ThresholdQuantizer(128), (
        BinaryConv2d("conv0", pm1(rng, (4, 2, 3, 3)), pad=1),
        Clip("clip0", 4),
        Threshold("thr0", rng.integers(-4, 5, 4)),
        MaxPool("pool0", 2),
        BinaryDense("fc1", pm1(rng, (3, 16))), Output("out")))
    codes = Network("tinycodes", (1, 4, 4), FixedPointQuantizer(8), (
        MultibitConv2d("conv0", pm1(rng, (2, 1, 3, 3)), input_bits=8),
        Threshold("thr0", rng.integers(-100, 100, 2)),
        BinaryDense("fc1", pm1(rng, (3, 8))), Output("out")))
    return {"dense": dense, "conv": conv, "codes": codes}


NETS = tiny_nets()


def npy_bytes(array):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=True)
    return buf.getvalue()


def npy_header(shape, descr="|u1"):
    """The bytes of an ``.npy`` header declaring ``shape`` (no data after it)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": tuple(shape)})
    return buf.getvalue()


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    """An ``.npz``-like zip of ``{name: bytes}`` (names as given)."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def model_parts(kind="dense"):
    """``(header dict, {entry: array})`` of one of :data:`NETS` as save_model writes it."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        save_model(NETS[kind], Path(tmp) / "m.npz")
        with np.load(Path(tmp) / "m.npz") as data:
            arrays = {k: data[k] for k in data.files}
    header = json.loads(str(arrays.pop("__bnnhw__")))
    return header, arrays


def write_model(path, header, arrays, *, text=None):
    """A bnnhw model file with this header (JSON as Python writes it: NaN allowed, so that
    the reader must refuse it) or the raw header ``text``. An array ``None`` becomes an
    ``.npy`` header alone declaring 10^12 bytes; ``"CUT"`` a member cut 8 bytes short."""
    members = {}
    for k, v in arrays.items():
        if v is None:
            members[f"{k}.npy"] = npy_header((10 ** 6, 10 ** 6), "|i1")
        elif isinstance(v, str) and v == "CUT":
            members[f"{k}.npy"] = npy_bytes(np.zeros(8, np.int64))[:-8]
        else:
            members[f"{k}.npy"] = npy_bytes(v)
    members["__bnnhw__.npy"] = npy_bytes(np.array(text if text is not None
                                                  else json.dumps(header)))
    write_zip(path, members)


class Raw(str):
    """Header text that a mutation returns in place of the (mutated) header."""


def header_case(mutate, kind="dense"):
    """A setup writing ``in/m.npz``: the ``kind`` model with ``mutate(header, arrays)``
    applied (which may return :class:`Raw` header text instead)."""
    def setup(ws):
        header, arrays = model_parts(kind)
        text = mutate(header, arrays)
        write_model(ws / "in" / "m.npz", header, arrays,
                    text=text if isinstance(text, Raw) else None)
    return setup


def layer(header, name):
    return next(e for e in header["layers"] if e.get("name") == name)


def set_param(name, key, value):
    def mutate(h, a):
        layer(h, name)["params"][key] = value
    return mutate


def set_array(entry, value):
    def mutate(h, a):
        a[entry] = value
    return mutate


def pynq_case(mutate):
    """A setup writing ``in/m.npz``: LFC's BNN-PYNQ file with ``mutate(meta, arrays)``."""
    def setup(ws):
        with np.load(BNN_PYNQ / "lfcW1A1_mnist.npz") as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta_json")))
        text = mutate(meta, arrays)
        members = {f"{k}.npy": npy_bytes(v) for k, v in arrays.items()}
        members["meta_json.npy"] = npy_bytes(np.array(text if isinstance(text, Raw)
                                                      else json.dumps(meta)))
        write_zip(ws / "in" / "m.npz", members)
    return setup


def pynq_layer(key, value, index=0):
    def mutate(meta, arrays):
        meta["layers"][index][key] = value
    return mutate


def file_case(data, name="m.npz"):
    def setup(ws):
        target = ws / "in" / name
        if callable(data):
            data(target)
        else:
            target.write_bytes(data)
    return setup


def gz(data):
    import gzip
    return gzip.compress(data)


def idx_bytes(dims, payload=b""):
    return b"\0\0\x08" + bytes([len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) \
        + payload


def mnist_case(images, labels):
    def setup(ws):
        folder = ws / "in" / "mnist"
        folder.mkdir()
        (folder / "t10k-images-idx3-ubyte.gz").write_bytes(images)
        (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(labels)
    return setup


def folding_case(text):
    def setup(ws):
        (ws / "in" / "fold.json").write_text(text)
    return setup


# -- the cases ----------------------------------------------------------------------------------

@dataclass
class Case:
    """``argv`` uses the words MODEL (``in/m.npz``, the case's file, else the good tiny model),
    X (``in/x.npy``), OUT (``out/scores.npy``), GEN (``out/gen``), FW (``out/fw``), IN (the
    inputs' folder) and ``in/...`` / ``out/...`` paths."""
    id: str
    argv: str
    message: str
    setup: object = None
    env: dict = field(default_factory=dict)


MODEL_CASES = [
    # -- the archive ---------------------------------------------------------------------------
    Case("text-file-model", "run MODEL X -o OUT",
         r"model file '.*m\.npz' is not a \.npz archive \(it is a text file\)",
         file_case(b"layers: conv, dense\nthis is not a model\n")),
    Case("empty-model", "info MODEL", r"is not a \.npz archive \(the file is empty\)",
         file_case(b"")),
    Case("npy-as-model", "run MODEL X -o OUT", r"is not a \.npz archive \(it is a single "
         r"\.npy array\)", file_case(npy_bytes(np.zeros(3)))),
    Case("gzip-as-model", "run MODEL X -o OUT", r"\(it is gzip-compressed data\)",
         file_case(gz(b"abc"))),
    Case("truncated-zip", "run MODEL X -o OUT", r"is not a readable \.npz archive \(truncated",
         file_case(lambda p: p.write_bytes((BNN_PYNQ / "lfcW1A1_mnist.npz").read_bytes()[:9000]))),
    Case("model-is-directory", "run in/dir X -o OUT", r"model file '.*dir' is a directory",
         lambda ws: (ws / "in" / "dir").mkdir()),
    Case("model-dev-zero", "run in/zero.npz X -o OUT", r"model file '.*zero\.npz' is not a "
         r"regular file", lambda ws: os.symlink("/dev/zero", ws / "in" / "zero.npz")),
    Case("model-missing", "run in/none.npz X -o OUT", r"model file '.*none\.npz' does not exist"),
    Case("pickle-member", "run MODEL X -o OUT",
         r"member '__bnnhw__\.npy' holds object values: .*never Python objects",
         file_case(lambda p: write_zip(p, {"__bnnhw__.npy": npy_bytes(
             np.array([{"a": 1}], dtype=object))}))),
    Case("non-npy-member", "run MODEL X -o OUT", r"member 'evil\.sh' is not an \.npy array",
         file_case(lambda p: write_zip(p, {"evil.sh": b"rm -rf /"}))),
    Case("member-claims-terabyte", "run MODEL X -o OUT",
         r"member 'layer0\.weight\.npy': array of shape \[1000000, 1000000\] \(int8\) needs "
         r"1,000,000,000,000 bytes, more than the maximum",
         header_case(lambda h, a: a.__setitem__("layer0.weight", None))),
    Case("zip-bomb", "run MODEL X -o OUT",
         r"needs 4,\d{3},\d{3} bytes uncompressed, more than the maximum 1,000,000 "
         r"\(set \$BNNHW_MAX_MODEL_BYTES",
         file_case(lambda p: write_zip(p, {"a.npy": npy_bytes(np.zeros(1 << 22, np.uint8))},
                                       zipfile.ZIP_DEFLATED)),
         env={"BNNHW_MAX_MODEL_BYTES": "1000000"}),
    Case("member-size-lies", "run MODEL X -o OUT", r"member '__bnnhw__\.npy' is corrupt \(Bad "
         r"CRC-32",
         file_case(lambda p: _lying_zip(p))),
    Case("neither-format", "run MODEL X -o OUT", r"is neither a bnnhw model",
         file_case(lambda p: write_zip(p, {"a.npy": npy_bytes(np.zeros(3))}))),
    # -- the header ----------------------------------------------------------------------------
    Case("header-not-json", "run MODEL X -o OUT", r"header is not valid JSON",
         header_case(lambda h, a: Raw("{not json"))),
    Case("header-list", "run MODEL X -o OUT", r"header must be a JSON object, not a list",
         header_case(lambda h, a: Raw("[1, 2]"))),
    Case("header-nan", "run MODEL X -o OUT", r"header is not valid JSON \(NaN is not a JSON "
         r"number\)", header_case(lambda h, a: h["quantizer"].update(threshold=math.nan))),
    Case("header-deep", "run MODEL X -o OUT", r"header is nested too deeply",
         header_case(lambda h, a: Raw("[" * 100000 + "]" * 100000))),
    Case("header-huge-int", "run MODEL X -o OUT", r"header is not valid JSON",
         header_case(lambda h, a: Raw(json.dumps(h).replace('"threshold": 128',
                                                            '"threshold": ' + "9" * 5000)))),
    Case("format-wrong", "run MODEL X -o OUT", r"header format must be 'bnnhw-model', not 'x'",
         header_case(lambda h, a: h.update(format="x"))),
    Case("version-true", "run MODEL X -o OUT", r"model format version True is not supported",
         header_case(lambda h, a: h.update(version=True))),
    Case("header-unknown-field", "run MODEL X -o OUT", r"header has an unknown field 'exec'",
         header_case(lambda h, a: h.update(exec="os.system('x')"))),
    Case("header-missing-layers", "run MODEL X -o OUT", r"header has no 'layers' field",
         header_case(lambda h, a: h.pop("layers"))),
    # -- the network name: reaches C, Verilog and folder names -----------------------------------
    Case("name-c-comment", "firmware MODEL -o FW", r"network name must be .*, not 'x \*/ int",
         header_case(lambda h, a: h.update(name="x */ int evil = 1; /*"))),
    Case("name-quote", "firmware MODEL -o FW", r"network name must be .*, not 'a\"b'",
         header_case(lambda h, a: h.update(name='a"b'))),
    Case("name-dotdot", "simulate MODEL X -o OUT", r"network name must be .*, not '\.\./\.\./x'",
         header_case(lambda h, a: h.update(name="../../x"))),
    Case("name-absolute", "generate MODEL -o GEN", r"network name must be .*, not '/tmp/x'",
         header_case(lambda h, a: h.update(name="/tmp/x"))),
    Case("name-newline", "info MODEL", r"network name must be .*, not 'a\\nb'",
         header_case(lambda h, a: h.update(name="a\nb"))),
    Case("name-escape-seq", "info MODEL", r"network name must be .*, not '\\x1b\[2J'",
         header_case(lambda h, a: h.update(name="\x1b[2J"))),
    Case("name-unicode", "run MODEL X -o OUT", r"network name must be .*, not 'caf\u00e9'",
         header_case(lambda h, a: h.update(name="caf\u00e9"))),
    Case("name-too-long", "run MODEL X -o OUT", r"network name must be .*at most 64.*, not 'aaaa",
         header_case(lambda h, a: h.update(name="a" * 65))),
    Case("name-empty", "run MODEL X -o OUT", r"network name must be .*, not ''",
         header_case(lambda h, a: h.update(name=""))),
    Case("name-number", "run MODEL X -o OUT", r"network name must be .*, not 7",
         header_case(lambda h, a: h.update(name=7))),
    # -- input shape ----------------------------------------------------------------------------
    Case("shape-fraction", "run MODEL X -o OUT", r"input_shape H must be an integer, not a "
         r"number 8\.5", header_case(lambda h, a: h.update(input_shape=[1, 8.5, 8]))),
    Case("shape-float-int", "run MODEL X -o OUT", r"input_shape W must be an integer, not a "
         r"number 4\.0", header_case(lambda h, a: h.update(input_shape=[1, 4, 4.0]))),
    Case("shape-bool", "run MODEL X -o OUT", r"input_shape C must be an integer, not a "
         r"boolean true", header_case(lambda h, a: h.update(input_shape=[True, 4, 4]))),
    Case("shape-string", "run MODEL X -o OUT", r"input_shape must be a list \[C, H, W\] of "
         r"positive integers, not a string 'abc'",
         header_case(lambda h, a: h.update(input_shape="abc"))),
    Case("shape-null", "run MODEL X -o OUT", r"input_shape must be a list .*, not null",
         header_case(lambda h, a: h.update(input_shape=None))),
    Case("shape-two", "run MODEL X -o OUT", r"input_shape must be \[C, H, W\], not \[4, 4\]",
         header_case(lambda h, a: h.update(input_shape=[4, 4]))),
    Case("shape-zero", "run MODEL X -o OUT", r"input_shape H must be at least 1, not 0",
         header_case(lambda h, a: h.update(input_shape=[1, 0, 16]))),
    Case("shape-huge", "generate MODEL -o GEN",
         r"input_shape \[1, 100000, 100000\] needs 10,000,000,000 values, more than the "
         r"maximum 16,777,216 \(set \$BNNHW_MAX_IMAGE_ELEMENTS",
         header_case(lambda h, a: h.update(input_shape=[1, 100000, 100000]))),
    Case("shape-over-env-limit", "run MODEL X -o OUT", r"needs 16 values, more than the "
         r"maximum 10", env={"BNNHW_MAX_IMAGE_ELEMENTS": "10"}),
    # -- quantizer ------------------------------------------------------------------------------
    Case("quantizer-null", "run MODEL X -o OUT", r"quantizer must be an object .*, not null",
         header_case(lambda h, a: h.update(quantizer=None))),
    Case("quantizer-no-kind", "run MODEL X -o OUT", r"quantizer has no 'kind' field",
         header_case(lambda h, a: h["quantizer"].pop("kind"))),
    Case("quantizer-kind", "run MODEL X -o OUT", r"unknown input quantizer kind 'log'",
         header_case(lambda h, a: h["quantizer"].update(kind="log"))),
    Case("quantizer-threshold-text", "run MODEL X -o OUT",
         r"quantizer threshold must be an integer, not '128'",
         header_case(lambda h, a: h["quantizer"].update(threshold="128"))),
    Case("quantizer-threshold-fraction", "run MODEL X -o OUT",
         r"quantizer threshold must be an integer, not 127\.5",
         header_case(lambda h, a: h["quantizer"].update(threshold=127.5))),
    Case("quantizer-threshold-range", "run MODEL X -o OUT",
         r"quantizer threshold must be at most 256, not 300",
         header_case(lambda h, a: h["quantizer"].update(threshold=300))),
    Case("quantizer-bits", "run MODEL X -o OUT", r"quantizer bits must be at most 16, not 99",
         header_case(lambda h, a: h["quantizer"].update(bits=99), "codes")),
    Case("quantizer-list-param", "run MODEL X -o OUT",
         r"quantizer 'threshold' must be a number or string, not a list",
         header_case(lambda h, a: h["quantizer"].update(threshold=[128]))),
    Case("quantizer-unknown-param", "run MODEL X -o OUT",
         r"input quantizer 'threshold': .*unexpected keyword argument 'gain'",
         header_case(lambda h, a: h["quantizer"].update(gain=2))),
    # -- classes and meta -----------------------------------------------------------------------
    Case("classes-string", "run MODEL X -o OUT", r"classes must be a list of class names, not "
         r"a string 'abc'", header_case(lambda h, a: h.update(classes="abc"))),
    Case("classes-int", "run MODEL X -o OUT", r"class name 1 must be a string, not 5",
         header_case(lambda h, a: h.update(classes=["a", 5, "c"]))),
    Case("classes-control", "info MODEL", r"class name 0 must be printable text",
         header_case(lambda h, a: h.update(classes=["\x1b]0;pwned\x07", "b", "c"]))),
    Case("classes-count", "run MODEL X -o OUT", r"network has 3 scores but 2 class names",
         header_case(lambda h, a: h.update(classes=["a", "b"]))),
    Case("meta-not-object", "run MODEL X -o OUT", r"meta must be an object, not a list",
         header_case(lambda h, a: h.update(meta=[1]))),
    # -- layer entries --------------------------------------------------------------------------
    Case("layers-not-list", "run MODEL X -o OUT", r"layers must be a list of layer objects, "
         r"not an object", header_case(lambda h, a: h.update(layers={"a": 1}))),
    Case("layer-int", "run MODEL X -o OUT", r"layer 0 must be an object .*, not an integer 1",
         header_case(lambda h, a: h["layers"].insert(0, 1))),
    Case("layer-null", "run MODEL X -o OUT", r"layer 2 must be an object .*, not null",
         header_case(lambda h, a: h["layers"].__setitem__(2, None))),
    Case("layer-no-kind", "run MODEL X -o OUT", r"layer 'fc0' has no 'kind' field",
         header_case(lambda h, a: layer(h, "fc0").pop("kind"))),
    Case("layer-kind-unknown", "run MODEL X -o OUT", r"layer 'fc0': unknown layer kind "
         r"'conv3d'", header_case(lambda h, a: layer(h, "fc0").update(kind="conv3d"))),
    Case("layer-kind-list", "run MODEL X -o OUT", r"layer 'fc0': kind must be a string, not "
         r"a list", header_case(lambda h, a: layer(h, "fc0").update(kind=["x"]))),
    Case("layer-name-quote", "firmware MODEL -o FW", r"layer 1: name must be .*, not 'a\"b'",
         header_case(lambda h, a: h["layers"][1].update(name='a"b'))),
    Case("layer-name-space", "run MODEL X -o OUT", r"layer 0: name must be .*, not 'f c'",
         header_case(lambda h, a: h["layers"][0].update(name="f c"))),
    Case("layer-name-twice", "run MODEL X -o OUT", r"layer name 'fc0' is used twice",
         header_case(lambda h, a: layer(h, "fc1").update(name="fc0"))),
    Case("layer-unknown-field", "run MODEL X -o OUT", r"layer 'fc0' has an unknown field 'code'",
         header_case(lambda h, a: layer(h, "fc0").update(code="x"))),
    Case("params-list", "run MODEL X -o OUT", r"layer 'fc0': params must be an object, not a "
         r"list", header_case(lambda h, a: layer(h, "fc0").update(params=[1]))),
    Case("param-object", "run MODEL X -o OUT", r"layer 'fc0': parameter 'acc_bits' must be a "
         r"number, string or null, not an object", header_case(set_param("fc0", "acc_bits",
                                                                         {"a": 1}))),
    Case("param-unknown", "run MODEL X -o OUT", r"layer 'fc0' \(binary_dense\): .*unexpected "
         r"keyword argument 'gain'", header_case(set_param("fc0", "gain", 1))),
    Case("param-stride-float", "run MODEL X -o OUT", r"layer 'conv0': stride must be an "
         r"integer, not 1\.5", header_case(set_param("conv0", "stride", 1.5), "conv")),
    Case("param-stride-zero", "run MODEL X -o OUT", r"layer 'conv0': stride must be at least "
         r"1, not 0", header_case(set_param("conv0", "stride", 0), "conv")),
    Case("param-stride-text", "run MODEL X -o OUT", r"layer 'conv0': stride must be an "
         r"integer, not '2'", header_case(set_param("conv0", "stride", "2"), "conv")),
    Case("param-pad-negative", "run MODEL X -o OUT", r"layer 'conv0': pad must be at least 0, "
         r"not -1", header_case(set_param("conv0", "pad", -1), "conv")),
    Case("param-pad-huge", "generate MODEL -o GEN", r"layer 'conv0': output of shape \[4, "
         r"2000000000003, 2000000000003\] needs .* values, more than the maximum",
         header_case(set_param("conv0", "pad", 10 ** 12), "conv")),
    Case("param-pad-value-float", "run MODEL X -o OUT", r"layer 'conv0': pad_value must be \+1 "
         r"or -1, not 1\.0", header_case(set_param("conv0", "pad_value", 1.0), "conv")),
    Case("param-pad-value-zero", "run MODEL X -o OUT", r"layer 'conv0': pad_value must be \+1 "
         r"or -1, not 0", header_case(set_param("conv0", "pad_value", 0), "conv")),
    Case("param-acc-bits-absurd", "generate MODEL -o GEN", r"layer 'fc0': acc_bits must be at "
         r"most 32, not 1000000", header_case(set_param("fc0", "acc_bits", 10 ** 6))),
    Case("param-acc-bits-negative", "run MODEL X -o OUT", r"layer 'fc0': acc_bits must be at "
         r"least 1, not -1", header_case(set_param("fc0", "acc_bits", -1))),
    Case("param-overflow", "run MODEL X -o OUT", r"layer 'fc0': overflow must be 'error' or "
         r"'saturate', not 'wrap'", header_case(set_param("fc0", "overflow", "wrap"))),
    Case("param-clip-bits", "run MODEL X -o OUT", r"layer 'clip0': bits must be at most 32, not "
         r"1000", header_case(set_param("clip0", "bits", 1000), "conv")),
    Case("param-pool-kernel", "run MODEL X -o OUT", r"layer 'pool0': kernel 9 does not fit the "
         r"height", header_case(set_param("pool0", "kernel", 9), "conv")),
    Case("param-input-bits", "run MODEL X -o OUT", r"layer 'conv0': input_bits must be at most "
         r"16, not 1000000000", header_case(set_param("conv0", "input_bits", 10 ** 9), "codes")),
    Case("param-nan-via-constant", "run MODEL X -o OUT", r"not valid JSON \(Infinity is not a "
         r"JSON number\)", header_case(set_param("fc0", "acc_bits", math.inf))),
    # -- arrays ---------------------------------------------------------------------------------
    Case("arrays-list", "run MODEL X -o OUT", r"layer 'fc0': arrays must be an object",
         header_case(lambda h, a: layer(h, "fc0").update(arrays=["w"]))),
    Case("array-ref-number", "run MODEL X -o OUT", r"layer 'fc0': array 'weight' must be the "
         r"name of an archive entry, not an integer 3",
         header_case(lambda h, a: layer(h, "fc0")["arrays"].update(weight=3))),
    Case("array-missing", "run MODEL X -o OUT", r"layer 'fc0': array 'weight' \(entry "
         r"'layer0\.weight'\) is missing", header_case(lambda h, a: a.pop("layer0.weight"))),
    Case("weight-two", "run MODEL X -o OUT", r"layer 'fc0': weight values must be \+1 or -1, "
         r"not 2 at index \(0, 0\)", header_case(set_array("layer0.weight",
                                                            np.full((8, 16), 2, np.int8)))),
    Case("weight-nan", "run MODEL X -o OUT", r"layer 'fc0': weight values must be \+1 or -1, "
         r"not nan", header_case(set_array("layer0.weight", np.full((8, 16), np.nan)))),
    Case("weight-text", "run MODEL X -o OUT", r"layer 'fc0': weight must be numeric, not dtype "
         r"<U1", header_case(set_array("layer0.weight", np.full((8, 16), "1")))),
    Case("weight-ndim", "run MODEL X -o OUT", r"layer 'fc0': weight must have 2 dimensions",
         header_case(set_array("layer0.weight", np.ones(16, np.int8)))),
    Case("weight-shape", "run MODEL X -o OUT", r"layer 'fc1': weight expects 9 inputs, not 8",
         header_case(set_array("layer2.weight", np.ones((3, 9), np.int8)))),
    Case("threshold-1e30", "run MODEL X -o OUT", r"layer 'thr0': thresholds must fit int64 "
         r"\(\[-2\^63, 2\^63 - 1\]\), not 1e\+30 at index 0",
         header_case(set_array("layer1.thresholds", np.full(8, 1e30)))),
    Case("threshold-uint64-max", "run MODEL X -o OUT", r"layer 'thr0': thresholds must fit "
         r"int64 .*, not 18446744073709551615 at index 3",
         header_case(set_array("layer1.thresholds",
                               np.array([0, 1, 2, 2 ** 64 - 1, 0, 0, 0, 0], np.uint64)))),
    Case("threshold-2pow63-float", "run MODEL X -o OUT", r"thresholds must fit int64 .*, not "
         r"9\.223372036854776e\+18 at index 7",
         header_case(set_array("layer1.thresholds", np.array([0.0] * 7 + [2.0 ** 63])))),
    Case("threshold-fraction", "run MODEL X -o OUT", r"layer 'thr0': thresholds must be "
         r"integers, not 0\.5 at index 1",
         header_case(set_array("layer1.thresholds", np.array([0, 0.5] + [0] * 6)))),
    Case("threshold-inf", "run MODEL X -o OUT", r"layer 'thr0': thresholds must be integers, "
         r"not inf at index 0", header_case(set_array("layer1.thresholds", np.full(8, np.inf)))),
    Case("threshold-text", "run MODEL X -o OUT", r"layer 'thr0': thresholds must be integers, "
         r"not dtype <U1", header_case(set_array("layer1.thresholds", np.full(8, "1")))),
    Case("threshold-count", "run MODEL X -o OUT", r"layer 'thr0': 7 thresholds for 8 channels",
         header_case(lambda h, a: a.update({"layer1.thresholds": np.zeros(7, np.int64),
                                            "layer1.negate": np.zeros(7, np.uint8)}))),
    Case("negate-half", "run MODEL X -o OUT", r"layer 'thr0': negate must hold 0 or 1, not 0\.5 "
         r"at index 0", header_case(set_array("layer1.negate", np.full(8, 0.5)))),
    Case("negate-text", "run MODEL X -o OUT", r"layer 'thr0': negate must hold 0 or 1, not "
         r"dtype <U1", header_case(set_array("layer1.negate", np.full(8, "1")))),
    Case("member-cut-short", "run MODEL X -o OUT", r"member 'layer1\.thresholds\.npy' is "
         r"corrupt: its header declares 64 data bytes, its zip entry 56",
         header_case(lambda h, a: a.__setitem__("layer1.thresholds", "CUT"))),
    # -- batch norm -----------------------------------------------------------------------------
    Case("bn-eps-text", "run MODEL X -o OUT", r"layer 'bn': batch-norm eps must be a number, "
         r"not 'small'", header_case(lambda h, a: _bn(h, a, eps="small"))),
    Case("bn-eps-negative", "run MODEL X -o OUT", r"layer 'bn': batch-norm eps must be finite "
         r"and non-negative, not -1", header_case(lambda h, a: _bn(h, a, eps=-1))),
    Case("bn-var-nan", "run MODEL X -o OUT", r"layer 'bn': batch-norm var\[2\] must be finite, "
         r"not nan", header_case(lambda h, a: _bn(h, a, var=np.array([1, 1, np.nan] + [1] * 5)))),
    Case("bn-missing", "run MODEL X -o OUT", r"layer 'bn': batch-norm 'mean' is missing",
         header_case(lambda h, a: _bn(h, a, drop="mean"))),
    Case("layers-over-limit", "run MODEL X -o OUT", r"the model has 4 layers, more than the "
         r"maximum 3 \(set \$BNNHW_MAX_LAYERS", env={"BNNHW_MAX_LAYERS": "3"}),
    # -- BNN-PYNQ files -------------------------------------------------------------------------
    Case("pynq-meta-not-json", "run MODEL in/x784.npy -o OUT", r"BNN-PYNQ meta_json is not "
         r"valid JSON", pynq_case(lambda m, a: Raw("{"))),
    Case("pynq-no-layers", "run MODEL in/x784.npy -o OUT", r"BNN-PYNQ meta_json has no "
         r"'layers' field", pynq_case(lambda m, a: m.pop("layers"))),
    Case("pynq-no-pe", "generate MODEL -o GEN", r"BNN-PYNQ meta_json layer 2 has no 'PE' field",
         pynq_case(lambda m, a: m["layers"][2].pop("PE"))),
    Case("pynq-pe-text", "generate MODEL -o GEN", r"layer 'fc0': PE must be an integer, not a "
         r"string 'abc'", pynq_case(pynq_layer("PE", "abc"))),
    Case("pynq-simd-float", "run MODEL in/x784.npy -o OUT", r"layer 'fc1': SIMD must be an "
         r"integer, not a number 1\.5", pynq_case(pynq_layer("SIMD", 1.5, 1))),
    Case("pynq-kind", "run MODEL in/x784.npy -o OUT", r"layer 'fc0': unknown BNN-PYNQ layer "
         r"kind 'lstm'", pynq_case(pynq_layer("kind", "lstm"))),
    Case("pynq-name-injection", "firmware MODEL -o FW", r"network name must be .*, not "
         r"'lfc\"; system\(\"x\"\); //_mnist'", pynq_case(lambda m, a: m.update(
             network='lfc"; system("x"); //'))),
    Case("pynq-layer-name", "run MODEL in/x784.npy -o OUT", r"layer 0 name must be .*, not "
         r"'\.\./fc0'", pynq_case(pynq_layer("name", "../fc0"))),
    Case("pynq-topology-pool", "run MODEL in/x784.npy -o OUT", r"topology names a pool "
         r"'maxpoolAxB'", pynq_case(lambda m, a: m.update(topology="fc0, maxpoolAxB(OR)"))),
    Case("pynq-input-bits", "run MODEL in/x784.npy -o OUT", r"first_layer_input_bits must be "
         r"at most 16, not 100", pynq_case(lambda m, a: m.update(first_layer_input_bits=100))),
    Case("pynq-index-twice", "run MODEL in/x784.npy -o OUT", r"layer 'fc1': index 0 is used "
         r"twice", pynq_case(pynq_layer("index", 0, 1))),
    Case("pynq-shape-missing", "run MODEL in/x784.npy -o OUT", r"BNN-PYNQ meta_json has no "
         r"'input_shape' field", pynq_case(lambda m, a: m.pop("input_shape"))),
    Case("pynq-threshold-u64", "run MODEL in/x784.npy -o OUT", r"layer 'thr0': thresholds "
         r"must fit int64", pynq_case(lambda m, a: a.update(
             thr0_dot_ge=np.full(1024, 2 ** 64 - 1, np.uint64)))),
]


def _digits_report(ws, mutate):
    """The example model beside a copy of its training report, changed by ``mutate``."""
    from bnnhw.examples import EXAMPLE_MODEL, EXAMPLE_REPORT
    (ws / "in" / "d.npz").write_bytes(EXAMPLE_MODEL.read_bytes())
    report = json.loads(EXAMPLE_REPORT.read_text())
    mutate(report)
    (ws / "in" / "d.json").write_text(json.dumps(report))


def _lying_zip(path):
    """A zip whose directory says a member is shorter than its data really is."""
    data = npy_bytes(np.zeros(1000, np.uint8))
    write_zip(path, {"__bnnhw__.npy": data})
    raw = bytearray(path.read_bytes())
    # The central directory's uncompressed size of the only member (offset 24 in its entry).
    cd = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, cd + 24, len(data) - 100)
    lh = raw.find(b"PK\x03\x04")
    struct.pack_into("<I", raw, lh + 22, len(data) - 100)
    path.write_bytes(bytes(raw))


def _bn(header, arrays, *, eps=1e-5, var=None, drop=None):
    """Replace thr0 of the dense model by a batch-norm layer (folded on load)."""
    entry = layer(header, "thr0")
    entry.update(kind="batchnorm_sign", name="bn", params={"eps": eps},
                 arrays={"gamma": "g", "beta": "b", "mean": "m", "var": "v"})
    arrays.update(g=np.ones(8), b=np.zeros(8), m=np.zeros(8),
                  v=np.ones(8) if var is None else var)
    arrays.pop("layer1.thresholds")
    arrays.pop("layer1.negate")
    if drop:
        entry["arrays"].pop(drop)


INPUT_CASES = [
    Case("npy-claims-billion-images", "run MODEL in/huge.npy -o OUT",
         r"input file '.*huge\.npy': array of shape \[1000000000, 1, 4, 4\] \(uint8\) needs "
         r"16,000,000,000 bytes, more than the maximum 1,073,741,824",
         file_case(npy_header((10 ** 9, 1, 4, 4)) + b"\0" * 512, "huge.npy")),
    Case("npy-pickle", "run MODEL in/p.npy -o OUT", r"input file '.*p\.npy' holds object "
         r"values", file_case(npy_bytes(np.array([None, 1], dtype=object)), "p.npy")),
    Case("npy-truncated", "simulate MODEL in/t.npy -o OUT", r"input file '.*t\.npy' is "
         r"truncated: its header declares 32 data bytes .*, the file holds 31",
         file_case(npy_bytes(np.zeros((2, 16), np.uint8))[:-1], "t.npy")),
    Case("npy-extra", "run MODEL in/t.npy -o OUT", r"is longer than its header says",
         file_case(npy_bytes(np.zeros((2, 16), np.uint8)) + b"x", "t.npy")),
    Case("npy-text", "run MODEL in/t.npy -o OUT", r"holds text \(<U1\), not numbers",
         file_case(npy_bytes(np.full((2, 16), "a")), "t.npy")),
    Case("npy-structured", "run MODEL in/t.npy -o OUT", r"holds .* values: only plain numbers",
         file_case(npy_bytes(np.zeros(2, [("a", "u1"), ("b", "u1")])), "t.npy")),
    Case("npy-text-file", "firmware run MODEL in/t.npy -o OUT", r"input file '.*t\.npy' is not "
         r"a readable \.npy array \(it is a text file\)", file_case(b"1,2,3\n", "t.npy")),
    Case("npy-bad-header", "run MODEL in/t.npy -o OUT", r"has no valid \.npy header",
         file_case(b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n", "t.npy")),
    Case("input-fifo", "run MODEL in/pipe.npy -o OUT", r"input file '.*pipe\.npy' is not a "
         r"regular file", lambda ws: os.mkfifo(ws / "in" / "pipe.npy")),
    Case("input-float", "run MODEL in/f.npy -o OUT", r"input must be raw bytes \(uint8\), not "
         r"float32", file_case(npy_bytes(np.zeros((2, 16), np.float32)), "f.npy")),
    Case("input-shape", "run MODEL in/f.npy -o OUT", r"input of model 'tiny' must have shape "
         r"\[N, 1, 4, 4\] or \[N, 4, 4\] or \[N, 16\], not \[2, 17\]",
         file_case(npy_bytes(np.zeros((2, 17), np.uint8)), "f.npy")),
    Case("input-empty", "run MODEL in/f.npy -o OUT", r"input holds no images \(N = 0\)",
         file_case(npy_bytes(np.zeros((0, 16), np.uint8)), "f.npy")),
    Case("input-limit-env", "run MODEL in/big.npy -o OUT", r"input file '.*big\.npy': array of "
         r"shape \[10000, 16\] \(uint8\) needs 160,000 bytes, more than the maximum 100,000 "
         r"\(set \$BNNHW_MAX_ARRAY_BYTES",
         file_case(npy_bytes(np.zeros((10000, 16), np.uint8)), "big.npy"),
         env={"BNNHW_MAX_ARRAY_BYTES": "100000"}),
    Case("limit-env-not-number", "run MODEL X -o OUT", r"\$BNNHW_MAX_ARRAY_BYTES must be a "
         r"positive integer \(bytes\), not 'lots'", env={"BNNHW_MAX_ARRAY_BYTES": "lots"}),
    Case("labels-float", "eval MODEL --inputs X --labels in/y.npy", r"labels file '.*y\.npy' "
         r"must hold integer class indices, not float64",
         file_case(npy_bytes(np.zeros(4)), "y.npy")),
    Case("labels-range", "eval MODEL --inputs X --labels in/y.npy", r"label 7 at index 2 is not "
         r"a class of model 'tiny' \(0\.\.2\)",
         file_case(npy_bytes(np.array([0, 1, 7, 0])), "y.npy")),
    Case("idx-claims-billion", "eval in/lfc.npz --mnist in/mnist", r"IDX file '.*images-idx3"
         r"-ubyte\.gz': IDX data of shape \[1000000000, 28, 28\] needs 784,000,000,000 bytes",
         mnist_case(gz(idx_bytes([10 ** 9, 28, 28], b"\0" * 1000)),
                    gz(idx_bytes([10], b"\0" * 10)))),
    Case("idx-truncated", "eval in/lfc.npz --mnist in/mnist", r"is truncated: header says "
         r"\[10, 28, 28\], 100 data bytes present",
         mnist_case(gz(idx_bytes([10, 28, 28], b"\0" * 100)), gz(idx_bytes([10], b"\0" * 10)))),
    Case("idx-magic", "eval in/lfc.npz --mnist in/mnist", r"is not an unsigned-byte IDX file",
         mnist_case(gz(b"\0\0\x0d\x03" + b"\0" * 20), gz(idx_bytes([10], b"\0" * 10)))),
    Case("idx-not-gzip", "eval in/lfc.npz --mnist in/mnist", r"IDX file .* is unreadable",
         mnist_case(b"plain text, not gzip", gz(idx_bytes([10], b"\0" * 10)))),
    Case("digits-report-bad-split", "eval in/d.npz --digits", r"training report '.*d\.json': "
         r"split\.test_fraction must be a number from 0\.01 to 0\.99, not 'all'",
         lambda ws: _digits_report(ws, lambda r: r["split"].update(test_fraction="all"))),
    Case("digits-report-bad-count", "eval in/d.npz --digits", r"training report '.*d\.json': "
         r"test_correct must be an integer from 0 to 1000000, not 1e\+300",
         lambda ws: _digits_report(ws, lambda r: r.update(test_correct=1e300))),
    Case("eval-limit-negative", "eval MODEL --inputs X --labels in/y.npy --limit -3",
         r"--limit must be a number of images >= 0 \(0: all\), not -3",
         file_case(npy_bytes(np.zeros(4, np.int64)), "y.npy")),
]

FOLDING_CASES = [
    Case("folding-pe-billion", "generate MODEL -o GEN --folding in/fold.json",
         r"layer 'fc0': PE must be at most 8 \(its 8 output channels\), not 1000000000",
         folding_case('{"fc0": {"PE": 1000000000, "SIMD": 1}, "fc1": {"PE": 1, "SIMD": 1}}')),
    Case("folding-simd-zero", "simulate MODEL X -o OUT --folding in/fold.json",
         r"layer 'fc1': SIMD must be a positive integer, not 0",
         folding_case('{"fc0": {"PE": 1, "SIMD": 1}, "fc1": {"PE": 1, "SIMD": 0}}')),
    Case("folding-nan", "generate MODEL -o GEN --folding in/fold.json",
         r"folding file '.*fold\.json' is not valid JSON \(NaN is not a JSON number\)",
         folding_case('{"fc0": {"PE": NaN, "SIMD": 1}, "fc1": {"PE": 1, "SIMD": 1}}')),
    Case("folding-not-json", "generate MODEL -o GEN --folding in/fold.json",
         r"folding file '.*fold\.json' is not valid JSON", folding_case("PE=1")),
    Case("folding-stage-list", "generate MODEL -o GEN --folding in/fold.json",
         r"layer 'fc0': chunk stage must be one of .*, not \['popcount'\]",
         folding_case('{"fc0": {"PE": 1, "SIMD": 1, "stage": ["popcount"]}, '
                      '"fc1": {"PE": 1, "SIMD": 1}}')),
    Case("folding-lanes-limit", "generate MODEL -o GEN --folding in/fold.json",
         r"the core of 'tiny' at this folding .* needs 136 lanes, more than the maximum 100 "
         r"\(set \$BNNHW_MAX_HW_LANES", folding_case(
             '{"fc0": {"PE": 8, "SIMD": 16}, "fc1": {"PE": 1, "SIMD": 8}}'),
         env={"BNNHW_MAX_HW_LANES": "100"}),
    Case("folding-fifo", "generate MODEL -o GEN --folding in/fold.json",
         r"folding file '.*fold\.json' is not a regular file",
         lambda ws: os.mkfifo(ws / "in" / "fold.json")),
    Case("folding-missing-file", "generate MODEL -o GEN --folding in/none.json",
         r"cannot read folding file '.*none\.json'"),
]

ARGUMENT_CASES = [
    Case("clock-zero", "generate MODEL -o GEN --clock-mhz 0",
         r"argument --clock-mhz: must be a positive number, not '0'"),
    Case("clock-negative", "generate MODEL -o GEN --clock-mhz -100",
         r"argument --clock-mhz: must be a positive number, not '-100'"),
    Case("clock-nan", "generate MODEL -o GEN --clock-mhz nan",
         r"argument --clock-mhz: must be a positive number, not 'nan'"),
    Case("clock-inf", "generate MODEL -o GEN --clock-mhz inf",
         r"argument --clock-mhz: must be a positive number, not 'inf'"),
    Case("fps-zero", "generate MODEL -o GEN --target-fps 0",
         r"argument --target-fps: must be a positive number, not '0'"),
    Case("clock-huge", "generate MODEL -o GEN --clock-mhz 1e308",
         r"argument --clock-mhz: must be a positive number of at most 1e\+12, not '1e308'"),
    Case("fps-tiny", "generate MODEL -o GEN --target-fps 1e-310",
         r"a clock of 100000000\.0 Hz at 1e-310 images/s gives no finite cycle budget"),
    Case("fps-and-folding", "generate MODEL -o GEN --target-fps 10 --folding in/f.json",
         r"give either --folding or --target-fps, not both"),
    Case("missing-arguments", "generate", r"the following arguments are required: model, "
         r"-o/--output \(see `bnnhw generate --help`\)"),
    Case("unknown-option", "run MODEL X -o OUT --fast", r"unrecognized arguments: --fast"),
    Case("bad-choice", "simulate MODEL X -o OUT --sim modelsim",
         r"argument --sim: invalid choice: 'modelsim'"),
    Case("unknown-command", "frobnicate", r"argument COMMAND: invalid choice: 'frobnicate'"),
    Case("int-not-int", "eval MODEL --digits --limit many",
         r"argument --limit: invalid int value: 'many'"),
    Case("firmware-run-usage", "firmware run MODEL -o OUT",
         r"usage: bnnhw firmware run MODEL INPUT\.npy -o SCORES\.npy"),
]


def _fifo(ws):
    os.mkfifo(ws / "out" / "pipe")


def _previous_generate_with(ws, name):
    (ws / "out" / "gen" / name).write_text("the user's own file")


OUTPUT_CASES = [
    Case("generate-o-file", "generate MODEL -o out/scores.npy",
         r"output '.*scores\.npy' exists and is not a directory"),
    Case("generate-o-models-folder", "generate in/m.npz -o IN",
         r"output folder '.*in' is not empty and is not a previous `bnnhw generate` output "
         r"\(no manifest\.json of format 'bnnhw-manifest'\): refusing to replace it",
         lambda ws: (ws / "in" / "m.npz").write_bytes((ws / "in" / "good.npz").read_bytes())),
    Case("generate-o-cwd", "generate MODEL -o .", r"output folder '\.' is the current folder "
         r"or holds it"),
    Case("generate-o-parent-of-cwd", "generate MODEL -o ..", r"output folder '\.\.' is the "
         r"current folder or holds it"),
    Case("generate-o-foreign-file", "generate MODEL -o GEN", r"output folder '.*gen' holds "
         r"'notes\.txt', which the previous `bnnhw generate` did not write",
         lambda ws: _previous_generate_with(ws, "notes.txt")),
    Case("generate-o-symlink", "generate MODEL -o out/link", r"output folder '.*link' is a "
         r"symbolic link", lambda ws: os.symlink(ws / "in", ws / "out" / "link")),
    Case("generate-o-other-kind", "generate MODEL -o FW", r"output folder '.*fw' is not empty "
         r"and is not a previous `bnnhw generate` output"),
    Case("generate-o-under-file", "generate MODEL -o out/scores.npy/gen",
         r"its folder '.*scores\.npy' is not a directory \(a file is in the way\)"),
    Case("firmware-o-user-folder", "firmware MODEL -o IN",
         r"output folder '.*in' is not empty and is not a previous `bnnhw firmware` output"),
    Case("firmware-o-generate-output", "firmware MODEL -o GEN",
         r"output folder '.*gen' is not empty and is not a previous `bnnhw firmware` output"),
    Case("firmware-o-file", "firmware MODEL -o OUT", r"output '.*scores\.npy' exists and is not "
         r"a directory"),
    Case("simulate-o-dir", "simulate MODEL X -o GEN", r"output '.*gen' is a directory, not a "
         r"file name"),
    Case("run-o-dir", "run MODEL X -o FW", r"output '.*fw' is a directory, not a file name"),
    Case("run-o-under-file", "run MODEL X -o out/scores.npy/s.npy",
         r"its folder '.*scores\.npy' is not a directory \(a file is in the way\)"),
    Case("run-o-fifo", "run MODEL X -o out/pipe", r"output '.*pipe' exists and is not a regular "
         r"file", _fifo),
    Case("convert-o-dir", "convert MODEL -o GEN", r"output '.*gen' is a directory, not a file "
         r"name"),
    Case("firmware-run-o-dir", "firmware run MODEL X -o GEN", r"output '.*gen' is a directory"),
    Case("train-json-is-dir", "train-example -o out/m.npz --epochs 1",
         r"report output '.*m\.json' is a directory, not a file name",
         lambda ws: ((ws / "out" / "m.json").mkdir(),
                     (ws / "out" / "m.npz").write_bytes(b"the user's model"))),
    Case("train-o-json", "train-example -o out/m.json", r"must not end in \.json"),
    Case("demo-o-file", "demo -o out/scores.npy --quick",
         r"demo summary '.*summary\.json': its folder '.*scores\.npy' is not a directory"),
    Case("build-dir-foreign", "simulate MODEL X -o OUT --build-dir IN",
         r"build folder '.*in' is not empty and is not a bnnhw build folder"),
    Case("build-root-file", "--build-root out/scores.npy run MODEL X -o out/s2.npy",
         r"build root '.*scores\.npy' exists and is not a directory"),
]

def _onnx_with_external_data(ws):
    """An ONNX file whose one initializer points at a file outside (``../../etc/passwd``)."""
    from onnx import TensorProto, helper      # the onnx extra: setup.sh installs it
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "evil", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 4])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1])], initializer=[weight])
    (ws / "in" / "m.onnx").write_bytes(helper.make_model(graph).SerializeToString())


def _previous_asic_report(ws):
    folder = ws / "out" / "asic"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"format": "bnnhw-asic-report"}))
    (folder / "report.md").write_text("old report\n")
    (folder / "notes.txt").write_text("the user's notes")


#: The commands that landed after the first battery: sharing, interchange, ASIC, boards.
COMMAND_CASES = [
    Case("share-json-dir", "share MODEL --json GEN", r"--json output '.*gen' is a directory"),
    Case("share-plot-dir", "share MODEL --plot FW", r"--plot output '.*fw' is a directory"),
    Case("share-plot-under-file", "share MODEL --plot out/scores.npy/p.png",
         r"its folder '.*scores\.npy' is not a directory"),
    Case("share-distance-negative", "share MODEL --max-distance -1",
         r"--max-distance must be an integer >= 0, not -1"),
    Case("share-distance-text", "share MODEL --max-distance far",
         r"--max-distance must be an integer >= 0, not 'far'"),
    Case("share-approximate-zero", "share MODEL --approximate --max-distance 0",
         r"--approximate needs --max-distance >= 1"),
    Case("share-no-convolution", "share MODEL", r"model 'tiny' has no binary convolution"),
    Case("import-o-dir", "import in/m.onnx -o GEN", r"output '.*gen' is a directory"),
    Case("import-not-onnx", "import X -o out/m.npz", r"model file '.*x\.npy' is not a readable "
         r"ONNX file"),
    Case("import-missing", "import in/none.onnx -o out/m.npz",
         r"model file '.*none\.onnx' does not exist"),
    Case("import-external-data", "import in/m.onnx -o out/m.npz", r"tensor 'w' keeps its data "
         r"in an external file", _onnx_with_external_data),
    Case("import-scale-zero", "import in/m.onnx -o out/m.npz --input-scale 0",
         r"--input-scale must be a positive number, not '0'"),
    Case("export-o-dir", "export MODEL -o GEN", r"output '.*gen' is a directory"),
    Case("export-text-model", "export in/f.json -o out/m.onnx", r"model file '.*f\.json' is "
         r"not a \.npz archive"),
    Case("asic-clock-nan", "asic MODEL --clock-mhz nan",
         r"argument --clock-mhz: must be a positive number, not 'nan'"),
    Case("asic-library", "asic MODEL --library tsmc7", r"argument --library: invalid choice"),
    Case("asic-jobs-zero", "asic MODEL --jobs 0", r"--jobs must be between 1 and 256, not 0"),
    Case("asic-utilization", "asic MODEL --utilization 1.5",
         r"--utilization must be in \(0, 1\], not 1\.5"),
    Case("asic-json-dir", "asic MODEL --json GEN", r"--json output '.*gen' is a directory"),
    Case("asic-o-user-folder", "asic MODEL -o IN", r"output folder '.*in' is not empty and is "
         r"not a previous `bnnhw asic` output"),
    Case("asic-o-foreign-file", "asic MODEL -o out/asic", r"output folder '.*asic' holds "
         r"'notes\.txt', which the previous `bnnhw asic` did not write", _previous_asic_report),
    Case("build-board-unknown", "build MODEL --board de10nano",
         r"board must be one of icebreaker, ulx3s, tangnano9k, not 'de10nano'"),
    Case("build-freq-zero", "build MODEL --board ulx3s --freq 0",
         r"argument --freq: must be a positive number, not '0'"),
    Case("build-freq-huge", "build MODEL --board ulx3s --freq 5000",
         r"--freq must be a clock in MHz between 0 and 1000, not 5000"),
    Case("build-fps-nan", "build MODEL --board ulx3s --target-fps nan",
         r"argument --target-fps: must be a positive number, not 'nan'"),
    Case("build-fps-and-folding", "build MODEL --board ulx3s --target-fps 10 --folding in/f.json",
         r"give either --folding or --target-fps, not both"),
    Case("build-folding-missing", "build MODEL --board ulx3s --folding in/none.json",
         r"cannot read folding file '.*none\.json'"),
    Case("compare-o-user-folder", "compare MODEL --board ulx3s -o IN", r"output folder '.*in' "
         r"is not empty and is not a previous `bnnhw compare` output"),
    Case("compare-o-file", "compare MODEL --board ulx3s -o OUT", r"output '.*scores\.npy' "
         r"exists and is not a directory"),
    Case("compare-cpu-unknown", "compare MODEL --board ulx3s --cpu cortex-x9",
         r"--cpu: ARM core must be one of .*, not 'cortex-x9'"),
    Case("compare-repeats-zero", "compare MODEL --board ulx3s --repeats 0",
         r"--repeats must be between 1 and 10000, not 0"),
    Case("compare-cpu-clock", "compare MODEL --board ulx3s --cpu cortex-a53 --cpu-clock 99",
         r"--cpu-clock must be in GHz between 0 and 10, not 99"),
    Case("board-run-o-dir", "board run --board ulx3s --port /dev/null MODEL X -o GEN",
         r"scores output '.*gen' is a directory"),
    Case("board-run-no-o", "board run --board ulx3s --port /dev/null MODEL X",
         r"board run needs -o SCORES\.npy"),
    Case("board-run-baud-zero", "board run --board ulx3s --port /dev/null --baud 0 MODEL X -o "
         "out/s.npy", r"--baud must be a positive rate in bit/s, not 0"),
    Case("board-run-timeout-nan", "board run --board ulx3s --port /dev/null --timeout nan "
         "MODEL X -o out/s.npy", r"--timeout must be seconds between 0 and 3600, not nan"),
    Case("board-run-board-unknown", "board run --board x --port /dev/null MODEL X -o out/s.npy",
         r"board must be one of icebreaker, ulx3s, tangnano9k, not 'x'"),
    Case("board-run-usage", "board run --board ulx3s --port /dev/null MODEL -o out/s.npy",
         r"usage: bnnhw board run --board B --port DEV MODEL INPUT\.npy -o SCORES\.npy"),
    Case("board-run-bad-input", "board run --board ulx3s --port /dev/null MODEL in/f.json -o "
         "out/s.npy", r"input file '.*f\.json' is not a readable \.npy array"),
]

ALL_CASES = (MODEL_CASES + INPUT_CASES + FOLDING_CASES + ARGUMENT_CASES + OUTPUT_CASES
             + COMMAND_CASES)


def test_battery_size():
    """The battery holds at least 80 bad inputs, each with its own name."""
    ids = [c.id for c in ALL_CASES]
    assert len(ids) >= 80 and len(set(ids)) == len(ids)


# -- the runner ---------------------------------------------------------------------------------

@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """``in/`` (good tiny model, matching inputs, LFC), ``out/`` with previous outputs of each
    kind; the current folder is ``tmp_path/cwd`` (a folder of its own, under ``tmp_path``)."""
    ws = tmp_path
    (ws / "in").mkdir()
    (ws / "out").mkdir()
    save_model(NETS["dense"], ws / "in" / "good.npz")
    np.save(ws / "in" / "x.npy", np.random.default_rng(0).integers(0, 256, (4, 1, 4, 4),
                                                                    dtype=np.uint8))
    np.save(ws / "in" / "x784.npy", np.zeros((2, 784), np.uint8))
    (ws / "in" / "lfc.npz").symlink_to(BNN_PYNQ / "lfcW1A1_mnist.npz")
    (ws / "in" / "f.json").write_text("{}")
    # Previous outputs: a score file, a generate folder, a firmware folder.
    np.save(ws / "out" / "scores.npy", np.arange(6).reshape(2, 3))
    gen = ws / "out" / "gen"
    gen.mkdir()
    (gen / "bnnhw_old.v").write_text("module bnnhw_old; endmodule\n")
    (gen / "manifest.json").write_text(json.dumps({"format": "bnnhw-manifest",
                                                   "verilog": "bnnhw_old.v"}))
    fw = ws / "out" / "fw"
    (fw / "generated").mkdir(parents=True)
    (fw / "generated" / "bnn_model_data.h").write_text("/* old */\n")
    (fw / "firmware.json").write_text(json.dumps({"format": "bnnhw-firmware",
                                                  "files": ["generated/bnn_model_data.h"]}))
    (ws / "cwd").mkdir()
    monkeypatch.chdir(ws / "cwd")
    monkeypatch.setenv("BNNHW_BUILD_ROOT", str(ws / "root"))
    for variable in ("BNNHW_MAX_ARRAY_BYTES", "BNNHW_MAX_MODEL_BYTES",
                     "BNNHW_MAX_IMAGE_ELEMENTS", "BNNHW_MAX_LAYERS", "BNNHW_MAX_HW_LANES"):
        monkeypatch.delenv(variable, raising=False)
    return ws


def snapshot(folder):
    """Everything below ``folder``: ``{relative path: bytes | 'dir' | ('link', target)}``."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = "dir"
            elif path.is_file():
                out[rel] = path.read_bytes()
            else:
                out[rel] = "special"
    return out


def expand(case, ws):
    words = {"MODEL": str(ws / "in" / ("m.npz" if (ws / "in" / "m.npz").exists() else
                                       "good.npz")),
             "X": str(ws / "in" / "x.npy"), "OUT": str(ws / "out" / "scores.npy"),
             "GEN": str(ws / "out" / "gen"), "FW": str(ws / "out" / "fw"),
             "IN": str(ws / "in")}
    argv = []
    for word in case.argv.split():
        if word in words:
            argv.append(words[word])
        elif word.startswith(("in/", "out/")):
            argv.append(str(ws / word))
        elif word in (".", ".."):
            argv.append(word)
        else:
            argv.append(word)
    return argv


def run_main(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:              # argparse errors exit from parse_args
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def check_refused(case, ws, capsys, monkeypatch):
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    if case.setup is not None:
        case.setup(ws)
    before_out, before_in = snapshot(ws / "out"), snapshot(ws / "in")
    before_cwd = snapshot(ws / "cwd")
    start = time.monotonic()
    code, out, err = run_main(expand(case, ws), capsys)
    seconds = time.monotonic() - start
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err}"
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("bnnhw: error: "), lines[0]
    assert re.search(case.message, lines[0]), lines[0]
    # No file at or beside the output path, no temporary, every previous output intact; the
    # inputs and the current folder untouched.
    assert snapshot(ws / "out") == before_out
    assert snapshot(ws / "in") == before_in
    assert snapshot(ws / "cwd") == before_cwd
    assert not (ws / "root").exists() or not any(
        ".tmp" in p.name for p in (ws / "root").rglob("*"))
    assert seconds < 20, f"refused only after {seconds:.1f} s"
    return lines[0]


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_bad_input_is_refused(case, workspace, capsys, monkeypatch):
    check_refused(case, workspace, capsys, monkeypatch)


def test_a_good_model_passes_the_same_path(workspace, capsys):
    """The battery's good files are good: the same commands succeed on them (so each case
    fails because of its one corruption, not because of the setting)."""
    ws = workspace
    code, out, err = run_main(["run", str(ws / "in" / "good.npz"), str(ws / "in" / "x.npy"),
                               "-o", str(ws / "out" / "scores.npy")], capsys)
    assert code == 0, err
    from bnnhw import golden, load_model
    x = np.load(ws / "in" / "x.npy")
    assert np.array_equal(np.load(ws / "out" / "scores.npy"),
                          golden.forward(load_model(ws / "in" / "good.npz"), x))
    for kind in NETS:
        header, arrays = model_parts(kind)
        write_model(ws / "in" / f"{kind}.npz", header, arrays)
        code, _, err = run_main(["info", str(ws / "in" / f"{kind}.npz")], capsys)
        assert code == 0, err
    pynq_case(lambda m, a: None)(ws)                  # LFC rewritten unchanged loads
    code, _, err = run_main(["info", str(ws / "in" / "m.npz")], capsys)
    assert code == 0, err


def test_a_corruption_is_caught_by_the_checks(workspace, capsys, monkeypatch):
    """The battery's checks are sharp: a command that succeeds, or that writes beside its
    output, fails them."""
    ws = workspace
    good = Case("good", "run MODEL X -o OUT", "bnnhw: error")
    with pytest.raises(AssertionError, match="exit 0"):
        check_refused(good, ws, capsys, monkeypatch)
    # A refusal that leaves a file beside the output is caught too.
    leaky = Case("leaky", "run MODEL in/none.npy -o OUT", "does not exist",
                 setup=None)
    real = check_refused(leaky, ws, capsys, monkeypatch)
    assert "does not exist" in real
    import bnnhw.cli.model as model_cli
    original = model_cli.load_input

    def leaking(path):
        (ws / "out" / ".scores.npy.tmp").write_bytes(b"left behind")
        return original(path)
    monkeypatch.setattr(model_cli, "load_input", leaking)
    with pytest.raises(AssertionError):
        check_refused(leaky, ws, capsys, monkeypatch)


# -- data loss ------------------------------------------------------------------------------------

def test_generate_replaces_its_own_output_only(workspace, capsys):
    """A previous generate output is replaced; the folder then holds the new core only."""
    ws = workspace
    code, _, err = run_main(["generate", str(ws / "in" / "good.npz"), "-o",
                             str(ws / "out" / "gen")], capsys)
    assert code == 0, err
    names = sorted(p.name for p in (ws / "out" / "gen").iterdir())
    assert names == ["bnnhw_tiny.v", "manifest.json", "vectors.npz"]
    assert sorted(p.name for p in (ws / "out").iterdir()) == ["fw", "gen", "scores.npy"]
    # and once more: the output it wrote itself is replaced again
    code, _, err = run_main(["generate", str(ws / "in" / "good.npz"), "-o",
                             str(ws / "out" / "gen"), "--clock-mhz", "50"], capsys)
    assert code == 0, err
    assert json.loads((ws / "out" / "gen" / "manifest.json").read_text())[
        "clock_mhz_assumed"] == 50


def test_manifest_is_strict_json(workspace, capsys):
    ws = workspace
    code, _, err = run_main(["generate", str(ws / "in" / "good.npz"), "-o",
                             str(ws / "out" / "new"), "--clock-mhz", "1e-300"], capsys)
    assert code == 0, err
    text = (ws / "out" / "new" / "manifest.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the manifest"))


def test_train_example_keeps_both_files_when_one_cannot_be_written(workspace, capsys,
                                                                   monkeypatch):
    """The model and its report are written all or nothing: a report that fails after
    training leaves the previous model untouched."""
    ws = workspace
    (ws / "out" / "m.npz").write_bytes(b"the user's model")
    (ws / "out" / "m.json").write_text("the user's report")

    real_write_text = Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.name.startswith(".m.json.") and self.name.endswith(".tmp"):
            raise OSError(28, "No space left on device")
        return real_write_text(self, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", full_disk)
    code, _, err = run_main(["train-example", "-o", str(ws / "out" / "m.npz"), "--epochs", "1"],
                            capsys)
    assert code == 2 and "m.json': cannot write it (No space left on device)" in err, err
    assert (ws / "out" / "m.npz").read_bytes() == b"the user's model"
    assert (ws / "out" / "m.json").read_text() == "the user's report"
    assert sorted(p.name for p in (ws / "out").iterdir()) == ["fw", "gen", "m.json", "m.npz",
                                                              "scores.npy"]


def test_atomic_write_many_all_or_nothing(tmp_path):
    from bnnhw.outputs import atomic_write_many
    (tmp_path / "a").write_text("old a")

    def fail(tmp):
        raise OSError(28, "No space left on device")
    with pytest.raises(Exception, match="No space left on device"):
        atomic_write_many([(tmp_path / "a", lambda t: Path(t).write_text("new a")),
                           (tmp_path / "new" / "b", fail)])
    assert (tmp_path / "a").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


# -- the real entry point -------------------------------------------------------------------------

def _entry(args, cwd, env=None):
    full = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "bnnhw", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)


def test_entry_point_code_injection_name_refused(workspace):
    """The name that compiled into the runner and ran before main (issue 9) is refused by
    ``bnnhw firmware`` at load: no header is written, no compiler runs."""
    ws = workspace
    header, arrays = model_parts("dense")
    header["name"] = ("x */ __attribute__((constructor)) static void pwn(void){ "
                      "extern void exit(int); exit(42);} /* ")
    write_model(ws / "in" / "pwn.npz", header, arrays)
    proc = _entry(["firmware", str(ws / "in" / "pwn.npz"), "-o", str(ws / "out" / "pwned")],
                  ws / "cwd")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("bnnhw: error: ") and "network name must be" in proc.stderr
    assert not (ws / "out" / "pwned").exists() and not (ws / "root").exists()


def test_entry_point_argument_error_is_one_line(workspace):
    proc = _entry(["generate", "x.npz", "-o", "d", "--clock-mhz", "nan"], workspace / "cwd")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("bnnhw: error: argument --clock-mhz: must be a positive number, "
                           "not 'nan' (see `bnnhw generate --help`)\n")


def test_entry_point_memory_refusal_is_quick(workspace):
    """A 640-byte .npy claiming 10^9 images and a 100000x100000-input model are refused from
    their headers, under a 2 GB address-space limit (they would need 16 GB and 40 GB)."""
    ws = workspace
    (ws / "in" / "huge.npy").write_bytes(npy_header((10 ** 9, 1, 4, 4)) + b"\0" * 512)
    header, arrays = model_parts("dense")
    header["input_shape"] = [1, 100000, 100000]
    write_model(ws / "in" / "big.npz", header, arrays)
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
    for args in (["run", str(ws / "in" / "good.npz"), str(ws / "in" / "huge.npy"), "-o",
                  str(ws / "out" / "s.npy")],
                 ["generate", str(ws / "in" / "big.npz"), "-o", str(ws / "out" / "g")]):
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", limit + "import sys; from bnnhw.cli "
                               "import main; sys.exit(main(sys.argv[1:]))", *args],
                              cwd=ws / "cwd", capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "more than the maximum" in proc.stderr
        assert time.monotonic() - start < 30
    assert not (ws / "out" / "s.npy").exists() and not (ws / "out" / "g").exists()
