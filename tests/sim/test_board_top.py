"""The whole board top, UART included, in a cocotb simulation (Icarus) against the golden
model: query answer with the model id, then every image's scores over the UART."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from bnnhw.gen.cocotb_run import SIM_DIR, simulator_env

pytestmark = [pytest.mark.cocotb,
              pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")]

RUNNER = r'''
import sys
from cocotb_tools.runner import get_runner
src, build, test_dir = sys.argv[1:4]
r = get_runner("icarus")
r.build(sources=[src], hdl_toplevel="board_top", build_dir=build, timescale=("1ns", "1ps"))
r.test(hdl_toplevel="board_top", test_module="test_board_top", build_dir=build,
       test_dir=test_dir, timescale=("1ns", "1ps"))
'''


def run_board_top(tmp_path, net, folding, x, *, model_id=None, expected_id=None):
    from amaranth.back import verilog

    from bnnhw.boards.client import image_bytes
    from bnnhw.boards.common import UartNetwork, id_message
    from bnnhw.hw.network import NetworkCore
    core = NetworkCore(net=net, folding=folding)
    baud = 1_000_000
    top = UartNetwork(core=core, clock_hz=8 * baud, baud=baud, model_id=model_id, pins=False)
    src = tmp_path / "board_top.v"
    src.write_text(verilog.convert(top, name="board_top"))
    imgs = image_bytes(net, x, 1)
    spec = {"clock_ns": 125, "baud": baud, "images": imgs.tolist(),
            "id": top.message.hex(), "classes": net.num_classes,
            "score_bytes": top.score_bytes, "timeout_cycles": 400_000,
            "results": str(tmp_path / "results.json")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = simulator_env("icarus", dict(os.environ))
    env["BNNHW_BOARD_SPEC"] = str(tmp_path / "spec.json")
    env["PYTHONPATH"] = str(SIM_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(src), str(tmp_path / "build"),
                           str(SIM_DIR)], env=env, capture_output=True, text=True,
                          timeout=900)
    results_path = tmp_path / "results.json"
    assert results_path.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(results_path.read_text()), top


def test_board_top_uart_matches_golden(tmp_path):
    from bnnhw.plan.folding import auto_folding
    from bnnhw.demo import example_model_path
    net = bnnhw.load_model(example_model_path())
    folding = auto_folding(net, images_per_second=50_000, clock_hz=100e6)
    from bnnhw.model.datasets import digits_split
    x = digits_split()[2][:3]
    res, top = run_board_top(tmp_path, net, folding, x)
    assert res["errors"] == []
    assert res["id"] == top.message.hex()
    assert bytes.fromhex(res["id"])[4:12].hex() == net.fingerprint()
    got = np.asarray(res["scores"], np.int64)
    want = golden.forward(net, x)
    np.testing.assert_array_equal(got, want)
    # The comparison fails on one wrong bit.
    bad = want.copy()
    bad[1, 2] ^= 1
    assert not np.array_equal(got, bad)
