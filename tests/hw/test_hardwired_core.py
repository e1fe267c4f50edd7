"""NetworkCore with a hardwired layer (folding "datapath": "hardwired"), amaranth.sim, against
the golden model running the core's sharing plan; folding and --share errors."""

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from bnnhw.errors import ModelError
from bnnhw.examples import EXAMPLE_MODEL, digits_split
from bnnhw.hw.network import NetworkCore
from bnnhw.plan.core import CorePlan
from bnnhw.plan.folding import apply_sharing, load_folding

from support.networks import expected_lasts, run_core

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

FAST = {"conv0": {"PE": 16, "SIMD": 1}, "fc2": {"PE": 8, "SIMD": 64},
        "fc3": {"PE": 10, "SIMD": 64}}


@pytest.fixture(scope="module")
def net():
    return bnnhw.load_model(EXAMPLE_MODEL)


def folding(**conv1):
    return {**FAST, "conv1": {"datapath": "hardwired", **conv1}}


@pytest.mark.parametrize("conv1", [{"adders": "auto", "sharing": "similar:1"},
                                   {"adders": "filters", "lowering": "counters"},
                                   pytest.param({"adders": "naive"}, marks=pytest.mark.slow)])
def test_core_with_hardwired_layer(net, conv1):
    plan = CorePlan(net, folding(**conv1))
    x = digits_split()[2][:2]
    scores, lasts, _ = run_core(NetworkCore(plan=plan), x, valid_prob=0.8, ready_prob=0.7)
    want = golden.forward(net, x, sharing=plan.sharing)
    np.testing.assert_array_equal(want, golden.forward(net, x))   # exact modes
    np.testing.assert_array_equal(scores, want)
    np.testing.assert_array_equal(lasts, expected_lasts(2, net.num_classes))
    d = plan.describe()
    e = d["layers"][1]
    assert e["datapath"] == "hardwired" and e["adders"] == conv1["adders"]
    assert e["hardwired"]["lowering"] == conv1.get("lowering", "chains")
    assert e["cycles_per_image"] == 9 * 64 and e["weight_bits"] == 0
    assert [s.name for s in plan.stages][4:7] == ["conv1.window", "conv1.vectors", "conv1"]
    assert d["sharing"] == (None if "sharing" not in conv1 else
                            {"mode": "similar:1", "layers": ["conv1"]})


def test_folding_errors(net):
    def bad(entry, match, layer="conv1"):
        f = {**FAST, "conv1": {"PE": 1, "SIMD": 16}}
        f[layer] = entry
        with pytest.raises(ModelError, match=match):
            CorePlan(net, f)
    bad({"datapath": "wired"}, "datapath must be 'mvtu' or 'hardwired', not 'wired'")
    bad({"datapath": "hardwired", "PE": 4}, "PE must be 32 \\(or left out\\), not 4")
    bad({"datapath": "hardwired", "order": "chw"}, "key 'order' is for the MVTU")
    bad({"datapath": "hardwired", "adders": "fast"}, "adder form must be one of")
    bad({"datapath": "hardwired", "lowering": "luts"},
        "layer 'conv1': lowering must be one of 'chains'.*not 'luts'")
    bad({"PE": 1, "SIMD": 16, "lowering": "chains"}, "is for \"datapath\": \"hardwired\"")
    bad({"datapath": "hardwired", "sharing": "similar:0"}, "layer 'conv1': sharing mode")
    bad({"datapath": "hardwired", "adders": "auto"}, "needs a sharing plan")
    bad({"PE": 1, "SIMD": 16, "adders": "auto"}, "is for \"datapath\": \"hardwired\"")
    bad({"datapath": "hardwired"}, "computes binary convolutions, not a multibit", "conv0")
    bad({"datapath": "hardwired"}, "computes binary convolutions", "fc3")
    with pytest.raises(ModelError, match="needs a layer with \"datapath\": \"hardwired\""):
        apply_sharing(net, load_folding(net, None), "exact")
    f = load_folding(net, folding(sharing="exact"))
    with pytest.raises(ModelError, match="already share in mode 'exact'"):
        apply_sharing(net, f, "similar:1")
    assert apply_sharing(net, load_folding(net, folding()), "approx:2")["conv1"]["sharing"] \
        == "approx:2"
