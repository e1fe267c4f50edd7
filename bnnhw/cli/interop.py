"""Interchange commands: ``import`` (QONNX / FINN-ONNX -> bnnhw) and ``export`` (-> QONNX)."""

from fractions import Fraction

from ..errors import InputError
from ._common import load_net

__all__ = ["register"]


def _scale(text):
    """``--input-scale``: a positive number, also as a fraction (``255``, ``1``, ``510/2``)."""
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise InputError(f"--input-scale must be a positive number, not {text!r}") from None
    if not value > 0:
        raise InputError(f"--input-scale must be a positive number, not {text!r}")
    return value


def cmd_import(args):
    from ..interop import import_onnx
    from ..model import save_model
    from ..outputs import check_output_file
    scale = None if args.input_scale is None else _scale(args.input_scale)
    check_output_file(args.output)
    net, report = import_onnx(args.model, input_scale=scale)
    save_model(net, args.output)
    for line in report.lines():
        print(line)
    print(f"-> {args.output} (bnnhw model format, {net.name}, id {net.fingerprint()}, "
          f"{net.num_classes} classes, scores: {net.output_rule})")


def cmd_export(args):
    from ..interop import export_qonnx
    from ..outputs import check_output_file
    check_output_file(args.output)
    net = load_net(args.model)
    model = export_qonnx(net, args.output)
    print(f"{args.model} -> {args.output} (QONNX, opset {model.opset_import[0].version}, "
          f"{len(model.graph.node)} nodes; input float32 [N, {', '.join(map(str, net.input_shape))}]"
          f" = byte / 255; output: the golden model's scores)")


def register(sub):
    """Add ``import`` and ``export`` to the ``bnnhw`` subparsers."""
    p = sub.add_parser("import", help="QONNX / FINN-ONNX model -> bnnhw's model format",
                       description="bnnhw import MODEL.onnx -o MODEL.npz: read a QONNX or "
                                   "FINN-ONNX graph (thresholds derived by running its own "
                                   "nodes), print what each node became, write bnnhw's format")
    p.add_argument("model", help="a .onnx file (QONNX, e.g. a Brevitas export, or FINN-ONNX)")
    p.add_argument("-o", "--output", required=True, help="bnnhw model file (.npz)")
    p.add_argument("--input-scale", default=None, metavar="S",
                   help="the file's input is byte / S (default 255, PyTorch's ToTensor; 1 when "
                        "the input is uint8 or annotated UINT8)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="bnnhw model -> QONNX (Brevitas' operator forms)",
                       description="bnnhw export MODEL -o MODEL.onnx: a QONNX graph that qonnx "
                                   "(and FINN) execute to the golden model's scores")
    p.add_argument("model", help="any model bnnhw reads (bnnhw .npz, BNN-PYNQ .npz, .onnx)")
    p.add_argument("-o", "--output", required=True, help="QONNX file to write (.onnx)")
    p.set_defaults(func=cmd_export)
