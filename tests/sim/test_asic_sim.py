"""Gate-level simulation of the ASIC flow's netlists (``bnnhw asic --verify``): the mapped
osu018 netlist of a whole core, with the library's own Verilog cell models (UDPs) under
Icarus, in the cocotb bench against the golden model, bit-exact, clean and with random
valid gaps and backpressure.

Every flip-flop starts at X (the flow removes FPGA-style initial values), so these runs also
show that the reset alone brings the core into a defined state.
"""

import numpy as np
import pytest

import bnnhw
from support.networks import random_conv_net
from bnnhw import golden
from bnnhw.gen import asic
from bnnhw.gen.cocotb_run import DEFAULT_PHASES, run_testbench

pytestmark = pytest.mark.cocotb


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("asic-cache")


@pytest.fixture(scope="module")
def tiny():
    return _tiny()


def _check(result, expected_images):
    assert result["passed"], result["errors"]
    assert result["images"] == expected_images
    assert [p["name"] for p in result["phases"]] == ["clean", "stress"]
    assert all(p["mismatches"] == 0 for p in result["phases"])
    assert result["cycles_per_image"] == result["expected_cycles_per_image"]


@pytest.mark.parametrize("memories", ["logic", "macro"])
def test_gate_level_tiny(tiny, cache, tmp_path, memories):
    x = np.random.default_rng(7).integers(0, 256, size=(5, *tiny.input_shape), dtype=np.uint8)
    r = asic.verify_gate_level(tiny, memories=memories, macro_min_bits=64, cache_dir=cache,
                               out_dir=tmp_path, inputs=x)
    _check(r, 5)
    text = next((tmp_path / "core").glob("*_gates.v")).read_text()
    assert "module DFFPOSX1" in text and "primitive udp_dff" in text   # the library's models
    assert ("_mem_0" in text) == (memories == "macro")


def test_gate_level_detects_a_wrong_bit(tiny, cache, tmp_path):
    """The same netlist and bench, one expected score with one bit flipped: it must fail, on
    exactly that score, in both phases."""
    x = np.random.default_rng(8).integers(0, 256, size=(3, *tiny.input_shape), dtype=np.uint8)
    gen = tmp_path / "core"
    manifest = asic.write_gate_core(tiny, None, gen, cache_dir=cache, inputs=x)
    beats = np.load(gen / "vectors.npz")["input_beats"]
    scores = golden.forward(tiny, x).astype(np.int64)
    scores[1, 2] ^= 1
    r = run_testbench(gen, stimulus={"input_beats": beats, "scores": scores},
                      phases=DEFAULT_PHASES, build_dir=tmp_path / "sim")
    assert not r["passed"]
    for phase in r["phases"]:
        assert [(m["image"], m["class"]) for m in phase["mismatches"]] == [(1, 2)]
    assert manifest["gate_level"]["library"] == "osu018"


@pytest.mark.slow
def test_gate_level_example_model(tmp_path):
    """The project's example model, its own folding: 4 images of 18,432 cycles, twice (153k
    cycles of 27k cells); 4 min under Icarus on a quiet machine, 8.8 min on a busy one."""
    from bnnhw.demo import example_model_path
    net = bnnhw.load_model(example_model_path())
    r = asic.verify_gate_level(net, cache_dir=tmp_path / "cache", out_dir=tmp_path / "v")
    _check(r, 4)


def _tiny(seed=3):
    """A tiny CNV-like network with every kind of stage (multi-bit input conv, windows with
    line buffers, a window FIFO, a pool, a dense layer, ROMs and RAMs), small enough to
    synthesize in seconds and to simulate at gate level in a few seconds."""
    return random_conv_net(seed, pad=0, channels=(2, 4, 8), hidden=0, classes=3,
                           name="asic_tiny")
