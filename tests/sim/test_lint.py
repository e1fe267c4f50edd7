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
