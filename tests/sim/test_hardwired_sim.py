"""A hardwired layer (folding "datapath": "hardwired", bnnhw generate --share MODE) in the
generated Verilog of the example model, under cocotb, bit-exact against the golden model
running the core's sharing plan (exact modes: also the unshared network)."""

import json

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from bnnhw.flow import Build
from bnnhw.plan.core import CorePlan
from simutil import run, stimulus_for

pytestmark = pytest.mark.cocotb

FOLDING = {"conv0": {"PE": 16, "SIMD": 1}, "conv1": {"datapath": "hardwired"},
           "fc2": {"PE": 8, "SIMD": 64}, "fc3": {"PE": 10, "SIMD": 64}}


def _digits(count):
    from bnnhw.examples.train_digits import digits_split
    return digits_split()[2][:count]


@pytest.mark.parametrize("share,adders,simulator", [
    ("similar:1", "auto", "verilator"), ("exact", "kernels", "icarus"),
    # approx under Icarus is another ~50 s: behind `slow` for the CI budget.
    pytest.param("approx:1", "rows", "icarus", marks=pytest.mark.slow)])
def test_example_hardwired(share, adders, simulator):
    from bnnhw.demo import example_model_path
    net = bnnhw.load_model(example_model_path())
    folding = json.loads(json.dumps(FOLDING))
    folding["conv1"]["adders"] = adders
    build = Build.of(net, folding, sharing=share, simulator=simulator)
    build.run("generate")
    core_dir = build.path("core")
    manifest = json.loads((core_dir / "manifest.json").read_text())
    assert manifest["sharing"] == share
    assert manifest["folding"]["conv1"] == {"PE": 32, "SIMD": 144, "datapath": "hardwired",
                                            "adders": adders, "sharing": share}
    layer = manifest["core"]["layers"][1]
    assert layer["datapath"] == "hardwired" and layer["sharing"] == share
    plan = CorePlan(net, manifest["folding"]).sharing
    assert plan.mode == share
    x = _digits(5)
    stim = stimulus_for(manifest, net, x)
    want = golden.forward(net, x, sharing=plan)
    if share != "approx:1":
        assert np.array_equal(want, stim["scores"])      # exact: the unshared network
    stim["scores"] = want
    r = run(core_dir, simulator, stimulus=stim, seed=3)
    assert r["passed"], r["errors"]
    for phase in r["phases"]:
        assert phase["scores"] == want.tolist(), phase["name"]
    assert set(r["phases"][0]["intervals"]) == {manifest["core"]["cycles_per_image"]}
    if simulator == "icarus" and share == "exact":
        # The testbench fails on one wrong expected score (shown once, kept as a check).
        bad = want.copy()
        bad[2, 4] ^= 1
        stim["scores"] = bad
        r = run(core_dir, simulator, stimulus=stim, seed=3)
        assert not r["passed"]


def test_build_key_has_the_sharing_mode():
    from bnnhw.demo import example_model_path
    net = bnnhw.load_model(example_model_path())
    a = Build.of(net, FOLDING, sharing="similar:1")
    b = Build.of(net, FOLDING, sharing="exact")
    c = Build.of(net, FOLDING)
    assert len({a.folder, b.folder, c.folder}) == 3
    assert a.config.folding["conv1"]["sharing"] == "similar:1"


@pytest.mark.parametrize("share,adders,simulator", [
    ("exact", "kernels", "icarus"),
    # The whole-filter form (pipelined by default) through the flow: 407 s on a loaded
    # machine (its window popcount alone is 2,304 bits), behind `slow` for the CI budget.
    pytest.param("exact", "filters", "icarus", marks=pytest.mark.slow),
    # a Verilator build of this size takes minutes: behind `slow` for the CI budget.
    pytest.param("similar:1", "cse", "verilator", marks=pytest.mark.slow)])
def test_cnv_conv5_slice_hardwired(share, adders, simulator):
    """Output channels 0-7 of CNV's conv5 (K = 2,304, the real weights and thresholds) as a
    hardwired layer in generated Verilog, on its real input maps of two CIFAR-10 images and
    two random ones: bit-exact against the golden model running the plan, the unshared slice
    and CNV's own conv5 outputs."""
    from support.data import shared_file
    from support.hardwired import cnv_maps, cnv_slice_case
    cnv = bnnhw.load_model(shared_file("bnn-pynq", "cnvW1A1_cifar10.npz"))
    maps, tr = cnv_maps(cnv)
    case, real = cnv_slice_case(cnv, maps, "conv5", range(8), seed=5)
    net, x = case.net, case.inputs
    folding = {"conv5": {"datapath": "hardwired", "adders": adders},
               "fc": {"PE": 1, "SIMD": 8}}
    build = Build.of(net, folding, sharing=share, simulator=simulator)
    build.run("generate")
    core_dir = build.path("core")
    manifest = json.loads((core_dir / "manifest.json").read_text())
    layer = manifest["core"]["layers"][0]
    assert layer["datapath"] == "hardwired" and layer["sharing"] == share
    plan = CorePlan(net, manifest["folding"]).sharing
    stim = stimulus_for(manifest, net, x)
    want, trace = golden.forward(net, x, trace=True, sharing=plan)
    assert np.array_equal(want, stim["scores"])          # exact modes: the unshared slice
    # The slice's conv5 outputs are CNV's own (its threshold, 8 channels) at the real maps.
    thr = case.block.threshold.layer.name
    assert np.array_equal(trace[thr][:real], tr[thr][:, :8])
    r = run(core_dir, simulator, stimulus=stim, seed=1)
    assert r["passed"], r["errors"]
    for phase in r["phases"]:
        assert phase["scores"] == want.tolist(), phase["name"]
    if simulator == "icarus":
        bad = want.copy()
        bad[1, 0] ^= 1                                   # one expected bit wrong: must fail
        stim["scores"] = bad
        assert not run(core_dir, simulator, stimulus=stim, seed=1)["passed"]
