"""Helpers of the QONNX tests: qonnx's own execution as the reference, and small graph builders.

The reference is always ``qonnx.core.onnx_exec.execute_onnx`` on the file (or the graph a
test built with ``onnx.helper``), prepared the way qonnx's own ``exec_qonnx`` tool does it:
``ChangeBatchSize`` + ``InferShapes`` (the graph's arithmetic is untouched).
"""

import warnings

import numpy as np
import onnx     # the extra bnnhw[onnx]: a missing library fails these tests, never skips them
from onnx import TensorProto, helper, numpy_helper

QONNX = "qonnx.custom_op.general"


def qonnx_execute(model, feed, full=False):
    """qonnx's execution of ``model`` (path or ModelProto) on ``feed`` ({input: array})."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes
    batch = next(iter(feed.values())).shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = ModelWrapper(model if isinstance(model, (str, onnx.ModelProto)) else str(model))
        m = m.transform(ChangeBatchSize(batch)).transform(InferShapes())
        return execute_onnx(m, feed, return_full_exec_context=full)


class Graph:
    """A tiny builder: ``g.op("Mul", [x, g.c(2.0)])`` returns the output name."""

    def __init__(self, shape, name="input", elem=TensorProto.FLOAT):
        self.nodes, self.inits = [], []
        self.input = helper.make_tensor_value_info(name, elem, shape)
        self.x = name
        self._n = 0
        self.annotations = []

    def c(self, value, dtype=np.float32):
        self._n += 1
        name = f"c{self._n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op, inputs, name=None, domain="", outputs=1, **attrs):
        self._n += 1
        name = name or f"{op}_{self._n}"
        outs = [f"{name}_out{k}" for k in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, domain=domain, **attrs))
        return outs[0] if outputs == 1 else outs

    def model(self, out, n_out, opset=13, inits_as_inputs=False, out_elem=TensorProto.FLOAT):
        inputs = [self.input]
        if inits_as_inputs:
            inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                       for t in self.inits]
        graph = helper.make_graph(self.nodes, "test", inputs,
                                  [helper.make_tensor_value_info(out, out_elem, [1, n_out])],
                                  initializer=self.inits)
        for tensor, dt in self.annotations:
            qa = onnx.TensorAnnotation()
            qa.tensor_name = tensor
            kv = qa.quant_parameter_tensor_names.add()
            kv.key, kv.value = "finn_datatype", dt
            graph.quantization_annotation.append(qa)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(QONNX, 1)])
        m.ir_version = 8
        return m

    def save(self, path, out, n_out, **kw):
        onnx.save(self.model(out, n_out, **kw), str(path))
        return path


def assert_same(expected, actual, what):
    """Arrays identical, else a message naming the first difference."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    assert expected.shape == actual.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    bad = np.argwhere(expected != actual)
    assert bad.size == 0, (f"{what}: {len(bad)} values differ, first at "
                           f"{tuple(map(int, bad[0]))}")
