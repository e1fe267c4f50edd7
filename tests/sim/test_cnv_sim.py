"""CNV (the shared CIFAR-10 network, at FINN's folding) as generated Verilog in cocotb,
bit-exact against the golden model.

CNV under Verilator (fast-build) simulates ~5-15k cycles/s: two images in two phases
(~340k cycles) in the default run. Under Icarus it runs ~400 cycles/s (two images, ~170k
cycles, 10-20 minutes): behind ``slow``.
"""

import re

import numpy as np
import pytest

import bnnhw
from simutil import check_lint, cli_simulate_equals_run, flow_core

pytestmark = pytest.mark.cocotb

CNV_FILE = "cnvW1A1_cifar10.npz"


@pytest.fixture(scope="module")
def cnv(data_dir):
    return bnnhw.load_model(data_dir / "bnn-pynq" / CNV_FILE)


@pytest.fixture(scope="module")
def cnv_images(data_dir):
    v = np.load(data_dir / "bnn-pynq" / "vectors" / "vectors_cnvW1A1_cifar10.npz")
    return v["images_hwc_u8"].transpose(0, 3, 1, 2)[:2].copy()


@pytest.fixture(scope="module")
def cnv_gen(cnv, data_dir):
    return flow_core(cnv)


def test_cnv_verilator_finn_folding(cnv, cnv_images, cnv_gen, data_dir, tmp_path, capsys):
    # `bnnhw simulate --stress`: the images back to back, then again with random valid gaps
    # and output backpressure (the scores must not change), equal to `bnnhw run`.
    folder, manifest = cnv_gen
    assert manifest["folding"] == cnv.meta["folding"]
    capsys.readouterr()
    cli_simulate_equals_run(data_dir / "bnn-pynq" / CNV_FILE, folder, cnv_images,
                            "verilator", tmp_path, "--stress")
    # Back-to-back images leave the core every cycles_per_image cycles (fc6 at FINN's folding).
    printed = re.search(r"\(verilator: (\d+) cycles/image", capsys.readouterr().out)
    assert printed and int(printed.group(1)) == manifest["core"]["cycles_per_image"] == 32768


def test_cnv_lint(cnv_gen):
    folder, manifest = cnv_gen
    check_lint(folder / "core" / manifest["verilog"], manifest["top"])


@pytest.mark.slow
def test_cnv_cli_simulate_icarus(cnv_gen, cnv_images, data_dir, tmp_path):
    # ~150-400 cycles/s under Icarus: two images (~170k cycles) take 10-20 minutes.
    folder, _ = cnv_gen
    cli_simulate_equals_run(data_dir / "bnn-pynq" / CNV_FILE, folder, cnv_images,
                             "icarus", tmp_path)
