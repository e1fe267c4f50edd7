"""The ASIC flow (bnnhw.gen.asic, ``bnnhw asic``): Liberty, Yosys and OpenSTA parsing, one
small stage through synthesis and timing, the report of a tiny network in both memory modes,
and the command's errors.

Needs the Debian packages qflow-tech-osu018 and opensta and YoWASP Yosys (a missing tool
fails, it never skips). The gate-level simulations are in tests/sim/test_asic_sim.py.
"""

import json
import math

import pytest

from support.networks import random_conv_net
from bnnhw.cli import main
from bnnhw.errors import InputError, ToolError
from bnnhw.gen import asic
from bnnhw.gen.verilog import to_rtlil
from bnnhw.hw.convert import StreamFIFO
from bnnhw.model.io import save_model


@pytest.fixture(scope="module")
def osu018():
    return asic.find_library("osu018")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("asic-cache")


@pytest.fixture(scope="module")
def tiny():
    return _tiny()


@pytest.fixture(scope="module")
def tiny_report(tiny, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("asic-report")
    return asic.asic_report(tiny, library="osu018", cache_dir=cache, out_dir=out), out


# -- libraries ----------------------------------------------------------------------------

def test_library_found_through_dpkg(osu018):
    assert osu018.package == "qflow-tech-osu018"
    assert osu018.liberty.name == "osu018_stdcells.lib" and osu018.liberty.is_file()
    assert osu018.verilog.name == "osu018_stdcells.v" and osu018.lef.is_file()
    cells = osu018.cells
    assert len(cells) == 32
    assert cells["DFFPOSX1"]["area"] == 96.0 and cells["DFFPOSX1"]["sequential"]
    assert cells["LATCH"]["sequential"] and not cells["INVX1"]["sequential"]
    assert cells["BUFX2"]["pins"]["A"] == {"direction": "input", "capacitance": 0.00933171}
    assert osu018.info["time_unit_ns"] == 1.0 and osu018.info["cap_unit_pf"] == 1.0
    assert osu018.sequential_cells() == {"DFFNEGX1", "DFFPOSX1", "DFFSR", "LATCH"}


def test_other_libraries_have_pads_marked(osu018):
    lib = asic.find_library("osu035")
    assert lib.liberty.name == "osu035_stdcells.lib"
    assert lib.cells["PADVDD"]["dont_touch"] and not lib.cells["INVX1"]["dont_touch"]
    # Same cell set and names, larger cells at the larger node.
    assert lib.cells["DFFPOSX1"]["area"] > osu018.cells["DFFPOSX1"]["area"]


def test_parse_liberty_small():
    text = """/* comment { with braces } */
library (tiny) {
  time_unit : "1ps";
  capacitive_load_unit (1,ff);
  cell (INV) { area : 2.5;
    pin (A) { direction : input; capacitance : 1.5; }
    pin (Y) { direction : output; function : "!A";
      timing () { related_pin : "A"; cell_rise (t) { values ("1, 2", \\
        "3, 4"); } } }
  }
  cell (FF) { area : 10; ff (IQ, IQN) { next_state : "D"; clocked_on : "C"; }
    pin (D) { direction : input; } }
}"""
    info = asic.parse_liberty(text)
    assert info["name"] == "tiny"
    assert info["time_unit_ns"] == 1e-3 and info["cap_unit_pf"] == 1e-3
    assert info["cells"]["INV"]["area"] == 2.5 and not info["cells"]["INV"]["sequential"]
    assert info["cells"]["INV"]["pins"]["A"]["capacitance"] == 1.5
    assert info["cells"]["FF"]["sequential"]
    assert info["cells"]["FF"]["pins"]["D"]["capacitance"] is None


def test_parse_liberty_errors():
    with pytest.raises(ToolError, match="no library group"):
        asic.parse_liberty("cell (X) { area : 1; }")
    with pytest.raises(ToolError, match="time_unit"):
        asic.parse_liberty('library (x) { time_unit : "1fortnight"; }')


def test_unknown_library_named():
    with pytest.raises(InputError, match=r"osu018, osu035, osu050, not 'sky999'"):
        asic.find_library("sky999")


def test_missing_package_named(monkeypatch):
    monkeypatch.setattr(asic, "_FOUND", {})
    monkeypatch.setattr(asic, "_dpkg_files", lambda package: None)
    with pytest.raises(ToolError, match=r"osu050 is not installed: it comes from the Debian "
                                        r"package qflow-tech-osu050 \(apt-get install "
                                        r"qflow-tech-osu050"):
        asic.find_library("osu050")
    monkeypatch.setattr(asic, "_dpkg_files", lambda package: ["/usr/share/doc/x"])
    with pytest.raises(ToolError, match="has no file osu05_stdcells.lib"):
        asic.find_library("osu050")


def test_missing_opensta_named(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolError, match=r"OpenSTA.*needs .sta., which is not installed "
                                        r"\(Debian package opensta\)"):
        asic.opensta()


# -- Yosys and OpenSTA output ------------------------------------------------------------------

def test_parse_stat_exact(osu018):
    stat = {"design": {"area": 1234.5, "sequential_area": 192.0, "num_cells_by_type": {
        "DFFPOSX1": 2, "INVX1": 3, "$scopeinfo": 4, "stage_mem_0": 1}}}
    r = asic.parse_stat(stat, osu018)
    assert r == {"area_um2": 1234.5, "sequential_area_um2": 192.0,
                 "cells": {"DFFPOSX1": 2, "INVX1": 3}, "cell_count": 5, "flip_flops": 2,
                 "unknown_cells": {"stage_mem_0": 1}}
    stat["design"]["num_cells_by_type"]["$_AND_"] = 7
    with pytest.raises(ToolError, match=r"unmapped Yosys cells \$_AND_"):
        asic.parse_stat(stat, osu018)
    with pytest.raises(ToolError, match="no design statistics"):
        asic.parse_stat({}, osu018)


# Captured from OpenSTA 2.0.17 on a StreamFIFO(width=4, depth=4) mapped to osu018.
STA_OUTPUT = """BNNHW-PATH-MAX-BEGIN
Startpoint: _177_ (rising edge-triggered flip-flop clocked by clk)
Endpoint: _178_ (rising edge-triggered flip-flop clocked by clk)
Path Group: clk
Path Type: max

    Delay      Time   Description
-------------------------------------------------------------
   0.0000    0.0000   clock clk (rise edge)
   0.0000    0.0000   clock network delay (ideal)
   0.0000    0.0000 ^ _177_/CLK (DFFPOSX1)
   0.2319    0.2319 v _177_/Q (DFFPOSX1)
   0.1362    0.3680 v _092_/Y (OR2X2)
   0.0572    0.4252 ^ _103_/Y (OAI21X1)
   0.2110    0.6362 ^ _114_/Y (BUFX2)
   0.1690    0.8052 v _136_/Y (XNOR2X1)
   0.1035    0.9087 ^ _096_/Y (OAI22X1)
   0.0829    0.9916 ^ _097_/Y (AND2X2)
   0.0000    0.9916 ^ _178_/D (DFFPOSX1)
             0.9916   data arrival time

  10.0000   10.0000   clock clk (rise edge)
   0.0000   10.0000   clock network delay (ideal)
   0.0000   10.0000   clock reconvergence pessimism
            10.0000 ^ _178_/CLK (DFFPOSX1)
  -0.1894    9.8106   library setup time
             9.8106   data required time
-------------------------------------------------------------
             9.8106   data required time
            -0.9916   data arrival time
-------------------------------------------------------------
             8.8189   slack (MET)


BNNHW-PATH-MAX-END
BNNHW worst_slack_max 8.818906743372718
BNNHW worst_slack_min 0.10104291300769529
BNNHW tns_max 0.0
BNNHW-POWER-BEGIN
Group                    Internal    Switching      Leakage        Total
                            Power        Power        Power        Power
------------------------------------------------------------------------
Sequential           5.456371e-04 1.330762e-05 3.696675e-09 5.589484e-04  82.2%
Combinational        8.803786e-05 3.315934e-05 4.073676e-09 1.212013e-04  17.8%
Macro                0.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00   0.0%
Pad                  0.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00   0.0%
------------------------------------------------------------------------
Total                6.336749e-04 4.646697e-05 7.770346e-09 6.801496e-04 100.0%
                            93.2%         6.8%         0.0%
BNNHW-POWER-END
"""


def test_parse_sta_exact():
    r = asic.parse_sta(STA_OUTPUT, 10.0)
    assert r["worst_slack_ns"] == 8.818906743372718
    assert r["hold_slack_ns"] == 0.10104291300769529 and r["tns_ns"] == 0.0
    assert r["min_period_ns"] == pytest.approx(10.0 - 8.818906743372718, abs=1e-12)
    assert r["fmax_mhz"] == pytest.approx(1000 / 1.181093256627282, rel=1e-12)
    p = r["critical_path"]
    assert (p["startpoint"], p["endpoint"]) == ("_177_", "_178_")
    assert p["startpoint_kind"] == "rising edge-triggered flip-flop clocked by clk"
    assert (p["arrival_ns"], p["required_ns"], p["slack_ns"], p["met"]) == \
        (0.9916, 9.8106, 8.8189, True)
    # The start flip-flop's clock-to-Q and the end point are not levels of logic.
    assert p["cells"] == ["OR2X2", "OAI21X1", "BUFX2", "XNOR2X1", "OAI22X1", "AND2X2"]
    assert p["levels"] == 6
    assert r["power_w"] == {"sequential": 5.589484e-04, "combinational": 1.212013e-04,
                            "macro": 0.0, "pad": 0.0, "total": 6.801496e-04,
                            "internal": 6.336749e-04, "switching": 4.646697e-05,
                            "leakage": 7.770346e-09}


def test_parse_sta_errors():
    with pytest.raises(ToolError, match=r"OpenSTA: Error: x.v, line 3 syntax error"):
        asic.parse_sta("Error: x.v, line 3 syntax error\n" + STA_OUTPUT, 10.0)
    with pytest.raises(ToolError, match="no tns_max"):
        asic.parse_sta(STA_OUTPUT.replace("BNNHW tns_max 0.0\n", ""), 10.0)
    with pytest.raises(ToolError, match="lacks the power report"):
        asic.parse_sta(STA_OUTPUT.split("BNNHW-POWER-BEGIN")[0], 10.0)
    unconstrained = STA_OUTPUT.replace("worst_slack_max 8.818906743372718",
                                       "worst_slack_max 1e+30")
    r = asic.parse_sta(unconstrained, 10.0)
    assert r["fmax_mhz"] is None and r["worst_slack_ns"] is None


def test_rtlil_memories_flattened_names():
    fifo = StreamFIFO(width=4, depth=10)
    mems = asic.rtlil_memories(to_rtlil(fifo, "top"))
    # The FIFO's memory sits in a submodule: its name after flattening carries the instance.
    assert len(mems) == 1
    m = mems[0]
    assert m["name"].endswith(".storage") and m["name"].count(".") == 1
    assert not m["rom"] and not m["init"] and m["bits"] == m["width"] * m["depth"]
    assert m["width"] == 4


def test_rtlil_memories_of_an_mvtu(tiny):
    core, _ = asic._core(tiny, None)
    texts = {name: to_rtlil(comp, "top") for name, comp in core.stages}
    mems = {m["name"]: m for m in asic.rtlil_memories(texts["conv1"])}
    layer = tiny.blocks()[1].compute.layer
    assert mems["weights"]["rom"] and mems["weights"]["init"]
    assert mems["weights"]["bits"] == layer.out_channels * layer.fan_in   # PE=SIMD=1: O*K
    assert mems["table"]["rom"] and not mems["ibuf"]["rom"]


# -- one stage through Yosys and OpenSTA ---------------------------------------------------

@pytest.fixture(scope="module")
def fifo_stage(osu018, cache):
    rtlil = to_rtlil(StreamFIFO(width=4, depth=4), "top")
    return rtlil, asic.synthesize_stage(rtlil, osu018, module="fifo", cache_dir=cache)


def test_stage_area_is_the_sum_of_its_cells(osu018, fifo_stage):
    _, r = fifo_stage
    cells = osu018.cells
    # Independent of Yosys' own sums: the Liberty areas times the cell counts.
    assert r["area_um2"] == pytest.approx(sum(n * cells[c]["area"] for c, n in r["cells"].items()))
    assert r["sequential_area_um2"] == r["flip_flops"] * cells["DFFPOSX1"]["area"]
    assert r["flip_flops"] == r["cells"]["DFFPOSX1"] > 0
    assert r["cell_count"] == sum(r["cells"].values())
    assert r["ports"] == {"clk": ["input", 1], "rst": ["input", 1],
                          "i_stream__payload": ["input", 4], "i_stream__valid": ["input", 1],
                          "i_stream__ready": ["output", 1], "o_stream__payload": ["output", 4],
                          "o_stream__valid": ["output", 1], "o_stream__ready": ["input", 1]}
    text = open(r["netlist"]).read()
    assert "module fifo(" in text and "assign" not in text and " signed " not in text
    assert [m["mapped"] for m in r["memories"]] == ["logic"]


def test_stage_cache(osu018, fifo_stage, cache):
    rtlil, first = fifo_stage
    again = asic.synthesize_stage(rtlil, osu018, module="fifo", cache_dir=cache)
    assert again["cached"] is True
    assert {k: again[k] for k in ("area_um2", "cells", "netlist")} == \
        {k: first[k] for k in ("area_um2", "cells", "netlist")}


def test_stage_bad_arguments(osu018, fifo_stage):
    rtlil, _ = fifo_stage
    with pytest.raises(InputError, match="memories must be one of logic, macro, not 'sram'"):
        asic.synthesize_stage(rtlil, osu018, module="fifo", memories="sram")
    with pytest.raises(InputError, match="Verilog identifier, not 'a.b'"):
        asic.synthesize_stage(rtlil, osu018, module="a.b")


def test_stage_timing_is_consistent(osu018, fifo_stage):
    _, r = fifo_stage
    t = asic.run_sta(liberties=[osu018.liberty], netlists=[r["netlist"]], top="fifo",
                     clock_mhz=100.0, ports=r["ports"], library=osu018)
    p = t["critical_path"]
    setup = 10.0 - p["required_ns"]
    assert t["min_period_ns"] == pytest.approx(p["arrival_ns"] + setup, abs=2e-4)
    assert p["levels"] == len(p["cells"]) >= 1
    assert t["hold_slack_ns"] > 0 and t["tns_ns"] == 0.0
    assert t["power_w"]["total"] > 0
    # Over-constrained: the same netlist misses a clock 20 % above its Fmax, by the same
    # critical path, and Fmax does not depend on the constraint.
    fast = asic.run_sta(liberties=[osu018.liberty], netlists=[r["netlist"]], top="fifo",
                        clock_mhz=1.2 * t["fmax_mhz"], ports=r["ports"], library=osu018)
    assert fast["worst_slack_ns"] < 0 and fast["tns_ns"] < 0
    assert fast["fmax_mhz"] == pytest.approx(t["fmax_mhz"], rel=1e-3)
    assert not fast["critical_path"]["met"]


# -- the stitched core ------------------------------------------------------------------------

def test_core_wrapper_chains_streams():
    top = {"clk": ("input", 1), "rst": ("input", 1), "i_stream__payload": ("input", 8),
           "i_stream__valid": ("input", 1), "i_stream__ready": ("output", 1),
           "o_stream__payload": ("output", 3), "o_stream__valid": ("output", 1),
           "o_stream__ready": ("input", 1)}

    def stage(i, o, clk=True):
        p = {"i_stream__payload": ("input", i), "i_stream__valid": ("input", 1),
             "i_stream__ready": ("output", 1), "o_stream__payload": ("output", o),
             "o_stream__valid": ("output", 1), "o_stream__ready": ("input", 1)}
        if clk:
            p.update(clk=("input", 1), rst=("input", 1))
        return p

    text = asic.core_wrapper("core", top, [("a", stage(8, 5, clk=False)), ("b", stage(5, 3))])
    assert "  wire [4:0] l1_payload;" in text
    assert ("  a s0 (.i_stream__payload(i_stream__payload), .i_stream__valid(i_stream__valid), "
            ".i_stream__ready(i_stream__ready), .o_stream__payload(l1_payload), "
            ".o_stream__valid(l1_valid), .o_stream__ready(l1_ready));") in text
    assert ".o_stream__payload(o_stream__payload)" in text and ".clk(clk), .rst(rst)" in text
    with pytest.raises(ToolError, match=r"stage a o_stream__payload \('output', 5\) does not "
                                        r"match stage b i_stream__payload \('input', 6\)"):
        asic.core_wrapper("core", top, [("a", stage(8, 5)), ("b", stage(6, 3))])
    odd = stage(5, 3)
    odd["probe"] = ("output", 1)
    with pytest.raises(ToolError, match="port 'probe' outside the stream contract"):
        asic.core_wrapper("core", top, [("a", stage(8, 5)), ("b", odd)])


# -- the report ------------------------------------------------------------------------------

def test_report_totals(tiny, tiny_report):
    report, out = tiny_report
    t = report["total"]
    layers = report["layers"]
    assert [r["layer"] for r in layers] == ["io", "conv0", "conv1", "fc2"]
    for key in ("area_um2", "sequential_area_um2", "flip_flops", "cell_count"):
        assert t[key] == pytest.approx(sum(r[key] for r in layers))
        assert t[key] == pytest.approx(sum(s[key] for s in report["stages"]))
    assert sum(t["cells"].values()) == t["cell_count"]
    assert t["die_area_mm2"] == pytest.approx(t["area_um2"] / 0.7 / 1e6)
    assert t["memory_bits_macro"] == 0 and t["memory_bits_logic"] == t["memory_bits"] > 0
    assert t["fmax_source"] == "whole core"
    # The whole core holds every stage's paths (and those across stages).
    assert t["fmax_mhz"] <= min(s["fmax_mhz"] for s in report["stages"]) * (1 + 1e-4)
    assert t["images_per_second"] == pytest.approx(t["fmax_mhz"] * 1e6 / t["cycles_per_image"])
    assert t["images_per_second_per_mm2"] == pytest.approx(t["images_per_second"]
                                                           / t["die_area_mm2"])
    assert report["whole_core_timing"]["power_w"]["total"] > 0
    assert json.loads(json.dumps(report)) == report
    assert json.loads((out / "report.json").read_text()) == report
    md = (out / "report.md").read_text()
    assert md.startswith("# ASIC report: asic_tiny on osu018")
    assert f"**{t['area_um2']:,.0f}**" in md


def test_report_macro_mode(tiny, tiny_report, cache):
    logic, _ = tiny_report
    report = asic.asic_report(tiny, library="osu018", memories="macro", macro_min_bits=64,
                              cache_dir=cache)
    t = report["total"]
    macros = [m for m in report["memories"] if m["mapped"] == "macro"]
    assert macros and all(m["bits"] >= 64 for m in macros)
    assert all(m["mapped"] == "logic" for m in report["memories"] if m["bits"] < 64)
    assert t["memory_bits_macro"] == sum(m["bits"] for m in macros)
    assert len(report["macros"]) == len(macros)
    # Memories left out of the cell area; their die share is the stated density estimate.
    assert t["area_um2"] < logic["total"]["area_um2"]
    assert t["macro_area_um2_estimate"] == pytest.approx(t["memory_bits_macro"] * 9.0)
    assert t["die_area_mm2"] == pytest.approx((t["area_um2"] / 0.7 + 9.0 * t["memory_bits_macro"])
                                              / 1e6)
    assert t["fmax_mhz"] is not None and math.isfinite(t["fmax_mhz"])
    # Every macro port got a role; the input ROM has an asynchronous read port (a
    # combinational timing arc), the weight ROMs synchronous ones.
    for m in report["macros"]:
        # Ports that reach no memory port are only inputs (unused bits of a wider wire).
        assert all(m["pins"][p] == ["input", None, False] for p in m["unclassified_pins"]), m
        assert any(role == "RD_DATA" for _, role, _ in m["pins"].values())
    roles = {m["memid"]: {r for _, r, _ in m["pins"].values()} for m in report["macros"]}
    assert any("WR_DATA" in r for r in roles.values())   # a RAM (line buffer / FIFO)
    lib_text = asic.macro_liberty(report["macros"], library=asic.find_library("osu018"))
    assert "timing_type : setup_rising;" in lib_text and "timing_type : rising_edge;" in lib_text


def test_report_bad_arguments(tiny, cache):
    with pytest.raises(InputError, match=r"utilisation must be in \(0, 1\], not 1.5"):
        asic.asic_report(tiny, utilization=1.5, cache_dir=cache)
    with pytest.raises(InputError, match="positive frequency in MHz, not -5"):
        asic.asic_report(tiny, clock_mhz=-5, cache_dir=cache)
    with pytest.raises(InputError, match="macro threshold must be a positive number of bits"):
        asic.asic_report(tiny, memories="macro", macro_min_bits=0, cache_dir=cache)


# -- the command -----------------------------------------------------------------------------

def test_cli_asic(tiny, tiny_report, cache, tmp_path, capsys, monkeypatch):
    model = tmp_path / "tiny.npz"
    save_model(tiny, model)
    out = tmp_path / "report"
    root = tmp_path / "root"
    root.mkdir()
    (root / "asic-cache").symlink_to(cache)        # the stages synthesized by the fixture
    monkeypatch.setenv("BNNHW_BUILD_ROOT", str(root))
    assert main(["asic", str(model), "-o", str(out), "--json", str(tmp_path / "r.json")]) == 0
    text = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["total"]["area_um2"] == tiny_report[0]["total"]["area_um2"]
    assert (out / "report.md").exists()
    assert "total" in text and "images/s" in text and str(out / "report.md") in text
    # The ASIC report is a step of the flow: recorded in the build folder's build.json.
    (folder,) = [p for p in root.iterdir() if p.name != "asic-cache"]
    steps = json.loads((folder / "build.json").read_text())["steps"]
    assert "asic:osu018-logic-100MHz" in steps
    assert steps["asic:osu018-logic-100MHz"]["metrics"]["area_um2"] == \
        tiny_report[0]["total"]["area_um2"]
    assert main(["asic", str(model), "-o", str(out)]) == 0
    assert "synthesis reused from the build folder" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--clock-mhz", "0"], "argument --clock-mhz: must be a positive number, not '0'"),
    (["--utilization", "0"], r"--utilization must be in \(0, 1\], not 0"),
    (["--jobs", "0"], "--jobs must be between 1 and 256, not 0"),
])
def test_cli_asic_errors(tiny, tmp_path, capsys, args, message):
    import re
    model = tmp_path / "tiny.npz"
    save_model(tiny, model)
    try:
        code = main(["asic", str(model), "-o", str(tmp_path / "out")] + args)
    except SystemExit as e:                 # argparse's type errors exit from parse_args
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
    assert not (tmp_path / "out").exists()


def test_cli_asic_bad_choice_and_missing_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["asic", "x.npz", "--library", "sky130"])
    assert e.value.code == 2
    assert "invalid choice: 'sky130'" in capsys.readouterr().err
    assert main(["asic", str(tmp_path / "nope.npz")]) == 2
    assert "nope.npz" in capsys.readouterr().err


def _tiny(seed=3):
    """A tiny CNV-like network with every kind of stage (multi-bit input conv, windows with
    line buffers, a window FIFO, a pool, a dense layer, ROMs and RAMs), small enough to
    synthesize in seconds and to simulate at gate level in a few seconds."""
    return random_conv_net(seed, pad=0, channels=(2, 4, 8), hidden=0, classes=3,
                           name="asic_tiny")
