"""Model files: bnnhw's own versioned format, and BNN-PYNQ parameter files.

bnnhw model format, version 1
-----------------------------
An uncompressed NumPy ``.npz`` archive (read with ``allow_pickle=False``) holding:

``__bnnhw__``
    A JSON string: ``{"format": "bnnhw-model", "version": 1, "name": str,
    "input_shape": [C, H, W], "quantizer": {"kind": "threshold" | "fixed_point", ...params},
    "classes": [str], "meta": {...}, "layers": [{"kind": str, "name": str, "params": {...},
    "arrays": {"field": "archive key"}}]}``.
``layer<i>.<field>``
    The arrays of layer ``i``: ``weight`` (int8, +1 / -1), ``thresholds`` (int64), ``negate``
    (uint8 0 / 1), or for ``batchnorm_sign`` layers ``gamma``, ``beta``, ``mean``, ``var``
    (float64) with ``eps`` in ``params``.

Layer kinds: ``multibit_conv2d``, ``binary_conv2d``, ``binary_dense``, ``threshold``, ``clip``,
``maxpool``, ``output``, and ``batchnorm_sign`` (batch norm + sign, folded into a
``threshold`` on load over the range of the value it sees).

Files are written atomically: to a temporary file in the same folder, then renamed.
"""

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelError
from .batchnorm import fold_batchnorm
from .layers import (COMPUTE_TYPES, LAYER_TYPES, QUANTIZERS, BinaryConv2d, BinaryDense, Clip,
                     FixedPointQuantizer, MaxPool, MultibitConv2d, Output, Threshold,
                     ThresholdQuantizer)
from .network import Network

__all__ = ["FORMAT", "VERSION", "load_model", "save_model", "load_bnn_pynq", "atomic_write"]

FORMAT = "bnnhw-model"
VERSION = 1
HEADER_KEY = "__bnnhw__"


def atomic_write(path, write):
    """Call ``write(tmp_path)`` then rename onto ``path``; nothing is left behind on error.

    Parameters
    ----------
    path : str or os.PathLike
        The file to (re)place. Missing parent folders are created.
    write : callable
        ``write(tmp_path)`` writes the whole file at ``tmp_path``, in the same folder.

    Raises
    ------
    bnnhw.errors.InputError
        When ``path`` cannot be a file: it is a folder, a parent is a file, or the folder
        cannot be written; the message names the path.
    """
    path = Path(path)
    where = f"output {str(path)!r}"
    if path.is_dir():
        raise InputError(f"{where} is a directory, not a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{where}: its folder {str(path.parent)!r} is not a directory "
                         f"(a file is in the way)") from None
    except OSError as e:
        raise InputError(f"{where}: cannot write to folder {str(path.parent)!r} "
                         f"({e.strerror or e})") from None
    os.close(fd)
    try:
        write(tmp)
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        try:
            os.replace(tmp, path)
        except OSError as e:          # e.g. a directory appeared at path meanwhile
            raise InputError(f"{where}: cannot replace it ({e.strerror or e})") from None
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_model(net, path):
    """Write ``net`` to ``path`` in bnnhw's own format (see the module docstring)."""
    arrays = {}
    layers = []
    for i, layer in enumerate(net.layers):
        keys = {}
        for field_name, array in layer.arrays().items():
            key = f"layer{i}.{field_name}"
            arrays[key] = np.asarray(array)
            keys[field_name] = key
        layers.append({"kind": layer.kind, "name": layer.name, "params": layer.params(),
                       "arrays": keys})
    header = {"format": FORMAT, "version": VERSION, "name": net.name,
              "input_shape": list(net.input_shape),
              "quantizer": {"kind": net.quantizer.kind, **net.quantizer.params()},
              "classes": list(net.classes), "meta": net.meta, "layers": layers}
    arrays[HEADER_KEY] = np.array(json.dumps(header, sort_keys=True))

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    atomic_write(path, write)


def _open_npz(path):
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise ModelError(f"model file {str(path)!r} is a directory")
    try:
        data = np.load(path, allow_pickle=False)
        contents = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise ModelError(f"model file {str(path)!r} is not a readable .npz archive "
                         f"(truncated or corrupt: {e})") from None
    return contents


def load_model(path):
    """Load a model file: bnnhw's own format or a BNN-PYNQ ``.npz`` (detected by content), or
    a QONNX / FINN-ONNX ``.onnx`` file (:func:`bnnhw.interop.load_onnx`, extra ``bnnhw[onnx]``).

    Raises :class:`~bnnhw.errors.ModelError` naming the file, layer and field on bad input.
    """
    if Path(path).suffix.lower() == ".onnx":
        # QONNX / FINN-ONNX, through the optional extra bnnhw[onnx] (imported only here).
        from ..interop import load_onnx
        return load_onnx(path)
    contents = _open_npz(path)
    if HEADER_KEY in contents:
        return _from_bnnhw(contents, str(path))
    if "meta_json" in contents:
        return _from_bnn_pynq(contents, str(path))
    raise ModelError(f"model file {str(path)!r} is neither a bnnhw model (no {HEADER_KEY!r} "
                     f"entry) nor a BNN-PYNQ parameter file (no 'meta_json' entry)")


def _value_range(layers, file):
    """Integer range of the value the next layer sees, from the layers so far."""
    lo = hi = None
    for layer in layers:
        if isinstance(layer, COMPUTE_TYPES):
            lo, hi = layer.output_range
        elif isinstance(layer, Clip) and lo is not None:
            lo, hi = max(lo, -layer.limit), min(hi, layer.limit)
    if lo is None:
        raise ModelError(f"{file}: a batch-norm layer must follow a compute layer")
    return lo, hi


def _from_bnnhw(contents, file):
    try:
        header = json.loads(str(contents[HEADER_KEY]))
    except json.JSONDecodeError as e:
        raise ModelError(f"{file}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelError(f"{file}: header format must be {FORMAT!r}, "
                         f"not {header.get('format') if isinstance(header, dict) else header!r}")
    if header.get("version") != VERSION:
        raise ModelError(f"{file}: model format version {header.get('version')!r} is not "
                         f"supported (this bnnhw reads version {VERSION})")
    for key in ("name", "input_shape", "quantizer", "layers"):
        if key not in header:
            raise ModelError(f"{file}: header has no {key!r} field")
    q = dict(header["quantizer"])
    qkind = q.pop("kind", None)
    if qkind not in QUANTIZERS:
        raise ModelError(f"{file}: unknown input quantizer kind {qkind!r} "
                         f"(known: {', '.join(QUANTIZERS)})")
    try:
        quantizer = QUANTIZERS[qkind](**q)
    except TypeError as e:
        raise ModelError(f"{file}: input quantizer {qkind!r}: {e}") from None
    layers = []
    for i, entry in enumerate(header["layers"]):
        kind = entry.get("kind")
        name = entry.get("name", f"layer{i}")
        arrays = {}
        for field_name, key in entry.get("arrays", {}).items():
            if key not in contents:
                raise ModelError(f"{file}: layer {name!r}: array {field_name!r} "
                                 f"(entry {key!r}) is missing")
            arrays[field_name] = contents[key]
        params = dict(entry.get("params", {}))
        if kind == "batchnorm_sign":
            eps = params.pop("eps", 1e-5)
            missing = [f for f in ("gamma", "beta", "mean", "var") if f not in arrays]
            if missing:
                raise ModelError(f"{file}: layer {name!r}: batch-norm {missing[0]!r} is missing")
            t, neg = fold_batchnorm(arrays["gamma"], arrays["beta"], arrays["mean"],
                                    arrays["var"], eps, _value_range(layers, file), layer=name)
            layers.append(Threshold(name, t, neg))
            continue
        if kind not in LAYER_TYPES:
            raise ModelError(f"{file}: layer {name!r}: unknown layer kind {kind!r} "
                             f"(known: {', '.join(sorted(LAYER_TYPES))}, batchnorm_sign)")
        try:
            layers.append(LAYER_TYPES[kind](name=name, **params, **arrays))
        except TypeError as e:
            raise ModelError(f"{file}: layer {name!r} ({kind}): {e}") from None
    return Network(name=header["name"], input_shape=tuple(header["input_shape"]),
                   quantizer=quantizer, layers=tuple(layers),
                   classes=tuple(header.get("classes", ())), meta=header.get("meta", {}))


def load_bnn_pynq(path):
    """Load a BNN-PYNQ parameter file (``../shared/data/bnn-pynq/*.npz``) as a Network."""
    return _from_bnn_pynq(_open_npz(path), str(path))


def _from_bnn_pynq(contents, file):
    try:
        meta = json.loads(str(contents["meta_json"]))
        meta_layers = meta["layers"]
        topology = meta["topology"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ModelError(f"{file}: BNN-PYNQ meta_json is malformed ({e})") from None
    input_bits = int(meta.get("first_layer_input_bits", 1))
    input_shape = tuple(meta.get("input_shape", ()))
    quantizer = FixedPointQuantizer(input_bits) if input_bits > 1 else ThresholdQuantizer(128)

    # Pools follow the layer named before them in the topology string.
    pools_after = {}
    previous = None
    for item in topology.split(", "):
        token = item.split("(")[0].strip()
        if token.startswith("maxpool"):
            size = int(token[len("maxpool"):].split("x")[0])
            pools_after[previous] = size
        else:
            previous = token

    layers = []
    folding = {}
    for entry in meta_layers:
        i, name, kind = entry["index"], entry["name"], entry["kind"]
        key = f"{name}_weight"
        if key not in contents:
            raise ModelError(f"{file}: layer {name!r}: weight {key!r} is missing")
        weight = contents[key]
        if kind == "conv":
            stride, pad = int(entry.get("stride", 1)), int(entry.get("padding", 0))
            if i == 0 and input_bits > 1:
                layers.append(MultibitConv2d(name, weight, input_bits=input_bits, stride=stride,
                                             pad=pad))
            else:
                layers.append(BinaryConv2d(name, weight, stride=stride, pad=pad))
        elif kind == "fc":
            layers.append(BinaryDense(name, weight))
        else:
            raise ModelError(f"{file}: layer {name!r}: unknown BNN-PYNQ layer kind {kind!r}")
        folding[name] = {"PE": int(entry["PE"]), "SIMD": int(entry["SIMD"])}
        thr_key = f"thr{i}_dot_ge"
        if thr_key in contents:
            layers.append(Threshold(f"thr{i}", contents[thr_key]))
        if name in pools_after:
            layers.append(MaxPool(f"pool{i}", pools_after[name]))
    layers.append(Output("output"))
    classes = tuple(str(c) for c in meta.get("classes", ()))
    net_meta = {"source": "bnn-pynq", "dataset": meta.get("dataset"),
                "network": meta.get("network"), "folding": folding}
    return Network(name=str(meta.get("network", "bnn_pynq")) + "_" + str(meta.get("dataset", "")),
                   input_shape=input_shape, quantizer=quantizer, layers=tuple(layers),
                   classes=classes, meta=net_meta)
