"""The operator forms that occur in practice, each built here with onnx.helper and checked
against qonnx's execution of the same graph: predicted classes and every layer's bits.

* Brevitas QONNX convolutional graph from the BNN-PYNQ CNV (CIFAR-10) weights: 8-bit input
  ``Quant``, ``BipolarQuant`` on float latent weights, ``Conv``, batch norms with negative
  gains (negated rows), exact ties, ``MaxPool`` on the bits, ``Flatten``, ``Gemm``, a
  TensorNorm tail and ``TopK``;
* FINN-ONNX after streamlining: UINT8 input with FINN's ``Div 255``, ``MultiThreshold`` with
  integer thresholds and bipolar output, sign-absorbed (negated) weight rows;
* FINN-ONNX after ``ConvertBipolarMatMulToXnorPopcount`` (qonnx's own transformation) and the
  hand-absorbed form with thresholds in the popcount domain and binary output;
* old exports: ``Sign``, 1-bit ``Quant`` with a scale on float latent weights;
* padding: a zero-padded multi-bit first convolution (code 0), a ``Pad`` of -1 before a binary
  convolution, NHWC flattening (``Transpose`` + ``Reshape``), a max-pool before the quantizer.
"""

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from bnnhw.examples import EXAMPLE_MODEL
from bnnhw.model.datasets import digits_split, load_mnist
from support.qonnx import QONNX, Graph, assert_same, qonnx_execute
from support.data import MNIST, shared_file

RNG = np.random.default_rng(2024)


def batchnorm(g, x, t, negate, scale=1.0, ties=()):
    """BatchNormalization whose sign(BN(u)) fires iff y >= t (y <= t where ``negate``), for
    u = scale * y, with random gains, variances and offsets; channels in ``ties`` have
    BN(u) = 0 exactly at u = scale * t (a tie: BipolarQuant(0) = +1)."""
    n = len(t)
    gain = RNG.uniform(0.3, 2.0, n) * np.where(negate, -1, 1)
    var = RNG.uniform(0.5, 400.0, n)
    beta = RNG.uniform(-1.0, 1.0, n)
    s = np.sqrt(var + 1e-5)
    tau = np.where(negate, t + 0.5, t - 0.5) * scale
    mean = tau + beta * s / gain                # BN(u) = 0 at u = tau
    tie = np.zeros(n, bool)
    tie[list(ties)] = True
    mean = np.where(tie, t * scale, mean)
    beta = np.where(tie, 0.0, beta)
    return g.op("BatchNormalization", [x, g.c(gain), g.c(beta), g.c(mean), g.c(var)],
                epsilon=1e-5)


def bipolar(g, x, name=None):
    return g.op("BipolarQuant", [x, g.c(1.0)], name=name, domain=QONNX)


def latent(w):
    """Float latent weights whose sign is ``w``."""
    return w * RNG.uniform(0.05, 1.0, w.shape)


def compare(model, x_raw, feed, pairs, out, tmp_path, kind="scores"):
    """Import ``model``, run both, compare classes and the (tensor, trace key, factor) pairs."""
    path = tmp_path / "m.onnx"
    import onnx
    onnx.save(model, str(path))
    net = bnnhw.load_model(path)
    ctx = qonnx_execute(path, feed, full=True)
    scores, trace = golden.forward(net, x_raw, trace=True)
    theirs = ctx[out]
    pred = theirs.reshape(-1) if kind == "index" else np.argmax(theirs, axis=1)
    assert_same(pred.astype(np.int64), np.argmax(scores, axis=1), "predicted class")
    n = x_raw.shape[0]
    for tensor, key, how in pairs:
        mine = trace[key].astype(np.float64).reshape(n, -1)
        if how == "bipolar":
            mine = 2 * mine - 1
        elif how != "binary":
            mine = mine * how
        assert_same(mine, ctx[tensor].reshape(n, -1).astype(np.float64),
                    f"tensor {tensor} vs {key}")
    return net, scores, ctx


# -- Brevitas QONNX, convolutional: the BNN-PYNQ CNV weights -----------------------------------

def brevitas_cnv(net, names):
    g = Graph([1, 3, 32, 32])
    x = g.op("Mul", [g.x, g.c(2.0)])
    x = g.op("Sub", [x, g.c(1.0)])
    x = g.op("Quant", [x, g.c(2.0 ** -7), g.c(0.0), g.c(8.0)], name="inquant", domain=QONNX,
             signed=1, narrow=0, rounding_mode="ROUND")
    names["input"] = (x, 1 / 128)
    scale = 2.0 ** -7
    layers = net.layers
    for i, layer in enumerate(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if layer.kind in ("multibit_conv2d", "binary_conv2d", "binary_dense"):
            w = layer.weight.astype(np.float64)
            t = nxt.thresholds.copy() if nxt.kind == "threshold" else None
            neg = np.zeros(w.shape[0], bool)
            if t is not None:
                neg[::5] = True                  # negated rows: weights and threshold flipped
                w[neg] = -w[neg]
                t = np.where(neg, -t, t)
            wq = g.op("BipolarQuant", [g.c(latent(w)), g.c(1.0)], domain=QONNX)
            if layer.kind == "binary_dense":
                if layer.name == "fc6":
                    x = g.op("Flatten", [x], axis=1)
                if layer.name == "fc7":      # PyTorch's Linear as Gemm
                    x = g.op("Gemm", [x, wq], transB=1, name=layer.name)
                else:
                    x = g.op("MatMul", [x, g.op("Transpose", [wq], perm=[1, 0])],
                             name=layer.name)
            else:
                x = g.op("Conv", [x, wq], kernel_shape=[3, 3], name=layer.name)
            names[layer.name] = (x, scale)
            if t is not None:
                ties = range(2, len(t), 7)
                t = np.where(np.isin(np.arange(len(t)), list(ties)), t + 1, t)
                x = bipolar(g, batchnorm(g, x, t, neg, scale, ties), name=nxt.name)
                names[nxt.name] = (x, "bipolar")
                scale = 1.0
        elif layer.kind == "maxpool":
            x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], name=layer.name)
            names[layer.name] = (x, "bipolar")
    # TensorNorm tail, then TopK
    x = g.op("Sub", [x, g.c([0.37])])
    x = g.op("Div", [x, g.op("Pow", [g.c([9.5]), g.c(0.5)])])
    x = g.op("Mul", [x, g.c([0.8])])
    scores = g.op("Add", [x, g.c([-1.1])], name="scores")
    values, index = g.op("TopK", [scores, g.c([1], np.int64)], outputs=2, axis=-1)
    return g, scores, index


def test_brevitas_cnv_from_bnn_pynq_weights(tmp_path):
    net = bnnhw.load_model(shared_file("bnn-pynq", "cnvW1A1_cifar10.npz"))
    names = {}
    g, scores, index = brevitas_cnv(net, names)
    model = g.model(index, 1, out_elem=7)
    x = np.load(shared_file("cifar10", "test.npz"))["images"][:16]
    pairs = [(names["input"][0], "input", names["input"][1])]
    for layer in net.layers:
        if layer.name in names and layer.name != "output":
            tensor, how = names[layer.name]
            pairs.append((tensor, layer.name, how))
    imported, mine, ctx = compare(model, x, {"input": x.astype(np.float32) / 255}, pairs,
                                  index, tmp_path, kind="index")
    assert [l.name for l in imported.layers] == [l.name for l in net.layers]
    thr = [l for l in imported.layers if l.kind == "threshold"]
    assert all(l.negate[::5].all() and not l.negate[1::5].any() for l in thr)
    # scores: the TensorNorm tail is one increasing function of the popcounts
    p, s = mine.ravel(), ctx[scores].ravel()
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(s[order])[np.diff(p[order]) == 0] == 0)
    assert np.all(np.diff(s[order])[np.diff(p[order]) > 0] > 0)


# -- FINN-ONNX: streamlined MultiThreshold graphs and XNOR-popcount ------------------------------

def tfc_network():
    return bnnhw.load_model(shared_file("qonnx", "TFC_1W1A.onnx"))


def finn_streamlined(net, xnor=False, domain="finn.custom_op.general"):
    """FINN's streamlined TFC: UINT8 input, Div 255 (FINN's ToTensor), MultiThreshold with
    integer thresholds after every MatMul (sign absorbed into the weight rows), a scalar
    Mul/Add tail and TopK. With ``xnor``: XnorPopcountMatMul on 0/1 values, thresholds in the
    popcount domain, binary MultiThreshold outputs."""
    g = Graph([1, 1, 28, 28])
    g.annotations.append(("input", "UINT8"))
    x = g.op("Div", [g.x, g.c(255.0)])
    x = g.op("Reshape", [x, g.c([1, -1], np.int64)])
    if xnor:
        x = g.op("MultiThreshold", [x, g.c([[0.5]])], domain=domain, out_dtype="BINARY",
                 name="mt_in")
    else:
        x = g.op("MultiThreshold", [x, g.c([[0.5]])], domain=domain, out_dtype="BIPOLAR",
                 out_scale=2.0, out_bias=-1.0, name="mt_in")
    names = {"input": (x, "binary" if xnor else "bipolar")}
    layers = net.layers
    for i, layer in enumerate(layers):
        if layer.kind != "binary_dense":
            continue
        nxt = layers[i + 1]
        w = layer.weight.astype(np.float64)
        k = layer.fan_in
        if nxt.kind == "threshold":
            w[nxt.negate] = -w[nxt.negate]
            t = np.where(nxt.negate, -nxt.thresholds, nxt.thresholds).astype(np.float64)
        if xnor:
            x = g.op("XnorPopcountMatMul", [x, g.c((w.T + 1) / 2)], domain=domain,
                     name=layer.name)
            if nxt.kind == "threshold":
                t = np.ceil((t + k) / 2)           # y >= t  <=>  P >= ceil((t + K) / 2)
        else:
            x = g.op("MatMul", [x, g.c(w.T)], name=layer.name)
        if nxt.kind == "threshold":
            if xnor:
                x = g.op("MultiThreshold", [x, g.c(t[:, None])], domain=domain,
                         out_dtype="BINARY", name=nxt.name)
                names[nxt.name] = (x, "binary")
            else:
                x = g.op("MultiThreshold", [x, g.c(t[:, None])], domain=domain,
                         out_dtype="BIPOLAR", out_scale=2.0, out_bias=-1.0, name=nxt.name)
                names[nxt.name] = (x, "bipolar")
    x = g.op("Mul", [x, g.c([0.25])])
    x = g.op("Add", [x, g.c([3.0])])
    _, index = g.op("TopK", [x, g.c([1], np.int64)], outputs=2, axis=-1)
    return g, index, names


@pytest.mark.parametrize("xnor", [False, True])
@pytest.mark.parametrize("domain", ["finn.custom_op.general", QONNX])
def test_finn_streamlined(tmp_path, xnor, domain):
    net = tfc_network()
    g, index, names = finn_streamlined(net, xnor=xnor, domain=domain)
    images = load_mnist(MNIST)[0][:2000]
    x = images.reshape(-1, 1, 28, 28)
    pairs = [(t, key, how) for key, (t, how) in names.items()]
    imported, scores, _ = compare(g.model(index, 1, out_elem=7), x,
                                  {"input": x.astype(np.float32)}, pairs, index, tmp_path,
                                  kind="index")
    # The same function as the Brevitas file: identical scores (the tail is a scalar affine).
    assert_same(golden.forward(net, images), scores, "scores vs the TFC import")
    assert imported.quantizer.threshold == 128 and imported.meta["input_scale"] == 1.0
    thr = [l for l in imported.layers if l.kind == "threshold"]
    assert not any(l.negate.any() for l in thr)      # FINN absorbed the signs into the rows


def test_qonnx_xnor_conversion(tmp_path):
    """qonnx's ConvertBipolarMatMulToXnorPopcount: XnorPopcountMatMul, then Mul 2 / Add -K in
    front of MultiThresholds that still hold the dot-product thresholds."""
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.bipolar_to_xnor import ConvertBipolarMatMulToXnorPopcount
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    net = tfc_network()
    g, index, _ = finn_streamlined(net, domain=QONNX)
    m = ModelWrapper(g.model(index, 1, out_elem=7))
    m = m.transform(InferShapes()).transform(InferDataTypes())
    for node in m.graph.node:
        if node.op_type == "MatMul":
            m.set_tensor_datatype(node.input[1], DataType["BIPOLAR"])
    m = m.transform(ConvertBipolarMatMulToXnorPopcount())
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("XnorPopcountMatMul") == 4 and "MatMul" not in ops
    images = load_mnist(MNIST)[0][:1000]
    x = images.reshape(-1, 1, 28, 28)
    imported, scores, _ = compare(m.model, x, {"input": x.astype(np.float32)}, [], index,
                                  tmp_path, kind="index")
    assert_same(golden.forward(net, images), scores, "scores vs the TFC import")


# -- old exports: Sign, 1-bit Quant with a scale on float latent weights ---------------------------

def old_export(net, zero_at=None):
    g = Graph([1, 1, 28, 28])
    x = g.op("Reshape", [g.x, g.c([1, 784], np.int64)])
    x = g.op("Sign", [g.op("Sub", [g.op("Mul", [x, g.c(2.0)]), g.c(1.0)])], name="sign_in")
    names = {"input": (x, "bipolar")}
    layers = net.layers
    for i, layer in enumerate(layers):
        if layer.kind != "binary_dense":
            continue
        nxt = layers[i + 1]
        w = g.op("Quant", [g.c(latent(layer.weight.astype(np.float64))), g.c(0.5), g.c(0.0),
                           g.c(1.0)], domain=QONNX, signed=1, narrow=1, rounding_mode="ROUND")
        x = g.op("Gemm", [x, w], transB=1, name=layer.name)
        names[layer.name] = (x, 0.5)
        if nxt.kind == "threshold":
            t = nxt.thresholds
            ties = [zero_at] if zero_at is not None else []
            x = g.op("Sign", [batchnorm(g, x, t, nxt.negate, 0.5, ties)], name=nxt.name)
            names[nxt.name] = (x, "bipolar")
    return g, x, names


def test_old_export_sign_and_quant(tmp_path):
    net = tfc_network()
    g, out, names = old_export(net)
    images = load_mnist(MNIST)[0][:2000]
    x = images.reshape(-1, 1, 28, 28)
    pairs = [(t, key, how) for key, (t, how) in names.items()]
    imported, scores, _ = compare(g.model(out, 10), x, {"input": x.astype(np.float32) / 255},
                                  pairs, out, tmp_path)
    assert_same(golden.forward(net, images), scores, "scores vs the TFC import")


def test_old_export_sign_zero_is_refused(tmp_path):
    """Sign(0) = 0: a batch norm that is exactly 0 at a reachable pre-activation is refused."""
    net = tfc_network()
    g, out, _ = old_export(net, zero_at=3)
    path = tmp_path / "m.onnx"
    __import__("onnx").save(g.model(out, 10), str(path))
    t = int(net.layers[1].thresholds[3])
    with pytest.raises(bnnhw.ModelError, match=rf"node 'thr0' \(Sign\): ONNX Sign gives 0 at "
                                               rf"pre-activation y = {t} of channel 3 of layer "
                                               rf"fc0"):
        bnnhw.load_model(path)


# -- padding, NHWC flattening, pooling before the quantizer: the digits example's weights -------

def digits_graph(pool_at="bits", negate_channel=None):
    net = bnnhw.load_model(EXAMPLE_MODEL)
    L = {l.name: l for l in net.layers}
    g = Graph([1, 1, 8, 8])
    x = g.op("Sub", [g.op("Mul", [g.x, g.c(2.0)]), g.c(1.0)])
    x = g.op("Quant", [x, g.c(2.0 ** -7), g.c(0.0), g.c(8.0)], domain=QONNX, signed=1,
             narrow=0, rounding_mode="ROUND")
    names = {"input": (x, 1 / 128)}
    # conv0: zero padding in the value domain, i.e. the input code 0
    wq = g.op("BipolarQuant", [g.c(latent(L["conv0"].weight.astype(float))), g.c(1.0)],
              domain=QONNX)
    x = g.op("Conv", [x, wq], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv0")
    names["conv0"] = (x, 1 / 128)
    t0 = L["thr0"].thresholds
    x = bipolar(g, batchnorm(g, x, t0, np.zeros(len(t0), bool), 2.0 ** -7), name="thr0")
    names["thr0"] = (x, "bipolar")
    # conv1: an explicit Pad of -1 pixels
    x = g.op("Pad", [x, g.c([0, 0, 1, 1, 0, 0, 1, 1], np.int64), g.c(-1.0)], mode="constant")
    wq = g.op("BipolarQuant", [g.c(latent(L["conv1"].weight.astype(float))), g.c(1.0)],
              domain=QONNX)
    x = g.op("Conv", [x, wq], kernel_shape=[3, 3], name="conv1")
    names["conv1"] = (x, 1.0)
    t1 = L["thr1"].thresholds
    neg = np.zeros(len(t1), bool)
    if negate_channel is not None:
        neg[negate_channel] = True
    if pool_at == "conv":           # max-pool of the integer pre-activation, before the BN
        x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], name="pool1")
        x = bipolar(g, batchnorm(g, x, t1, neg), name="thr1")
        names["pool1"] = (x, "bipolar")
    elif pool_at == "bn":           # between the BN and its quantizer
        bn = batchnorm(g, x, t1, neg)
        x = g.op("MaxPool", [bn], kernel_shape=[2, 2], strides=[2, 2], name="pool1")
        x = bipolar(g, x, name="thr1")
        names["pool1"] = (x, "bipolar")
    else:
        x = bipolar(g, batchnorm(g, x, t1, neg), name="thr1")
        names["thr1"] = (x, "bipolar")
        x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], name="pool1")
        names["pool1"] = (x, "bipolar")
    # NHWC flattening, FINN style: the weight columns in HWC order are bnnhw's own
    x = g.op("Transpose", [x], perm=[0, 2, 3, 1])
    x = g.op("Reshape", [x, g.c([1, -1], np.int64)])
    wq = g.op("BipolarQuant", [g.c(latent(L["fc2"].weight.T.astype(float))), g.c(1.0)],
              domain=QONNX)
    x = g.op("MatMul", [x, wq], name="fc2")
    names["fc2"] = (x, 1.0)
    t2 = L["thr2"].thresholds
    x = bipolar(g, batchnorm(g, x, t2, np.zeros(len(t2), bool)), name="thr2")
    names["thr2"] = (x, "bipolar")
    wq = g.op("BipolarQuant", [g.c(latent(L["fc3"].weight.T.astype(float))), g.c(1.0)],
              domain=QONNX)
    x = g.op("MatMul", [x, wq], name="fc3")
    return net, g, x, names


@pytest.mark.parametrize("pool_at,negate", [("bits", None), ("bits", 4), ("bn", None),
                                             ("bn", 4), ("conv", None)])
def test_padding_layout_pooling(tmp_path, pool_at, negate):
    """Pooling bits, or values before the quantizer where max and the step commute (a
    negative-gain batch norm turns max into min, and the decreasing step back into an OR)."""
    _, g, out, names = digits_graph(pool_at, negate)
    x = digits_split()[2]
    pairs = [(t, key, how) for key, (t, how) in names.items()]
    imported, _, _ = compare(g.model(out, 10), x, {"input": x.astype(np.float32) / 255}, pairs,
                             out, tmp_path)
    conv0, conv1 = imported.layers[0], imported.layers[2]
    assert (conv0.pad, conv0.pad_value) == (1, 0) and (conv1.pad, conv1.pad_value) == (1, -1)
    assert int(imported.layers[3].negate.sum()) == (negate is not None)


def test_pool_before_a_negated_threshold_is_refused(tmp_path):
    """max of y, then a decreasing step, is an AND of the bits, not bnnhw's OR: refused."""
    _, g, out, _ = digits_graph("conv", negate_channel=4)
    path = tmp_path / "m.onnx"
    __import__("onnx").save(g.model(out, 10), str(path))
    with pytest.raises(bnnhw.ModelError, match=r"node 'pool1' \(MaxPool\): pools channel 4 of "
                                               r"layer conv1 before its quantizer"):
        bnnhw.load_model(path)


def test_initializers_listed_as_inputs_do_not_matter(tmp_path):
    net = tfc_network()
    g, out, _ = old_export(net)
    a = tmp_path / "a.onnx"
    b = tmp_path / "b.onnx"
    import onnx
    onnx.save(g.model(out, 10), str(a))
    onnx.save(g.model(out, 10, inits_as_inputs=True), str(b))
    assert bnnhw.load_model(a).fingerprint() == bnnhw.load_model(b).fingerprint()
