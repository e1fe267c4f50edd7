"""The generation and simulation tooling itself, on a small stream component (BeatSum).

Checks: manifest ports match the Verilog module header, generated files are byte-identical
across runs, no partial output on error, the cocotb testbench passes under Icarus and
Verilator with random gaps and backpressure, and fails when ONE expected bit is wrong or the
core breaks the stream protocol.
"""

import json
import re

import numpy as np
import pytest

from beatsum import BeatSum, beatsum_reference
from bnnhw.errors import InputError, ToolError
from bnnhw.gen.cocotb_run import run_testbench
from bnnhw.gen.verilog import generate_component, input_beats, layout_manifest

pytestmark = pytest.mark.cocotb


def _vectors(bytes_per_beat=3, beats=5, images=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(images, beats, bytes_per_beat), dtype=np.uint8)
    return {"input_beats": x, "scores": beatsum_reference(x)}


def _gen(out_dir, vectors=None, **kw):
    core = BeatSum(bytes_per_beat=3, beats_per_image=5, **kw)
    return generate_component(core, out_dir, top="beatsum", manifest={"core": core.describe()},
                              vectors=_vectors() if vectors is None else vectors)


@pytest.fixture(scope="module")
def beatsum_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("beatsum") / "gen"
    _gen(out)
    return out


def _module_ports(verilog_text, top):
    header = re.search(rf"module {top}\(([^)]*)\);", verilog_text).group(1)
    names = [p.strip() for p in header.split(",")]
    decls = {}
    for m in re.finditer(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", verilog_text,
                         re.M):
        decls[m.group(3)] = (m.group(1), int(m.group(2)) + 1 if m.group(2) else 1)
    return {n: decls[n] for n in names}


def test_manifest_ports_match_verilog(beatsum_dir):
    manifest = json.loads((beatsum_dir / "manifest.json").read_text())
    ports = _module_ports((beatsum_dir / "beatsum.v").read_text(), "beatsum")
    listed = {manifest["clk"]: ("input", 1), manifest["rst"]: ("input", 1)}
    for name, p in manifest["ports"].items():
        listed[name] = ("input" if p["dir"] == "in" else "output", p["width"])
    assert listed == ports
    o = manifest["streams"]["o_stream"]
    assert o["dir"] == "out" and manifest["streams"]["i_stream"]["dir"] == "in"
    assert o["payload_layout"] == {"kind": "struct", "width": 12, "fields": {
        "score": {"offset": 0, "width": 11, "signed": True},
        "last": {"offset": 11, "width": 1, "signed": False}}}
    assert ports[o["payload"]] == ("output", 12)


def test_layout_manifest_plain_shapes():
    from amaranth.hdl import signed, unsigned
    assert layout_manifest(unsigned(24)) == {"kind": "unsigned", "width": 24}
    assert layout_manifest(signed(5)) == {"kind": "signed", "width": 5}


def test_generate_is_deterministic(tmp_path):
    _gen(tmp_path / "a")
    _gen(tmp_path / "b")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["beatsum.v", "manifest.json", "vectors.npz"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_generate_leaves_no_partial_output(tmp_path):
    class Broken(BeatSum):
        def elaborate(self, platform):
            raise RuntimeError("elaboration failed on purpose")
    with pytest.raises(RuntimeError, match="on purpose"):
        core = Broken(bytes_per_beat=3, beats_per_image=5)
        generate_component(core, tmp_path / "out", top="beatsum", vectors=_vectors())
    assert list(tmp_path.iterdir()) == []


def test_generate_rejects_bad_top_name(tmp_path):
    with pytest.raises(InputError, match=r"top module name must be a Verilog identifier, "
                                         r"not '1top'"):
        core = BeatSum(bytes_per_beat=1, beats_per_image=2)
        core._MustUse__silence = True      # never elaborated: the name is rejected first
        generate_component(core, tmp_path / "o",
                           top="1top")


def test_input_beats_order_and_padding():
    raw = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(2, 3, 2, 2)   # [N, C, H, W]
    beats = input_beats(raw, 4, 3)
    hwc = raw[0].transpose(1, 2, 0).reshape(-1)                            # independent HWC
    assert beats.shape == (2, 3, 4)
    assert list(beats[0].reshape(-1)) == list(hwc) + [0] * 0
    beats = input_beats(raw, 5, 3)                                         # 15 > 12 bytes
    assert list(beats[0].reshape(-1)) == list(hwc) + [0, 0, 0]
    with pytest.raises(ToolError, match="fewer than the image's 12 bytes"):
        input_beats(raw, 4, 2)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_testbench_passes(beatsum_dir, simulator):
    r = run_testbench(beatsum_dir, simulator=simulator)
    assert r["passed"], r["errors"]
    clean, stress = r["phases"]
    expected = beatsum_reference(_vectors()["input_beats"]).tolist()
    assert clean["scores"] == expected and stress["scores"] == expected
    # BeatSum takes one beat per cycle: 5 beats per image back to back.
    assert clean["intervals"] == [5] * 5
    assert stress["valid_prob"] < 1 and stress["ready_prob"] < 1
    assert max(stress["intervals"]) > 5     # the gaps and backpressure did slow it down


def test_testbench_detects_one_wrong_bit(beatsum_dir, tmp_path):
    vec = _vectors()
    vec["scores"] = vec["scores"].copy()
    vec["scores"][3, 2] ^= 1 << 4          # ONE bit of ONE expected score
    r = run_testbench(beatsum_dir, simulator="icarus", stimulus=vec,
                      phases=[{"name": "clean", "valid_prob": 1.0, "ready_prob": 1.0}])
    assert not r["passed"]
    assert r["phases"][0]["mismatches"] == [
        {"image": 3, "class": 2, "expected": int(vec["scores"][3, 2]),
         "got": int(_vectors()["scores"][3, 2])}]


def test_testbench_detects_protocol_violation(tmp_path):
    # A core that drops valid without waiting for ready loses beats: the monitor and the
    # beat count must catch it, under backpressure.
    from amaranth import Module

    class Dropper(BeatSum):
        def elaborate(self, platform):
            m = Module()
            m.submodules.inner = inner = BeatSum(bytes_per_beat=3, beats_per_image=5)
            m.d.comb += [inner.i_stream.payload.eq(self.i_stream.payload),
                         inner.i_stream.valid.eq(self.i_stream.valid),
                         self.i_stream.ready.eq(inner.i_stream.ready),
                         self.o_stream.payload.eq(inner.o_stream.payload),
                         self.o_stream.valid.eq(inner.o_stream.valid),
                         inner.o_stream.ready.eq(1)]      # ignores the sink's ready
            return m
    core = Dropper(bytes_per_beat=3, beats_per_image=5)
    generate_component(core, tmp_path / "gen", top="dropper", manifest={"core": core.describe()},
                       vectors=_vectors())
    r = run_testbench(tmp_path / "gen", simulator="icarus", stall_cycles=2000,
                      phases=[{"name": "stress", "valid_prob": 1.0, "ready_prob": 0.5}])
    assert not r["passed"]
    assert any("valid dropped" in e or "no stream transfer" in e for e in r["errors"])


def test_unknown_simulator(beatsum_dir):
    with pytest.raises(InputError, match="simulator must be one of icarus, verilator, "
                                         "not 'modelsim'"):
        run_testbench(beatsum_dir, simulator="modelsim")
