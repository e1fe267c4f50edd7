"""Whole-network bitstreams through ``bnnhw build`` for every board (YoWASP place and route:
minutes each, so behind ``slow``; the default run checks the command lines the flow gives the
tools)."""

import json

import pytest

from bnnhw.boards import BOARDS
from bnnhw.boards.bitstream import _commands, _himbaechel_args
from bnnhw.cli import main
from bnnhw.demo import example_model_path

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def test_gowin_command_becomes_himbaechel():
    args = ["$NEXTPNR_GOWIN", "--seed", "1", "--log", "top.tim", "--device",
            "GW1NR-LV9QN88PC6/I5", "--family", "GW1N-9C", "--json", "top.syn.json",
            "--cst", "top.cst", "--write", "top.pnr.json"]
    assert _himbaechel_args(args) == [
        "$NEXTPNR_GOWIN", "--seed", "1", "--log", "top.tim", "--device", "GW1NR-LV9QN88PC6/I5",
        "--vopt", "family=GW1N-9C", "--json", "top.syn.json", "--vopt", "cst=top.cst",
        "--write", "top.pnr.json"]


def test_ecp5_routes_with_router2(tmp_path, monkeypatch):
    # Stop the build after amaranth wrote its script: the first tool is never run.
    import bnnhw.boards.bitstream as bitstream

    def stop(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(bitstream, "_tool_env", stop)
    import bnnhw
    net = bnnhw.load_model(example_model_path())
    with pytest.raises(KeyboardInterrupt):
        bitstream.build_board(net, None, "ulx3s", tmp_path, show_progress=False)
    nextpnr = [c for c in _commands(tmp_path) if "NEXTPNR_ECP5" in c]
    assert len(nextpnr) == 1 and "--router router2" in nextpnr[0], nextpnr


@pytest.mark.slow
@pytest.mark.parametrize("board", list(BOARDS))
def test_example_bitstream(board, tmp_path, capsys):
    rc = main(["--build-root", str(tmp_path), "build", str(example_model_path()),
               "--board", board])
    out = capsys.readouterr().out
    assert rc == 0, out
    (folder,) = tmp_path.glob("digits_bnn-*/board")
    report = json.loads((folder / "board_report.json").read_text())
    assert (folder / BOARDS[board]["bitstream"]).stat().st_size > 10_000
    assert report["board"] == board and report["timing_met"], report
    lut = report["utilization"]["lut"]
    assert 0 < lut["used"] <= lut["available"], report["utilization"]
    assert report["images_per_second"] > 0 and report["fmax_mhz"] > report["clock_mhz"]
