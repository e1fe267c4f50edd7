"""bnnhw compare's estimate columns: the ARM cores (qemu instruction counts x llvm-mca) and the
ASIC column from a build folder's asic record; their refusals. (The FPGA side of compare is
measured by benchmarks/boards_bench.py and the demo: it needs a bitstream build.)"""

import json

import pytest

from bnnhw.arm_estimate import ARM_CORES, arm_estimate
from bnnhw.cli import main
from bnnhw.compare import _implementations, asic_column
from bnnhw.errors import InputError, ToolError
from bnnhw.flow import Build

from support.networks import random_conv_net

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.fixture(scope="module")
def tiny():
    return random_conv_net(5, hw=6, channels=(3, 8, 16), hidden=8, classes=4, name="armtiny")


@pytest.fixture(scope="module")
def estimates(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("armroot")
    out = {core: arm_estimate(tiny, core, root=root) for core in ARM_CORES}
    out["root"] = root
    return out


@pytest.mark.firmware
def test_arm_estimate_counts_and_models_every_layer(tiny, estimates):
    a53, a72 = estimates["cortex-a53"], estimates["cortex-a72"]
    layers = ["conv0", "conv1", "fc2", "fc3"]
    for est in (a53, a72):
        assert est["estimate"] is True and "lower bound" in est["method"]
        assert [r["layer"] for r in est["per_layer"]] == layers
        # Every layer runs (instructions > 0) and has a modelled block; the whole image
        # (runner, two images minus one) holds every layer's call and more (quantisation,
        # pooling, packing): a count from one run only, or a layer counted twice, breaks this.
        assert all(r["instructions"] > 0 and r["cpi"] > 0 for r in est["per_layer"])
        layer_sum = sum(r["instructions"] for r in est["per_layer"])
        assert est["instructions_per_image"] > layer_sum
        assert est["other_instructions"] == est["instructions_per_image"] - layer_sum
        total = sum(r["cycles"] for r in est["per_layer"]) + \
            est["other_instructions"] * est["average_cpi"]
        assert est["total_us"] == pytest.approx(total / (est["clock_ghz"] * 1e3))
        assert est["total_us"] > sum(est["layers"].values())
    # The same instructions on both cores (counted once); the out-of-order A72 model needs
    # fewer cycles per instruction than the in-order A53.
    assert [r["instructions"] for r in a53["per_layer"]] == \
        [r["instructions"] for r in a72["per_layer"]]
    assert a72["average_cpi"] < a53["average_cpi"]
    assert (a53["clock_ghz"], a72["clock_ghz"]) == (1.2, 1.5)


@pytest.mark.firmware
def test_arm_estimate_scales_with_the_clock(tiny, estimates):
    a53 = estimates["cortex-a53"]
    slow = arm_estimate(tiny, "cortex-a53", clock_ghz=0.6, root=estimates["root"])
    assert slow["instructions_per_image"] == a53["instructions_per_image"]
    assert slow["total_us"] == pytest.approx(2 * a53["total_us"])


def test_arm_estimate_refusals(tiny):
    with pytest.raises(InputError, match="ARM core must be one of cortex-a53, cortex-a72, "
                                         "not 'cortex-m4'"):
        arm_estimate(tiny, "cortex-m4")
    with pytest.raises(InputError, match="ARM clock must be in GHz between 0 and 10, not -1"):
        arm_estimate(tiny, "cortex-a53", clock_ghz=-1)


def test_compare_refuses_an_unknown_cpu_before_building(tmp_path, capsys, monkeypatch):
    from bnnhw.demo import example_model_path
    monkeypatch.setenv("BNNHW_BUILD_ROOT", str(tmp_path))
    rc = main(["compare", str(example_model_path()), "--board", "ulx3s", "--cpu",
               "host,cortex-a9", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "ARM core must be one of cortex-a53, cortex-a72, not 'cortex-a9'" in err
    # Refused up front: nothing was built.
    assert not any(tmp_path.iterdir())


def _fake_asic_record(net, root, *, cycles, fmax=250.0):
    """An asic record in the build folder, as the asic step writes it (its report's fields)."""
    build = Build.of(net, None, root=root)
    out = build.path("asic", "osu018-logic-100MHz")
    out.mkdir(parents=True)
    report = {"total": {"fmax_mhz": fmax, "cycles_per_image": cycles, "area_um2": 2.5e6,
                        "die_area_mm2": 3.6, "flip_flops": 1234, "cell_count": 5678,
                        "fmax_source": "whole core", "images_per_second": fmax * 1e6 / cycles,
                        "power_w_at_clock": {"total": 0.05}},
              "library": {"name": "osu018", "node_um": 0.18},
              "settings": {"memories": "logic", "clock_mhz": 100.0}}
    (out / "report.json").write_text(json.dumps(report))
    (out / "report.md").write_text("# asic\n")
    record = build.record()
    record["steps"]["asic:osu018-logic-100MHz"] = {
        "outputs": ["asic/osu018-logic-100MHz/report.json",
                    "asic/osu018-logic-100MHz/report.md"], "finished": "2025-01-01T00:00:00Z"}
    build._save(record)
    return build


def _fpga(cycles):
    layers = [{"layer": "conv0", "latency_cycles": 300}, {"layer": "conv1", "latency_cycles": 700}]
    return {"plan_cycles_per_image": cycles, "latency_cycles": 1000, "layers": layers,
            "board": "ulx3s", "device": "lfe5u-85f", "clock_mhz": 50.0, "fmax_mhz": 80.0,
            "timing_met": True, "images_per_second": 50e6 / cycles,
            "utilization": {"lut": {"used": 10, "available": 100}}}


def test_asic_column_from_the_build_folder(tiny, tmp_path):
    assert asic_column(tiny, None, _fpga(500), root=tmp_path) is None
    _fake_asic_record(tiny, tmp_path, cycles=500)
    col = asic_column(tiny, None, _fpga(500), root=tmp_path)
    # The FPGA simulation's cycles at the ASIC's Fmax: 300 and 700 cycles at 250 MHz.
    assert col["layers"] == {"conv0": pytest.approx(1.2), "conv1": pytest.approx(2.8)}
    assert col["total_us"] == pytest.approx(4.0) and col["estimate"] is True
    assert "osu018" in col["label"] and "pre-layout" in col["label"]
    lines = "\n".join(_implementations({"fpga": _fpga(500), "asic": col["report"]}))
    assert "ASIC (pre-layout estimate)" in lines and "die 3.60 mm²" in lines
    assert "LUT 10/100" in lines and "250 MHz (whole core, pre-layout)" in lines


def test_asic_column_refuses_another_folding(tiny, tmp_path):
    _fake_asic_record(tiny, tmp_path, cycles=400)
    with pytest.raises(ToolError, match="ASIC report is for 400 cycles per image, the FPGA "
                                        "core for 500"):
        asic_column(tiny, None, _fpga(500), root=tmp_path)


def test_asic_column_ignores_a_record_without_its_files(tiny, tmp_path):
    build = _fake_asic_record(tiny, tmp_path, cycles=500)
    (build.path("asic", "osu018-logic-100MHz", "report.md")).unlink()
    assert asic_column(tiny, None, _fpga(500), root=tmp_path) is None
