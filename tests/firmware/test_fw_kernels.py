"""Every firmware kernel, on every kernel path of every target, against independent references.

Targets: host scalar, host NEON through SIMDe + the x86 AVX2 / AVX-512 paths this CPU runs
(fixtures fail when the CPU has one the build does not offer), AArch64 and ARMv7 under qemu-user. Expected
values come from bnnhw.model.packing (the bit convention) and NumPy references written here.
"""

import numpy as np
import pytest

from bnnhw.model.packing import pack_bits, pack_feature_map, to_bits, unpack_bits

from fw_helpers import (BITS, CONFIGS, INT8, INT32, KERNEL_NAMES, OP_BCONV, OP_FLATTEN, OP_MBCONV,
                        OP_PACK_CONV_W, OP_PACK_DENSE_W, OP_PACK_FM, OP_POOL, OP_QUANT,
                        OP_SCORES, HarnessError, ref_binary_conv, ref_conv_int, ref_threshold)

pytestmark = pytest.mark.firmware


def assert_same(got, expected, what):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    bad = np.argwhere(got != expected)
    assert bad.size == 0, (f"{what}: {len(bad)} mismatches, first at {tuple(bad[0])}: "
                           f"{got[tuple(bad[0])]} != {expected[tuple(bad[0])]}")


def words(data):
    return np.frombuffer(data, "<u8")


@pytest.fixture(params=list(CONFIGS))
def harness(request, harnesses):
    return harnesses[request.param]


# -- packing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("h,w,c", [(1, 1, 1), (2, 3, 63), (3, 2, 64), (2, 2, 65), (1, 3, 130),
                                   (4, 4, 256), (2, 2, 48), (2, 3, 80), (1, 2, 16)])
def test_pack_feature_map(harness, tmp_path, h, w, c):
    for impl in harness.impls:
        assert_same(*pack_fm_case(harness, impl, tmp_path, h, w, c),
                    f"packed feature map (path {KERNEL_NAMES[impl]})")


def pack_fm_case(harness, impl, tmp_path, h, w, c):
    """(firmware output, expected words) of packing one byte feature map."""
    rng = np.random.default_rng(h * 1000 + c)
    bits = (rng.random((h, w, c)) < 0.5).astype(np.uint8)
    expected = pack_feature_map(np.moveaxis(bits, -1, 0)[None], 64)[0]   # [H, W, words]
    bytes_ = bits * rng.integers(1, 256, bits.shape).astype(np.uint8)    # any nonzero is +1
    got = harness.call(OP_PACK_FM, impl, [h, w, c], [bytes_], tmp_path)
    return words(got), expected.reshape(-1)


@pytest.mark.parametrize("oc,c,kh,kw", [(1, 1, 1, 1), (3, 64, 3, 3), (5, 65, 3, 3),
                                        (2, 130, 1, 1), (4, 3, 2, 3)])
def test_pack_conv_weights(harness, tmp_path, oc, c, kh, kw):
    rng = np.random.default_rng(oc + c)
    w = np.where(rng.random((oc, c, kh, kw)) < 0.5, 1, -1).astype(np.int8)
    got = harness.call(OP_PACK_CONV_W, 0, [oc, c, kh, kw], [w], tmp_path)
    expected = pack_bits(np.moveaxis(to_bits(w), 1, -1), 64)      # [oc, kh, kw, words]
    assert_same(words(got), expected.reshape(-1), "packed conv weights")


@pytest.mark.parametrize("oc,k", [(1, 1), (3, 64), (10, 784), (2, 1025)])
def test_pack_dense_weights(harness, tmp_path, oc, k):
    rng = np.random.default_rng(k)
    w = np.where(rng.random((oc, k)) < 0.5, 1, -1).astype(np.int8)
    got = harness.call(OP_PACK_DENSE_W, 0, [oc, k], [w], tmp_path)
    assert_same(words(got), pack_bits(to_bits(w), 64).reshape(-1), "packed dense weights")


@pytest.mark.parametrize("h,w,c", [(2, 3, 20), (1, 1, 100), (3, 3, 64), (2, 2, 1)])
def test_flatten(harness, tmp_path, h, w, c):
    rng = np.random.default_rng(c)
    bits = (rng.random((h, w, c)) < 0.5).astype(np.uint8)
    packed = pack_feature_map(np.moveaxis(bits, -1, 0)[None], 64)[0]
    got = harness.call(OP_FLATTEN, 0, [h, w, c], [packed], tmp_path)
    assert_same(words(got), pack_bits(bits.reshape(-1), 64), "flattened bits (HWC order)")


@pytest.mark.parametrize("c,h,w,thr,flat", [(1, 28, 28, 128, 1), (1, 5, 7, 37, 1),
                                            (3, 4, 5, 100, 0), (3, 4, 5, 100, 1),
                                            (1, 3, 5, 0, 1), (1, 4, 4, 256, 1),
                                            (1, 5, 7, 200, 0)])
def test_quantize_and_pack(harness, tmp_path, c, h, w, thr, flat):
    for impl in harness.impls:
        assert_same(*quant_case(harness, impl, tmp_path, c, h, w, thr, flat),
                    f"quantized input (path {KERNEL_NAMES[impl]})")


def quant_case(harness, impl, tmp_path, c, h, w, thr, flat):
    """(firmware output, expected words) of quantizing and packing raw bytes."""
    rng = np.random.default_rng(thr + c)
    raw = rng.integers(0, 256, (c, h, w), dtype=np.uint8)
    raw.flat[:3] = [thr - 1 if thr else 0, min(thr, 255), 255]      # the boundary itself
    bits = (raw >= thr).astype(np.uint8)
    got = harness.call(OP_QUANT, impl, [c, h, w, thr, flat], [raw], tmp_path)
    hwc = np.moveaxis(bits, 0, -1)
    expected = pack_bits(hwc.reshape(-1), 64) if flat else \
        pack_feature_map(bits[None], 64)[0].reshape(-1)
    return words(got), expected


# -- binary convolution ---------------------------------------------------------------------------

# c, h, w, oc, kh, kw, stride, pad, pad_value, mode, sat, clip
BCONV_CASES = [
    (64, 6, 7, 64, 3, 3, 1, 1, 1, BITS, 0, 0),      # the reference layer's shape, small map
    (64, 5, 5, 16, 3, 3, 1, 1, -1, BITS, 0, 0),
    (1, 5, 6, 3, 3, 3, 1, 0, 1, BITS, 0, 0),
    (3, 7, 5, 17, 3, 3, 2, 1, -1, BITS, 0, 0),      # stride 2, odd channel count
    (65, 4, 4, 20, 3, 3, 1, 1, 1, BITS, 0, 0),
    (128, 4, 5, 32, 3, 3, 2, 1, 1, BITS, 0, 0),     # window of 18 words
    (130, 3, 3, 10, 1, 1, 1, 0, 1, BITS, 0, 0),
    (256, 3, 3, 70, 3, 3, 1, 0, 1, BITS, 0, 0),     # window of 36 words, 5 groups
    (64, 4, 4, 33, 1, 1, 2, 0, 1, BITS, 0, 0),      # 1x1 stride 2
    (32, 5, 4, 16, 3, 3, 1, 2, -1, BITS, 0, 0),     # padding 2
    (784, 1, 1, 24, 1, 1, 1, 0, 1, BITS, 0, 0),     # LFC-like dense
    (100, 1, 1, 10, 1, 1, 1, 0, 1, INT32, 0, 0),    # dense scores
    (64, 5, 5, 16, 3, 3, 1, 1, -1, INT8, 0, 50),    # clipping block to int8
    (64, 4, 4, 19, 3, 3, 2, 1, 1, INT8, 0, 127),
    (32, 4, 4, 16, 2, 3, 1, 1, 1, INT32, 127, 0),   # saturating accumulator, 2x3 kernel
    (57, 4, 4, 16, 3, 3, 1, 1, 1, BITS, 255, 0),    # saturation folded into thresholds
    (20, 3, 3, 18, 3, 3, 1, 1, -1, INT32, 63, 9),   # saturation and clip
    (64, 6, 7, 80, 3, 3, 1, 1, -1, BITS, 0, 0),     # pixel pairs, 4 + 1 groups
    (32, 9, 10, 128, 3, 3, 2, 1, 1, BITS, 0, 0),    # pixel pairs with stride 2, 8 groups
    # x86 blocks: byte counters widened every 31 words (62, 63 words), 1 half, 5-pixel rows
    (3968, 1, 1, 9, 1, 1, 1, 0, 1, BITS, 0, 0),     # dense, 62 words
    (4032, 1, 1, 24, 1, 1, 1, 0, -1, INT32, 0, 0),  # dense, 63 words
    (448, 3, 5, 8, 3, 3, 1, 1, 1, INT8, 0, 100),    # 3x3, 63 words, one half of channels
    (64, 7, 9, 48, 3, 3, 1, 1, 1, BITS, 0, 0),      # 9 pixels per row: blocks of 4, then 1
    # AArch64 2x2 blocks (3x3, C <= 64, stride 1, 64-channel blocks): odd last row and column,
    # an even and an odd number of blocks per row, several channel blocks, padding channels
    (64, 7, 9, 128, 3, 3, 1, 1, -1, BITS, 0, 0),
    (50, 8, 12, 50, 3, 3, 1, 0, 1, BITS, 0, 0),
    (64, 4, 4, 192, 3, 3, 1, 1, 1, BITS, 0, 0),
]


def _bconv_data(case, seed, pattern="random"):
    c, h, w, oc, kh, kw, stride, pad, pad_value, mode, sat, clip = case
    rng = np.random.default_rng(seed)
    if pattern == "ones":
        bits = np.ones((h, w, c), np.uint8)
    elif pattern == "zeros":
        bits = np.zeros((h, w, c), np.uint8)
    else:
        bits = (rng.random((h, w, c)) < 0.5).astype(np.uint8)
    wt = np.where(rng.random((oc, c, kh, kw)) < 0.5, 1, -1).astype(np.int8)
    if pattern == "ones":
        wt[0] = 1                                     # y = K exactly on channel 0
    y = ref_binary_conv(bits, wt, stride, pad, pad_value, sat)
    k = c * kh * kw
    # thresholds: half taken from values that occur (ties), the rest anywhere, some far out
    t = rng.integers(-k - 3, k + 4, oc)
    flat = y.reshape(-1, oc)
    pick = rng.random(oc) < 0.5
    t[pick] = flat[rng.integers(0, flat.shape[0], oc), np.arange(oc)][pick]
    t[rng.random(oc) < 0.1] = 10 ** 6
    t[rng.random(oc) < 0.1] = -(10 ** 6)
    neg = (rng.random(oc) < 0.4).astype(np.uint8)
    return bits, wt, t, neg, y


def _expected_bconv(case, y, t, neg):
    c, h, w, oc, kh, kw, stride, pad, pad_value, mode, sat, clip = case
    if mode == BITS:
        return pack_bits(ref_threshold(y, t, neg), 64).reshape(-1)
    z = np.clip(y, -clip, clip) if clip else y
    return z.reshape(-1)


def _run_bconv(harness, impl, case, bits, wt, t, neg, tmp_path):
    c, h, w, oc, kh, kw, stride, pad, pad_value, mode, sat, clip = case
    packed = pack_feature_map(np.moveaxis(bits, -1, 0)[None], 64)[0]
    wpacked = pack_bits(np.moveaxis(to_bits(wt), 1, -1), 64)
    t32 = np.clip(t, -2 ** 31, 2 ** 31 - 1).astype("<i4")
    out = harness.call(OP_BCONV, impl, list(case), [packed, wpacked, t32, neg], tmp_path)
    dtype = {BITS: "<u8", INT8: "i1", INT32: "<i4"}[mode]
    return np.frombuffer(out, dtype)


@pytest.mark.parametrize("case", BCONV_CASES, ids=lambda c: "x".join(map(str, c)))
def test_binary_conv(harness, tmp_path, case):
    for seed, pattern in ((1, "random"), (2, "random"), (3, "ones"), (4, "zeros")):
        bits, wt, t, neg, y = _bconv_data(case, seed, pattern)
        expected = _expected_bconv(case, y, t, neg)
        for impl in harness.impls:
            got = _run_bconv(harness, impl, case, bits, wt, t, neg, tmp_path)
            assert_same(got, expected.astype(got.dtype), f"{pattern} data, path {KERNEL_NAMES[impl]}")


@pytest.mark.parametrize("config,extra", [
    ("aarch64", "-DBNN_NO_ASM"),        # intrinsics only (no inline-assembly 3x3 blocks)
    ("aarch64", "-DBNN_NO_QUADS"),      # 3x3 in pixel pairs instead of 2x2 blocks
    ("aarch64", "-DBNN_ACC32"),         # ablation: 32-bit accumulators
    ("host-neon", "-DBNN_ACC32"),
    ("host-neon", "-DBNN_FORCE_V7"),    # ARMv7 code paths (pairwise adds) through SIMDe
])
def test_binary_conv_variants(fw_root, tmp_path, config, extra):
    """Compile-time variants give the same bits (paper 1's ablation must not change results)."""
    from fw_helpers import build_harness
    harness = build_harness(config, fw_root / "variants", extra=extra)
    for case in (BCONV_CASES[0], BCONV_CASES[3], BCONV_CASES[7], BCONV_CASES[12],
                 BCONV_CASES[14], BCONV_CASES[18], BCONV_CASES[-1]):
        bits, wt, t, neg, y = _bconv_data(case, 6)
        expected = _expected_bconv(case, y, t, neg)
        got = _run_bconv(harness, 1, case, bits, wt, t, neg, tmp_path)
        assert_same(got, expected.astype(got.dtype), f"{config} {extra}")


def test_binary_conv_one_corrupted_bit_fails(harnesses, tmp_path):
    """The comparison is sharp: one flipped expected bit must be caught."""
    case = BCONV_CASES[0]
    bits, wt, t, neg, y = _bconv_data(case, 1)
    expected = _expected_bconv(case, y, t, neg)
    got = _run_bconv(harnesses["host-neon"], 1, case, bits, wt, t, neg, tmp_path)
    assert_same(got, expected, "reference")
    corrupted = expected.copy()
    corrupted[5] ^= np.uint64(1) << np.uint64(17)
    with pytest.raises(AssertionError, match="1 mismatches"):
        assert_same(got, corrupted, "corrupted")


@pytest.mark.parametrize("params,message", [
    ([64, 4, 4, 8, 3, 3, 1, 1, 0, BITS, 0, 0], "pad_value must be +1 or -1, not 0"),
    ([8, 2, 2, 8, 3, 3, 1, 0, 1, BITS, 0, 0], "does not fit"),
    ([8, 4, 4, 8, 3, 3, 1, 0, 1, 5, 0, 0], "output mode must be"),
    ([8, 4, 4, 8, 3, 3, 1, 0, 1, INT8, 0, 200], "clip limit in [1, 127], not 200"),
    ([7282, 1, 1, 1, 3, 3, 1, 1, 1, BITS, 0, 0], "K=65538 exceeds"),
])
def test_binary_conv_rejects_bad_parameters(harnesses, tmp_path, params, message):
    c, h, w, oc, kh, kw = params[:6]
    cw = -(-c // 64)
    arrays = [np.zeros(h * w * cw, "<u8"), np.zeros(oc * kh * kw * cw, "<u8"),
              np.zeros(oc, "<i4"), np.zeros(oc, np.uint8)]
    with pytest.raises(HarnessError) as err:
        harnesses["host-scalar"].call(OP_BCONV, 0, params, arrays, tmp_path)
    assert message in str(err.value)


# -- multi-bit first layer --------------------------------------------------------------------

# c, h, w, oc, kh, kw, stride, pad, pad_value, mode
MBCONV_CASES = [
    (3, 8, 8, 16, 3, 3, 1, 0, 0, BITS),             # CNV's conv0 shape, small
    (3, 7, 6, 20, 3, 3, 2, 1, -5, BITS),
    (1, 5, 5, 3, 1, 1, 1, 0, 0, BITS),
    (8, 4, 4, 64, 3, 3, 1, 1, 127, BITS),
    (200, 3, 3, 4, 3, 3, 1, 1, -128, BITS),         # K = 1800: several int16 chunks
    (3, 6, 6, 10, 3, 3, 1, 1, 0, INT32),
]


@pytest.mark.parametrize("case", MBCONV_CASES, ids=lambda c: "x".join(map(str, c)))
def test_multibit_conv(harness, tmp_path, case):
    for seed in (1, 2, 3):
        for impl in harness.impls:
            assert_same(*mbconv_case(harness, impl, tmp_path, case, seed),
                        f"seed {seed}, path {KERNEL_NAMES[impl]}")


def mbconv_case(harness, impl, tmp_path, case, seed):
    """(firmware output, expected values) of one multi-bit convolution."""
    c, h, w, oc, kh, kw, stride, pad, pad_value, mode = case
    rng = np.random.default_rng(seed)
    codes = rng.integers(-128, 128, (h, w, c)).astype(np.int8)
    if seed == 3:
        codes[:] = -128                           # extreme codes: |y| = 128 K
    wt = np.where(rng.random((oc, c, kh, kw)) < 0.5, 1, -1).astype(np.int8)
    if seed == 3:
        wt[0] = -1
    y = ref_conv_int(codes.astype(np.int64), wt, stride, pad, pad_value)
    k = c * kh * kw
    t = rng.integers(-128 * k - 2, 128 * k + 3, oc)
    flat = y.reshape(-1, oc)
    pick = rng.random(oc) < 0.6
    # values that occur, and their neighbours: a sum off by one must change a bit
    t[pick] = (flat[rng.integers(0, flat.shape[0], oc), np.arange(oc)]
               + rng.integers(-1, 2, oc))[pick]
    neg = (rng.random(oc) < 0.4).astype(np.uint8)
    expected = pack_bits(ref_threshold(y, t, neg), 64).reshape(-1) if mode == BITS \
        else y.reshape(-1)
    out = harness.call(OP_MBCONV, impl, list(case), [codes, wt, t.astype("<i4"), neg], tmp_path)
    got = np.frombuffer(out, "<u8" if mode == BITS else "<i4")
    return got, expected.astype(got.dtype)


# -- pooling and scores ---------------------------------------------------------------------

@pytest.mark.parametrize("h,w,c,k,s", [(4, 4, 64, 2, 2), (5, 5, 130, 2, 2), (6, 7, 3, 3, 2),
                                       (3, 3, 200, 3, 1), (28, 28, 64, 2, 2)])
def test_maxpool(harness, tmp_path, h, w, c, k, s):
    for impl in harness.impls:
        assert_same(*pool_case(harness, impl, tmp_path, h, w, c, k, s), f"OR pool, path {KERNEL_NAMES[impl]}")


def pool_case(harness, impl, tmp_path, h, w, c, k, s, seed=None):
    """(firmware output, expected words) of one OR max-pool."""
    rng = np.random.default_rng(h + c if seed is None else seed)
    bits = (rng.random((h, w, c)) < 0.3).astype(np.uint8)
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    ref = np.zeros((ho, wo, c), np.uint8)
    for oy in range(ho):
        for ox in range(wo):
            ref[oy, ox] = bits[oy * s:oy * s + k, ox * s:ox * s + k].max(axis=(0, 1))
    packed = pack_feature_map(np.moveaxis(bits, -1, 0)[None], 64)[0]
    got = harness.call(OP_POOL, impl, [h, w, c, k, s], [packed], tmp_path)
    return words(got), pack_feature_map(np.moveaxis(ref, -1, 0)[None], 64)[0].reshape(-1)


@pytest.mark.parametrize("rule", [0, 1, 2])
def test_scores(harness, tmp_path, rule):
    assert_same(*scores_case(harness, tmp_path, rule), "scores")


def scores_case(harness, tmp_path, rule):
    """(firmware output, expected int64 scores) of one scoring rule (popcount, y, margins)."""
    rng = np.random.default_rng(rule)
    n, k = 12, 99
    y = (2 * rng.integers(0, k + 1, n) - k).astype("<i4")
    t = rng.integers(-(2 ** 40), 2 ** 40, n).astype("<i8")
    t[:4] = [0, -1, k, -k]
    neg = (rng.random(n) < 0.5).astype(np.uint8)
    got = np.frombuffer(harness.call(OP_SCORES, 0, [rule, n, k], [y, t, neg], tmp_path), "<i8")
    y64 = y.astype(np.int64)
    expected = {0: (y64 + k) // 2, 1: y64, 2: np.where(neg == 1, t - y64, y64 - t)}[rule]
    return got, expected


def flip_one_bit(expected, seed):
    """A copy of `expected` with exactly one bit flipped (chosen by `seed`, anywhere)."""
    corrupted = np.array(expected, copy=True)
    raw = corrupted.reshape(-1).view(np.uint8)
    bit = int(np.random.default_rng(seed).integers(0, raw.size * 8))
    raw[bit // 8] ^= np.uint8(1 << (bit % 8))
    assert np.unpackbits((corrupted.reshape(-1).view(np.uint8)
                          ^ np.asarray(expected).reshape(-1).view(np.uint8))).sum() == 1
    return corrupted


#: one case of every kernel test's comparison path: name -> (got, expected) for (harness, impl)
CORRUPTION_CASES = {
    "binary conv": lambda h, i, p: _bconv_pair(h, i, BCONV_CASES[0], p),
    "binary conv int8": lambda h, i, p: _bconv_pair(h, i, BCONV_CASES[12], p),
    "binary conv 2x2 blocks": lambda h, i, p: _bconv_pair(h, i, BCONV_CASES[-3], p),
    "multibit conv": lambda h, i, p: mbconv_case(h, i, p, MBCONV_CASES[1], 1),
    "multibit conv int32": lambda h, i, p: mbconv_case(h, i, p, MBCONV_CASES[5], 1),
    "maxpool": lambda h, i, p: pool_case(h, i, p, 5, 5, 130, 2, 2),
    "pack feature map": lambda h, i, p: pack_fm_case(h, i, p, 2, 2, 65),
    "quantize and pack": lambda h, i, p: quant_case(h, i, p, 3, 4, 5, 100, 0),
    "scores": lambda h, i, p: scores_case(h, p, 2),
}


def _bconv_pair(harness, impl, case, tmp_path):
    bits, wt, t, neg, y = _bconv_data(case, 1)
    got = _run_bconv(harness, impl, case, bits, wt, t, neg, tmp_path)
    return got, _expected_bconv(case, y, t, neg).astype(got.dtype)


@pytest.mark.parametrize("config", ["host-neon", "aarch64"])
@pytest.mark.parametrize("kind", list(CORRUPTION_CASES))
def test_kernel_one_corrupted_bit_fails(harnesses, tmp_path, config, kind):
    """Every kernel test's comparison is sharp: the firmware output equals the reference, and
    one flipped bit anywhere in the reference is caught (host: every SIMD path this CPU runs,
    NEON through SIMDe and the x86 ones; AArch64 under qemu: NEON)."""
    harness = harnesses[config]
    impls = [0] if kind == "scores" else [i for i in harness.impls if i]
    for impl in impls:
        got, expected = CORRUPTION_CASES[kind](harness, impl, tmp_path)
        assert_same(got, expected, f"{kind} ({config}, path {KERNEL_NAMES[impl]})")
        for seed in range(3):
            with pytest.raises(AssertionError, match=r": 1 mismatches"):
                assert_same(got, flip_one_bit(expected, seed), f"{kind} corrupted")


def test_host_kernel_paths(harnesses, san_harness):
    """The host SIMD build runs every x86 path this CPU has (compared with /proc/cpuinfo, not
    with the firmware's own CPUID check), plus the scalar twin and NEON through SIMDe; the
    scalar build only the twin. Prints the paths."""
    from fw_helpers import check_host_paths
    for h in (harnesses["host-neon"], san_harness):
        check_host_paths(h.kernels, h.name)
        assert {"scalar", "neon"} <= set(h.kernels)
        print(f"{h.name}: kernel paths {' '.join(h.kernels)}")
    assert harnesses["host-scalar"].kernels == ["scalar"]
    assert harnesses["aarch64"].kernels == ["neon", "scalar"]


def test_kernels_under_sanitizers(san_harness, tmp_path):
    """ASan + UBSan: every kernel on a few shapes, on every path of the host build (scalar, NEON
    through SIMDe, the x86 paths this CPU runs)."""
    for case in (BCONV_CASES[0], BCONV_CASES[3], BCONV_CASES[7], BCONV_CASES[12],
                 BCONV_CASES[16], BCONV_CASES[-3], BCONV_CASES[-1]):
        bits, wt, t, neg, y = _bconv_data(case, 5)
        expected = _expected_bconv(case, y, t, neg)
        for impl in san_harness.impls:
            got = _run_bconv(san_harness, impl, case, bits, wt, t, neg, tmp_path)
            assert_same(got, expected.astype(got.dtype), f"sanitized path {KERNEL_NAMES[impl]}")
    codes = np.random.default_rng(0).integers(-128, 128, (6, 7, 3)).astype(np.int8)
    wt = np.where(np.random.default_rng(1).random((20, 3, 3, 3)) < 0.5, 1, -1).astype(np.int8)
    y = ref_conv_int(codes.astype(np.int64), wt, 2, 1, -5)
    t, neg = np.zeros(20, "<i4"), np.zeros(20, np.uint8)
    for impl in san_harness.impls:
        out = san_harness.call(OP_MBCONV, impl, [3, 6, 7, 20, 3, 3, 2, 1, -5, BITS],
                               [codes, wt, t, neg], tmp_path)
        assert_same(words(out), pack_bits((y >= 0).astype(np.uint8), 64).reshape(-1), "mb")
        for shape in ((5, 5, 130, 2, 2), (6, 7, 3, 3, 2)):
            assert_same(*pool_case(san_harness, impl, tmp_path, *shape, seed=2),
                        f"sanitized pool {shape}, path {KERNEL_NAMES[impl]}")
        for args in ((1, 5, 7, 100, 1), (3, 4, 5, 100, 0), (1, 28, 28, 128, 1)):
            assert_same(*quant_case(san_harness, impl, tmp_path, *args),
                        f"sanitized quantize {args}, path {KERNEL_NAMES[impl]}")
        assert_same(*pack_fm_case(san_harness, impl, tmp_path, 2, 2, 65),
                    f"sanitized packing, path {KERNEL_NAMES[impl]}")
    for rule in (0, 1, 2):
        assert_same(*scores_case(san_harness, tmp_path, rule), f"sanitized scores {rule}")
