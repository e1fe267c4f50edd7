"""bnnhw networks -> QONNX graphs in Brevitas' operator forms.

The graph takes what a Brevitas model takes, ``byte / 255`` as float32 ``[N, C, H, W]``, and
computes it the way Brevitas' exports do: ``2x - c`` and a ``BipolarQuant`` (threshold
quantizer) or an 8-bit ``Quant`` (fixed-point quantizer) on the input; per layer a
``BipolarQuant`` of the +1/-1 weights, ``MatMul`` (after ``Transpose``) or ``Conv``, then
``BatchNormalization`` + ``BipolarQuant`` for a threshold, ``MaxPool`` on the bits. Two things
Brevitas would not write, because bnnhw's arithmetic needs them: a ``Pad`` with the layer's
+1/-1 (or code) value before a padded convolution, and a ``Clip`` for a clipping block.

The batch norm of a threshold ``y >= T`` is ``gamma = 1, mean = T - 1/2`` (``y <= T``:
``gamma = -1, mean = T + 1/2``), ``var = 1``: its sign can never tie, so qonnx's execution
fires exactly where bnnhw does. The graph's output is the golden model's scores exactly
(SPEC §8): popcounts ``(y + K) / 2``, clipped values, or margins ``y - T``.

The network's name and class names travel in the model's ``metadata_props``
(``bnnhw.name``, ``bnnhw.classes``), so that importing the file gives the same fingerprint.
"""

import json

import numpy as np

from ..errors import ModelError
from ..model.io import atomic_write
from ..model.layers import (BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer, MaxPool,
                            MultibitConv2d, Output, Threshold, ThresholdQuantizer)

__all__ = ["export_qonnx", "to_qonnx", "OPSET", "QONNX_DOMAIN"]

OPSET = 13
QONNX_DOMAIN = "qonnx.custom_op.general"


class _Builder:
    def __init__(self):
        self.nodes, self.inits = [], []
        self._n = 0

    def const(self, name, value, dtype=np.float32):
        from onnx import numpy_helper
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(self, op, inputs, name, domain="", **attrs):
        from onnx import helper
        out = name + "_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, domain=domain,
                                           **attrs))
        return out


def to_qonnx(net):
    """The QONNX ``onnx.ModelProto`` of ``net`` (see the module docstring)."""
    from onnx import TensorProto, helper
    b = _Builder()
    c, h, w = net.input_shape
    x = "input"
    q = net.quantizer
    x2 = b.node("Mul", [x, b.const("two", 2.0)], "input_mul")
    if isinstance(q, ThresholdQuantizer):
        # 2 p/255 - (2t - 1)/255 >= 0  <=>  p >= t - 1/2: never a tie for integer bytes.
        shifted = b.node("Sub", [x2, b.const("input_offset", (2 * q.threshold - 1) / 255)],
                         "input_sub")
        cur = b.node("BipolarQuant", [shifted, b.const("input_scale", 1.0)], "input_quant",
                     domain=QONNX_DOMAIN)
        scale = 1.0
    elif isinstance(q, FixedPointQuantizer):
        shifted = b.node("Sub", [x2, b.const("one", 1.0)], "input_sub")
        scale = 2.0 ** -(q.bits - 1)
        cur = b.node("Quant", [shifted, b.const("input_scale", scale),
                               b.const("input_zeropt", 0.0), b.const("input_bits", q.bits)],
                     "input_quant", domain=QONNX_DOMAIN, signed=1, narrow=0,
                     rounding_mode="ROUND")
    else:
        raise ModelError(f"network {net.name!r}: input quantizer {q.kind!r} has no QONNX form")
    shape = net.input_shape
    last_compute = None
    for info in net.infos:
        layer = info.layer
        name = layer.name
        if isinstance(layer, (BinaryConv2d, MultibitConv2d)):
            wq = b.node("BipolarQuant", [b.const(name + "_weight", layer.weight),
                                         b.const(name + "_wscale", 1.0)], name + "_wquant",
                        domain=QONNX_DOMAIN)
            if layer.pad:
                p = layer.pad
                value = float(layer.pad_value) * scale
                cur = b.node("Pad", [cur, b.const(name + "_pads", [0, 0, p, p, 0, 0, p, p],
                                                  np.int64),
                                     b.const(name + "_padvalue", value)], name + "_pad",
                             mode="constant")
            kh, kw = layer.kernel
            cur = b.node("Conv", [cur, wq], name, kernel_shape=[kh, kw],
                         strides=[layer.stride, layer.stride], pads=[0, 0, 0, 0])
            last_compute = layer
        elif isinstance(layer, BinaryDense):
            if len(shape) == 3:
                cur = b.node("Flatten", [cur], name + "_flatten", axis=1)
            weight = layer.weight
            if len(shape) == 3:
                # bnnhw reads a feature map in HWC order, Flatten gives CHW: reorder columns.
                ci, hi, wi = shape
                chw = np.arange(ci * hi * wi).reshape(ci, hi, wi)
                weight = weight[:, chw.transpose(1, 2, 0).ravel().argsort()]
            wq = b.node("BipolarQuant", [b.const(name + "_weight", weight),
                                         b.const(name + "_wscale", 1.0)], name + "_wquant",
                        domain=QONNX_DOMAIN)
            wt = b.node("Transpose", [wq], name + "_wtranspose", perm=[1, 0])
            cur = b.node("MatMul", [cur, wt], name)
            last_compute = layer
        elif isinstance(layer, Clip):
            lim = layer.limit * scale
            cur = b.node("Clip", [cur, b.const(name + "_min", -lim), b.const(name + "_max", lim)],
                         name)
        elif isinstance(layer, Threshold):
            if isinstance(net.layers[info.index + 1], Output):
                # Scores are the margins y - T (T - y where negated), SPEC §8.
                t = layer.thresholds.astype(np.float64)
                sign = np.where(layer.negate, -1.0, 1.0)
                cur = b.node("Sub", [cur, b.const(name + "_t", t * scale)], name + "_sub")
                cur = b.node("Mul", [cur, b.const(name + "_sign", sign / scale)], name)
                scale = 1.0
            else:
                t = layer.thresholds.astype(np.float64)
                gamma = np.where(layer.negate, -1.0, 1.0)
                mean = (t - gamma / 2) * scale
                n = t.shape[0]
                if np.max(np.abs(t)) >= 1 << 22:
                    raise ModelError(f"layer {name!r}: thresholds beyond +-2^22 have no exact "
                                     f"float32 batch norm")
                cur = b.node("BatchNormalization",
                             [cur, b.const(name + "_gamma", gamma), b.const(name + "_beta",
                                                                           np.zeros(n)),
                              b.const(name + "_mean", mean), b.const(name + "_var", np.ones(n))],
                             name + "_bn", epsilon=1e-5)
                cur = b.node("BipolarQuant", [cur, b.const(name + "_ascale", 1.0)], name,
                             domain=QONNX_DOMAIN)
                scale = 1.0
        elif isinstance(layer, MaxPool):
            cur = b.node("MaxPool", [cur], name, kernel_shape=[layer.kernel, layer.kernel],
                         strides=[layer.stride, layer.stride])
        elif isinstance(layer, Output):
            rule = net.output_rule
            if rule == "popcount":
                k = last_compute.fan_in
                cur = b.node("Add", [cur, b.const("output_k", k * scale)], "output_add")
                cur = b.node("Mul", [cur, b.const("output_half", 0.5 / scale)], "output")
            elif rule == "clipped":
                cur = b.node("Mul", [cur, b.const("output_scale", 1.0 / scale)], "output")
            elif rule != "margin":
                raise ModelError(f"network {net.name!r}: scores of rule {rule!r} have no QONNX "
                                 f"form")
        shape = info.output_shape
    nodes = b.nodes
    nodes[-1].output[0] = "scores"
    graph = helper.make_graph(
        nodes, net.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, net.num_classes])],
        initializer=b.inits)
    model = helper.make_model(graph, producer_name="bnnhw",
                              opset_imports=[helper.make_opsetid("", OPSET),
                                             helper.make_opsetid(QONNX_DOMAIN, 1)])
    model.ir_version = 8
    helper.set_model_props(model, {"bnnhw.name": net.name,
                                   "bnnhw.classes": json.dumps(list(net.classes)),
                                   "bnnhw.fingerprint": net.fingerprint(),
                                   "bnnhw.input": "float32 [N, C, H, W] = byte / 255"})
    return model


def export_qonnx(net, path):
    """Write ``net`` as a QONNX file at ``path`` (atomically), shapes inferred by qonnx.

    Parameters
    ----------
    net : bnnhw.model.Network
    path : str or os.PathLike

    Returns
    -------
    onnx.ModelProto
        What was written.
    """
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    model = ModelWrapper(to_qonnx(net)).transform(InferShapes()).model

    def write(tmp):
        onnx.save(model, tmp)
    atomic_write(path, write)
    return model
