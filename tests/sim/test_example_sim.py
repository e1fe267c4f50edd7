"""The project's own example model (``bnnhw/examples/digits_bnn.npz``) as generated Verilog in
cocotb under both simulators, bit-exact against the golden model on held-out digits."""

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from simutil import assert_exact, check_lint, cli_simulate_equals_run, flow_core, run, stimulus_for

pytestmark = pytest.mark.cocotb


@pytest.fixture(scope="module")
def digits_gen():
    from bnnhw.demo import example_model_path
    path = example_model_path()
    net = bnnhw.load_model(path)
    folder, manifest = flow_core(net)
    return net, path, folder, manifest


def _digits_held_out(count):
    from bnnhw.examples.train_digits import digits_split
    _, _, x_test, _ = digits_split()
    return x_test[:count]


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_example_model(digits_gen, simulator, tmp_path):
    net, path, folder, manifest = digits_gen
    x = _digits_held_out(6)
    # Clean and stressed phases through the testbench, then the command line.
    r = run(folder / "core", simulator, stimulus=stimulus_for(manifest, net, x), seed=5)
    assert_exact(r, net, x)
    assert set(r["phases"][0]["intervals"]) == {manifest["core"]["cycles_per_image"]}
    cli_simulate_equals_run(path, folder, x[:3], simulator, tmp_path, "--stress")


def test_example_model_lint(digits_gen):
    _, _, folder, manifest = digits_gen
    check_lint(folder / "core" / manifest["verilog"], manifest["top"])
