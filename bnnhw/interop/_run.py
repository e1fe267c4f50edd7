"""Execute one ONNX node at a time, the way qonnx's executor does.

Standard operators run in onnxruntime (a one-node model per node, as
``qonnx.core.onnx_exec.execute_node`` builds), QONNX / FINN custom operators (``BipolarQuant``,
``Quant``, ``MultiThreshold``, ``XnorPopcountMatMul``, ...) through qonnx's own
implementations. The importer evaluates the file's own nodes with it: thresholds are found by
running them, never by re-deriving their formulas.
"""

import numpy as np

from ..errors import ModelError

__all__ = ["NodeRunner", "QONNX_DOMAINS", "is_qonnx_op", "node_label"]

#: Domains whose operators qonnx implements in ``qonnx.custom_op.general``: Brevitas' export
#: domain, qonnx's own, and the names FINN used before the operators moved to qonnx.
QONNX_DOMAINS = ("onnx.brevitas", "qonnx.custom_op.general", "finn.custom_op.general", "finn")


def node_label(node, index=None):
    """``'name' (Op)`` for messages; unnamed nodes are named by their position."""
    name = node.name or (f"#{index}" if index is not None else node.output[0])
    return f"node {name!r} ({node.op_type})"


def is_qonnx_op(node):
    return node.domain in QONNX_DOMAINS


def _onnx_dtype(array):
    from onnx import helper
    return helper.np_dtype_to_tensor_dtype(array.dtype)


class NodeRunner:
    """Runs single nodes; onnxruntime sessions are cached per node and input signature.

    Parameters
    ----------
    opset : int
        The file's opset of the default ONNX domain.
    """

    def __init__(self, opset):
        self.opset = int(opset)
        self._sessions = {}

    def run(self, node, inputs):
        """Outputs (a list of arrays) of ``node`` on ``inputs`` (arrays, or None for an
        omitted optional input), in the node's input order."""
        if is_qonnx_op(node):
            return self._run_custom(node, inputs)
        return self._run_ort(node, inputs)

    def _run_custom(self, node, inputs):
        from onnx import helper
        from qonnx.custom_op.registry import getCustomOp
        copy = type(node)()
        copy.CopyFrom(node)
        copy.domain = "qonnx.custom_op.general"
        try:
            op = getCustomOp(copy)
        except (KeyError, ImportError, AttributeError) as e:
            raise ModelError(f"{node_label(node)}: qonnx has no implementation of this "
                             f"operator ({e})") from None
        context = {name: array for name, array in zip(node.input, inputs) if name}
        for name in node.output:
            context[name] = None
        graph = helper.make_graph([copy], "single_node", [], [])
        op.execute_node(context, graph)
        return [np.asarray(context[name]) for name in node.output]

    def _session(self, node, inputs):
        import onnx
        import onnxruntime as ort
        from onnx import helper
        key = (node.SerializeToString(),
               tuple((None if a is None else (a.dtype.str, a.ndim)) for a in inputs))
        cached = self._sessions.get(key)
        if cached is not None:
            return cached
        graph_inputs = []
        for i, (name, array) in enumerate(zip(node.input, inputs)):
            if not name or array is None:
                continue
            dims = [f"d{i}_{k}" for k in range(array.ndim)]
            graph_inputs.append(helper.make_tensor_value_info(name, _onnx_dtype(array), dims))
        outputs = [helper.make_empty_tensor_value_info(name) for name in node.output]
        graph = helper.make_graph([node], "single_node", graph_inputs, outputs)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = min(model.ir_version, 8)
        inferred = onnx.shape_inference.infer_shapes(model)
        del model.graph.output[:]
        for out in inferred.graph.output:
            model.graph.output.append(out)
        try:
            session = ort.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
        except Exception as e:      # onnxruntime raises its own exception types
            raise ModelError(f"{node_label(node)}: onnxruntime cannot run it "
                             f"({str(e).splitlines()[0]})") from None
        self._sessions[key] = session
        return session

    def _run_ort(self, node, inputs):
        session = self._session(node, inputs)
        feed = {name: array for name, array in zip(node.input, inputs)
                if name and array is not None}
        try:
            return session.run(list(node.output), feed)
        except Exception as e:
            raise ModelError(f"{node_label(node)}: onnxruntime failed on it "
                             f"({str(e).splitlines()[0]})") from None
