"""Whole networks through the generated firmware runner, bit-exact against bnnhw.golden.forward.

Real networks (BNN-PYNQ LFC on MNIST, CNV on CIFAR-10 vector images; CNV on Street View house
numbers and road signs, LFC on merged characters; bnnhw's own example digits_bnn.npz) and
small random networks that cover every layer kind, on the host (scalar and NEON through SIMDe,
and every x86 AVX2 / AVX-512 path this CPU runs), AArch64 and ARMv7 (qemu-user), plus an
ASan + UBSan host build.
"""

import numpy as np
import pytest

from bnnhw import golden
from bnnhw.gen import firmware as fw

from fw_helpers import (CONFIGS, PATHS_RUN, check_host_paths, random_images, random_networks,
                        shared_file)

pytestmark = pytest.mark.firmware

N_MNIST = 1000


def assert_scores(got, expected, what):
    assert got.dtype == np.int64 and got.shape == expected.shape, \
        f"{what}: {got.dtype} {got.shape} vs {expected.shape}"
    bad = np.argwhere(got != expected)
    assert bad.size == 0, (f"{what}: {len(bad)} scores differ, first at {tuple(bad[0])}: "
                           f"{got[tuple(bad[0])]} != {expected[tuple(bad[0])]}")


def fw_run(net, x, config, root, tag="", **kw):
    # one folder per model; the kernel library is compiled once beside them (per config)
    target, impl, _ = CONFIGS[config]
    build_dir = root / (net.name + tag)
    scores = fw.run(net, x, target=target, impl=impl, build_dir=build_dir, **kw)
    kernel = kw.get("kernel")
    if kernel is None:
        # the default path depends on the build and the CPU only: ask one runner per config
        if config not in DEFAULT_KERNEL:
            DEFAULT_KERNEL[config] = fw.chosen_kernel(net, target=target, impl=impl,
                                                      build_dir=build_dir)
        kernel = DEFAULT_KERNEL[config]
    PATHS_RUN[(config, "networks")].add(kernel)
    return scores


DEFAULT_KERNEL = {}


def host_kernels(net, root, tag=""):
    """The kernel paths of the host SIMD runner of `net` on this machine (checked against
    /proc/cpuinfo: every x86 path the CPU has must be there)."""
    runner = fw.generate(net, root / (net.name + tag), target="host", impl="neon")
    kernels = fw.runner_kernels(runner)
    check_host_paths(kernels, f"the host runner of {net.name}")
    return kernels


@pytest.fixture(scope="module")
def mnist_batch(mnist, lfc):
    images = mnist[0][:N_MNIST]
    return images, golden.forward(lfc, images)


@pytest.fixture(scope="module")
def cnv_batch(cnv):
    vec = np.load(shared_file("bnn-pynq", "vectors", "vectors_cnvW1A1_cifar10.npz"))
    images = np.moveaxis(vec["images_hwc_u8"], -1, 1)
    rng = np.random.default_rng(7)
    x = np.concatenate([images, rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8)])
    return x, golden.forward(cnv, x)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_lfc_mnist(config, lfc, mnist_batch, fw_root):
    images, expected = mnist_batch
    got = fw_run(lfc, images, config, fw_root / config)
    assert_scores(got, expected, f"LFC on {len(images)} MNIST images ({config})")


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_lfc_mnist_full(config, lfc, mnist, fw_root):
    """All 10,000 MNIST test images; the accuracy equals the golden model's."""
    images, labels = mnist
    expected = golden.forward(lfc, images)
    got = fw_run(lfc, images, config, fw_root / config)
    assert_scores(got, expected, f"LFC on 10,000 MNIST images ({config})")
    assert (np.argmax(got, axis=1) == labels).mean() > 0.98


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_cnv_random_sweep(config, cnv, fw_root):
    x = np.random.default_rng(99).integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)
    assert_scores(fw_run(cnv, x, config, fw_root / config), golden.forward(cnv, x),
                  f"CNV on 64 random images ({config})")


@pytest.mark.parametrize("config", list(CONFIGS))
def test_cnv_cifar10(config, cnv, cnv_batch, fw_root):
    x, expected = cnv_batch
    got = fw_run(cnv, x, config, fw_root / config)
    assert_scores(got, expected, f"CNV on {len(x)} images ({config})")


#: the other BNN-PYNQ networks and bnnhw's example: model -> images of the default run
OTHER_MODELS = ["cnvW1A1_streetview", "cnvW1A1_road_signs", "lfcW1A1_chars_merged",
                "digits_bnn"]


def load_other(model):
    import bnnhw
    if model == "digits_bnn":
        from bnnhw.examples import EXAMPLE_MODEL
        return bnnhw.load_model(EXAMPLE_MODEL)
    return bnnhw.load_model(shared_file("bnn-pynq", f"{model}.npz"))


def other_images(model, net, n, seed):
    """n images for `model`: real ones first (CIFAR-10 vectors for CNV, MNIST vectors for LFC,
    held-out digits for the example), then random bytes."""
    rng = np.random.default_rng(seed)
    if model == "digits_bnn":
        from bnnhw.examples import digits_split
        real = digits_split()[2]
    elif model.startswith("cnv"):
        vec = np.load(shared_file("bnn-pynq", "vectors", "vectors_cnvW1A1_cifar10.npz"))
        real = np.moveaxis(vec["images_hwc_u8"], -1, 1)
    else:
        vec = np.load(shared_file("bnn-pynq", "vectors", "vectors_lfcW1A1_mnist.npz"))
        real = vec["images_u8"]
    real = real[rng.permutation(len(real))[:n - n // 2]].reshape(-1, *net.input_shape)
    noise = rng.integers(0, 256, (n - len(real), *net.input_shape), dtype=np.uint8)
    return np.concatenate([real.astype(np.uint8), noise])


@pytest.fixture(scope="module")
def other_nets():
    return {m: load_other(m) for m in OTHER_MODELS}


@pytest.mark.parametrize("config", ["host-neon", "aarch64"])
@pytest.mark.parametrize("model", OTHER_MODELS)
def test_other_models(config, model, other_nets, fw_root):
    """Street View and road-sign CNVs, the merged-characters LFC and bnnhw's digits example."""
    net = other_nets[model]
    x = other_images(model, net, 20 if model == "digits_bnn" else 4, seed=3)
    expected = golden.forward(net, x)
    assert len({tuple(r) for r in expected}) > 1, "degenerate test images"
    assert_scores(fw_run(net, x, config, fw_root / config), expected,
                  f"{model} on {len(x)} images ({config})")


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("model", OTHER_MODELS)
def test_other_models_sweep(config, model, other_nets, fw_root):
    net = other_nets[model]
    n = 360 if model == "digits_bnn" else 32 if model.startswith("cnv") else 200
    x = other_images(model, net, n, seed=4)
    assert_scores(fw_run(net, x, config, fw_root / config), golden.forward(net, x),
                  f"{model} on {len(x)} images ({config})")
    if model == "digits_bnn":
        from bnnhw.examples import digits_split
        x, _, xt, yt = digits_split()
        got = fw_run(net, xt, config, fw_root / config)
        assert_scores(got, golden.forward(net, xt), f"digits held-out set ({config})")


def check_random_network(config, which, fw_root, seeds):
    for seed in seeds:
        net = random_networks(seed)[which]
        x = random_images(net, 6, seed)
        expected = golden.forward(net, x)
        got = fw_run(net, x, config, fw_root / config, tag=f"-{seed}")
        assert_scores(got, expected, f"{net.name} seed {seed} ({config})")
        if CONFIGS[config][1] == "neon":
            # the NEON build also holds the scalar twin: same scores
            got = fw_run(net, x, config, fw_root / config, tag=f"-{seed}", kernel="scalar")
            assert_scores(got, expected, f"{net.name} seed {seed} ({config}, scalar kernels)")


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("which", range(4))
def test_random_networks(config, which, fw_root):
    check_random_network(config, which, fw_root, (11,))


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("which", range(4))
def test_random_networks_sweep(config, which, fw_root):
    check_random_network(config, which, fw_root, range(30, 36))


def test_host_default_is_the_fastest_path(lfc, fw_root, monkeypatch):
    """Without -k the runner uses the fastest path the CPU runs (the first of its list), and
    BNNHW_KERNEL forces another one; an unknown or unsupported name is a one-line error."""
    root = fw_root / "host-neon"
    monkeypatch.delenv("BNNHW_KERNEL", raising=False)
    kernels = host_kernels(lfc, root)
    assert fw.chosen_kernel(lfc, build_dir=root / lfc.name) == kernels[0]
    for k in kernels:
        monkeypatch.setenv("BNNHW_KERNEL", k)
        assert fw.chosen_kernel(lfc, build_dir=root / lfc.name) == k
    monkeypatch.setenv("BNNHW_KERNEL", "avx1024")
    with pytest.raises(fw.ToolError, match="BNNHW_KERNEL must be auto, scalar, .* not 'avx1024'"):
        fw.chosen_kernel(lfc, build_dir=root / lfc.name)
    monkeypatch.delenv("BNNHW_KERNEL")
    scalar_root = fw_root / "host-scalar"
    assert fw.chosen_kernel(lfc, impl="scalar", build_dir=scalar_root / lfc.name) == "scalar"
    with pytest.raises(fw.ToolError, match="kernel avx2: not available in this build"):
        fw.chosen_kernel(lfc, impl="scalar", kernel="avx2", build_dir=scalar_root / lfc.name)


@pytest.mark.parametrize("model", ["lfc", "cnv", "random", "others"])
def test_every_host_kernel_path(model, lfc, cnv, mnist_batch, cnv_batch, other_nets, fw_root):
    """Whole networks through every kernel path of the host build (scalar, NEON through SIMDe
    and each x86 path this CPU has), each forced with -k: the scores equal the golden model's.
    Prints the paths it ran; fails (never skips) when the CPU has an x86 path the build lacks."""
    root = fw_root / "host-neon"
    if model == "lfc":
        images, expected = mnist_batch
        cases = [(lfc, images[:300], expected[:300], "")]
    elif model == "cnv":
        x, expected = cnv_batch
        cases = [(cnv, x, expected, "")]
    elif model == "random":
        cases = []
        for seed in (11, 12):
            for net in random_networks(seed):
                xi = random_images(net, 6, seed)
                cases.append((net, xi, golden.forward(net, xi), f"-{seed}"))
    else:
        cases = []
        for name, net in other_nets.items():
            xi = other_images(name, net, 20 if name == "digits_bnn" else 4, seed=6)
            cases.append((net, xi, golden.forward(net, xi), ""))
    ran = set()
    for net, x, expected, tag in cases:
        for kernel in host_kernels(net, root, tag):
            got = fw_run(net, x, "host-neon", root, tag=tag, kernel=kernel)
            assert_scores(got, expected, f"{net.name} on {len(x)} images (host, {kernel})")
            ran.add(kernel)
    print(f"{model}: kernel paths run {sorted(ran)}")
    assert {"scalar", "neon"} <= ran


def test_random_networks_are_not_trivial():
    """The random networks' scores vary between images (the thresholds are not degenerate)."""
    for net in random_networks(11):
        scores = golden.forward(net, random_images(net, 6, 11))
        assert len({tuple(s) for s in scores}) > 1, net.name


@pytest.mark.parametrize("config", ["host-neon", "aarch64"])
def test_one_corrupted_score_bit_fails(lfc, mnist_batch, fw_root, config):
    images, expected = mnist_batch
    got = fw_run(lfc, images[:20], config, fw_root / config)
    assert_scores(got, expected[:20], "reference")
    corrupted = expected[:20].copy()
    corrupted[3, 4] ^= 1
    with pytest.raises(AssertionError, match="1 scores differ"):
        assert_scores(got, corrupted, "corrupted")
    corrupted = expected[:20].copy()
    corrupted[-1, -1] ^= 1 << 40                     # a high bit of the last score
    with pytest.raises(AssertionError, match="1 scores differ"):
        assert_scores(got, corrupted, "corrupted")


@pytest.mark.parametrize("model", OTHER_MODELS)
def test_other_models_one_corrupted_score_bit_fails(model, other_nets, fw_root):
    """The same sharpness on the models added above (AArch64 under qemu)."""
    net = other_nets[model]
    x = other_images(model, net, 3, seed=5)
    expected = golden.forward(net, x)
    got = fw_run(net, x, "aarch64", fw_root / "aarch64")
    assert_scores(got, expected, "reference")
    corrupted = expected.copy()
    corrupted[1, net.num_classes // 2] ^= 1
    with pytest.raises(AssertionError, match="1 scores differ"):
        assert_scores(got, corrupted, "corrupted")


def test_sanitizers_whole_networks(lfc, cnv, mnist_batch, cnv_batch, fw_root):
    """ASan + UBSan host build: real and random networks, on every kernel path of the build (NEON
    through SIMDe, scalar and the x86 paths this CPU runs)."""
    root = fw_root / "san"
    images, expected = mnist_batch
    x, cexp = cnv_batch
    runner = fw.generate(lfc, root / "lfc", sanitize=True)
    kernels = fw.runner_kernels(runner)
    check_host_paths(kernels, "the sanitized host runner")
    for kernel in kernels:
        PATHS_RUN[("host-neon-san", "networks")].add(kernel)
        got = fw.run(lfc, images[:30], build_dir=root / "lfc", sanitize=True, kernel=kernel)
        assert_scores(got, expected[:30], f"LFC sanitized ({kernel})")
        got = fw.run(cnv, x[:1], build_dir=root / "cnv", sanitize=True, kernel=kernel)
        assert_scores(got, cexp[:1], f"CNV sanitized ({kernel})")
        for net in random_networks(13):
            xi = random_images(net, 3, 13)
            got = fw.run(net, xi, build_dir=root / net.name, sanitize=True, kernel=kernel)
            assert_scores(got, golden.forward(net, xi), f"{net.name} sanitized ({kernel})")
