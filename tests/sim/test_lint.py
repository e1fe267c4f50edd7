"""Generated Verilog passes ``verilator --lint-only -Wall`` with the justified waivers only."""

import pytest

from beatsum import BeatSum
from bnnhw.gen.lint import WAIVERS, lint
from bnnhw.gen.verilog import generate_component

pytestmark = pytest.mark.cocotb


def _check(path, top):
    code, counts, out = lint(path, top)
    assert code == 0, out
    # Everything -Wall reports (except the final "Exiting due to N warnings" line) is waived.
    assert set(counts) - {"ERROR"} <= set(WAIVERS), counts


def test_lint_beatsum(tmp_path):
    core = BeatSum(bytes_per_beat=3, beats_per_image=5)
    generate_component(core, tmp_path / "g", top="beatsum")
    _check(tmp_path / "g" / "beatsum.v", "beatsum")


def test_lint_catches_real_problems(tmp_path):
    # The waivers must not hide a design error: an inferred latch is still reported.
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input a, input b, output [3:0] r);\n"
                   "  reg [3:0] l;\n  always @(*) if (a) l = {b, b, b, b};\n"
                   "  assign r = l;\nendmodule\n")
    code, counts, out = lint(bad, "bad")
    assert code != 0 and "LATCH" in out and counts.get("LATCH") == 1


def test_lint_network_cores(tmp_path):
    # A small conv network (input quantizer, sliding windows, MVTUs, pool, score serializer)
    # and a dense one with padded PE / SIMD cover every hardware component kind.
    import numpy as np

    from bnnhw.gen import generate
    from support.networks import random_conv_net, random_dense_net
    rng = np.random.default_rng(9)
    cnv = random_conv_net(rng, pad=0, channels=(3, 4, 8), hidden=0, name="rand_cnv")
    m = generate(cnv, tmp_path / "cnv", folding={"conv0": {"PE": 2, "SIMD": 3},
                                                  "conv1": {"PE": 3, "SIMD": 2},
                                                  "fc2": {"PE": 2, "SIMD": 4}})
    _check(tmp_path / "cnv" / m["verilog"], m["top"])
    mlp = random_dense_net(rng, sizes=(7, 3), shape=(1, 3, 5), name="rand_dense")
    m = generate(mlp, tmp_path / "mlp", folding={"fc0": {"PE": 4, "SIMD": 6},
                                                  "fc1": {"PE": 2, "SIMD": 7}})
    _check(tmp_path / "mlp" / m["verilog"], m["top"])
