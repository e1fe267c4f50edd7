"""The intermediate representation: frozen, validated layer types and the input quantizers.

A :class:`~bnnhw.model.network.Network` is a sequence of these layers. Every derived quantity
(fan-in ``K``, minimal accumulator widths, output shapes, operation counts, weight bits) is
computed here, once, and read by the golden model, the hardware generator, the firmware
generator and the reports.

Shapes of activations are ``(C, H, W)`` for feature maps and ``(C,)`` for vectors. A dense
layer that follows a feature map flattens it in **HWC order** (channels innermost), the order
in which pixels stream through hardware and firmware (see :mod:`bnnhw.model.packing`).
"""

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError
from .schema import check_layer_name

__all__ = [
    "ThresholdQuantizer",
    "FixedPointQuantizer",
    "MultibitConv2d",
    "BinaryConv2d",
    "BinaryDense",
    "Threshold",
    "Clip",
    "MaxPool",
    "Output",
    "popcount_bits",
    "signed_bits",
]


def popcount_bits(k):
    """``A_min = ceil(log2(K + 1))``: unsigned bits that hold any popcount of ``K`` positions."""
    return max(1, int(k).bit_length())


def signed_bits(lo, hi):
    """Bits of the narrowest two's-complement signal that holds every integer in ``[lo, hi]``."""
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


def _where(layer, field_name):
    return f"layer {layer!r}: {field_name}"


def _check_name(name):
    # Layer names reach C string literals and hardware submodule names: ASCII identifiers only.
    check_layer_name(name)


def _check_int(layer, field_name, value, minimum=None, maximum=None):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ModelError(f"{_where(layer, field_name)} must be an integer, not {value!r}")
    if minimum is not None and value < minimum:
        raise ModelError(f"{_where(layer, field_name)} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ModelError(f"{_where(layer, field_name)} must be at most {maximum}, not {value}")
    return int(value)


#: The widest popcount accumulator a layer may ask for (``acc_bits``): K is bounded by the
#: array size limit (< 2^31), so 32 bits hold every exact popcount.
MAX_ACC_BITS = 32
#: The widest multi-bit input code (also the input quantizer's maximum).
MAX_INPUT_BITS = 16


def _check_int_array(layer, field_name, values):
    """An integer vector as int64, exactly: floats must be integral and every value must
    fit int64 (``1e30`` or ``2**64 - 1`` are refused, never wrapped)."""
    t = np.asarray(values)
    where = _where(layer, field_name)
    if t.dtype.kind == "f":
        bad = ~np.isfinite(t) | (t != np.round(t))
        if bad.any():
            i = int(np.argmax(bad))
            raise ModelError(f"{where} must be integers, not {t[i].item()!r} at index {i}")
        # float(2**63) is exact: the representable int64 range is [-2**63, 2**63).
        bad = (t < -2.0 ** 63) | (t >= 2.0 ** 63)
    elif t.dtype.kind == "u":
        bad = t > np.iinfo(np.int64).max
    elif t.dtype.kind == "i":
        bad = np.zeros(t.shape, bool)
    else:
        raise ModelError(f"{where} must be integers, not dtype {t.dtype}")
    if bad.any():
        i = int(np.argmax(bad))
        raise ModelError(f"{where} must fit int64 ([-2^63, 2^63 - 1]), not {t[i].item()!r} at "
                         f"index {i}")
    return t.astype(np.int64)


def _check_pm1_weights(layer, weight, ndim):
    weight = np.asarray(weight)
    if weight.ndim != ndim:
        raise ModelError(f"{_where(layer, 'weight')} must have {ndim} dimensions, "
                         f"not shape {tuple(weight.shape)}")
    if weight.size == 0:
        raise ModelError(f"{_where(layer, 'weight')} must not be empty, "
                         f"not shape {tuple(weight.shape)}")
    if weight.dtype.kind not in "iuf":
        raise ModelError(f"{_where(layer, 'weight')} must be numeric, not dtype {weight.dtype}")
    bad = (weight != 1) & (weight != -1)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ModelError(f"{_where(layer, 'weight')} values must be +1 or -1, "
                         f"not {weight[index].item()!r} at index {index}")
    weight = weight.astype(np.int8)
    weight.flags.writeable = False
    return weight


def _check_accumulator(layer, acc_bits, overflow, k):
    if overflow not in ("error", "saturate"):
        raise ModelError(f"{_where(layer, 'overflow')} must be 'error' or 'saturate', "
                         f"not {overflow!r}")
    a_min = popcount_bits(k)
    if acc_bits is None:
        return
    acc_bits = _check_int(layer, "acc_bits", acc_bits, minimum=1, maximum=MAX_ACC_BITS)
    if acc_bits < a_min and overflow != "saturate":
        raise ModelError(f"layer {layer!r}: accumulator width must be at least {a_min} for "
                         f"K={k}, not {acc_bits} (ask for overflow='saturate' to allow it)")


def _freeze(array):
    array.flags.writeable = False
    return array


# -- input quantizers (SPEC §6) -------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ThresholdQuantizer:
    """Input byte ``p`` becomes bit 1 (+1) iff ``p >= threshold`` (LFC: 128).

    Produces a binary input for a binary first layer.
    """
    threshold: int = 128
    kind = "threshold"
    output_bits = 1

    def __post_init__(self):
        _check_int("input", "quantizer threshold", self.threshold, minimum=0)
        if self.threshold > 256:
            raise ModelError(f"input quantizer threshold must be at most 256, "
                             f"not {self.threshold}")

    def params(self):
        return {"threshold": int(self.threshold)}

    def __call__(self, raw_u8):
        """Bits (uint8 0/1) of raw bytes, same shape."""
        return (np.asarray(raw_u8) >= self.threshold).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class FixedPointQuantizer:
    """Input byte ``p`` becomes the signed ``bits``-bit code of ``2p/255 - 1``.

    ``q = clip(floor(2^(bits-1) * (2p/255 - 1) + 0.5), -2^(bits-1), 2^(bits-1) - 1)``; for
    ``bits = 8`` this is BNN-PYNQ CNV's ``ap_fixed<8,1,AP_RND,AP_SAT>``. Computed in exact
    integer arithmetic: ``floor((2^(bits+1) p - 255 (2^bits - 1)) / 510)``.
    """
    bits: int = 8
    kind = "fixed_point"

    def __post_init__(self):
        _check_int("input", "quantizer bits", self.bits, minimum=2)
        if self.bits > 16:
            raise ModelError(f"input quantizer bits must be at most 16, not {self.bits}")

    @property
    def output_bits(self):
        return self.bits

    @property
    def code_range(self):
        """``(lo, hi)``: the smallest and largest code."""
        return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1

    def params(self):
        return {"bits": int(self.bits)}

    def __call__(self, raw_u8):
        """Signed codes (int16) of raw bytes, same shape."""
        p = np.asarray(raw_u8).astype(np.int64)
        b = self.bits
        q = np.floor_divide((1 << (b + 1)) * p - 255 * ((1 << b) - 1), 510)
        lo, hi = self.code_range
        return np.clip(q, lo, hi).astype(np.int16)


QUANTIZERS = {cls.kind: cls for cls in (ThresholdQuantizer, FixedPointQuantizer)}


# -- compute layers ----------------------------------------------------------------------------

def _conv_out(size, kernel, stride, pad, layer, axis):
    out = (size + 2 * pad - kernel) // stride + 1
    if size + 2 * pad < kernel:
        raise ModelError(f"layer {layer!r}: kernel {kernel} does not fit the {axis} of the input "
                         f"({size} + 2*pad {pad})")
    return out


class _Conv:
    """Shared derived quantities of the convolutions."""

    @property
    def out_channels(self):
        return self.weight.shape[0]

    @property
    def in_channels(self):
        return self.weight.shape[1]

    @property
    def kernel(self):
        """``(kh, kw)``."""
        return self.weight.shape[2], self.weight.shape[3]

    @property
    def fan_in(self):
        """``K = kh * kw * C_in``."""
        return int(np.prod(self.weight.shape[1:]))

    @property
    def weight_bits(self):
        return int(self.weight.size)

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ModelError(f"layer {self.name!r}: a convolution needs a [C, H, W] input, "
                             f"not shape {tuple(input_shape)}")
        c, h, w = input_shape
        if c != self.in_channels:
            raise ModelError(f"layer {self.name!r}: weight expects {self.in_channels} input "
                             f"channels, not {c}")
        kh, kw = self.kernel
        return (self.out_channels, _conv_out(h, kh, self.stride, self.pad, self.name, "height"),
                _conv_out(w, kw, self.stride, self.pad, self.name, "width"))

    def operations(self, input_shape):
        """Binary multiply-accumulates of one image: ``C_out * K * H_out * W_out``."""
        _, ho, wo = self.output_shape(input_shape)
        return self.out_channels * self.fan_in * ho * wo

    def ops_2d(self, input_shape):
        """Unshared 2-D ops (SPEC §9): ``C_out * C_in * H_out * W_out``."""
        _, ho, wo = self.output_shape(input_shape)
        return self.out_channels * self.in_channels * ho * wo


class _Popcount:
    """Shared accumulator semantics of the binary (XNOR-popcount) layers, SPEC §3."""

    @property
    def min_acc_bits(self):
        """``A_min``: unsigned popcount bits for an exact result."""
        return popcount_bits(self.fan_in)

    @property
    def accumulator_bits(self):
        """The popcount accumulator width in use (``acc_bits`` or ``A_min``)."""
        return self.min_acc_bits if self.acc_bits is None else int(self.acc_bits)

    @property
    def saturates(self):
        """Whether the accumulator can saturate (it is narrower than ``A_min``)."""
        return self.accumulator_bits < self.min_acc_bits

    @property
    def output_range(self):
        """``(lo, hi)`` of the signed pre-activation ``y = 2P - K`` after saturation."""
        p_max = min(self.fan_in, (1 << self.accumulator_bits) - 1)
        return -self.fan_in, 2 * p_max - self.fan_in

    @property
    def signed_bits(self):
        """Width of the exact signed ``y`` (``A_min + 1`` by default)."""
        return self.accumulator_bits + 1


@dataclass(frozen=True, eq=False)
class BinaryConv2d(_Conv, _Popcount):
    """Binary convolution (cross-correlation), XNOR-popcount, SPEC §2-3.

    Parameters
    ----------
    name : str
    weight : array of +1 / -1, shape ``[C_out, C_in, kh, kw]``
    stride, pad : int
    pad_value : int
        +1 or -1: the binary value of each padded pixel (an ordinary input, so ``K`` is constant).
    acc_bits : int or None
        Popcount accumulator width; ``None`` is the minimal exact width ``A_min``.
    overflow : ``"error"`` or ``"saturate"``
        A narrower ``acc_bits`` than ``A_min`` is an error unless this is ``"saturate"``.
    """
    name: str
    weight: np.ndarray
    stride: int = 1
    pad: int = 0
    pad_value: int = 1
    acc_bits: int | None = None
    overflow: str = "error"
    kind = "binary_conv2d"
    input_kind = "bits"
    output_kind = "int"

    def __post_init__(self):
        _check_name(self.name)
        object.__setattr__(self, "weight", _check_pm1_weights(self.name, self.weight, 4))
        object.__setattr__(self, "stride", _check_int(self.name, "stride", self.stride, 1))
        object.__setattr__(self, "pad", _check_int(self.name, "pad", self.pad, 0))
        if isinstance(self.pad_value, (bool, np.bool_)) or \
                not isinstance(self.pad_value, (int, np.integer)) or self.pad_value not in (1, -1):
            raise ModelError(f"{_where(self.name, 'pad_value')} must be +1 or -1, "
                             f"not {self.pad_value!r}")
        object.__setattr__(self, "pad_value", int(self.pad_value))
        _check_accumulator(self.name, self.acc_bits, self.overflow, self.fan_in)

    def params(self):
        return {"stride": self.stride, "pad": self.pad, "pad_value": self.pad_value,
                "acc_bits": self.acc_bits, "overflow": self.overflow}

    def arrays(self):
        return {"weight": self.weight}


@dataclass(frozen=True, eq=False)
class MultibitConv2d(_Conv):
    """First-layer convolution on multi-bit signed codes: ``y = sum(w * q)``, SPEC §6.

    ``pad`` pixels carry the code ``pad_value`` (default 0). The accumulator is signed and
    exact: :attr:`signed_bits` holds every ``y`` in ``[-K 2^(b-1), K 2^(b-1)]``.
    """
    name: str
    weight: np.ndarray
    input_bits: int = 8
    stride: int = 1
    pad: int = 0
    pad_value: int = 0
    kind = "multibit_conv2d"
    input_kind = "codes"
    output_kind = "int"

    def __post_init__(self):
        _check_name(self.name)
        object.__setattr__(self, "weight", _check_pm1_weights(self.name, self.weight, 4))
        object.__setattr__(self, "input_bits",
                           _check_int(self.name, "input_bits", self.input_bits, 2,
                                      MAX_INPUT_BITS))
        object.__setattr__(self, "stride", _check_int(self.name, "stride", self.stride, 1))
        object.__setattr__(self, "pad", _check_int(self.name, "pad", self.pad, 0))
        lo, hi = -(1 << (self.input_bits - 1)), (1 << (self.input_bits - 1)) - 1
        pv = _check_int(self.name, "pad_value", self.pad_value)
        if not lo <= pv <= hi:
            raise ModelError(f"{_where(self.name, 'pad_value')} must be a {self.input_bits}-bit "
                             f"code in [{lo}, {hi}], not {pv}")
        object.__setattr__(self, "pad_value", pv)

    @property
    def output_range(self):
        m = 1 << (self.input_bits - 1)
        return -self.fan_in * m, self.fan_in * m

    @property
    def signed_bits(self):
        return signed_bits(*self.output_range)

    def params(self):
        return {"input_bits": self.input_bits, "stride": self.stride, "pad": self.pad,
                "pad_value": self.pad_value}

    def arrays(self):
        return {"weight": self.weight}


@dataclass(frozen=True, eq=False)
class BinaryDense(_Popcount):
    """Binary fully connected layer, XNOR-popcount over ``K = C_in`` inputs, SPEC §2-3.

    A feature-map input ``[C, H, W]`` is flattened in HWC order (channels innermost).
    """
    name: str
    weight: np.ndarray
    acc_bits: int | None = None
    overflow: str = "error"
    kind = "binary_dense"
    input_kind = "bits"
    output_kind = "int"

    def __post_init__(self):
        _check_name(self.name)
        object.__setattr__(self, "weight", _check_pm1_weights(self.name, self.weight, 2))
        _check_accumulator(self.name, self.acc_bits, self.overflow, self.fan_in)

    @property
    def out_channels(self):
        return self.weight.shape[0]

    @property
    def in_channels(self):
        return self.weight.shape[1]

    @property
    def fan_in(self):
        return int(self.weight.shape[1])

    @property
    def weight_bits(self):
        return int(self.weight.size)

    def output_shape(self, input_shape):
        n = int(np.prod(input_shape))
        if n != self.in_channels:
            raise ModelError(f"layer {self.name!r}: weight expects {self.in_channels} inputs, "
                             f"not {n} (input shape {tuple(input_shape)})")
        return (self.out_channels,)

    def operations(self, input_shape):
        self.output_shape(input_shape)
        return self.out_channels * self.fan_in

    def params(self):
        return {"acc_bits": self.acc_bits, "overflow": self.overflow}

    def arrays(self):
        return {"weight": self.weight}


# -- element-wise and pooling layers ------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Threshold:
    """Batch norm + sign, folded (SPEC §5): bit = ``v >= T[o]``, or ``v <= T[o]`` where ``neg``.

    ``v`` is the preceding layer's signed integer (``y``, or ``z`` after a :class:`Clip`).
    """
    name: str
    thresholds: np.ndarray
    negate: np.ndarray | None = None
    kind = "threshold"
    input_kind = "int"
    output_kind = "bits"

    def __post_init__(self):
        _check_name(self.name)
        t = np.asarray(self.thresholds)
        if t.ndim != 1 or t.size == 0:
            raise ModelError(f"{_where(self.name, 'thresholds')} must be a non-empty vector, "
                             f"not shape {tuple(t.shape)}")
        t = _check_int_array(self.name, "thresholds", t)
        object.__setattr__(self, "thresholds", _freeze(t))
        neg = np.zeros(t.shape, bool) if self.negate is None else np.asarray(self.negate)
        if neg.shape != t.shape:
            raise ModelError(f"{_where(self.name, 'negate')} must have shape {t.shape}, "
                             f"not {tuple(neg.shape)}")
        if neg.dtype.kind not in "biuf":
            raise ModelError(f"{_where(self.name, 'negate')} must hold 0 or 1, not dtype "
                             f"{neg.dtype}")
        if neg.dtype != bool and not np.all((neg == 0) | (neg == 1)):
            bad = int(np.argmax(~((neg == 0) | (neg == 1))))
            raise ModelError(f"{_where(self.name, 'negate')} must hold 0 or 1, not "
                             f"{neg[bad].item()!r} at index {bad}")
        object.__setattr__(self, "negate", _freeze(neg.astype(bool)))

    @property
    def channels(self):
        return self.thresholds.shape[0]

    def output_shape(self, input_shape):
        if input_shape[0] != self.channels:
            raise ModelError(f"layer {self.name!r}: {self.channels} thresholds for "
                             f"{input_shape[0]} channels")
        return tuple(input_shape)

    def params(self):
        return {}

    def arrays(self):
        return {"thresholds": self.thresholds, "negate": self.negate.astype(np.uint8)}


@dataclass(frozen=True, eq=False)
class Clip:
    """Clipping block (SPEC §4): ``z = clip(y, -(2^(b-1) - 1), 2^(b-1) - 1)``."""
    name: str
    bits: int = 8
    kind = "clip"
    input_kind = "int"
    output_kind = "int"

    def __post_init__(self):
        _check_name(self.name)
        object.__setattr__(self, "bits", _check_int(self.name, "bits", self.bits, 2))
        if self.bits > 32:
            raise ModelError(f"{_where(self.name, 'bits')} must be at most 32, not {self.bits}")

    @property
    def limit(self):
        """``2^(b-1) - 1``: the clip range is ``[-limit, limit]``."""
        return (1 << (self.bits - 1)) - 1

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def params(self):
        return {"bits": self.bits}

    def arrays(self):
        return {}


@dataclass(frozen=True, eq=False)
class MaxPool:
    """Max-pooling of binary activations: logical OR of the +1 bits in each window (SPEC §7)."""
    name: str
    kernel: int = 2
    stride: int | None = None
    kind = "maxpool"
    input_kind = "bits"
    output_kind = "bits"

    def __post_init__(self):
        _check_name(self.name)
        object.__setattr__(self, "kernel", _check_int(self.name, "kernel", self.kernel, 1))
        stride = self.kernel if self.stride is None else self.stride
        object.__setattr__(self, "stride", _check_int(self.name, "stride", stride, 1))

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ModelError(f"layer {self.name!r}: pooling needs a [C, H, W] input, "
                             f"not shape {tuple(input_shape)}")
        c, h, w = input_shape
        return (c, _conv_out(h, self.kernel, self.stride, 0, self.name, "height"),
                _conv_out(w, self.kernel, self.stride, 0, self.name, "width"))

    def params(self):
        return {"kernel": self.kernel, "stride": self.stride}

    def arrays(self):
        return {}


@dataclass(frozen=True, eq=False)
class Output:
    """The network's scores (SPEC §8); the rule follows from the layers before it.

    * after a binary layer: its popcount ``P`` (``rule = "popcount"``);
    * after a :class:`Clip`: the clipped ``z`` (``rule = "clipped"``);
    * after a :class:`Threshold`: the margins ``y - T`` (``T - y`` where negated)
      (``rule = "margin"``).

    The predicted class is the first argmax of the scores.
    """
    name: str = "output"
    kind = "output"
    input_kind = "any"
    output_kind = "scores"

    def __post_init__(self):
        _check_name(self.name)

    def output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ModelError(f"layer {self.name!r}: scores must be a vector, not shape "
                             f"{tuple(input_shape)}")
        return tuple(input_shape)

    def params(self):
        return {}

    def arrays(self):
        return {}


LAYER_TYPES = {cls.kind: cls for cls in (MultibitConv2d, BinaryConv2d, BinaryDense, Threshold,
                                         Clip, MaxPool, Output)}
COMPUTE_TYPES = (MultibitConv2d, BinaryConv2d, BinaryDense)
