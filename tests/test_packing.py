import numpy as np
import pytest

from bnnhw.model import packing


@pytest.mark.parametrize("word_bits", [8, 16, 32, 64])
@pytest.mark.parametrize("n", [1, 7, 8, 63, 64, 65, 200])
def test_round_trip(word_bits, n):
    rng = np.random.default_rng(n * word_bits)
    bits = rng.integers(0, 2, (3, 5, n), dtype=np.uint8)
    packed = packing.pack_bits(bits, word_bits)
    assert packed.dtype == packing.WORD_DTYPES[word_bits]
    assert packed.shape == (3, 5, packing.words_for(n, word_bits))
    assert np.array_equal(packing.unpack_bits(packed, n), bits)


@pytest.mark.parametrize("word_bits", [8, 16, 32, 64])
def test_one_hot_probes(word_bits):
    # Element i must land at bit i % word_bits of word i // word_bits, and nowhere else.
    n = 2 * word_bits + 3
    for i in range(n):
        bits = np.zeros(n, np.uint8)
        bits[i] = 1
        packed = packing.pack_bits(bits, word_bits)
        expected = np.zeros(packing.words_for(n, word_bits), dtype=object)
        expected[i // word_bits] = 1 << (i % word_bits)
        assert [int(v) for v in packed] == list(expected)
        assert packing.bits_to_int(bits) == 1 << i
        assert np.array_equal(packing.int_to_bits(1 << i, n), bits)


def test_words_are_little_endian_views_of_bytes():
    bits = np.random.default_rng(0).integers(0, 2, 128, dtype=np.uint8)
    as_bytes = packing.pack_bits(bits, 8)
    as_words = packing.pack_bits(bits, 64)
    assert as_words.astype("<u8").tobytes() == as_bytes.tobytes()


def test_padding_bits_are_zero():
    packed = packing.pack_bits(np.ones(5, np.uint8), 64)
    assert int(packed[0]) == 0b11111


def test_feature_map_channels_innermost():
    # One-hot in channel c of pixel (h, w) -> word (h, w), bit c.
    fm = np.zeros((1, 70, 2, 3), np.uint8)
    fm[0, 66, 1, 2] = 1
    packed = packing.pack_feature_map(fm, 64)
    assert packed.shape == (1, 2, 3, 2)
    nz = np.argwhere(packed)
    assert nz.tolist() == [[0, 1, 2, 1]]
    assert int(packed[0, 1, 2, 1]) == 1 << 2
    assert np.array_equal(packing.unpack_feature_map(packed, 70), fm)


def test_pm1_mapping():
    assert packing.to_bits([1, -1, 1]).tolist() == [1, 0, 1]
    assert packing.to_pm1([1, 0]).tolist() == [1, -1]
    with pytest.raises(ValueError, match=r"binary values must be \+1 or -1, not 0"):
        packing.to_bits([1, 0])
