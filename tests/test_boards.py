"""Boards: fit estimate and refusal, folding search, UART client against a software board on
a pty, CLI errors. (Bitstream builds: tests/sim/test_board_build.py; the cocotb board top:
tests/sim/test_board_top.py.)"""

import os
import pty
import time
import tty

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from bnnhw.cli import main
from bnnhw.demo import example_model_path
from bnnhw.errors import ModelError, ToolError
from bnnhw.plan.core import CorePlan
from bnnhw.plan.devices import device
from bnnhw.plan.estimate import FitError, check_fit, estimate, search_folding

from support.data import shared_file

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


@pytest.fixture(scope="module")
def example():
    return bnnhw.load_model(example_model_path())


@pytest.fixture(scope="module")
def lfc():
    return bnnhw.load_model(shared_file("bnn-pynq", "lfcW1A1_mnist.npz"))


def test_estimate_refuses_lfc_on_the_icebreaker(lfc):
    dev = device("ice40up5k")
    plan, mm = CorePlan.for_device(lfc, None, dev)
    est = estimate(plan, dev, memory_map=mm)
    # Over its 30 block RAMs, the memories move to logic: far over the 5,280 LUTs.
    assert est["bram"] <= dev.brams and est["lut"] > 10 * dev.luts
    with pytest.raises(FitError, match=r"does not fit the ice40up5k \(estimate\): LUT [\d,]+ "
                                       r"needed, 5,280 available"):
        check_fit(est, dev)


def test_build_refuses_before_any_tool_runs(lfc, tmp_path):
    from bnnhw.boards.bitstream import build_board
    with pytest.raises(FitError, match="before synthesis"):
        build_board(lfc, None, "icebreaker", tmp_path, show_progress=False)
    # Refused before synthesis: no design or tool file was written.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["estimate.json"]


def test_example_fits_every_board(example):
    for name in ("ice40up5k", "lfe5u-85f", "gw1nr-9"):
        dev = device(name)
        plan, mm = CorePlan.for_device(example, None, dev)
        check_fit(estimate(plan, dev, memory_map=mm), dev)
        if dev.brams == 0:
            assert mm.totals()["brams"] == 0


def test_folding_search_reaches_the_rate_and_fits(example):
    dev = device("lfe5u-85f")
    fold, plan, est = search_folding(example, dev, images_per_second=50_000, clock_hz=50e6)
    assert plan.cycles_per_image <= 50e6 / 50_000
    check_fit(est, dev)
    # Cheapest: at a lower rate the folding is no larger.
    _, plan2, est2 = search_folding(example, dev, images_per_second=10_000, clock_hz=50e6)
    assert est2["lut"] <= est["lut"] and plan2.cycles_per_image >= plan.cycles_per_image


def test_folding_search_says_what_the_board_reaches(lfc):
    dev = device("lfe5u-85f")
    with pytest.raises(FitError, match=r"nor does any faster folding; the fastest folding found "
                                       r"that fits the lfe5u-85f reaches ([\d,]+) images/s "
                                       r"\(([\d,]+) cycles") as e:
        search_folding(lfc, dev, images_per_second=400_000, clock_hz=50e6)
    # The rate it names is real: a folding of that many cycles per image fits.
    import re
    cycles = int(re.search(r"\(([\d,]+) cycles", str(e.value)).group(1).replace(",", ""))
    fold, plan, est = search_folding(lfc, dev, images_per_second=50e6 / (cycles + 0.5),
                                     clock_hz=50e6)
    assert plan.cycles_per_image <= cycles
    check_fit(est, dev)


def test_folding_search_tries_faster_foldings(lfc):
    # LFC at 195,000 images/s and 110 MHz: the fewest lanes for 564 cycles per image
    # (fc1 11x171) make 564-deep weight memories, just over the DP16KD's 512, so two layers'
    # weights move to logic (152,773 LUT4 estimated): it does not fit. The 512-cycle folding
    # (FINN-like 2x1024) is faster and fits easily; the search must find it, not refuse.
    dev = device("lfe5u-85f")
    fold, plan, est = search_folding(lfc, dev, images_per_second=195_000, clock_hz=110e6)
    assert plan.cycles_per_image <= 110e6 / 195_000
    check_fit(est, dev)
    assert est["lut"] < dev.luts // 2


def _pty_board(net, **kw):
    from bnnhw.boards.client import SoftwareBoard
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    board = SoftwareBoard(net, master, **kw).start()
    return board, os.ttyname(slave), (master, slave)


def test_client_against_software_board(example):
    from bnnhw.boards.client import BoardClient
    from bnnhw.model.datasets import digits_split
    x = digits_split()[2][:20]
    board, port, fds = _pty_board(example)
    try:
        with BoardClient(port, timeout=5) as client:
            info = client.query()
            assert info["model_id"] == example.fingerprint()
            scores = client.run(example, x)
            # The board thread counts an image after writing its scores, so the client can
            # have them all a moment before the count (seen once under load).
            deadline = time.monotonic() + 5
            while board.images < 20 and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        board.stop()
        for fd in fds:
            os.close(fd)
    want = golden.forward(example, x)
    np.testing.assert_array_equal(scores, want)
    assert board.images == 20
    bad = want.copy()
    bad[3, 0] += 1
    assert not np.array_equal(scores, bad)


def test_client_refuses_a_board_with_another_model(example):
    from bnnhw.boards.client import BoardClient
    board, port, fds = _pty_board(example, model_id="0123456789abcdef")
    try:
        with BoardClient(port, timeout=5) as client:
            with pytest.raises(ModelError, match="runs model 0123456789abcdef, not "
                                                 "'digits_bnn'"):
                client.run(example, np.zeros((1, 1, 8, 8), np.uint8))
    finally:
        board.stop()
        for fd in fds:
            os.close(fd)


def test_client_times_out_on_a_silent_port(example):
    from bnnhw.boards.client import BoardClient
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        with BoardClient(os.ttyname(slave), timeout=0.3) as client:
            with pytest.raises(ToolError, match=r"did not answer the query within 0.3 s "
                                                r"\(got 0 of 16 bytes\)"):
                client.query()
    finally:
        os.close(master)
        os.close(slave)


def test_decode_scores_sign_extension():
    from bnnhw.boards.client import decode_scores
    got = decode_scores(bytes([0xFF, 0x7F, 0x00, 0x80]), 2, 2)
    np.testing.assert_array_equal(got, [[0x7FFF, -0x8000]])


def test_cli_board_run_writes_golden_scores(example, tmp_path, capsys):
    from bnnhw.model.datasets import digits_split
    x = digits_split()[2][:5]
    np.save(tmp_path / "x.npy", x)
    board, port, fds = _pty_board(example)
    try:
        rc = main(["board", "run", "--board", "ulx3s", "--port", port, "--quiet",
                   str(example_model_path()), str(tmp_path / "x.npy"),
                   "-o", str(tmp_path / "s.npy")])
    finally:
        board.stop()
        for fd in fds:
            os.close(fd)
    assert rc == 0
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), golden.forward(example, x))


@pytest.mark.parametrize("argv,message", [
    (["build", "M", "--board", "nexys"], "board must be one of icebreaker, ulx3s, tangnano9k, "
                                         "not 'nexys'"),
    (["build", "M", "--board", "ulx3s", "--freq", "-5"],
     "argument --freq: must be a positive number, not '-5'"),
    (["build", "M", "--board", "ulx3s", "--freq", "2000"], "--freq must be a clock in MHz"),
    (["build", "M", "--board", "ulx3s", "--folding", "f.json", "--target-fps", "10"],
     "give either --folding or --target-fps, not both"),
    (["board", "run", "--board", "ulx3s", "--port", "/dev/null", "M"],
     "usage: bnnhw board run"),
    (["board", "run", "--board", "ulx3s", "--port", "/nonexistent/tty", "M", "X"],
     "board run needs -o SCORES.npy"),
    (["compare", "M", "--board", "zedboard"], "board must be one of"),
])
def test_cli_errors(argv, message, capsys, example, tmp_path):
    argv = [str(example_model_path()) if a == "M" else a for a in argv]
    try:
        rc = main(argv)
    except SystemExit as e:                 # argparse's type errors exit from parse_args
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("bnnhw: error: ") and message in err, err


def test_cli_build_refuses_with_numbers(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BNNHW_BUILD_ROOT", str(tmp_path))
    rc = main(["build", str(shared_file("bnn-pynq", "lfcW1A1_mnist.npz")), "--board",
               "icebreaker", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "does not fit the ice40up5k" in err and "5,280 available" in err
