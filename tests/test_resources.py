"""Resource estimates (bnnhw.gen.resources) and board targets (boards/).

Fast tests synthesize small components for ECP5 with YoWASP Yosys (a missing tool fails, it
never skips); the bitstream build is ``slow``.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

import bnnhw
from bnnhw import golden
from bnnhw.errors import InputError, ToolError
from bnnhw.gen import resources
from bnnhw.hw.mvtu import MVTU
from bnnhw.hw.network import NetworkCore
from bnnhw.hw.pe import XnorPopcountPE

ROOT = Path(__file__).resolve().parents[1]

EXAMPLE = ROOT / "bnnhw" / "examples" / "digits_bnn.npz"
DP16KD_BITS = 18 * 1024
DPR16X4_BITS = 16 * 4


@pytest.fixture(scope="module")
def digits():
    return bnnhw.load_model(EXAMPLE)


@pytest.fixture(scope="module")
def small_mvtu(digits):
    block = digits.blocks()[2]           # fc2: K=512, O=64, 32 kbit of weights
    return MVTU(layer=block.compute.layer, pe=2, simd=16, threshold=block.threshold.layer,
                clip=None if block.clip is None else block.clip.layer)


def test_summarize_counts_memory_and_luts():
    cells = {"LUT6": 10, "LUT2": 3, "RAM64M": 2, "SRLC32E": 1, "FDRE": 7, "RAMB18E1": 3,
             "RAMB36E1": 1, "CARRY4": 2}
    s = resources.summarize("xc7", cells)
    assert (s["lut"], s["lut_logic"], s["lut_memory"]) == (13 + 9, 13, 9)
    assert (s["ff"], s["bram36"], s["carry4"]) == (7, 2.5, 2)
    e = resources.summarize("ecp5", {"LUT4": 5, "CCU2C": 2, "TRELLIS_DPR16X4": 1,
                                     "DP16KD": 4, "TRELLIS_FF": 9})
    assert (e["lut4_equiv"], e["bram_dp16kd"], e["lutram_dpr16x4"], e["ff"]) == (13, 4, 1, 9)


def test_unknown_family_and_missing_tool_fail_loudly():
    with pytest.raises(InputError, match=r"FPGA family must be one of ice40, ecp5, xc7, "
                                         r"not 'xc9'"):
        resources.summarize("xc9", {})
    with pytest.raises(ToolError, match="yowasp-nonexistent is not installed"):
        resources.yowasp_tool("yowasp-nonexistent")


def test_prefer_block_ram_marks_only_large_memories():
    text = ("module \\top\n  memory width 512 size 144 \\weights\n"
            "  memory width 8 size 16 \\table\nend\n")
    out, marked = resources.prefer_block_ram(text, 4096)
    assert marked == ["weights"]
    assert '  attribute \\ram_style "block"\n  memory width 512 size 144 \\weights\n' in out
    assert out.count("ram_style") == 1


def test_ecp5_mvtu_counts_weight_memory(small_mvtu):
    r = resources.synthesize(small_mvtu, "ecp5")
    t = r["total"]
    assert t["lut4"] > 0 and t["ff"] > 0 and t["lut4_equiv"] >= t["lut4"]
    # The 32 kbit weight ROM and the buffers must show up as block or LUT RAM.
    capacity = t["bram_dp16kd"] * DP16KD_BITS + t["lutram_dpr16x4"] * DPR16X4_BITS
    assert capacity >= small_mvtu.weight_memory_bits + small_mvtu.buffer_memory_bits


def test_minimal_accumulator_uses_fewer_flip_flops():
    k = 256
    ffs = {}
    for acc in (None, 32):
        pe = XnorPopcountPE(simd=32, fan_in=k, acc_bits=acc)
        ffs[acc] = resources.synthesize(pe, "ecp5")["total"]["ff"]
    # At least the accumulator register itself shrinks from 32 to A_min = 9 bits.
    assert ffs[None] + (32 - 9) <= ffs[32], ffs


def test_gate_estimate_and_cache(tmp_path):
    pe = XnorPopcountPE(simd=16, fan_in=64)
    a = resources.gate_estimate(pe, cache_dir=tmp_path)
    assert a["transistors"] > 0 and a["flip_flops"] >= pe.acc_bits
    b = resources.gate_estimate(pe, cache_dir=tmp_path)
    assert b.get("cached") and b["transistors"] == a["transistors"]


def test_ecp5_place_and_route_reports_fmax():
    pe = XnorPopcountPE(simd=16, fan_in=64)
    r = resources.synthesize_and_route(pe, freq_mhz=100, timeout=300)
    (fmax,) = r["pnr"]["fmax_mhz"].values()
    assert 20 < fmax < 1000
    assert r["pnr"]["utilization"]["TRELLIS_COMB"]["used"] > 0


# -- boards ---------------------------------------------------------------------------------

def _uart_roundtrip(data, divisor):
    from bnnhw.boards.common import UartRx, UartTx
    from amaranth.hdl import Module
    m = Module()
    m.submodules.tx = tx = UartTx(divisor=divisor)
    m.submodules.rx = rx = UartRx(divisor=divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def send(ctx):
        for byte in data:
            ctx.set(tx.data, byte)
            ctx.set(tx.valid, 1)
            await ctx.tick().until(tx.ready)
            await ctx.tick()
        ctx.set(tx.valid, 0)

    async def receive(ctx):
        while len(got) < len(data):
            await ctx.tick()
            if ctx.get(rx.valid):
                got.append(ctx.get(rx.data))

    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run_until(1e-6 * divisor * 12 * (len(data) + 2))
    return got


def test_uart_loopback():
    data = [0x00, 0xFF, 0x55, 0xA5, 0x01, 0x80, 0x3C]
    assert _uart_roundtrip(data, divisor=5) == data


def _bridge_scores(net, images):
    """Feed ``images`` byte by byte into a StreamBridge around the core, at about the core's
    image rate (as a UART slower than the core does); decode the score bytes that come out."""
    from bnnhw.boards.common import StreamBridge
    core = NetworkCore(net=net)
    dut = StreamBridge(core=core, fifo_depth=64)
    raw = np.concatenate([np.moveaxis(img, 0, -1).reshape(-1) for img in images])
    gap = -(-core.describe()["cycles_per_image"] // images[0].size) + 1
    nb = dut.score_bytes
    want = len(images) * net.num_classes * nb
    out, done, overflow = [], [], []
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def feed(ctx):
        for byte in raw:
            ctx.set(dut.in_data, int(byte))
            ctx.set(dut.in_valid, 1)
            await ctx.tick()
            ctx.set(dut.in_valid, 0)
            await ctx.tick().repeat(gap)

    async def drain(ctx):
        ctx.set(dut.out_ready, 1)
        while len(out) < want:
            await ctx.tick()
            if ctx.get(dut.out_valid):
                out.append(ctx.get(dut.out_data))
            if ctx.get(dut.image_done):
                done.append(len(out))
            if ctx.get(dut.overflow) and not overflow:
                overflow.append(len(out))

    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run_until(1e-6 * (core.describe()["latency_cycles_estimate"] * len(images)
                          + len(raw) * (gap + 1) + 1000))
    assert not overflow, "the input FIFO overflowed"
    assert len(out) == want, f"{len(out)} of {want} score bytes came out"
    b = np.array(out, np.uint8).reshape(len(images), net.num_classes, nb)
    scores = sum(b[..., i].astype(np.int64) << (8 * i) for i in range(nb))
    scores = np.where(scores >= 1 << (8 * nb - 1), scores - (1 << (8 * nb)), scores)
    return scores, done, nb


def _check_scores(got, expected):
    assert np.array_equal(got, expected), f"scores differ:\n{got}\nexpected\n{expected}"


def _small_dense_net(seed=3):
    """An LFC-like network small enough for a fast whole-core simulation; the margin rule
    gives negative scores, which exercises the sign extension of multi-byte scores."""
    from bnnhw.model import BinaryDense, Network, Output, Threshold, ThresholdQuantizer
    rng = np.random.default_rng(seed)
    pm1 = lambda shape: rng.choice(np.array([-1, 1], np.int8), size=shape)  # noqa: E731
    layers = (BinaryDense("fc0", pm1((12, 24))),
              Threshold("thr0", rng.integers(-26, 27, 12), rng.random(12) < 0.3),
              BinaryDense("fc1", pm1((10, 12))),
              Threshold("thr1", rng.integers(-14, 15, 10), rng.random(10) < 0.3),
              Output())
    return Network("dense", (1, 4, 6), ThresholdQuantizer(128), layers)


# The example's whole-core simulation takes ~40 s per image in amaranth.sim: slow only.
@pytest.fixture(scope="module", params=["small", pytest.param("digits", marks=pytest.mark.slow)])
def bridge_run(request, digits):
    net = _small_dense_net() if request.param == "small" else digits
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (3 if request.param == "small" else 2, *net.input_shape),
                          dtype=np.uint8)
    scores, done, nb = _bridge_scores(net, images)
    return net, images, scores, done, nb


def test_bridge_scores_match_golden(bridge_run):
    net, images, scores, done, nb = bridge_run
    _check_scores(scores, golden.forward(net, images))
    assert done == [net.num_classes * nb * (i + 1) for i in range(len(images))]


def test_bridge_check_catches_one_flipped_bit(bridge_run):
    net, images, scores, _, _ = bridge_run
    expected = golden.forward(net, images).copy()
    expected[-1, 3] ^= 1
    with pytest.raises(AssertionError, match="scores differ"):
        _check_scores(scores, expected)


def test_board_rejects_unknown_name():
    import bnnhw.boards as boards
    with pytest.raises(ValueError, match=r"board must be one of icebreaker, ulx3s, tangnano9k, not 'x'"):
        boards.build("x")


@pytest.mark.slow
def test_icebreaker_bitstream(tmp_path):
    import bnnhw.boards as boards
    r = boards.build("icebreaker", EXAMPLE, tmp_path / "ice")
    assert (tmp_path / "ice" / "top.bin").stat().st_size > 100_000
    assert r["fmax_mhz"] > r["board_clock_mhz"], r
    lc = r["utilization"]["ICESTORM_LC"]
    assert 0 < lc["used"] <= lc["available"]
    json.dumps(r)
