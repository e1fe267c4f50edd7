"""Every refusal of the importer, each on a small graph built here with onnx.helper: the
message names the node, its operator and the reason (one line)."""

import builtins

import numpy as np
import onnx
import pytest

import bnnhw
from bnnhw.cli import main
from bnnhw.errors import ModelError, ToolError
from support.qonnx import QONNX, Graph

RNG = np.random.default_rng(7)
W1 = RNG.choice([-1.0, 1.0], size=(8, 16))
W2 = RNG.choice([-1.0, 1.0], size=(3, 8))


def dense(g, x, w, name, quant=None):
    if quant is None:
        wq = g.op("BipolarQuant", [g.c(w), g.c(1.0)], domain=QONNX, name=name + "_wq")
    else:
        wq = quant(g, w)
    return g.op("MatMul", [x, g.op("Transpose", [wq], perm=[1, 0])], name=name)


def bn(g, x, n, mean=0.5, name="bn"):
    return g.op("BatchNormalization", [x, g.c(np.ones(n)), g.c(np.zeros(n)),
                                       g.c(np.full(n, mean)), g.c(np.ones(n))],
                epsilon=0.0, name=name)


def mlp(act=None, weights2=None, tail=None, input_chain=None, first=None):
    """input [1, 16] -> 2x-1 -> BipolarQuant -> fc0 (8) -> BN -> act -> fc1 (3) -> tail."""
    g = Graph([1, 16])
    x = g.x
    if input_chain is None:
        x = g.op("BipolarQuant", [g.op("Sub", [g.op("Mul", [x, g.c(2.0)]), g.c(1.0)]),
                                  g.c(1.0)], domain=QONNX, name="inq")
    else:
        x = input_chain(g, x)
    x = (first or dense)(g, x, W1, "fc0")
    y = bn(g, x, 8)
    x = act(g, y) if act else g.op("BipolarQuant", [y, g.c(1.0)], domain=QONNX, name="act")
    x = dense(g, x, W2, "fc1", quant=weights2)
    if tail is not None:
        x = tail(g, x)
    return g, x


def refused(tmp_path, g, out, n_out=3, match="", **kw):
    path = tmp_path / "m.onnx"
    onnx.save(g.model(out, n_out, **kw), str(path))
    with pytest.raises(ModelError, match=match) as info:
        bnnhw.load_model(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_baseline_imports(tmp_path):
    g, out = mlp()
    path = tmp_path / "ok.onnx"
    onnx.save(g.model(out, 3), str(path))
    net = bnnhw.load_model(path)
    assert [l.kind for l in net.layers] == ["binary_dense", "threshold", "binary_dense",
                                            "output"]


def test_multibit_weights(tmp_path):
    def quant2(g, w):
        return g.op("Quant", [g.c(w * RNG.uniform(0, 1.6, w.shape)), g.c(1.0), g.c(0.0),
                              g.c(2.0)], domain=QONNX, signed=1, narrow=1,
                    rounding_mode="ROUND", name="wquant")
    g, out = mlp(weights2=quant2)
    refused(tmp_path, g, out, match=r"^node 'fc1' \(MatMul\): weights \(from node 'wquant' "
                                    r"\(Quant\) bit width 2\) take 3 values \{-1, 0, 1\} in "
                                    r"output channel \d+: multi-bit weights")


def test_multibit_activations(tmp_path):
    def act(g, y):
        return g.op("MultiThreshold", [y, g.c(np.tile([-2.0, 0.0, 2.0], (8, 1)))],
                    domain=QONNX, out_dtype="UINT2", name="mt")
    g, out = mlp(act=act)
    refused(tmp_path, g, out, match=r"^node 'mt' \(MultiThreshold\): activations after layer "
                                    r"fc0 take 4 values \{0, 1, 2, 3\} at the input of node "
                                    r"'fc1' \(MatMul\): multi-bit activations")


def test_sign_without_a_reachable_zero_imports(tmp_path):
    """Sign(BN(y)) with BN(y) = y - 1: never 0 for the even y of K = 16, so exact."""
    def act(g, y):
        return g.op("Sign", [g.op("Sub", [y, g.c(0.5)])], name="sign")
    g, out = mlp(act=act)
    path = tmp_path / "m.onnx"
    onnx.save(g.model(out, 3), str(path))
    assert bnnhw.load_model(path).layers[1].thresholds.tolist() == [2] * 8


def test_sign_of_zero(tmp_path):
    def act(g, y):
        return g.op("Sign", [g.op("Add", [y, g.c(0.5)])], name="sign")     # Sign(y)
    g, out = mlp(act=act)
    refused(tmp_path, g, out, match=r"^node 'sign' \(Sign\): ONNX Sign gives 0 at pre-activation "
                                    r"y = 0 of channel 0 of layer fc0")


def test_not_a_step(tmp_path):
    def act(g, y):
        a = g.op("Sub", [g.op("Abs", [y]), g.c(3.0)], name="absdiff")
        return g.op("BipolarQuant", [a, g.c(1.0)], domain=QONNX, name="act")
    g, out = mlp(act=act)
    refused(tmp_path, g, out, match=r"^node 'act' \(BipolarQuant\): channel 0 of layer fc0 is "
                                    r"not a step function of its pre-activation")


def test_residual_add(tmp_path):
    def act(g, y):
        q = g.op("BipolarQuant", [y, g.c(1.0)], domain=QONNX, name="act")
        return g.op("Add", [q, g.op("Identity", [q], name="skip")], name="residual")
    g, out = mlp(act=act)
    msg = refused(tmp_path, g, out, match=r"node '(skip|residual)' \((Identity|Add)\)")
    assert "branches" in msg or "residual add" in msg


def test_residual_add_of_two_paths(tmp_path):
    g = Graph([1, 16])
    a = g.op("Mul", [g.x, g.c(2.0)], name="a")
    out = g.op("Add", [a, g.x], name="res")
    msg = refused(tmp_path, g, out, n_out=16, match=r"node '(a|res)'")
    assert "branches" in msg or "residual add" in msg


def test_per_class_output_scale(tmp_path):
    g, out = mlp(tail=lambda g, x: g.op("Mul", [x, g.c([[1.0, 2.0, 1.0]])], name="scale"))
    refused(tmp_path, g, out, match=r"^node 'scale' \(Mul\): per-class output scales \{1, 2\} "
                                    r"change the argmax")


def test_per_class_output_offset(tmp_path):
    g, out = mlp(tail=lambda g, x: g.op("Add", [x, g.c([[0.0, 0.3, -1.0]])], name="bias"))
    refused(tmp_path, g, out, match=r"^node 'bias' \(Add\): per-class output offsets .* change "
                                    r"the argmax: they are not integer threshold margins")


def test_per_class_integer_offsets_are_margins(tmp_path):
    """Offsets that are integer margins are a threshold before the output: accepted, exact."""
    from support.qonnx import qonnx_execute
    g, out = mlp(tail=lambda g, x: g.op("Sub", [x, g.c([[1.0, -3.0, 5.0]])], name="margin"))
    path = tmp_path / "m.onnx"
    onnx.save(g.model(out, 3), str(path))
    net = bnnhw.load_model(path)
    assert net.output_rule == "margin" and net.layers[-2].thresholds.tolist() == [1, -3, 5]
    x = RNG.integers(0, 256, (200, 16)).astype(np.uint8)
    theirs = qonnx_execute(path, {"input": x.astype(np.float32) / 255})[out]
    assert np.array_equal(theirs.astype(np.int64), bnnhw.golden.forward(net, x))


def test_binarized_scores(tmp_path):
    g, out = mlp(tail=lambda g, x: g.op("BipolarQuant", [x, g.c(1.0)], domain=QONNX,
                                        name="outq"))
    refused(tmp_path, g, out, match=r"^node 'outq' \(BipolarQuant\): the scores of layer fc1 "
                                    r"are binarized")


@pytest.mark.parametrize("op", ["MVAU", "StreamingFCLayer_Batch"])
def test_finn_hardware_dialect(tmp_path, op):
    g, out = mlp(tail=lambda g, x: g.op(op, [x], domain="finn.custom_op.fpgadataflow",
                                        name="hw0"))
    refused(tmp_path, g, out, match=rf"^node 'hw0' \({op}\): a FINN hardware-dialect node")


def test_unknown_operator(tmp_path):
    g, out = mlp(tail=lambda g, x: g.op("Softmax", [x], name="soft", axis=1))
    refused(tmp_path, g, out, match=r"^node 'soft' \(Softmax\): operator not supported by "
                                    r"bnnhw's importer")


def conv_graph(pads=(0, 0, 0, 0), group=1):
    g = Graph([1, 4, 6, 6])
    x = g.op("BipolarQuant", [g.op("Sub", [g.op("Mul", [g.x, g.c(2.0)]), g.c(1.0)]),
                              g.c(1.0)], domain=QONNX, name="inq")
    w = RNG.choice([-1.0, 1.0], size=(4, 4 // group, 3, 3))
    x = g.op("Conv", [x, g.c(w)], kernel_shape=[3, 3], pads=list(pads), group=group,
             name="conv0")
    x = g.op("BipolarQuant", [bn(g, x, 4), g.c(1.0)], domain=QONNX, name="act")
    x = g.op("Flatten", [x], axis=1)
    k = 4 * (6 + pads[0] * 2 - 2) ** 2
    return g, dense(g, x, RNG.choice([-1.0, 1.0], size=(3, k)), "fc1")


def test_grouped_convolution(tmp_path):
    g, out = conv_graph(group=2)
    refused(tmp_path, g, out, match=r"^node 'conv0' \(Conv\): a grouped convolution \(group=2\)")


def test_zero_padding_of_a_binary_convolution(tmp_path):
    g, out = conv_graph(pads=(1, 1, 1, 1))
    refused(tmp_path, g, out, match=r"^node 'conv0' \(Conv\): zero padding of a convolution "
                                    r"whose input is -1 / 1; bnnhw pads a binary convolution "
                                    r"with \+1 or -1 pixels")


def test_input_quantizer_not_a_step(tmp_path):
    def chain(g, x):
        a = g.op("Abs", [g.op("Sub", [g.op("Mul", [x, g.c(2.0)]), g.c(1.0)])])
        return g.op("BipolarQuant", [g.op("Sub", [a, g.c(0.5)]), g.c(1.0)], domain=QONNX,
                    name="inq")
    g, out = mlp(input_chain=chain)
    refused(tmp_path, g, out, match=r"^node 'inq' \(BipolarQuant\): the input of node 'fc0' "
                                    r"\(MatMul\) is not one step in the byte value")


def test_input_quantizer_differs_between_pixels(tmp_path):
    def chain(g, x):
        s = g.op("Sub", [x, g.c(np.linspace(0, 0.5, 16)[None, :])], name="perpixel")
        return g.op("BipolarQuant", [s, g.c(1.0)], domain=QONNX, name="inq")
    g, out = mlp(input_chain=chain)
    refused(tmp_path, g, out, match=r"^node 'perpixel' \(Sub\): its constant input 1 differs "
                                    r"between input pixels")


def test_multibit_input_to_a_dense_layer(tmp_path):
    def chain(g, x):
        s = g.op("Sub", [g.op("Mul", [x, g.c(2.0)]), g.c(1.0)])
        return g.op("Quant", [s, g.c(2.0 ** -7), g.c(0.0), g.c(8.0)], domain=QONNX, signed=1,
                    narrow=0, rounding_mode="ROUND", name="inq")
    g, out = mlp(input_chain=chain)
    refused(tmp_path, g, out, match=r"^node 'fc0' \(MatMul\): a dense layer on multi-bit input "
                                    r"codes")


def test_two_data_inputs(tmp_path):
    g, out = mlp()
    m = g.model(out, 3)
    m.graph.input.append(onnx.helper.make_tensor_value_info("other", 1, [1, 16]))
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    with pytest.raises(ModelError, match=r"needs exactly one data input .* 'input', 'other'"):
        bnnhw.load_model(path)


def test_not_an_onnx_file(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match=r"is not a readable ONNX file"):
        bnnhw.load_model(path)


def test_missing_extra_names_it(tmp_path, monkeypatch, capsys):
    real_import = builtins.__import__

    def fake(name, *args, **kw):
        if name.split(".")[0] in ("onnx", "onnxruntime", "qonnx"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kw)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ToolError, match=r"needs the optional extra bnnhw\[onnx\] .*pip install "
                                        r"'bnnhw\[onnx\]'"):
        bnnhw.load_model(tmp_path / "m.onnx")
    assert main(["info", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bnnhw: error: ") and "bnnhw[onnx]" in err and err.count("\n") == 1


def test_cli_import_refusal_is_one_line_and_leaves_nothing(tmp_path, capsys):
    g, out = conv_graph(group=2)
    onnx.save(g.model(out, 3), str(tmp_path / "m.onnx"))
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bnnhw: error: ") and "grouped convolution" in err
    assert err.count("\n") == 1 and not (tmp_path / "m.npz").exists()
    assert main(["import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.npz"),
                 "--input-scale", "zero"]) == 2
    assert "--input-scale must be a positive number" in capsys.readouterr().err


def test_cli_import_and_export(tmp_path, capsys):
    from support.data import shared_file
    tfc = shared_file("qonnx", "TFC_1W1A.onnx")
    assert main(["import", str(tfc), "-o", str(tmp_path / "tfc.npz")]) == 0
    out = capsys.readouterr().out
    assert "node 'BatchNormalization_17' (BatchNormalization), node 'BipolarQuant_19' " \
           "(BipolarQuant)  ->  thr0 (threshold, 1 of 64 channels negated" in out
    assert "float32 ['N', 1, 28, 28] = byte / 255" in out and "Pow_43" in out
    net = bnnhw.load_model(tmp_path / "tfc.npz")
    assert main(["export", str(tmp_path / "tfc.npz"), "-o", str(tmp_path / "tfc.onnx")]) == 0
    assert bnnhw.load_model(tmp_path / "tfc.onnx").fingerprint() == net.fingerprint()
