"""Generated Verilog of whole networks, simulated with cocotb, bit-exact against the golden model.

Expected scores always come from :func:`bnnhw.golden.forward` (written into ``vectors.npz`` by
``generate``, and recomputed here independently of the generator). Simulator builds are cached
by Verilog hash in ``$BNNHW_SIM_CACHE`` (default ``<repo>/build/test-sim-cache``), so only the
first run pays Verilator's C++ compile.

Measured on 2 shared cores: LFC Verilator build ~80-135 s (cached afterwards), 20 MNIST images in
two phases ~6-20 s; LFC under Icarus simulates ~26 cycles/s (Amaranth's popcount trees are
~20k continuous assignments), so 20 images (~12k cycles) take ~8 minutes: behind ``slow``,
with a 1-image Icarus run in the default suite. CNV under Icarus runs ~400 cycles/s (one image,
~137k cycles, in ~6 minutes): behind ``slow``; Verilator CNV (~10-15k cycles/s) is in the
default run.
"""

import hashlib
import json
import os
import time

import numpy as np
import pytest

import bnnhw
from bnnhw import golden
from bnnhw.gen import generate
from bnnhw.gen.cocotb_run import run_testbench
from conftest import REPO, load_mnist_images, random_conv_network, random_dense_network

pytestmark = pytest.mark.cocotb

CLEAN = [{"name": "clean", "valid_prob": 1.0, "ready_prob": 1.0}]


def _cache_root():
    return os.environ.get("BNNHW_SIM_CACHE", str(REPO / "build" / "test-sim-cache"))


def _sim_build_dir(gen_dir, simulator):
    # Keyed by the Verilog's hash inside build_simulation; one folder per design and simulator.
    manifest = json.loads((gen_dir / "manifest.json").read_text())
    fp = manifest.get("model", {}).get("fingerprint", manifest["top"])
    fold = hashlib.sha256(json.dumps(manifest.get("folding"), sort_keys=True).encode())\
        .hexdigest()[:8]
    return os.path.join(_cache_root(), f"{manifest['top']}-{fp}-{fold}", simulator)


def _run(gen_dir, simulator, **kw):
    start = time.monotonic()
    r = run_testbench(gen_dir, simulator=simulator,
                      build_dir=_sim_build_dir(gen_dir, simulator),
                      verilator_opt="fast-build", **kw)
    print(f"{simulator}: build {r['build']['seconds']:.1f} s, run {r['run_seconds']:.1f} s, "
          f"{r['sim_cycles']} cycles, total {time.monotonic() - start:.1f} s")
    return r


def _assert_exact(r, net, x):
    assert r["passed"], r["errors"]
    expected = golden.forward(net, x).tolist()
    for phase in r["phases"]:
        assert phase["scores"] == expected, phase["name"]


@pytest.fixture(scope="module")
def lfc(data_dir):
    return bnnhw.load_model(data_dir / "bnn-pynq" / "lfcW1A1_mnist.npz")


@pytest.fixture(scope="module")
def lfc_gen(lfc, tmp_path_factory):
    """LFC at FINN's folding with 20 MNIST test images as vectors."""
    out = tmp_path_factory.mktemp("lfc") / "core"
    manifest = generate(lfc, out, inputs=load_mnist_images(20))
    return out, manifest


def test_lfc_vectors_are_golden(lfc, lfc_gen):
    out, manifest = lfc_gen
    v = np.load(out / "vectors.npz")
    x = load_mnist_images(20)
    assert np.array_equal(v["inputs"].reshape(20, 28, 28), x)
    assert np.array_equal(v["scores"], golden.forward(lfc, x))
    assert manifest["folding"] == lfc.meta["folding"]
    assert manifest["model"]["fingerprint"] == lfc.fingerprint()


def test_lfc_verilator_20_mnist(lfc, lfc_gen):
    out, manifest = lfc_gen
    r = _run(out, "verilator")
    _assert_exact(r, lfc, load_mnist_images(20))
    clean = r["phases"][0]
    # Back-to-back images leave the core every cycles_per_image cycles (the slowest layer).
    assert set(clean["intervals"]) == {manifest["core"]["cycles_per_image"]}


def test_lfc_icarus_1_mnist(lfc, lfc_gen):
    # Icarus runs this core at ~26 cycles/s: one image (~1,900 cycles) in the default run,
    # all 20 behind `slow`. Throughput is checked under Icarus on the small networks.
    out, _ = lfc_gen
    v = np.load(out / "vectors.npz")
    r = _run(out, "icarus", phases=CLEAN,
             stimulus={"input_beats": v["input_beats"][:1], "scores": v["scores"][:1]})
    _assert_exact(r, lfc, load_mnist_images(1))


@pytest.mark.slow
def test_lfc_icarus_20_mnist(lfc, lfc_gen):
    out, _ = lfc_gen
    r = _run(out, "icarus", phases=CLEAN)
    _assert_exact(r, lfc, load_mnist_images(20))


def test_lfc_one_wrong_bit_fails(lfc_gen):
    out, _ = lfc_gen
    v = np.load(out / "vectors.npz")
    scores = v["scores"][:2].copy()
    scores[1, 7] ^= 1                       # ONE bit of ONE golden score
    r = _run(out, "verilator", phases=CLEAN,
             stimulus={"input_beats": v["input_beats"][:2], "scores": scores})
    assert not r["passed"]
    assert [(m["image"], m["class"]) for m in r["phases"][0]["mismatches"]] == [(1, 7)]


# -- small random networks -------------------------------------------------------------------

RANDOM_DENSE = [
    # (sizes, input hw, folding, margin)
    ((12, 10, 5), (4, 4), {"fc0": {"PE": 4, "SIMD": 8}, "fc1": {"PE": 3, "SIMD": 5},
                           "fc2": {"PE": 2, "SIMD": 4}}, True),
    ((7, 3), (3, 5), {"fc0": {"PE": 7, "SIMD": 15}, "fc1": {"PE": 1, "SIMD": 1}}, False),
]


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
@pytest.mark.parametrize("case", range(len(RANDOM_DENSE)))
def test_random_dense(case, simulator, tmp_path):
    sizes, hw, folding, margin = RANDOM_DENSE[case]
    rng = np.random.default_rng(100 + case)
    net = random_dense_network(rng, sizes, input_hw=hw, margin=margin,
                               name=f"rand_dense{case}")
    x = rng.integers(0, 256, size=(6, 1, *hw), dtype=np.uint8)
    generate(net, tmp_path / "core", folding=folding, inputs=x)
    r = _run(tmp_path / "core", simulator, seed=case)
    _assert_exact(r, net, x)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_random_conv(simulator, tmp_path):
    rng = np.random.default_rng(7)
    net = random_conv_network(rng)
    folding = {"conv0": {"PE": 2, "SIMD": 3}, "conv1": {"PE": 3, "SIMD": 2},
               "fc2": {"PE": 2, "SIMD": 4}}
    x = rng.integers(0, 256, size=(3, *net.input_shape), dtype=np.uint8)
    generate(net, tmp_path / "core", folding=folding, inputs=x)
    r = _run(tmp_path / "core", simulator, seed=3)
    _assert_exact(r, net, x)


def test_generate_network_is_deterministic(tmp_path):
    rng = np.random.default_rng(5)
    net = random_dense_network(rng, (9, 4), input_hw=(4, 4))
    folding = {"fc0": {"PE": 3, "SIMD": 4}, "fc1": {"PE": 2, "SIMD": 9}}
    generate(net, tmp_path / "a", folding=folding)
    generate(net, tmp_path / "b", folding=folding)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["bnnhw_rand_dense.v", "manifest.json", "vectors.npz"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_generate_target_fps_meets_rate(tmp_path):
    rng = np.random.default_rng(6)
    net = random_dense_network(rng, (16, 10), input_hw=(8, 8))
    m = generate(net, tmp_path / "core", target_fps=20e6, clock_mhz=100)
    # 100 MHz / 20 M images/s = 5 cycles per image at most, for every compute layer.
    assert all(layer["cycles_per_image"] <= 5 for layer in m["core"]["layers"])


def test_generate_bad_folding_no_output(tmp_path):
    rng = np.random.default_rng(6)
    net = random_dense_network(rng, (4, 2), input_hw=(2, 2))
    with pytest.raises(bnnhw.ModelError, match="fc9"):
        generate(net, tmp_path / "core", folding={"fc9": {"PE": 1, "SIMD": 1}})
    assert not (tmp_path / "core").exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(bnnhw.InputError, match="either a folding or a target frame rate"):
        generate(net, tmp_path / "core", folding={}, target_fps=10)


# -- CNV -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cnv(data_dir):
    return bnnhw.load_model(data_dir / "bnn-pynq" / "cnvW1A1_cifar10.npz")


@pytest.fixture(scope="module")
def cnv_images(data_dir):
    v = np.load(data_dir / "bnn-pynq" / "vectors" / "vectors_cnvW1A1_cifar10.npz")
    return v["images_hwc_u8"].transpose(0, 3, 1, 2)[:2].copy()


@pytest.fixture(scope="module")
def cnv_gen(cnv, cnv_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("cnv") / "core"
    manifest = generate(cnv, out, inputs=cnv_images)
    return out, manifest


def test_cnv_verilator_finn_folding(cnv, cnv_images, cnv_gen):
    out, manifest = cnv_gen
    assert manifest["folding"] == cnv.meta["folding"]
    r = _run(out, "verilator", phases=CLEAN)
    _assert_exact(r, cnv, cnv_images)
    assert r["phases"][0]["intervals"] == [manifest["core"]["cycles_per_image"]]


@pytest.mark.slow
def test_cnv_icarus_finn_folding(cnv, cnv_images, cnv_gen):
    out, _ = cnv_gen
    r = _run(out, "icarus", phases=CLEAN)
    _assert_exact(r, cnv, cnv_images)
