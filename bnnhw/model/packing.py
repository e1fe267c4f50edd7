"""The bit convention: the only place in bnnhw that decides how binary values become bits.

SPEC §1, decided once here and used by the golden model, the hardware generator, the cocotb
drivers and the firmware headers:

* A binary value is +1 or -1; as a bit, **1 means +1 and 0 means -1**.
* Element ``i`` of a vector sits at bit ``i`` (LSB first). Packed words are little-endian in
  memory, so a vector packed into bytes is the same byte string as the same vector packed into
  16-, 32- or 64-bit words: every word size is a view of :func:`pack_bits`' bytes.
* Feature maps are packed per pixel in HWC order: the channels of one pixel are the innermost
  dimension and share words.
* Padding bits (from the last element up to the end of the last word) are **0** in activations
  and weights alike. Then ``XOR`` of two padded vectors has no bit set in the padding, and the
  XNOR popcount over the ``n`` real positions is ``n - popcount(x XOR w)``.

It also owns the element orders and the bus lanes that hardware streams use:

* a convolution's window vector is ``[ky][kx][c]`` (**tap-major**, channels innermost, the
  pixel stream's order; :func:`conv_weight_rows` ``order="hwc"``), or ``[c][ky][kx]``
  (**channel-major**, each input channel's 2-D window contiguous, SPEC §9;
  :func:`channel_major_order`, ``order="chw"``);
* a bus word of ``n`` lanes of ``b`` bits holds lane ``j`` at bits ``[j*b, (j+1)*b)``, signed
  values in two's complement (:func:`pack_fields`, :func:`unpack_fields`);
* the core's input stream carries an image's raw bytes in HWC raster order, byte ``j`` of a
  beat at bits ``[8j, 8j+8)`` (:func:`input_beats`).
"""

import numpy as np

__all__ = [
    "WORD_DTYPES",
    "to_bits",
    "to_pm1",
    "pack_bits",
    "unpack_bits",
    "pack_words",
    "unpack_words",
    "words_for",
    "pack_feature_map",
    "unpack_feature_map",
    "bits_to_int",
    "int_to_bits",
    "pack_fields",
    "unpack_fields",
    "conv_weight_rows",
    "channel_major_order",
    "VECTOR_ORDERS",
    "input_beats",
]

#: NumPy dtype of a packed word, by its width in bits.
WORD_DTYPES = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


def to_bits(values):
    """Map binary values (+1 / -1) to bits (1 / 0).

    Raises :class:`ValueError` if any value is not +1 or -1.
    """
    values = np.asarray(values)
    if values.size and not np.all((values == 1) | (values == -1)):
        bad = values[(values != 1) & (values != -1)].flat[0].item()
        raise ValueError(f"binary values must be +1 or -1, not {bad!r}")
    return (values == 1).astype(np.uint8)


def to_pm1(bits, dtype=np.int8):
    """Map bits (1 / 0, or booleans) to binary values (+1 / -1)."""
    bits = np.asarray(bits)
    return np.where(bits.astype(bool), 1, -1).astype(dtype)


def words_for(n, word_bits=64):
    """Number of ``word_bits``-bit words that hold ``n`` packed elements."""
    return -(-int(n) // int(word_bits))


def pack_bits(bits, word_bits=8):
    """Pack bits along the last axis, LSB first, into ``word_bits``-bit words.

    Parameters
    ----------
    bits : array_like
        Bits (0 / 1 or booleans); the last axis is packed.
    word_bits : int
        8, 16, 32 or 64.

    Returns
    -------
    numpy.ndarray
        ``bits.shape[:-1] + (words_for(n, word_bits),)`` of the unsigned dtype of that width.
        Padding bits are 0.
    """
    if word_bits not in WORD_DTYPES:
        raise ValueError(f"word width must be one of 8, 16, 32, 64, not {word_bits!r}")
    bits = np.asarray(bits)
    n = bits.shape[-1]
    n_words = words_for(n, word_bits)
    n_bytes = n_words * word_bits // 8
    packed = np.packbits(bits.astype(bool), axis=-1, bitorder="little")
    if packed.shape[-1] < n_bytes:
        pad = [(0, 0)] * (packed.ndim - 1) + [(0, n_bytes - packed.shape[-1])]
        packed = np.pad(packed, pad)
    packed = np.ascontiguousarray(packed)
    return packed.view(np.dtype(WORD_DTYPES[word_bits]).newbyteorder("<")).astype(
        WORD_DTYPES[word_bits], copy=False)


def unpack_bits(packed, n):
    """Inverse of :func:`pack_bits`: the first ``n`` bits of each packed row, as uint8 0/1."""
    packed = np.ascontiguousarray(np.asarray(packed))
    as_le = packed.astype(packed.dtype.newbyteorder("<"), copy=False)
    as_bytes = as_le.view(np.uint8).reshape(*packed.shape[:-1], -1)
    return np.unpackbits(as_bytes, axis=-1, count=n, bitorder="little")


def pack_words(bits, word_bits=64):
    """Alias of :func:`pack_bits` with 64-bit words by default (the golden model's word)."""
    return pack_bits(bits, word_bits)


def unpack_words(packed, n):
    """Alias of :func:`unpack_bits`."""
    return unpack_bits(packed, n)


def pack_feature_map(bits_nchw, word_bits=8):
    """Pack a binary feature map ``[N, C, H, W]`` (bits) to ``[N, H, W, words]`` (HWC).

    The channels of one pixel share words: channel ``c`` is bit ``c % word_bits`` of word
    ``c // word_bits``.
    """
    bits_nchw = np.asarray(bits_nchw)
    if bits_nchw.ndim != 4:
        raise ValueError(f"feature map must have shape [N, C, H, W], not {bits_nchw.shape}")
    return pack_bits(np.moveaxis(bits_nchw, 1, -1), word_bits)


def unpack_feature_map(packed_nhwc, channels):
    """Inverse of :func:`pack_feature_map`: ``[N, H, W, words]`` -> bits ``[N, C, H, W]``."""
    return np.moveaxis(unpack_bits(packed_nhwc, channels), -1, 1)


def bits_to_int(bits):
    """A 1-D bit vector as one Python integer (bit ``i`` of the integer is element ``i``).

    This is how a packed vector appears on a hardware bus of ``len(bits)`` wires.
    """
    return int.from_bytes(np.packbits(np.asarray(bits, dtype=bool), bitorder="little").tobytes(),
                          "little")


def int_to_bits(value, n):
    """Inverse of :func:`bits_to_int`: the low ``n`` bits of ``value`` as uint8 0/1."""
    value = int(value)
    if value < 0:
        raise ValueError(f"packed value must be non-negative, not {value}")
    raw = value.to_bytes(words_for(n, 8) if n else 0, "little") if value < (1 << max(n, 0)) \
        else (value & ((1 << n) - 1)).to_bytes(words_for(n, 8), "little")
    return np.unpackbits(np.frombuffer(raw, np.uint8), count=n, bitorder="little")


def pack_fields(values, width):
    """Pack the last axis of ``values`` into bus words: lane ``j`` at bits ``[j*width, ...)``.

    Signed values become two's-complement lanes. Returns a list of Python ints, one per
    vector along the other axes (C order).
    """
    values = np.asarray(values, dtype=np.int64)
    mask = (1 << width) - 1
    flat = values.reshape(-1, values.shape[-1]) & mask
    shifts = [j * width for j in range(values.shape[-1])]
    return [sum(int(v) << sh for v, sh in zip(row, shifts)) for row in flat]


def unpack_fields(words, lanes, width, signed=False):
    """Inverse of :func:`pack_fields`: ``[len(words), lanes]`` int64 lane values."""
    mask = (1 << width) - 1
    out = np.empty((len(words), lanes), np.int64)
    for i, word in enumerate(words):
        word = int(word)
        for j in range(lanes):
            v = (word >> (j * width)) & mask
            if signed and v >> (width - 1):
                v -= 1 << width
            out[i, j] = v
    return out


#: Element orders of a convolution's window vector: ``"hwc"`` ``[ky][kx][c]`` (tap-major,
#: the pixel stream's order) and ``"chw"`` ``[c][ky][kx]`` (channel-major, SPEC §9).
VECTOR_ORDERS = ("hwc", "chw")


def conv_weight_rows(weight, order="hwc"):
    """A layer's weights ``[O, C, kh, kw]`` (or a dense ``[O, K]``) as ``[O, K]`` rows in the
    window vector's element order (see :data:`VECTOR_ORDERS`)."""
    w = np.asarray(weight)
    if order not in VECTOR_ORDERS:
        raise ValueError(f"Vector order must be 'hwc' or 'chw', not {order!r}")
    if w.ndim == 4 and order == "hwc":
        w = w.transpose(0, 2, 3, 1)
    return w.reshape(w.shape[0], -1)


def channel_major_order(kernel, channels):
    """Positions, in the tap-major ``[ky][kx][c]`` vector, of the channel-major elements.

    Element ``j`` of the ``[c][ky][kx]`` vector is element ``order[j]`` of the tap-major one, so
    that channel ``c``'s 2-D window (``kernel * kernel`` elements) is contiguous at
    ``[c*k*k, (c+1)*k*k)``: the per-input-channel 2-D kernels of SPEC §9.
    """
    taps = kernel * kernel
    return [tap * channels + c for c in range(channels) for tap in range(taps)]


def input_beats(raw_nchw, bytes_per_beat, beats_per_image):
    """Raw image bytes as the core's input stream beats.

    The image's bytes are taken in HWC raster order ([H, W, C] flattened); beat ``b`` carries
    bytes ``[b * bytes_per_beat, (b + 1) * bytes_per_beat)``, byte ``j`` of a beat in payload
    bits ``[8j, 8j + 8)``. A last beat that is not full is padded with zero bytes.

    Returns
    -------
    numpy.ndarray of uint8, ``[N, beats_per_image, bytes_per_beat]``

    Raises
    ------
    ValueError
        The image has more bytes than ``beats_per_image`` beats carry.
    """
    raw = np.asarray(raw_nchw, dtype=np.uint8)
    n = raw.shape[0]
    flat = np.moveaxis(raw, 1, -1).reshape(n, -1)   # [N, H*W*C], channels innermost
    total = beats_per_image * bytes_per_beat
    if flat.shape[1] > total:
        raise ValueError(f"core takes {beats_per_image} beats of {bytes_per_beat} bytes per "
                         f"image ({total} bytes), fewer than the image's {flat.shape[1]} bytes")
    padded = np.zeros((n, total), dtype=np.uint8)
    padded[:, :flat.shape[1]] = flat
    return padded.reshape(n, beats_per_image, bytes_per_beat)
