"""Interchange with FINN's and Brevitas' world: QONNX and FINN-ONNX files in and out.

Needs the optional extra ``bnnhw[onnx]`` (the libraries ``qonnx``, ``onnx`` and
``onnxruntime``); without it every entry point raises one :class:`~bnnhw.errors.ToolError`
that names the extra. Nothing here is imported by :mod:`bnnhw.model` at module level.

* :func:`import_onnx` / :func:`load_onnx`: a QONNX or FINN-ONNX graph -> a
  :class:`~bnnhw.model.Network`, thresholds derived by running the file's own nodes.
* :func:`export_qonnx`: a Network -> a QONNX graph in Brevitas' operator forms that qonnx
  executes to the golden model's scores.
"""

from ..errors import ToolError

__all__ = ["import_onnx", "load_onnx", "export_qonnx", "require_onnx", "EXTRA"]

#: The pip extra that brings the ONNX libraries.
EXTRA = "bnnhw[onnx]"


def require_onnx(what="reading ONNX models"):
    """Import the optional ONNX libraries, or raise a one-line ToolError naming the extra."""
    missing = []
    for module in ("onnx", "onnxruntime", "qonnx"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ToolError(f"{what} needs the optional extra {EXTRA} (missing: "
                        f"{', '.join(missing)}): pip install '{EXTRA}'")


def import_onnx(path, *, input_scale=None):
    """Read a QONNX / FINN-ONNX file; returns ``(network, report)``.

    See :func:`bnnhw.interop.qonnx.import_onnx`.
    """
    require_onnx()
    from .qonnx import import_onnx as _import
    return _import(path, input_scale=input_scale)


def load_onnx(path, *, input_scale=None):
    """The :class:`~bnnhw.model.Network` of a QONNX / FINN-ONNX file (see :func:`import_onnx`)."""
    return import_onnx(path, input_scale=input_scale)[0]


def export_qonnx(net, path):
    """Write ``net`` as a QONNX graph; see :func:`bnnhw.interop.export.export_qonnx`."""
    require_onnx("writing ONNX models")
    from .export import export_qonnx as _export
    return _export(net, path)
