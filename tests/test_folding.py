"""Folding: sources, validation messages naming the layer, automatic folding."""

import json

import pytest

from bnnhw.errors import ModelError
from bnnhw.plan.folding import (auto_folding, check_folding, default_folding, folding_cycles,
                              load_folding)

from support.networks import random_conv_net, random_dense_net


def test_sources(tmp_path, lfc):
    net = random_dense_net(1)
    f = {"fc0": {"PE": 2, "SIMD": 3}, "fc1": {"PE": 1, "SIMD": 12}}
    assert load_folding(net, f) == f
    path = tmp_path / "f.json"
    path.write_text(json.dumps(f))
    assert load_folding(net, path) == f
    assert load_folding(net, str(path)) == f
    assert load_folding(net) == default_folding(net)
    assert load_folding(lfc) == lfc.meta["folding"]
    assert load_folding(lfc)["fc3"] == {"PE": 16, "SIMD": 8}      # PE > O = 10 is allowed


def test_errors(tmp_path):
    net = random_conv_net(0)
    good = {"conv0": {"PE": 1, "SIMD": 3}, "conv1": {"PE": 1, "SIMD": 4},
            "fc2": {"PE": 1, "SIMD": 4}, "fc3": {"PE": 1, "SIMD": 5}}
    check_folding(net, good)

    def bad(layer, **entry):
        f = {k: dict(v) for k, v in good.items()}
        f[layer] = entry
        return f

    cases = [
        (bad("conv1", PE=1, SIMD=3),
         "layer 'conv1': SIMD must divide the 4 input channels, not 3"),
        (bad("fc2", PE=0, SIMD=4), "layer 'fc2': PE must be a positive integer, not 0"),
        (bad("fc2", PE=1, SIMD=25), "layer 'fc2': SIMD must be at most the 24 inputs (K), not 25"),
        (bad("fc2", PE=1), "layer 'fc2': folding needs SIMD"),
        (bad("fc2", PE=1, SIMD=4, MH=3), "layer 'fc2': unknown folding key 'MH'"),
        ({**good, "fc9": {"PE": 1, "SIMD": 1}},
         "folding names layer 'fc9', which is not a compute layer of 'conv' "
         "(compute layers: conv0, conv1, fc2, fc3)"),
        ({k: v for k, v in good.items() if k != "fc3"}, "folding has no entry for layer 'fc3'"),
    ]
    for folding, message in cases:
        with pytest.raises(ModelError) as e:
            check_folding(net, folding)
        assert str(e.value) == message
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(ModelError, match=r"^folding file .*x.json' is not valid JSON"):
        load_folding(net, tmp_path / "x.json")
    with pytest.raises(ModelError, match=r"^cannot read folding file"):
        load_folding(net, tmp_path / "missing.json")


def brute_force_cheapest(info, budget):
    layer = info.layer
    pix = 1 if len(info.output_shape) == 1 else info.output_shape[1] * info.output_shape[2]
    best = None
    for pe in range(1, layer.out_channels + 1):
        for simd in range(1, layer.fan_in + 1):
            if hasattr(layer, "kernel") and layer.in_channels % simd:
                continue
            cyc = -(-layer.out_channels // pe) * -(-layer.fan_in // simd) * pix
            if cyc <= budget:
                cost = pe * simd * getattr(layer, "input_bits", 1)
                best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("ips", [1e5, 3e5, 6e5])
def test_auto_folding_minimal(ips):
    net = random_conv_net(0)
    clock = 100e6
    f = auto_folding(net, images_per_second=ips, clock_hz=clock)
    budget = int(clock // ips)
    cycles = folding_cycles(net, f)
    for info in net.infos:
        if info.name in f:
            assert cycles[info.name] <= budget
            bits = getattr(info.layer, "input_bits", 1)
            assert f[info.name]["PE"] * f[info.name]["SIMD"] * bits == \
                brute_force_cheapest(info, budget)


def test_auto_folding_impossible():
    net = random_conv_net(0)
    with pytest.raises(ModelError, match=r"^layer 'conv0' cannot reach 100000000.0 images/s at "
                                         r"100000000.0 Hz: it needs at least 144 cycles"):
        auto_folding(net, images_per_second=1e8, clock_hz=100e6)
    with pytest.raises(ModelError, match=r"^clock_hz must be a positive number, not -1$"):
        auto_folding(net, images_per_second=1, clock_hz=-1)


def test_auto_folding_lfc(lfc):
    f = auto_folding(lfc, images_per_second=100e6 / 512, clock_hz=100e6)
    assert max(folding_cycles(lfc, f).values()) <= 512
