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

Files are read as untrusted data (see the README's security note): the archive through
:class:`bnnhw.model.safeio.NpzArchive` (``.npy`` members only, sizes checked from the zip
directory and each ``.npy`` header against :mod:`bnnhw.limits` before anything is inflated,
never unpickled), the header as strict JSON (no ``NaN``) checked by
:func:`bnnhw.model.schema.check_bnnhw_header`: no unknown fields, ``name`` matching
:data:`bnnhw.model.schema.NAME_PATTERN` and layer names C identifiers, ``input_shape`` three
positive integers, parameters JSON scalars; the layer constructors then check every value
(integers that fit their dtype: a threshold of ``1e30`` or ``2**64 - 1`` is refused, never
wrapped).
"""

from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..outputs import atomic_write
from .batchnorm import fold_batchnorm
from .layers import (COMPUTE_TYPES, LAYER_TYPES, QUANTIZERS, BinaryConv2d, BinaryDense, Clip,
                     FixedPointQuantizer, MaxPool, MultibitConv2d, Output, Threshold,
                     ThresholdQuantizer)
from .network import Network
from .safeio import NpzArchive
from .schema import (check_bnn_pynq_meta, check_bnnhw_header, dump_json, strict_json,
                     topology_pools)

__all__ = ["FORMAT", "VERSION", "load_model", "save_model", "model_writer", "load_bnn_pynq",
           "atomic_write"]

FORMAT = "bnnhw-model"
VERSION = 1
HEADER_KEY = "__bnnhw__"


def save_model(net, path):
    """Write ``net`` to ``path`` in bnnhw's own format (see the module docstring)."""
    atomic_write(path, model_writer(net))


def model_writer(net):
    """``write(tmp_path)`` writing ``net`` in bnnhw's format, for :func:`~bnnhw.outputs.
    atomic_write_many` (a model and its report written all or nothing)."""
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
    arrays[HEADER_KEY] = np.array(dump_json(header, sort_keys=True))

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return write


def _open_npz(path):
    """The model archive at ``path``, opened for checked reading (:mod:`bnnhw.model.safeio`)."""
    return NpzArchive(path, "model file", error=ModelError)


def load_model(path):
    """Load a model file: bnnhw's own format or a BNN-PYNQ ``.npz`` (detected by content), or
    a QONNX / FINN-ONNX ``.onnx`` file (:func:`bnnhw.interop.load_onnx`, extra ``bnnhw[onnx]``).

    The file is untrusted data: its header is checked against the schema
    (:mod:`bnnhw.model.schema`) and every array against its ``.npy`` header and the size
    limits (:mod:`bnnhw.limits`) before anything is built; nothing is ever unpickled.

    Raises :class:`~bnnhw.errors.ModelError` naming the file, layer and field on bad input.
    """
    if Path(path).suffix.lower() == ".onnx":
        # QONNX / FINN-ONNX, through the optional extra bnnhw[onnx] (imported only here).
        from ..interop import load_onnx
        return load_onnx(path)
    file = str(path)
    with _open_npz(path) as archive:
        try:
            if HEADER_KEY in archive:
                return _from_bnnhw(archive, file)
            if "meta_json" in archive:
                return _from_bnn_pynq(archive, file)
        except ModelError as e:
            # Every message names the file (the layer constructors name layer and field).
            if file in str(e):
                raise
            raise ModelError(f"{file}: {e}") from None
    raise ModelError(f"model file {str(path)!r} is neither a bnnhw model (no {HEADER_KEY!r} "
                     f"entry) nor a BNN-PYNQ parameter file (no 'meta_json' entry)")


def _text_entry(archive, key, file):
    value = archive.read(key)
    if value.dtype.kind != "U" or value.shape != ():
        raise ModelError(f"{file}: entry {key!r} must be one string, not {value.dtype} of "
                         f"shape {list(value.shape)}")
    return str(value)


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


def _from_bnnhw(archive, file):
    header = strict_json(_text_entry(archive, HEADER_KEY, file), f"{file}: header")
    check_bnnhw_header(header, file, format=FORMAT, version=VERSION)
    q = dict(header["quantizer"])
    qkind = q.pop("kind")
    if qkind not in QUANTIZERS:
        raise ModelError(f"{file}: unknown input quantizer kind {qkind!r} "
                         f"(known: {', '.join(QUANTIZERS)})")
    try:
        quantizer = QUANTIZERS[qkind](**q)
    except TypeError as e:
        raise ModelError(f"{file}: input quantizer {qkind!r}: {e}") from None
    layers = []
    for i, entry in enumerate(header["layers"]):
        kind = entry["kind"]
        name = entry.get("name", f"layer{i}")
        arrays = {}
        for field_name, key in entry.get("arrays", {}).items():
            if key not in archive:
                raise ModelError(f"{file}: layer {name!r}: array {field_name!r} "
                                 f"(entry {key!r}) is missing")
            arrays[field_name] = archive.read(key)
        params = dict(entry.get("params", {}))
        if kind == "batchnorm_sign":
            eps = params.pop("eps", 1e-5)
            if isinstance(eps, bool) or not isinstance(eps, (int, float)):
                raise ModelError(f"{file}: layer {name!r}: batch-norm eps must be a number, "
                                 f"not {eps!r}")
            if params:
                raise ModelError(f"{file}: layer {name!r} (batchnorm_sign): unknown "
                                 f"parameter {sorted(params)[0]!r}")
            unknown = sorted(set(arrays) - {"gamma", "beta", "mean", "var"})
            if unknown:
                raise ModelError(f"{file}: layer {name!r} (batchnorm_sign): unknown array "
                                 f"{unknown[0]!r}")
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
    with _open_npz(path) as archive:
        if "meta_json" not in archive:
            raise ModelError(f"{str(path)}: BNN-PYNQ file has no 'meta_json' entry")
        return _from_bnn_pynq(archive, str(path))


def _from_bnn_pynq(archive, file):
    meta = strict_json(_text_entry(archive, "meta_json", file), f"{file}: BNN-PYNQ meta_json")
    meta = check_bnn_pynq_meta(meta, file)
    input_bits = meta["first_layer_input_bits"]
    input_shape = tuple(meta["input_shape"])
    quantizer = FixedPointQuantizer(input_bits) if input_bits > 1 else ThresholdQuantizer(128)
    pools_after = topology_pools(meta["topology"], file)

    layers = []
    folding = {}
    for entry in meta["layers"]:
        i, name, kind = entry["index"], entry["name"], entry["kind"]
        key = f"{name}_weight"
        if key not in archive:
            raise ModelError(f"{file}: layer {name!r}: weight {key!r} is missing")
        weight = archive.read(key)
        if kind == "conv":
            stride, pad = entry["stride"], entry["padding"]
            if i == 0 and input_bits > 1:
                layers.append(MultibitConv2d(name, weight, input_bits=input_bits, stride=stride,
                                             pad=pad))
            else:
                layers.append(BinaryConv2d(name, weight, stride=stride, pad=pad))
        else:
            layers.append(BinaryDense(name, weight))
        folding[name] = {"PE": entry["PE"], "SIMD": entry["SIMD"]}
        thr_key = f"thr{i}_dot_ge"
        if thr_key in archive:
            layers.append(Threshold(f"thr{i}", archive.read(thr_key)))
        if name in pools_after:
            layers.append(MaxPool(f"pool{i}", pools_after[name]))
    layers.append(Output("output"))
    classes = tuple(meta.get("classes", ()))
    net_meta = {"source": "bnn-pynq", "dataset": meta.get("dataset"),
                "network": meta.get("network"), "folding": folding}
    return Network(name=meta.get("network", "bnn_pynq") + "_" + meta.get("dataset", ""),
                   input_shape=input_shape, quantizer=quantizer, layers=tuple(layers),
                   classes=classes, meta=net_meta)
