"""The schema of model headers, checked before anything is built from them.

Model files are untrusted data. Before a layer is constructed, the header of a bnnhw model
(:func:`check_bnnhw_header`) or the ``meta_json`` of a BNN-PYNQ file
(:func:`check_bnn_pynq_meta`) is checked field by field: JSON types, required and unknown
keys, integers that are integers (``8.5`` and ``true`` are not) within their ranges, strings
that reach C, Verilog or a path matching a strict pattern (:func:`check_identifier`). The
layer constructors then check the values against each other (shapes, widths). Every message
names the file, the layer and the field, and shows the offending value.

JSON is strict everywhere (:func:`strict_json`, :func:`dump_json`): ``NaN`` and ``Infinity``
are refused when read and never written.
"""

import json
import math
import re

from ..errors import ModelError
from ..limits import check_count, check_size

__all__ = ["NAME_PATTERN", "LAYER_NAME_PATTERN", "check_identifier", "check_layer_name",
           "check_class_name", "strict_json", "dump_json", "check_bnnhw_header",
           "check_bnn_pynq_meta", "check_int_field", "topology_pools"]

#: A network name: a letter or ``_``, then letters, digits, ``_`` or ``-``, at most 64 in all.
#: It reaches C comments and string literals, Verilog module names and folder names, so it
#: must be safe in each as it is.
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
#: A layer name: a C identifier of at most 64 characters (it names C strings and hardware
#: submodules).
LAYER_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Longest class name (class names only reach JSON and printed reports).
MAX_CLASS_NAME = 1024

_SCALARS = (type(None), bool, int, float, str)


def check_identifier(value, what="network name", error=ModelError, pattern=NAME_PATTERN):
    """``value`` if it is a string matching ``pattern`` in full, else ``error`` naming it."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        rule = ("a letter or '_' followed by letters, digits, '_' or '-' (at most 64)"
                if pattern is NAME_PATTERN else
                "a letter or '_' followed by letters, digits or '_' (at most 64)")
        raise error(f"{what} must be {rule}, not {_short(value)}")
    return value


def check_layer_name(value, error=ModelError):
    """A layer name (:data:`LAYER_NAME_PATTERN`)."""
    return check_identifier(value, "layer name", error, LAYER_NAME_PATTERN)


def check_class_name(value, index, error=ModelError):
    """A class name: printable text of at most :data:`MAX_CLASS_NAME` characters."""
    if not isinstance(value, str):
        raise error(f"class name {index} must be a string, not {_short(value)}")
    if len(value) > MAX_CLASS_NAME or not value.isprintable():
        raise error(f"class name {index} must be printable text of at most {MAX_CLASS_NAME} "
                    f"characters, not {_short(value)}")
    return value


def _short(value, n=80):
    text = repr(value)
    return text if len(text) <= n else text[:n - 5] + "...'" + f" ({len(text)} characters)"


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def strict_json(text, where, error=ModelError):
    """Parse JSON text strictly: no ``NaN`` / ``Infinity``, nesting and integers bounded."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise error(f"{where} is nested too deeply to be a header") from None
    except ValueError as e:                    # JSONDecodeError, NaN, over-long integers
        raise error(f"{where} is not valid JSON ({e})") from None


def dump_json(obj, **kwargs):
    """``json.dumps`` that refuses NaN and infinities (strict JSON)."""
    return json.dumps(obj, allow_nan=False, **kwargs)


def _type_name(value):
    return {type(None): "null", bool: "a boolean", int: "an integer", float: "a number",
            str: "a string", list: "a list", dict: "an object"}.get(type(value),
                                                                    type(value).__name__)


def _described(value):
    """``a string 'x'``, ``null``, ``a boolean true``: a JSON value for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean {str(value).lower()}"
    return f"{_type_name(value)} {_short(value)}"


def _expect(value, types, where, what, error=ModelError):
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in (
            types if isinstance(types, tuple) else (types,))):
        raise error(f"{where} must be {what}, not {_described(value)}")
    return value


def check_int_field(value, where, minimum=None, maximum=None, error=ModelError):
    """A JSON integer (not a boolean, not ``8.0`` or ``8.5``) within the bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where} must be an integer, not {_described(value)}")
    if minimum is not None and value < minimum:
        raise error(f"{where} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise error(f"{where} must be at most {maximum}, not {_short(value)}")
    return value


def _check_keys(obj, where, required, optional=(), error=ModelError):
    missing = [k for k in required if k not in obj]
    if missing:
        raise error(f"{where} has no {missing[0]!r} field")
    unknown = sorted(k for k in obj if k not in required and k not in optional)
    if unknown:
        raise error(f"{where} has an unknown field {_short(unknown[0])}")


def _check_shape(value, where):
    _expect(value, list, where, "a list [C, H, W] of positive integers")
    if len(value) != 3:
        raise ModelError(f"{where} must be [C, H, W], not {_short(value)}")
    for axis, size in zip("CHW", value):
        check_int_field(size, f"{where} {axis}", minimum=1)
    check_size("image_elements", math.prod(value), f"{where} {value}", error=ModelError)
    return tuple(value)


def _check_classes(value, where):
    _expect(value, list, where, "a list of class names")
    for i, c in enumerate(value):
        check_class_name(c, i)
    return value


#: Fields of a bnnhw model header (``__bnnhw__``).
HEADER_REQUIRED = ("format", "version", "name", "input_shape", "quantizer", "layers")
HEADER_OPTIONAL = ("classes", "meta")
LAYER_FIELDS = ("kind", "name", "params", "arrays")


def check_bnnhw_header(header, file, *, format, version):
    """Check a bnnhw model header's structure (see the module docstring); returns it.

    Values inside ``params`` are checked to be JSON scalars here and then by the layer
    constructors (types and ranges, naming the layer and field).
    """
    if not isinstance(header, dict):
        raise ModelError(f"{file}: header must be a JSON object, not {_type_name(header)}")
    if header.get("format") != format:
        raise ModelError(f"{file}: header format must be {format!r}, "
                         f"not {_short(header.get('format'))}")
    if header.get("version") != version or isinstance(header.get("version"), bool):
        raise ModelError(f"{file}: model format version {_short(header.get('version'))} is "
                         f"not supported (this bnnhw reads version {version})")
    _check_keys(header, f"{file}: header", HEADER_REQUIRED, HEADER_OPTIONAL)
    check_identifier(header["name"], f"{file}: network name")
    _check_shape(header["input_shape"], f"{file}: input_shape")
    q = _expect(header["quantizer"], dict, f"{file}: quantizer",
                "an object {\"kind\": ..., parameters}")
    if "kind" not in q:
        raise ModelError(f"{file}: quantizer has no 'kind' field")
    for key, v in q.items():
        _expect(v, (bool, int, float, str), f"{file}: quantizer {key!r}", "a number or string")
    _check_classes(header.get("classes", []), f"{file}: classes")
    _expect(header.get("meta", {}), dict, f"{file}: meta", "an object")
    layers = _expect(header["layers"], list, f"{file}: layers", "a list of layer objects")
    check_count("layers", len(layers), f"{file}: the model", error=ModelError)
    for i, entry in enumerate(layers):
        where = f"{file}: layer {i}"
        _expect(entry, dict, where, "an object {\"kind\", \"name\", \"params\", \"arrays\"}")
        if "name" in entry:
            check_identifier(entry["name"], f"{where}: name", pattern=LAYER_NAME_PATTERN)
            where = f"{file}: layer {entry['name']!r}"
        _check_keys(entry, where, ("kind",), ("name", "params", "arrays"))
        _expect(entry["kind"], str, f"{where}: kind", "a string")
        params = _expect(entry.get("params", {}), dict, f"{where}: params", "an object")
        for key, v in params.items():
            _expect(v, _SCALARS, f"{where}: parameter {key!r}", "a number, string or null")
            if isinstance(v, float) and not math.isfinite(v):
                raise ModelError(f"{where}: parameter {key!r} must be finite, not {v!r}")
        arrays = _expect(entry.get("arrays", {}), dict, f"{where}: arrays",
                         "an object {field: archive entry}")
        for key, v in arrays.items():
            _expect(v, str, f"{where}: array {key!r}", "the name of an archive entry")
    return header


#: Fields of one BNN-PYNQ ``meta_json`` layer that bnnhw reads.
PYNQ_LAYER_KINDS = ("conv", "fc")


def check_bnn_pynq_meta(meta, file):
    """Check the parts of a BNN-PYNQ ``meta_json`` that bnnhw reads; returns it normalised
    (defaults filled in: ``stride`` 1, ``padding`` 0, ``first_layer_input_bits`` 1)."""
    where = f"{file}: BNN-PYNQ meta_json"
    _expect(meta, dict, where, "an object")
    for key in ("layers", "topology"):
        if key not in meta:
            raise ModelError(f"{where} has no {key!r} field")
    layers = _expect(meta["layers"], list, f"{where} layers", "a list of layer objects")
    if not layers:
        raise ModelError(f"{where} lists no layers")
    check_count("layers", len(layers), f"{where}", error=ModelError)
    _expect(meta["topology"], str, f"{where} topology", "a string")
    bits = meta.get("first_layer_input_bits", 1)
    check_int_field(bits, f"{where} first_layer_input_bits", 1, 16)
    if "input_shape" not in meta:
        raise ModelError(f"{where} has no 'input_shape' field")
    _check_shape(meta["input_shape"], f"{where} input_shape")
    _check_classes(meta.get("classes", []), f"{where} classes")
    for key in ("network", "dataset"):
        if key in meta:
            _expect(meta[key], str, f"{where} {key}", "a string")
    out = []
    indices = set()
    for n, entry in enumerate(layers):
        at = f"{where} layer {n}"
        _expect(entry, dict, at, "an object")
        for key in ("index", "name", "kind", "PE", "SIMD"):
            if key not in entry:
                raise ModelError(f"{at} has no {key!r} field")
        name = check_identifier(entry["name"], f"{at} name", pattern=LAYER_NAME_PATTERN)
        at = f"{file}: layer {name!r}"
        index = check_int_field(entry["index"], f"{at}: index", 0, 1 << 20)
        if index in indices:
            raise ModelError(f"{at}: index {index} is used twice")
        indices.add(index)
        if entry["kind"] not in PYNQ_LAYER_KINDS:
            raise ModelError(f"{at}: unknown BNN-PYNQ layer kind {_short(entry['kind'])}")
        clean = {"index": index, "name": name, "kind": entry["kind"],
                 "PE": check_int_field(entry["PE"], f"{at}: PE", 1),
                 "SIMD": check_int_field(entry["SIMD"], f"{at}: SIMD", 1),
                 "stride": check_int_field(entry.get("stride", 1), f"{at}: stride", 1),
                 "padding": check_int_field(entry.get("padding", 0), f"{at}: padding", 0)}
        out.append(clean)
    return dict(meta, layers=out, first_layer_input_bits=bits)


def topology_pools(topology, file):
    """``{layer name: pool size}`` from a BNN-PYNQ topology string (pools follow the layer
    named before them), checked token by token."""
    pools_after = {}
    previous = None
    for item in topology.split(", "):
        token = item.split("(")[0].strip()
        if token.startswith("maxpool"):
            size_text = token[len("maxpool"):].split("x")[0]
            if not size_text.isdigit() or not 1 <= int(size_text) <= 64:
                raise ModelError(f"{file}: BNN-PYNQ topology names a pool {_short(token)} "
                                 f"without a size from 1 to 64 (e.g. 'maxpool2x2')")
            if previous is None:
                raise ModelError(f"{file}: BNN-PYNQ topology starts with a pool")
            pools_after[previous] = int(size_text)
        else:
            previous = token
    return pools_after

