"""QONNX and FINN-ONNX graphs -> bnnhw's IR, with thresholds derived by evaluation.

How a graph is read
-------------------
The graph must be one chain of data tensors from the single graph input to the scores
(optionally a final ``TopK`` / ``ArgMax``). Everything computed from constants only
(weight quantizers such as ``BipolarQuant`` or 1-bit ``Quant`` on float latent weights,
``Transpose`` of weights, ``Shape -> Gather -> Concat`` feeding a ``Reshape``, ``Pow`` of a
variance, ...) is folded first by executing those nodes. The chain is then cut at its compute
nodes (``MatMul``, ``Gemm``, ``Conv``, ``XnorPopcountMatMul``): each compute node becomes one
bnnhw layer, and the element-wise nodes between two compute nodes (batch norm, quantizers,
``MultiThreshold``, ``Sign``, affine tails, ...) are **not interpreted**: they are run, with
onnxruntime or qonnx's own operator implementations, on every reachable integer
pre-activation of the layer before, channel by channel. The result must be a step function
with two output levels; its step becomes ``(T, neg)`` (SPEC §5), so ties and rounding are the
file's own. Where the step falls between two reachable values, the integer boundary is the
file's own as well (found on a grid of unreachable integers, then by bisection), so that a
threshold bnnhw exported comes back unchanged.

The input: the graph's first element-wise nodes are run on all 256 byte values (scaled as
the file expects: ``byte / input_scale``); the result must be one step
(:class:`~bnnhw.model.layers.ThresholdQuantizer`) or exactly an affine image of bnnhw's
fixed-point code (:class:`~bnnhw.model.layers.FixedPointQuantizer`), the same for every pixel.

Layout nodes (``Reshape``, ``Flatten``, ``Transpose``, ``Squeeze``, ``Unsqueeze``) are run on a
map of element positions, so a dense layer's weight columns follow whatever order (NCHW or
NHWC flattening) the graph uses; they are checked to keep the images of a batch apart.

The scores: the nodes after the last compute node must map its integer output to scores
with the same argmax as bnnhw's (SPEC §8): one strictly increasing function for every class
(bnnhw's scores are then the popcounts), or per-class offsets that are exactly threshold
margins (then a threshold precedes the output). Anything else is refused, naming the node.

Dot products must be exact in float32 in any summation order (checked); then the file's
compute node output is exactly ``A + B * y`` with bnnhw's integer ``y``.
"""

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..model.layers import (BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer, MaxPool,
                            MultibitConv2d, Output, Threshold, ThresholdQuantizer)
from ..model.network import Network
from ._run import NodeRunner, QONNX_DOMAINS, node_label

__all__ = ["import_onnx", "ImportReport", "FINN_HARDWARE_OPS"]

#: FINN's hardware-dialect operators (``finn.custom_op.fpgadataflow``): a graph that has them
#: went through FINN's hardware conversion and no longer says what it computes in ONNX terms.
FINN_HARDWARE_OPS = frozenset({
    "MVAU", "MVAU_hls", "MVAU_rtl", "MatrixVectorActivation", "StreamingFCLayer_Batch",
    "VVAU", "VectorVectorActivation", "Thresholding", "Thresholding_Batch", "Thresholding_hls",
    "Thresholding_rtl", "ConvolutionInputGenerator", "ConvolutionInputGenerator1D",
    "ConvolutionInputGenerator_rtl", "StreamingMaxPool", "StreamingMaxPool_Batch",
    "StreamingDataWidthConverter", "StreamingDataWidthConverter_Batch", "StreamingFIFO",
    "LabelSelect", "LabelSelect_Batch", "FMPadding", "FMPadding_Batch", "FMPadding_rtl",
    "DuplicateStreams", "DuplicateStreams_Batch", "AddStreams", "AddStreams_Batch",
    "GlobalAccPool", "GlobalAccPool_Batch", "ChannelwiseOp", "ChannelwiseOp_Batch",
    "Pool", "Pool_Batch", "StreamingDataflowPartition", "TLastMarker", "IODMA",
    "StreamingConcat", "StreamingSplit", "UpsampleNearestNeighbour",
    "UpsampleNearestNeighbour_Batch", "Lookup", "StreamingEltwise", "CheckSum",
})

#: Element-wise operators: run (never interpreted) on the reachable values.
ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Neg", "Abs", "Sign", "Relu", "LeakyRelu",
    "PRelu", "Elu", "Selu", "Sigmoid", "HardSigmoid", "Tanh", "Softsign", "Softplus", "Clip",
    "Floor", "Ceil", "Round", "Cast", "Sqrt", "Reciprocal", "Exp", "Log", "Erf", "Not",
    "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal", "Where", "Mod",
    "BatchNormalization", "BipolarQuant", "Quant", "IntQuant", "Trunc", "MultiThreshold",
})
LAYOUT = frozenset({"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity",
                    "Dropout"})
COMPUTE = frozenset({"MatMul", "Gemm", "Conv", "XnorPopcountMatMul"})
POOLS = frozenset({"MaxPool", "MaxPoolNHWC"})
TERMINATORS = frozenset({"TopK", "ArgMax"})

_DATA = object()            # marks the data input of a recorded element-wise node
_PROBE = float(1 << 22)     # far probe of a threshold outside the grid (exact in float32)


def _fail(where, message):
    raise ModelError(f"{where}: {message}")


@dataclass
class ImportReport:
    """What :func:`import_onnx` made of a file.

    Attributes
    ----------
    file : str
    format : str
        ``"QONNX"`` or ``"FINN-ONNX"`` (the latter when FINN's ``MultiThreshold`` /
        ``XnorPopcountMatMul`` occur).
    input_scale : float
        The file's input is ``byte / input_scale``.
    preprocessing : str
        The input the file expects, in words.
    steps : list of (list of str, str)
        The ONNX nodes (labels) and what they became in bnnhw.
    """
    file: str
    format: str = "QONNX"
    input_scale: float = 255.0
    preprocessing: str = ""
    steps: list = field(default_factory=list)

    def lines(self):
        """Human-readable lines: preprocessing, then one line per step."""
        out = [f"{self.file}: {self.format}; {self.preprocessing}"]
        for nodes, became in self.steps:
            out.append(f"  {', '.join(nodes) if nodes else '-'}  ->  {became}")
        return out


@dataclass
class _Elem:
    label: str
    op: str
    node: object            # the node, rebuilt with inputs 'x' (data) and 'c<i>' (constants)
    inputs: list            # _DATA, None or a channel-form constant array


@dataclass
class _Pool:
    label: str
    kernel: int
    stride: int
    position: int           # number of element-wise steps before it


@dataclass
class _Stage:
    """What lies between two compute nodes (or between the input and the first one)."""
    kind: str                       # "input" or "preact"
    canon: tuple                    # canonical shape of the stage's elements (CHW or C)
    elems: list = field(default_factory=list)
    pools: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    # preact stages: the compute layer and the exact map u = A + B * y of its output
    layer: object = None
    make_layer: object = None       # rebuilds the layer from new weights (class permutation)
    weight: object = None
    A: object = None
    B: object = None
    lo: int = 0
    hi: int = 0
    reachable: object = None
    index: int = 0                  # compute-layer number (names: fc<i>, thr<i>, ...)

    @property
    def groups(self):
        return 1 if self.kind == "input" else self.canon[0]

    def channel_of(self, idx):
        if self.kind == "input":
            return np.zeros_like(idx)
        return idx // int(np.prod(self.canon[1:], dtype=np.int64))


@dataclass
class _Data:
    name: str
    shape: tuple            # per image (no batch axis)
    index: np.ndarray       # canonical element of every position, -1 for padding
    pad: tuple | None = None    # (value, width, label) of a Pad node waiting for its Conv


def _attrs(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _rebuild(node, inputs, drop_attrs=()):
    """A copy of ``node`` reading 'x' (data) and 'c<i>' (constants), writing 'y<j>'."""
    from onnx import helper
    names = []
    for i, kind in enumerate(inputs):
        names.append("x" if kind is _DATA else ("" if kind is None else f"c{i}"))
    new = helper.make_node(node.op_type, names, [f"y{j}" for j in range(len(node.output))],
                           domain=node.domain)
    for a in node.attribute:
        if a.name not in drop_attrs:
            new.attribute.append(a)
    return new


def _lowbit(values):
    """Exponent of the lowest set bit of each non-zero float64 value."""
    v = np.abs(np.asarray(values, np.float64))
    v = v[v != 0]
    if v.size == 0:
        return None
    m, e = np.frexp(v)
    mi = np.rint(m * 2.0 ** 53).astype(np.int64)
    tz = np.log2((mi & -mi).astype(np.float64)).astype(np.int64)
    return int(np.min(e - 53 + tz))


def _exact_f32(v):
    v = np.asarray(v, np.float64)
    return bool(np.all(v.astype(np.float32).astype(np.float64) == v))


def _monotone(b, axis=0):
    """(non-decreasing, non-increasing) of bool / float rows along ``axis``."""
    d = np.diff(b.astype(np.float64), axis=axis)
    return np.all(d >= 0, axis=axis), np.all(d <= 0, axis=axis)


def _short(values, n=4):
    values = [float(v) + 0.0 for v in values]       # no "-0"
    text = ", ".join(f"{v:g}" for v in values[:n])
    return "{" + text + (", ..." if len(values) > n else "") + "}"


class _Importer:
    def __init__(self, model, file, input_scale):
        self.model = model
        self.file = file
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          13)
        self.runner = NodeRunner(self.opset)
        self.consts = {}
        self.origin = {}            # constant -> label of the node that produced it
        self.layers = []
        self.report = ImportReport(file=Path(file).name)
        self.user_scale = input_scale
        self.stage = None
        self.data = None
        self.terminator = None
        self.n_compute = 0
        self.first_quant = None     # what the input stage became
        self.folded = []            # labels of nodes evaluated on constants only

    # -- entry ---------------------------------------------------------------------------

    def run(self):
        from onnx import numpy_helper
        g = self.graph
        for init in g.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        nodes = self._sorted_nodes()
        for i, node in enumerate(nodes):
            if node.domain.startswith("finn.custom_op.fpgadataflow") or (
                    node.op_type in FINN_HARDWARE_OPS and node.domain not in ("", "ai.onnx")):
                _fail(node_label(node, i), "a FINN hardware-dialect node (domain "
                      f"{node.domain!r}); import the graph before FINN's hardware conversion "
                      "(a QONNX export or a streamlined FINN-ONNX graph)")
        if any(n.op_type in ("MultiThreshold", "XnorPopcountMatMul") for n in nodes):
            self.report.format = "FINN-ONNX"
        self._setup_input()
        self._consumers = {}
        for node in nodes:
            for name in node.input:
                if name and node.op_type != "Shape":
                    self._consumers.setdefault(name, []).append(node)
        for i, node in enumerate(nodes):
            self._node(node, node_label(node, i))
        return self._finish_output()

    def _sorted_nodes(self):
        nodes = list(self.graph.node)
        known = set(self.consts) | {i.name for i in self.graph.input} | {""}
        done, out = set(), []
        pending = list(range(len(nodes)))
        while pending:
            progress = False
            rest = []
            for k in pending:
                n = nodes[k]
                if all(name in known for name in n.input):
                    out.append(n)
                    known.update(n.output)
                    progress = True
                else:
                    rest.append(k)
            if not progress:
                n = nodes[rest[0]]
                missing = [x for x in n.input if x not in known]
                _fail(node_label(n, rest[0]), f"reads tensor {missing[0]!r}, which no node "
                      "produces and which is neither an input nor an initializer")
            pending = rest
        return out

    # -- the graph input ---------------------------------------------------------------------

    def _setup_input(self):
        g = self.graph
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1:
            names = ", ".join(repr(i.name) for i in inputs) or "none"
            raise ModelError(f"{self.file}: needs exactly one data input (graph inputs that "
                             f"are not initializers), found {names}")
        vi = inputs[0]
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        where = f"{self.file}: input {vi.name!r}"
        if len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
            raise ModelError(f"{where} must have a batch axis and fixed sizes, not "
                             f"{dims}")
        shape = tuple(dims[1:])
        from onnx import TensorProto
        elem = tt.elem_type
        if elem not in (TensorProto.FLOAT, TensorProto.UINT8, TensorProto.DOUBLE):
            raise ModelError(f"{where} must be float32, float64 or uint8, not "
                             f"{TensorProto.DataType.Name(elem)}")
        annotated_u8 = False
        for qa in g.quantization_annotation:
            if qa.tensor_name == vi.name:
                for kv in qa.quant_parameter_tensor_names:
                    if kv.key == "finn_datatype" and kv.value == "UINT8":
                        annotated_u8 = True
        if elem == TensorProto.UINT8:
            scale = 1.0
            if self.user_scale not in (None, 1, 1.0):
                raise ModelError(f"{where} is uint8: --input-scale must be 1, not "
                                 f"{self.user_scale}")
            self.input_dtype = np.uint8
            described = f"uint8 {list(dims)}: the raw bytes"
        else:
            scale = float(self.user_scale) if self.user_scale is not None else (
                1.0 if annotated_u8 else 255.0)
            if not (scale > 0 and math.isfinite(scale)):
                raise ModelError(f"input scale must be a positive number, not {scale}")
            self.input_dtype = np.float64 if elem == TensorProto.DOUBLE else np.float32
            dt = "float64" if elem == TensorProto.DOUBLE else "float32"
            described = (f"{dt} {['N'] + list(dims[1:])} = byte / {scale:g}"
                         + (" (input annotated UINT8)" if annotated_u8 else ""))
        self.input_scale = scale
        self.report.input_scale = scale
        self.report.preprocessing = (f"the file expects {described}; bnnhw takes the raw "
                                     f"bytes (uint8)")
        if len(shape) == 3:
            canon = shape
        elif len(shape) == 2:
            canon = (1, *shape)
        elif len(shape) == 1:
            side = math.isqrt(shape[0])
            canon = (1, side, side) if side * side == shape[0] else (1, 1, shape[0])
        else:
            raise ModelError(f"{where}: an image input needs 1 to 3 axes after the batch, "
                             f"not shape {dims}")
        self.input_shape = canon
        self.input_name = vi.name
        self.data = _Data(vi.name, shape, np.arange(int(np.prod(shape))).reshape(shape))
        self.stage = _Stage("input", canon)
        self.dynamic = {vi.name}

    # -- one node ------------------------------------------------------------------------------

    def _node(self, node, label):
        op = node.op_type
        dyn = [name for name in node.input if name in self.dynamic]
        if not dyn:
            self._fold(node, label)
            return
        if self.terminator is not None:
            _fail(label, f"reads the output of {self.terminator}; nothing may follow it")
        if op == "Shape":
            full = np.array((1, *self.data.shape), np.int64)
            a = _attrs(node)
            start, end = a.get("start", 0), a.get("end", None)
            self.consts[node.output[0]] = full[start:end]
            self.folded.append(label)
            return
        if len(dyn) > 1:
            kind = "a residual add" if op in ("Add", "Sum", "Sub") else "a join"
            _fail(label, f"combines two data tensors ({kind}); bnnhw networks are one chain "
                  f"of layers")
        name = dyn[0]
        if name != self.data.name:
            _fail(label, f"reads tensor {name!r}, an earlier point of the chain (the graph "
                  f"branches); bnnhw networks are one chain of layers")
        consumers = self._consumers.get(name, [])
        if len(consumers) > 1:
            others = ", ".join(repr(c.name or c.op_type) for c in consumers)
            _fail(label, f"tensor {name!r} feeds several nodes ({others}): the graph "
                  f"branches; bnnhw networks are one chain of layers")
        if self.data.pad is not None and op != "Conv":
            _fail(label, f"follows {self.data.pad[2]}; a Pad must feed a Conv directly")
        if node.domain not in ("", "ai.onnx") + QONNX_DOMAINS:
            _fail(label, f"operator of domain {node.domain!r} is not one bnnhw can import")
        if op in COMPUTE:
            self._compute(node, label)
        elif op in ELEMENTWISE:
            self._elementwise(node, label, list(node.input).index(name))
        elif op in LAYOUT:
            self._layout(node, label)
        elif op == "Pad":
            self._pad(node, label)
        elif op in POOLS:
            self._pool(node, label)
        elif op in TERMINATORS:
            self._terminate(node, label)
        else:
            _fail(label, "operator not supported by bnnhw's importer")

    def _advance(self, node, shape, index):
        out = node.output[0]
        self.dynamic.add(out)
        self.data = _Data(out, tuple(shape), index, self.data.pad)

    def _fold(self, node, label):
        inputs = [None if not n else self.consts[n] for n in node.input]
        try:
            outs = self.runner.run(node, inputs)
        except ModelError:
            raise
        except Exception as e:          # a custom op's own assertion, for instance
            _fail(label, f"cannot be evaluated on its constant inputs ({e})")
        self.folded.append(label)
        src = next((self.origin[n] for n in node.input if n in self.origin), None)
        keep = node.op_type in LAYOUT | {"Cast"} and src is not None
        for name, value in zip(node.output, outs):
            self.consts[name] = np.asarray(value)
            self.origin[name] = src if keep else label
            if node.op_type in ("Quant", "IntQuant") and len(node.input) > 3 and \
                    node.input[3] in self.consts:
                self.origin[name] = (f"{label} bit width "
                                     f"{float(self.consts[node.input[3]]):g}")

    # -- element-wise nodes: recorded in channel form --------------------------------------------

    def _group(self, full, label, what):
        st, idx = self.stage, self.data.index.ravel()
        keep = idx >= 0
        ch = st.channel_of(idx[keep])
        v = np.asarray(full).ravel()[keep]
        rep = np.empty(st.groups, v.dtype)
        rep[ch] = v
        same = rep[ch] == v
        if v.dtype.kind == "f":
            same |= np.isnan(rep[ch]) & np.isnan(v)
        if not np.all(same):
            if st.kind == "input":
                _fail(label, f"its {what} differs between input pixels; bnnhw's input "
                      f"quantizer is one function of the byte for every pixel")
            _fail(label, f"its {what} differs within channel {int(ch[np.argmin(same)])}; "
                  f"bnnhw needs per-channel parameters")
        return rep

    def _channel_const(self, node, pos, c, label):
        full_shape = (1, *self.data.shape)
        op = node.op_type
        rank = len(full_shape)
        if op == "BatchNormalization":
            if c.ndim != 1 or c.shape[0] not in (1, full_shape[1] if rank > 1 else 1):
                _fail(label, f"batch-norm parameter of shape {list(c.shape)} does not fit "
                      f"input {list(full_shape)}")
            full = np.broadcast_to(c.reshape((1, -1) + (1,) * (rank - 2)), full_shape)
            return self._group(full, label, "batch-norm parameter")
        if op == "MultiThreshold" and pos == 1:
            if c.ndim != 2:
                _fail(label, f"thresholds must be [channels, steps], not {list(c.shape)}")
            if c.shape[0] == 1:
                return c
            layout = _attrs(node).get("data_layout", b"")
            layout = layout.decode() if isinstance(layout, bytes) else layout
            if layout:
                axis = layout.index("C") if "C" in layout else 1
            else:
                axis = 2 if rank == 3 else 1
            if c.shape[0] != full_shape[axis]:
                _fail(label, f"{c.shape[0]} threshold rows for {full_shape[axis]} channels")
            cols = []
            for b in range(c.shape[1]):
                shape = [1] * rank
                shape[axis] = -1
                full = np.broadcast_to(c[:, b].reshape(shape), full_shape)
                cols.append(self._group(full, label, "threshold"))
            return np.stack(cols, axis=1)
        if c.size == 1:
            return c.reshape(())
        try:
            ok = np.broadcast_shapes(full_shape, c.shape) == full_shape
        except ValueError:
            ok = False
        if not ok:
            _fail(label, f"constant input {pos} of shape {list(c.shape)} does not broadcast "
                  f"onto the data {list(full_shape)}")
        full = np.broadcast_to(c, full_shape)
        return self._group(full, label, f"constant input {pos}").reshape(1, -1)

    def _elementwise(self, node, label, data_pos):
        inputs = []
        for i, name in enumerate(node.input):
            if i == data_pos:
                inputs.append(_DATA)
            elif not name:
                inputs.append(None)
            else:
                inputs.append(self._channel_const(node, i, self.consts[name], label))
        drop = ("data_layout",) if node.op_type == "MultiThreshold" else ()
        if node.op_type == "Dropout" or len(node.output) > 1:
            used = [o for o in node.output[1:] if o in self._consumers]
            if used:
                _fail(label, "its second output is used; only the first output of an "
                      "element-wise node can be imported")
        elem = _Elem(label, node.op_type, _rebuild(node, inputs, drop), inputs)
        self.stage.elems.append(elem)
        self.stage.labels.append(label)
        self._advance(node, self.data.shape, self.data.index)

    # -- layout nodes: run on element positions ------------------------------------------------

    def _layout(self, node, label):
        data = self.data
        self.stage.labels.append(label)
        if node.op_type in ("Identity", "Dropout"):
            self._advance(node, data.shape, data.index)
            return
        size = int(np.prod(data.shape))
        pos = np.arange(size, dtype=np.int64).reshape(data.shape)
        batch = np.stack([pos, pos + size])
        inputs = [batch]
        for k, name in enumerate(node.input[1:], start=1):
            c = None if not name else self.consts[name]
            if node.op_type == "Reshape" and k == 1 and c is not None and c.size and c[0] == 1:
                c = c.copy()
                c[0] = 2                # the batch axis, as qonnx's ChangeBatchSize sees it
            inputs.append(c)
        out = np.asarray(self.runner.run(node, inputs)[0])
        if out.ndim < 2 or out.shape[0] != 2 or not np.array_equal(out[1], out[0] + size) \
                or not np.array_equal(np.sort(out[0].ravel()), np.arange(size)):
            _fail(label, f"moves elements between the images of a batch (input "
                  f"{['N', *data.shape]}, output at N=2: {list(out.shape)}); the batch axis "
                  f"must stay first")
        index = data.index.ravel()[out[0]]
        self._advance(node, out.shape[1:], index)

    def _pad(self, node, label):
        a = _attrs(node)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode != "constant":
            _fail(label, f"pads in mode {mode!r}; bnnhw pads with a constant pixel value")
        if len(node.input) > 1 and node.input[1]:
            pads = self.consts[node.input[1]].astype(np.int64).tolist()
        else:
            pads = list(a.get("pads", []))
        if len(node.input) > 2 and node.input[2]:
            value = float(np.asarray(self.consts[node.input[2]]).ravel()[0])
        else:
            value = float(a.get("value", 0.0))
        rank = len(self.data.shape) + 1
        if len(pads) != 2 * rank or rank != 4:
            _fail(label, f"pads {pads} must pad a [N, C, H, W] feature map")
        p = pads[2]
        if pads[0] or pads[1] or pads[4] or pads[5] or not (pads[2] == pads[3] == pads[6]
                                                            == pads[7]) or p < 0:
            _fail(label, f"pads {pads}: bnnhw pads the same width on every side of H and W "
                  f"only")
        self._check_canonical(label)
        index = np.pad(self.data.index, ((0, 0), (p, p), (p, p)), constant_values=-1)
        self.stage.labels.append(label)
        c, h, w = self.data.shape
        self._advance(node, (c, h + 2 * p, w + 2 * p), index)
        self.data.pad = (value, p, label)

    def _check_canonical(self, label, nhwc=False):
        canon = self.stage.canon
        want = np.arange(int(np.prod(canon))).reshape(canon)
        if nhwc:
            want = want.transpose(1, 2, 0)
        if len(canon) != 3 or self.data.index.shape != want.shape or \
                not np.array_equal(self.data.index, want):
            layout = "NHWC" if nhwc else "NCHW"
            _fail(label, f"needs the feature map in {layout} order, but its input "
                  f"{['N', *self.data.shape]} is a rearranged "
                  f"{['N', *canon]} map")

    def _pool(self, node, label):
        a = _attrs(node)
        st = self.stage
        if st.kind == "input":
            _fail(label, "pools before the first layer; bnnhw pools only binary activations")
        k = list(a.get("kernel_shape", []))
        strides = list(a.get("strides", [1] * len(k)))
        pads = list(a.get("pads", [0] * 2 * len(k)))
        if len(k) != 2 or k[0] != k[1] or len(strides) != 2 or strides[0] != strides[1]:
            _fail(label, f"kernel {k} / strides {strides}: bnnhw pools square windows with "
                  f"one stride")
        if any(pads) or a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [])):
            _fail(label, "pads, ceil_mode or dilations: bnnhw pools without them")
        if len(node.output) > 1 and node.output[1] in self._consumers:
            _fail(label, "its indices output is used")
        nhwc = node.op_type == "MaxPoolNHWC"
        self._check_canonical(label, nhwc=nhwc)
        if st.pools:
            _fail(label, f"a second pooling after {st.pools[0].label}; bnnhw has one pool "
                  f"per layer")
        st.pools.append(_Pool(label, k[0], strides[0], len(st.elems)))
        st.labels.append(label)
        pool = MaxPool("p", k[0], strides[0])
        canon = pool.output_shape(st.canon)
        st.canon = canon
        index = np.arange(int(np.prod(canon))).reshape(canon)
        shape = canon
        if nhwc:
            index, shape = index.transpose(1, 2, 0), (canon[1], canon[2], canon[0])
        self._advance(node, shape, index)

    def _terminate(self, node, label):
        a = _attrs(node)
        rank = len(self.data.shape) + 1
        axis = a.get("axis", -1 if node.op_type == "TopK" else 0)
        if axis < 0:
            axis += rank
        if rank != 2 or axis != 1:
            _fail(label, f"must select over the classes of a [N, classes] score tensor "
                  f"(axis {a.get('axis')}, input {['N', *self.data.shape]})")
        if node.op_type == "TopK":
            if not a.get("largest", 1):
                _fail(label, "selects the smallest scores (largest=0)")
            k = self.consts.get(node.input[1]) if len(node.input) > 1 else a.get("k")
            if k is None or int(np.asarray(k).ravel()[0]) < 1:
                _fail(label, "needs a constant k >= 1")
        elif a.get("select_last_index", 0):
            _fail(label, "selects the last maximum; bnnhw's class is the first argmax")
        self.terminator = label
        self.stage.labels.append(label)
        for out in node.output:
            self.dynamic.add(out)

    # -- evaluation of a stage -------------------------------------------------------------------

    def _evaluate(self, st, x, upto=None):
        outs = []
        v = x
        for k, e in enumerate(st.elems if upto is None else st.elems[:upto]):
            ins = [v if a is _DATA else a for a in e.inputs]
            try:
                v = np.asarray(self.runner.run(e.node, ins)[0])
            except ModelError as err:
                raise ModelError(str(err).replace(node_label(e.node), e.label)) from None
            except Exception as err:
                _fail(e.label, f"cannot be evaluated ({err})")
            if v.shape != x.shape:
                _fail(e.label, f"changes the shape of the per-channel values "
                      f"({list(x.shape)} -> {list(v.shape)}); it is not element-wise")
            outs.append(v)
        return outs

    def _finish_input(self, consumer_label, conv):
        st = self.stage
        p = np.arange(256)
        if self.input_dtype == np.uint8:
            x = p.astype(np.uint8).reshape(256, 1)
        else:
            x = (p.astype(self.input_dtype) / self.input_dtype(self.input_scale)).reshape(256, 1)
        outs = self._evaluate(st, x)
        v = (outs[-1] if outs else x)[:, 0].astype(np.float64)
        last = st.elems[-1].label if st.elems else f"input {self.input_name!r}"
        distinct = np.unique(v)
        nodes = list(st.labels)
        if len(distinct) < 2:
            _fail(last, f"the input of {consumer_label} is the same for every byte value")
        if len(distinct) == 2:
            lvl1 = v[255]
            bits = v == lvl1
            up, _ = _monotone(bits)
            if not up:
                _fail(last, f"the input of {consumer_label} is not one step in the byte value "
                      f"(it changes {int(np.count_nonzero(np.diff(bits)))} times)")
            t = int(np.argmax(bits))
            lvl0 = float(distinct[distinct != lvl1][0])
            self.quantizer = ThresholdQuantizer(t)
            self.report.steps.append(
                (nodes, f"input quantizer: bit = byte >= {t} (ThresholdQuantizer), "
                        f"levels {lvl0:g} / {float(lvl1):g}"))
            return {"kind": "bits", "lvl0": lvl0, "lvl1": float(lvl1)}
        for bits in range(2, 17):
            fq = FixedPointQuantizer(bits)
            q = fq(p).astype(np.int64)
            if q[255] == q[0] or len(np.unique(q)) != len(distinct):
                continue
            beta = (v[255] - v[0]) / float(q[255] - q[0])
            alpha = v[0] - beta * q[0]
            if np.array_equal(alpha + beta * q, v):
                break
        else:
            _fail(last, f"the input of {consumer_label} takes {len(distinct)} values that are "
                  f"not an exact image of bnnhw's fixed-point byte code "
                  f"(round(2^(b-1) (2p/255 - 1)), b = 2..16)")
        if not conv:
            _fail(consumer_label, "a dense layer on multi-bit input codes; bnnhw's first "
                  "layer on codes is a convolution")
        self.quantizer = fq
        self.report.steps.append(
            (nodes, f"input quantizer: {bits}-bit fixed-point code q of byte "
                    f"(FixedPointQuantizer), value = {alpha:g} + {beta:g} q"))
        return {"kind": "codes", "alpha": float(alpha), "beta": float(beta), "bits": bits,
                "values": np.unique(v)}

    def _strip_clip(self, st):
        """A leading Clip on the exact integer y is bnnhw's clipping block (SPEC §4)."""
        if not st.elems or st.elems[0].op != "Clip" or (st.pools and st.pools[0].position == 0):
            return None
        if not (np.all(st.A == 0) and np.all(st.B == 1)):
            return None
        e = st.elems[0]
        bounds = []
        for k, name in ((1, "min"), (2, "max")):
            if len(e.inputs) > k and e.inputs[k] is not None:
                bounds.append(float(np.asarray(e.inputs[k]).ravel()[0]))
            else:
                attr = _attrs(e.node).get(name)
                bounds.append(None if attr is None else float(attr))
        lo, hi = bounds
        if lo is None or hi is None or lo != -hi or hi < 1 or hi != int(hi):
            return None
        bits = int(hi + 1).bit_length()
        if (1 << (bits - 1)) - 1 != hi or bits < 2:
            return None
        st.elems = st.elems[1:]
        for pool in st.pools:
            pool.position -= 1
        st.lo, st.hi = max(st.lo, -int(hi)), min(st.hi, int(hi))
        st.reachable = np.unique(np.clip(st.reachable, -hi, hi)).astype(np.int64)
        clip = Clip(f"clip{st.index}", bits)
        self.layers.append(clip)
        self.report.steps.append(([e.label], f"{clip.name} (clip to [-{int(hi)}, {int(hi)}], "
                                             f"{bits} bits)"))
        return clip

    def _values(self, st, y):
        """The compute node's float output for integer pre-activations ``y`` ([n] or [n, O])."""
        y = np.asarray(y, np.float64)
        if y.ndim == 1:
            y = y[:, None]
        return (st.A[None, :] + st.B[None, :] * y).astype(self.value_dtype)

    def _finish_preact(self, consumer_label):
        st = self.stage
        clip = self._strip_clip(st)
        lo, hi, yr = st.lo, st.hi, st.reachable
        margin = (hi - lo) // 2 + 2
        grid = np.arange(lo - margin, hi + margin + 1, dtype=np.int64)
        rows = yr - grid[0]
        outs = self._evaluate(st, self._values(st, grid))
        v = outs[-1] if outs else self._values(st, grid)
        v = v.astype(np.float64)
        vr = v[rows]
        last = st.elems[-1].label if st.elems else f"layer {st.layer.name}"
        levels = np.unique(vr)
        if len(levels) > 2:
            zero_sign = any(e.op == "Sign" for e in st.elems) and 0.0 in levels
            if zero_sign:
                r, c = np.argwhere(vr == 0)[0]
                _fail(last, f"ONNX Sign gives 0 at pre-activation y = {int(yr[r])} of channel "
                      f"{int(c)} of layer {st.layer.name}, a third value next to -1 and +1 "
                      f"(bnnhw's sign(0) is +1); refusing rather than guessing")
            _fail(last, f"activations after layer {st.layer.name} take {len(levels)} values "
                  f"{_short(levels)} at the input of {consumer_label}: multi-bit "
                  f"activations (bnnhw's layers after the first take binary inputs)")
        if len(levels) < 2:
            _fail(last, f"activations after layer {st.layer.name} are the constant "
                  f"{float(levels[0]):g} at the input of {consumer_label}")
        lvl0, lvl1 = float(levels[0]), float(levels[1])
        fires, nonfire = v == lvl1, v == lvl0
        t, neg = self._steps(st, grid, rows, fires, nonfire, last, (lvl0, lvl1))
        self._check_pools(st, grid, rows, outs, neg, t)
        thr = Threshold(f"thr{st.index}", t, neg)
        self.layers.append(thr)
        self.report.steps.append(
            ([l for l in st.labels if not st.pools or l != st.pools[0].label],
             f"{thr.name} (threshold, {int(neg.sum())} of {neg.size} channels negated; "
             f"levels {lvl0:g} / {lvl1:g})"))
        for pool in st.pools:
            mp = MaxPool(f"pool{st.index}", pool.kernel, pool.stride)
            self.layers.append(mp)
            self.report.steps.append(([pool.label], f"{mp.name} (max-pool {pool.kernel}x"
                                                    f"{pool.kernel} / {pool.stride}, an OR of "
                                                    f"the bits)"))
        return {"kind": "bits", "lvl0": lvl0, "lvl1": lvl1}

    def _steps(self, st, grid, rows, fires, nonfire, last, levels):
        yr = st.reachable
        r = fires[rows]
        up, down = _monotone(r)
        bad = ~(up | down)
        if bad.any():
            c = int(np.argmax(bad))
            changes = yr[1:][np.diff(r[:, c].astype(np.int8)) != 0]
            _fail(last, f"channel {c} of layer {st.layer.name} is not a step function of "
                  f"its pre-activation (it switches at y = {_short(changes)}); not a "
                  f"threshold")
        n = r.shape[1]
        t = np.zeros(n, np.int64)
        neg = np.zeros(n, bool)
        pending = []            # (channel, negate, a, b, state at a): bisection beyond the grid
        for c in range(n):
            rc = r[:, c]
            fg, ng = fires[:, c], nonfire[:, c]
            if rc.any() and not rc.all():
                if up[c]:
                    j = int(np.argmax(rc))
                    t[c] = self._pick(grid, fg, ng, yr[j - 1] + 1, yr[j], upward=True)
                else:
                    j = len(rc) - 1 - int(np.argmax(rc[::-1]))
                    neg[c] = True
                    t[c] = self._pick(grid, fg, ng, yr[j], yr[j + 1] - 1, upward=False)
                continue
            below, above = grid < st.lo, grid > st.hi
            if rc.all():
                # Fires everywhere reachable: an upward step below lo, or a downward one above hi.
                if ng[below].any():
                    g = int(grid[below][ng[below]].max())
                    t[c] = self._pick(grid, fg, ng, g + 1, st.lo, upward=True)
                elif ng[above].any():
                    g = int(grid[above][ng[above]].min())
                    neg[c] = True
                    t[c] = self._pick(grid, fg, ng, st.hi, g - 1, upward=False)
                else:
                    t[c] = st.lo
                    pending.append((c, "always"))
            else:
                if fg[above].any():
                    g = int(grid[above][fg[above]].min())
                    t[c] = self._pick(grid, fg, ng, st.hi + 1, g, upward=True)
                elif fg[below].any():
                    g = int(grid[below][fg[below]].max())
                    neg[c] = True
                    t[c] = self._pick(grid, fg, ng, g, st.lo - 1, upward=False)
                else:
                    t[c] = st.hi + 1
                    pending.append((c, "never"))
        if pending:
            self._bisect(st, grid, pending, t, neg, levels)
        return t, neg

    @staticmethod
    def _pick(grid, fg, ng, a, b, upward):
        """The file's own integer boundary inside ``[a, b]``: first firing integer (upward)
        or last firing one (downward); the reachable end when the grid is not a clean step."""
        sel = (grid >= a) & (grid <= b)
        f, n = fg[sel], ng[sel]
        fallback = b if upward else a
        if not np.all(f | n):
            return int(fallback)
        if upward:
            ok, _ = _monotone(f)
            return int(grid[sel][np.argmax(f)]) if ok and f.any() else int(fallback)
        _, ok = _monotone(f)
        return int(grid[sel][len(f) - 1 - np.argmax(f[::-1])]) if ok and f.any() \
            else int(fallback)

    def _bisect(self, st, grid, pending, t, neg, levels):
        """Channels constant over the whole grid: probe far out, then bisect to the step."""
        n = len(t)
        lvl0, lvl1 = levels

        def values_at(y):
            u = st.A + st.B * np.asarray(y, np.float64)
            if not _exact_f32(u):
                return None
            x = u.astype(self.value_dtype)[None, :]
            outs = self._evaluate(st, x)
            return (outs[-1] if outs else x).astype(np.float64)[0]

        v_lo, v_hi = values_at(np.full(n, -_PROBE)), values_at(np.full(n, _PROBE))
        if v_lo is None or v_hi is None:
            return
        todo = []
        for c, kind in pending:
            ref, other = (lvl1, lvl0) if kind == "always" else (lvl0, lvl1)
            if v_lo[c] == other and v_hi[c] == ref:
                todo.append((c, "low", kind, -_PROBE, float(grid[0])))
            elif v_hi[c] == other and v_lo[c] == ref:
                todo.append((c, "high", kind, float(grid[-1]), _PROBE))
        if not todo:
            return
        a = np.zeros(n)
        b = np.zeros(n)
        for c, _, _, lo_, hi_ in todo:
            a[c], b[c] = lo_, hi_
        # Invariant: the low side differs from the reachable value at a and equals it at b; the
        # high side equals it at a and differs at b.
        while any(b[c] - a[c] > 1 for c, *_ in todo):
            mid = np.floor((a + b) / 2)
            vm = values_at(mid)
            if vm is None:
                return
            for c, side, kind, _, _ in todo:
                if b[c] - a[c] <= 1:
                    continue
                ref = lvl1 if kind == "always" else lvl0
                same = vm[c] == ref
                if (side == "low") == same:
                    b[c] = mid[c]
                else:
                    a[c] = mid[c]
        for c, side, kind, _, _ in todo:
            if side == "low":
                # differs at a, as reachable from b = a + 1 on
                t[c], neg[c] = (int(b[c]), False) if kind == "always" else (int(a[c]), True)
            else:
                # as reachable up to a, differs from b = a + 1 on
                t[c], neg[c] = (int(a[c]), True) if kind == "always" else (int(b[c]), False)

    def _check_pools(self, st, grid, rows, outs, neg, t):
        """A max-pool before the quantizer equals bnnhw's OR of bits only where the pooled
        value and the final bit move the same way with y (SPEC §7)."""
        for pool in st.pools:
            if pool.position == len(st.elems):
                continue            # after the quantizer: pooling bits is an OR
            g = (outs[pool.position - 1] if pool.position else
                 self._values(st, grid)).astype(np.float64)[rows]
            gup, gdown = _monotone(g)
            lo, hi = st.lo, st.hi
            const = ((~neg) & (t <= lo)) | ((~neg) & (t > hi)) | (neg & (t >= hi)) | \
                    (neg & (t < lo))
            gconst = gup & gdown
            ok = gconst | const | (gup & ~neg) | (gdown & neg)
            if not ok.all():
                c = int(np.argmin(ok))
                _fail(pool.label, f"pools channel {c} of layer {st.layer.name} before its "
                      f"quantizer, where the pooled value and the output bit do not move "
                      f"the same way with the pre-activation: pooling bits (bnnhw's OR) "
                      f"would differ")

    # -- compute nodes ---------------------------------------------------------------------------

    def _compute(self, node, label):
        op = node.op_type
        a = _attrs(node)
        if list(node.input).index(self.data.name) != 0:
            _fail(label, "the data must be the first operand")
        for k, name in enumerate(node.input[1:], start=1):
            if name and name not in self.consts:
                _fail(label, f"operand {k} ({name!r}) is not a constant")
        prev_stage = self.stage
        conv = op == "Conv"
        if prev_stage.kind == "input":
            prev = self._finish_input(label, conv)
        else:
            prev = self._finish_preact(label)
        i = self.n_compute
        self.n_compute += 1
        w = self.consts[node.input[1]].astype(np.float64)
        wsrc = self.origin.get(node.input[1], "an initializer")
        bias = None
        if conv:
            group = int(a.get("group", 1))
            if group != 1:
                _fail(label, f"a grouped convolution (group={group}); bnnhw's convolutions "
                      f"see every input channel")
            if w.ndim != 4:
                _fail(label, f"weight of shape {list(w.shape)} is not [O, C, kh, kw]")
            if any(d != 1 for d in a.get("dilations", [1, 1])):
                _fail(label, f"dilations {a['dilations']}; bnnhw convolves without dilation")
            strides = list(a.get("strides", [1, 1]))
            if len(set(strides)) != 1:
                _fail(label, f"strides {strides}; bnnhw has one stride for both axes")
            stride = strides[0]
            pads = list(a.get("pads", [0, 0, 0, 0]))
            auto = a.get("auto_pad", b"NOTSET")
            auto = auto.decode() if isinstance(auto, bytes) else auto
            if auto not in ("NOTSET", "VALID"):
                kh = w.shape[2]
                if w.shape[2] != w.shape[3] or kh % 2 == 0 or stride != 1:
                    _fail(label, f"auto_pad {auto} pads unevenly here")
                pads = [kh // 2] * 4
            if len(set(pads)) != 1:
                _fail(label, f"pads {pads}; bnnhw pads the same width on every side")
            zero_pad = pads[0]
            if len(node.input) > 2 and node.input[2]:
                bias = self.consts[node.input[2]].astype(np.float64).ravel()
            pad_value, pad_width, pad_label = (None, 0, None) if self.data.pad is None \
                else self.data.pad
            if zero_pad and pad_width:
                _fail(label, f"pads twice (its own pads {pads} after {pad_label})")
            in_shape = self.data.shape
            core = self.data.index
            if pad_width:           # the ring a Pad node added
                core = core[:, pad_width:-pad_width, pad_width:-pad_width]
            if zero_pad:
                pad_value, pad_width = 0.0, zero_pad
            canon = prev_stage.canon
            want = np.arange(int(np.prod(canon))).reshape(canon)
            if len(canon) != 3 or core.shape != want.shape or not np.array_equal(core, want):
                _fail(label, f"needs its input in NCHW order, but it gets a rearranged "
                      f"{['N', *canon]} map as {['N', *in_shape]}")
            t = w
            o = w.shape[0]
            if w.shape[1] != canon[0]:
                _fail(label, f"weight expects {w.shape[1]} input channels, not {canon[0]}")
            kdim = int(np.prod(w.shape[1:]))
            flat = w.reshape(o, -1).T                       # [K, O]
        else:
            if op == "Gemm":
                if a.get("transA", 0):
                    _fail(label, "transA=1: the data must not be transposed")
                if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                    _fail(label, f"alpha {a.get('alpha', 1.0)} / beta {a.get('beta', 1.0)}; "
                          f"only 1 is supported")
                if a.get("transB", 0):
                    w = w.T
                if len(node.input) > 2 and node.input[2]:
                    bias = np.broadcast_to(self.consts[node.input[2]].astype(np.float64),
                                           (w.shape[1],)).copy() \
                        if self.consts[node.input[2]].size in (1, w.shape[1]) else None
                    if bias is None:
                        _fail(label, "bias C must be one value per output")
            if w.ndim != 2:
                _fail(label, f"weight of shape {list(w.shape)} is not a [K, O] matrix")
            shape = self.data.shape
            if any(s != 1 for s in shape[:-1]) or shape[-1] != w.shape[0]:
                _fail(label, f"multiplies an input {['N', *shape]} with a {list(w.shape)} "
                      f"weight; it needs [N, {w.shape[0]}]")
            index = self.data.index.ravel()
            size = int(np.prod(prev_stage.canon))
            if index.size != size or not np.array_equal(np.sort(index), np.arange(size)):
                _fail(label, f"reads {index.size} inputs, but the layer before gives {size}")
            flat = w                                          # [K, O]
            o = w.shape[1]
            kdim = w.shape[0]
        # -- weights: one magnitude per output channel, two signs ---------------------------
        if op == "XnorPopcountMatMul":
            if not np.all((flat == 0) | (flat == 1)):
                _fail(label, f"XnorPopcountMatMul weights (from {wsrc}) must be 0 or 1")
            tmat = 2 * flat - 1
            delta = np.ones(o)
        else:
            mag = np.abs(flat)
            delta = mag.max(axis=0)
            bad = (mag != delta[None, :]) | (mag == 0)
            if bad.any():
                col = int(np.argmax(bad.any(axis=0)))
                vals = np.unique(flat[:, col])
                _fail(label, f"weights (from {wsrc}) take {len(vals)} values "
                      f"{_short(vals)} in output channel {col}: multi-bit weights (bnnhw's "
                      f"weights are +c / -c per output channel)")
            tmat = np.sign(flat)
        # -- the input levels and the exact map u = A + B y ------------------------------
        if prev["kind"] == "codes":
            alpha, beta = prev["alpha"], prev["beta"]
            xvals = prev["values"]
        else:
            l0, l1 = prev["lvl0"], prev["lvl1"]
            if op == "XnorPopcountMatMul":
                l0, l1 = 2 * l0 - 1, 2 * l1 - 1
            alpha, beta = (l0 + l1) / 2, (l1 - l0) / 2
            xvals = np.array([l0, l1])
        tsum = tmat.sum(axis=0)
        A = alpha * delta * tsum
        B = beta * delta
        if op == "XnorPopcountMatMul":
            A, B = (A + kdim) / 2, B / 2
        if bias is not None:
            A = A + bias
        self._check_exact(label, xvals, delta, kdim, bias, op == "XnorPopcountMatMul")
        # -- the bnnhw layer --------------------------------------------------------------
        tw = tmat.astype(np.int8)
        if conv:
            weight = tw.T.reshape(w.shape)
            pv = 0 if prev["kind"] == "codes" else 1        # the IR's defaults when unpadded
            if pad_width:
                if prev["kind"] == "codes":
                    q = (pad_value - alpha) / beta
                    lo_c, hi_c = self.quantizer.code_range
                    if q != int(q) or not lo_c <= q <= hi_c:
                        _fail(pad_label or label, f"pads with {pad_value:g}, which is not a "
                              f"code of the input quantizer (code {q:g})")
                    pv = int(q)
                else:
                    if pad_value == prev["lvl1"]:
                        pv = 1
                    elif pad_value == prev["lvl0"]:
                        pv = -1
                    else:
                        what = "zero padding" if pad_value == 0 else f"padding with {pad_value:g}"
                        _fail(pad_label or label, f"{what} of a convolution whose input is "
                              f"{prev['lvl0']:g} / {prev['lvl1']:g}; bnnhw pads a binary "
                              f"convolution with +1 or -1 pixels")
            if prev["kind"] == "codes":
                def make(wt, _i=i):
                    return MultibitConv2d(f"conv{_i}", wt, input_bits=self.quantizer.bits,
                                          stride=stride, pad=pad_width, pad_value=pv)
            else:
                def make(wt, _i=i):
                    return BinaryConv2d(f"conv{_i}", wt, stride=stride, pad=pad_width,
                                        pad_value=pv)
        else:
            canon = prev_stage.canon
            if len(canon) == 3:
                c_, h_, w_ = canon
                j = index
                hwc = ((j // w_) % h_ * w_ + j % w_) * c_ + j // (h_ * w_)
            else:
                hwc = index
            weight = np.empty((o, kdim), np.int8)
            weight[:, hwc] = tw.T
            if prev["kind"] == "codes":
                _fail(label, "a dense layer on multi-bit input codes")

            def make(wt, _i=i):
                return BinaryDense(f"fc{_i}", wt)
        layer = make(weight)
        self.layers.append(layer)
        in_canon = prev_stage.canon
        out_canon = layer.output_shape(in_canon)
        detail = (f"{layer.kind} {'x'.join(map(str, in_canon))} -> "
                  f"{'x'.join(map(str, out_canon))}, K={layer.fan_in}")
        if conv:
            detail += (f", {w.shape[2]}x{w.shape[3]} stride {stride}"
                       + (f", pad {pad_width} with {pv:+d}" if pad_width else ""))
        wlabels = [wsrc] if wsrc != "an initializer" and not wsrc.startswith(label) else []
        self.report.steps.append((wlabels + [label], f"{layer.name} ({detail})"))
        if prev["kind"] == "codes":
            lo, hi = layer.output_range
            reachable = np.arange(lo, hi + 1, dtype=np.int64)
        else:
            k = layer.fan_in
            lo, hi = -k, k
            reachable = np.arange(-k, k + 1, 2, dtype=np.int64)
        self.value_dtype = np.float64 if self.input_dtype == np.float64 else np.float32
        self.stage = _Stage("preact", tuple(out_canon), layer=layer, make_layer=make,
                            weight=weight, A=A, B=B, lo=lo, hi=hi, reachable=reachable,
                            index=i)
        if conv:
            shape = tuple(out_canon)
        else:
            shape = tuple(self.data.shape[:-1]) + (o,)
        self._advance(node, shape, np.arange(int(np.prod(out_canon))).reshape(shape))
        self.data.pad = None

    def _check_exact(self, label, xvals, delta, k, bias, xnor):
        """Every partial sum of the file's float32 dot products is exact, in any order."""
        prods = (np.asarray(xvals, np.float64)[:, None] * delta[None, :]).ravel()
        terms = [prods] + ([bias] if bias is not None else [])
        if not _exact_f32(np.concatenate(terms)) or not _exact_f32(xvals):
            _fail(label, f"its products (inputs {_short(xvals)} times weight scales "
                  f"{_short(np.unique(delta))}) are not exact in float32; bnnhw cannot "
                  f"reproduce the file's rounding")
        e = _lowbit(np.concatenate(terms + ([np.array([k], float)] if xnor else [])))
        if e is None:
            return
        bound = k * np.max(np.abs(prods)) + (np.max(np.abs(bias)) if bias is not None else 0)
        bound += k if xnor else 0
        if bound >= 2.0 ** (24 + e):
            _fail(label, f"its float32 sums reach {bound:g} at a resolution of 2^{e}: not exact "
                  f"in every summation order, so bnnhw cannot reproduce the file's rounding")

    # -- the scores --------------------------------------------------------------------------

    def _finish_output(self):
        st = self.stage
        g = self.graph
        outputs = [o.name for o in g.output if o.name not in self.consts]
        final = {self.data.name} if self.terminator is None else set(self.dynamic)
        stray = [name for name in outputs if name not in final]
        if stray:
            raise ModelError(f"{self.file}: graph output {stray[0]!r} is not the end of the "
                             f"chain (bnnhw reads one score tensor)")
        if st.kind == "input":
            raise ModelError(f"{self.file}: no compute node (MatMul, Gemm, Conv, "
                             f"XnorPopcountMatMul) found")
        if st.pools:
            _fail(st.pools[0].label, "pools after the last layer; bnnhw's scores are a vector")
        if len(st.canon) != 1:
            _fail(st.layer.name, f"the scores of layer {st.layer.name} are a "
                  f"{list(st.canon)} feature map; bnnhw's scores come from a dense layer")
        clip = self._strip_clip(st)
        yr = st.reachable
        outs = self._evaluate(st, self._values(st, yr))
        f = (outs[-1] if outs else self._values(st, yr)).astype(np.float64)
        perm = self.data.index.ravel()
        o = st.canon[0]
        if self.data.index.size != o or not np.array_equal(np.sort(perm), np.arange(o)):
            _fail(self.terminator or f"output {self.data.name!r}",
                  f"the scores are not the {o} outputs of layer {st.layer.name}")
        if not np.array_equal(perm, np.arange(o)):
            self.layers[self.layers.index(st.layer)] = st.make_layer(st.weight[perm])
            f = f[:, perm]
            st.A, st.B = st.A[perm], st.B[perm]
        last = st.elems[-1].label if st.elems else f"layer {st.layer.name}"
        tail = [l for l in st.labels if l != self.terminator]
        if len(np.unique(f)) <= 2:
            _fail(last, f"the scores of layer {st.layer.name} are binarized (values "
                  f"{_short(np.unique(f))}); the argmax of per-class bits is not bnnhw's "
                  f"(margins, SPEC §8)")
        same = np.all(f == f[:, :1], axis=1).all()
        if same:
            inc, dec = _monotone(f[:, 0])
            strict_inc = np.all(np.diff(f[:, 0]) > 0)
            strict_dec = np.all(np.diff(f[:, 0]) < 0)
            if not (strict_inc or strict_dec):
                j = int(np.argmin(np.abs(np.diff(f[:, 0])) > 0)) if (inc or dec) else 0
                _fail(last, f"the scores are not a strictly monotone function of layer "
                      f"{st.layer.name}'s output (equal at y = {int(yr[j])} and "
                      f"{int(yr[j + 1])}): ties would break differently")
            if strict_dec:
                layer = st.make_layer((-st.weight).astype(np.int8))
                self.layers[self.layers.index(st.layer)] = layer
                how = "decreasing: weights negated, "
            else:
                how = ""
            rule = "clipped values" if clip is not None else "popcounts"
            self.layers.append(Output("output"))
            self.report.steps.append(
                (tail, f"output: scores = {how}one strictly increasing function of the "
                       f"{rule}, the same for every class (same argmax)"
                       + (f"; {self.terminator} picks the class" if self.terminator else "")))
        else:
            t, neg = self._margins(st, yr, f, last)
            thr = Threshold(f"thr{st.index}", t, neg)
            self.layers.append(thr)
            self.layers.append(Output("output"))
            self.report.steps.append(
                (tail, f"{thr.name} + output: per-class offsets are threshold margins "
                       f"(scores y - T, {int(neg.sum())} negated)"
                       + (f"; {self.terminator} picks the class" if self.terminator else "")))
        return self._network()

    def _margins(self, st, yr, f, last):
        """Per-class affine scores ``c * sigma_o * (y - T_o)`` with integer ``T_o``: margins."""
        y = yr.astype(np.float64)
        o = f.shape[1]
        slope = np.empty(o)
        icpt = np.empty(o)
        for c in range(o):
            d = np.diff(f[:, c])
            if not (np.all(d > 0) or np.all(d < 0)):
                _fail(last, f"the score of class {c} is not a strictly monotone function of "
                      f"layer {st.layer.name}'s output; per-class output affines that change "
                      f"the argmax")
            slope[c], icpt[c] = np.polyfit(y, f[:, c], 1)
        scale = np.abs(slope)
        if not np.allclose(scale, scale[0], rtol=1e-6, atol=0):
            _fail(last, f"per-class output scales {_short(np.unique(scale))} change the argmax "
                  f"(bnnhw's classes share one score scale)")
        sigma = np.sign(slope)
        tau = -sigma * icpt / scale[0]
        t = np.rint(tau)
        if not np.allclose(t, tau, rtol=0, atol=1e-6 * max(1.0, np.max(np.abs(tau)))):
            _fail(last, f"per-class output offsets {_short(icpt)} change the argmax: they are "
                  f"not integer threshold margins of layer {st.layer.name}")
        t = t.astype(np.int64)
        m = sigma[None, :] * (yr[:, None] - t[None, :])
        order = np.argsort(m.ravel(), kind="stable")
        ms, fs = m.ravel()[order], f.ravel()[order]
        step = np.diff(ms) > 0
        okay = np.all(np.diff(fs)[step] > 0) and np.all(np.diff(fs)[~step] == 0)
        if not okay:
            _fail(last, f"per-class output affines change the argmax: the scores do not "
                  f"order exactly as the margins y - T of layer {st.layer.name}")
        return t, sigma < 0

    def _network(self):
        mentioned = {label for nodes, _ in self.report.steps for label in nodes}
        rest = [label for label in self.folded
                if label not in mentioned and not any(m.startswith(label) for m in mentioned)]
        if rest:
            self.report.steps.insert(0, (rest, "constants: evaluated once on their constant "
                                               "inputs (shapes, weight transforms, scales)"))
        meta_props = {p.key: p.value for p in self.model.metadata_props}
        name = meta_props.get("bnnhw.name") or re.sub(r"\W", "_", Path(self.file).stem) or "onnx"
        classes = ()
        if "bnnhw.classes" in meta_props:
            try:
                classes = tuple(json.loads(meta_props["bnnhw.classes"]))
            except (ValueError, TypeError):
                classes = ()
        n_classes = self.stage.canon[0]
        if len(classes) != n_classes:
            classes = ()
        meta = {"source": "onnx", "format": self.report.format, "file": Path(self.file).name,
                "input_scale": self.input_scale, "preprocessing": self.report.preprocessing}
        try:
            return Network(name=name, input_shape=self.input_shape, quantizer=self.quantizer,
                           layers=tuple(self.layers), classes=classes, meta=meta)
        except ModelError as e:
            raise ModelError(f"{self.file}: {e}") from None


def _graph_tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graph_tensors(subgraph)


def _refuse_external_data(model, file):
    import onnx
    for tensor in _graph_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ModelError(f"{file}: tensor {tensor.name!r} keeps its data in an external "
                             f"file; bnnhw reads only self-contained ONNX files (save it with "
                             f"save_as_external_data=False)")


def import_onnx(path, *, input_scale=None):
    """Read a QONNX or FINN-ONNX file into a :class:`~bnnhw.model.Network`.

    Parameters
    ----------
    path : str or os.PathLike
    input_scale : float, optional
        The file's input is ``byte / input_scale`` (default 255, PyTorch's ``ToTensor``; 1 when
        the input is uint8 or annotated ``UINT8`` as FINN does).

    Returns
    -------
    network : bnnhw.model.Network
    report : ImportReport
        What every node became, and the preprocessing the file expects.

    Raises
    ------
    bnnhw.errors.ModelError
        Naming the node, its operator and the reason, for anything bnnhw cannot reproduce
        exactly.
    """
    import onnx
    from ..limits import check_size
    from ..model.safeio import check_file
    path = check_file(path, "model file", ModelError)
    # The file is untrusted: its size is bounded before protobuf reads it, and tensors kept
    # in external files (a location chosen by the file) are refused rather than followed.
    check_size("model_bytes", path.stat().st_size, f"model file {str(path)!r}", ModelError)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:       # protobuf's DecodeError and friends
        raise ModelError(f"model file {str(path)!r} is not a readable ONNX file "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
            from None
    _refuse_external_data(model, str(path))
    imp = _Importer(model, str(path), input_scale)
    net = imp.run()
    return net, imp.report
