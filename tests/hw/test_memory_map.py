"""Memory mapping (bnnhw.plan.memory) and the MVTU's sliced weight ROM: bit-exact, checked."""

import numpy as np
import pytest

import bnnhw
from bnnhw.hw.mvtu import MVTU
from bnnhw.model.layers import BinaryDense, Threshold
from bnnhw.plan.core import CorePlan
from bnnhw.plan.devices import device
from bnnhw.plan.memory import Memory, MemoryMap, bram_tiles, options, split_block
from bnnhw.plan.stages import MVTUPlan

from support.streams import compare_beats
from support.data import shared_file
from hw.test_mvtu import check, decode, rand_pm1, ref_vector_output, run_mvtu

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

ECP5 = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


def test_split_block_beats_uniform_shapes():
    # 56 bits x 10,656 words (CNV conv5 at PE=7, SIMD=8): uniform shapes need >= 42 DP16KD.
    uniform = min(bram_tiles(56, 10656, c) for c in ECP5)
    brams, slices = split_block(56, 10656, ECP5)
    assert uniform == 42
    assert brams == 34
    assert sum(w for w, _ in slices) == 56
    assert sum(bram_tiles(w, 10656, c) for w, c in slices) == brams
    # A memory one shape holds exactly is not split.
    assert split_block(36, 512, ECP5) == (1, ((36, (512, 36)),))


def test_options_rom_and_ram():
    rom = Memory("fc", "weights", 4096, 9, True)
    opts = options(rom, "ecp5")
    assert opts["block"].brams == 114            # 4096 / 36 shapes, 9 words each
    assert opts["logic"].luts == 4096            # one LUT4 per bit, depth <= 16
    ram = Memory("fc", "ibuf", 64, 18, False)
    assert options(ram, "ecp5")["lutram"].luts == 16 * 2 * 4
    assert "lutram" not in options(ram, "ice40")


def test_cnv_memory_map_fits_the_ulx3s():
    """CNV at the folding for FINN's rate needed 284 DP16KD with every memory in block RAM;
    mapped by width and depth it fits the 208 of the LFE5U-85F."""
    from bnnhw.plan.folding import auto_folding
    net = bnnhw.load_model(shared_file("bnn-pynq", "cnvW1A1_cifar10.npz"))
    plan = CorePlan(net, auto_folding(net, images_per_second=9150, clock_hz=100e6))
    mm = MemoryMap(plan, device("lfe5u-85f"))
    totals = mm.totals()
    assert totals["brams"] <= 208
    # Every memory in block RAM: each slice a whole number of its shape, bits fit.
    for c in mm.choices.values():
        if c.style == "block":
            assert c.brams * 18432 >= c.memory.bits
    # The tight budget moves the cheapest memories to logic and still fits.
    tight = MemoryMap(plan, device("lfe5u-85f"), bram_budget=100)
    assert tight.totals()["brams"] <= 100
    assert tight.totals()["luts"] > totals["luts"]


def _dense(seed, o, k):
    rng = np.random.default_rng(seed)
    layer = BinaryDense("fc", rand_pm1(rng, (o, k)))
    thr = Threshold("thr", rng.integers(-k, k, o), rng.random(o) < 0.3)
    return rng, layer, thr


@pytest.mark.parametrize("weight_map", [
    ((0, 5, "block"), (5, 7, "logic"), (12, 4, "distributed")),
    ((0, 16, "logic"),),
    ((0, 1, "block"), (1, 15, "block")),
])
def test_sliced_weight_rom_is_bit_exact(weight_map):
    rng, layer, thr = _dense(7, 8, 22)                 # PE=4, SIMD=4: 16-bit rows
    dut = MVTU(layer=layer, pe=4, simd=4, threshold=thr, weight_map=weight_map,
               table_style="logic")
    vectors = [rng.integers(0, 2, 22) for _ in range(6)]
    check(dut, vectors, thr, valid_prob=0.7, ready_prob=0.6, seed=3)


def test_sliced_weight_rom_corruption_is_caught():
    rng, layer, thr = _dense(9, 6, 12)
    dut = MVTU(layer=layer, pe=2, simd=4, threshold=thr,
               weight_map=((0, 3, "block"), (3, 5, "logic")))
    vectors = [rng.integers(0, 2, 12) for _ in range(3)]
    mon = run_mvtu(dut, vectors)
    got = [decode(dut, w) for w in mon.beats]
    exp = [ref_vector_output(layer, x, thr) for x in vectors]
    compare_beats(got, exp, "vector")
    exp[2][1] ^= 1
    with pytest.raises(AssertionError, match="vector 2"):
        compare_beats(got, exp, "vector")


def test_weight_map_validation():
    _, layer, thr = _dense(1, 4, 8)
    with pytest.raises(ValueError, match="covers 6 bits, the rows have 8"):
        MVTUPlan(layer=layer, pe=2, simd=4, threshold=thr, weight_map=((0, 6, "block"),))
    with pytest.raises(ValueError, match="must start at bit 4, not 3"):
        MVTUPlan(layer=layer, pe=2, simd=4, threshold=thr,
                 weight_map=((0, 4, "block"), (3, 4, "block")))
    with pytest.raises(ValueError, match="style must be one of"):
        MVTUPlan(layer=layer, pe=2, simd=4, threshold=thr, weight_map=((0, 8, "huge"),))
    with pytest.raises(ValueError, match="table style must be one of"):
        MVTUPlan(layer=layer, pe=2, simd=4, threshold=thr, table_style="fast")
