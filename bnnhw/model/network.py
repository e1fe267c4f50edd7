"""A whole network: input quantizer, validated layer sequence, shapes and totals derived once."""

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError
from ..limits import check_count, check_size
from .layers import (COMPUTE_TYPES, BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer,
                     MaxPool, MultibitConv2d, Output, Threshold, ThresholdQuantizer)
from .schema import check_class_name, check_identifier, dump_json

__all__ = ["Network", "LayerInfo", "Block"]


@dataclass(frozen=True)
class LayerInfo:
    """One layer in place: its index, input and output shapes and derived counts."""
    index: int
    layer: object
    input_shape: tuple
    output_shape: tuple

    @property
    def name(self):
        return self.layer.name

    @property
    def kind(self):
        return self.layer.kind

    @property
    def fan_in(self):
        return getattr(self.layer, "fan_in", None)

    @property
    def operations(self):
        """Binary (or multi-bit) multiply-accumulates per image; 0 for non-compute layers."""
        if isinstance(self.layer, COMPUTE_TYPES):
            return self.layer.operations(self.input_shape)
        return 0

    @property
    def weight_bits(self):
        return getattr(self.layer, "weight_bits", 0)


@dataclass(frozen=True)
class Block:
    """A compute layer with the element-wise and pooling layers that follow it.

    Hardware and firmware build one processing unit per block (a matrix-vector-threshold unit
    with its pooling), so the grouping is derived here once.
    """
    compute: LayerInfo
    clip: LayerInfo | None
    threshold: LayerInfo | None
    pool: LayerInfo | None

    @property
    def name(self):
        return self.compute.name

    @property
    def layers(self):
        return tuple(i for i in (self.compute, self.clip, self.threshold, self.pool)
                     if i is not None)

    @property
    def input_shape(self):
        return self.compute.input_shape

    @property
    def output_shape(self):
        return self.layers[-1].output_shape


@dataclass(frozen=True, eq=False)
class Network:
    """A binarized network: the IR that every other part of bnnhw reads.

    Parameters
    ----------
    name : str
    input_shape : tuple
        Raw input of one image, ``(C, H, W)``; LFC is ``(1, 28, 28)``.
    quantizer : ThresholdQuantizer or FixedPointQuantizer
        Maps raw bytes to the first layer's input (SPEC §6).
    layers : sequence of layers
        Ends with exactly one :class:`~bnnhw.model.layers.Output`.
    classes : sequence of str
        One name per score.
    meta : dict
        Free-form provenance (JSON-serialisable), e.g. BNN-PYNQ's folding.
    """
    name: str
    input_shape: tuple
    quantizer: object
    layers: tuple
    classes: tuple = ()
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        # The name reaches C, Verilog and folder names: checked against a strict pattern.
        check_identifier(self.name, "network name")
        shape = tuple(self.input_shape) if isinstance(self.input_shape, (tuple, list)) else ()
        if len(shape) != 3 or not all(
                isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_))
                and s >= 1 for s in shape):
            raise ModelError(f"network input_shape must be [C, H, W] of positive integers, "
                             f"not {self.input_shape!r}")
        shape = tuple(int(s) for s in shape)
        check_size("image_elements", math.prod(shape), f"network input_shape {list(shape)}",
                   error=ModelError)
        object.__setattr__(self, "input_shape", shape)
        if not isinstance(self.quantizer, (ThresholdQuantizer, FixedPointQuantizer)):
            raise ModelError(f"network quantizer must be an input quantizer, "
                             f"not {self.quantizer!r}")
        layers = tuple(self.layers)
        check_count("layers", len(layers), "the network", error=ModelError)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "classes", tuple(
            check_class_name(c if isinstance(c, str) else str(c), i)
            for i, c in enumerate(self.classes)))
        if not isinstance(self.meta, dict):
            raise ModelError(f"network meta must be a dict, not {type(self.meta).__name__}")
        try:
            dump_json(self.meta)
        except (TypeError, ValueError, RecursionError) as e:
            raise ModelError(f"network meta must be strict JSON (no NaN): {e}") from None
        object.__setattr__(self, "_infos", self._check_sequence())
        if not self.classes:
            object.__setattr__(self, "classes",
                               tuple(str(i) for i in range(self.num_classes)))
        if len(self.classes) != self.num_classes:
            raise ModelError(f"network has {self.num_classes} scores but "
                             f"{len(self.classes)} class names")

    def _check_sequence(self):
        if not self.layers:
            raise ModelError("network has no layers")
        names = set()
        # What flows between layers: "codes" (multi-bit input), "bits", "int" (y or z).
        flowing = "codes" if isinstance(self.quantizer, FixedPointQuantizer) else "bits"
        shape = self.input_shape
        infos = []
        for index, layer in enumerate(self.layers):
            kind = getattr(layer, "kind", None)
            if kind is None:
                raise ModelError(f"layer {index} is not a bnnhw layer: {layer!r}")
            if layer.name in names:
                raise ModelError(f"layer name {layer.name!r} is used twice")
            names.add(layer.name)
            if isinstance(layer, Output) and index != len(self.layers) - 1:
                raise ModelError(f"layer {layer.name!r}: the output layer must be last")
            if index == len(self.layers) - 1 and not isinstance(layer, Output):
                raise ModelError(f"the last layer must be an output layer, not {kind} "
                                 f"{layer.name!r}")
            if layer.input_kind != "any" and layer.input_kind != flowing:
                raise ModelError(f"layer {layer.name!r} ({kind}) needs {layer.input_kind} "
                                 f"input, but the layer before it gives {flowing}")
            if isinstance(layer, MultibitConv2d):
                if index != 0:
                    raise ModelError(f"layer {layer.name!r}: a multi-bit-input convolution "
                                     f"must be the first layer")
                if layer.input_bits != self.quantizer.output_bits:
                    raise ModelError(f"layer {layer.name!r}: input_bits is {layer.input_bits} "
                                     f"but the input quantizer gives "
                                     f"{self.quantizer.output_bits}-bit codes")
            if isinstance(layer, Clip) and not (infos and infos[-1].layer.output_kind == "int"):
                raise ModelError(f"layer {layer.name!r}: a clip must follow a compute layer")
            if isinstance(layer, Output) and flowing == "bits" and not (
                    infos and isinstance(infos[-1].layer, Threshold)):
                raise ModelError(f"layer {layer.name!r}: binary scores must come straight "
                                 f"from a threshold")
            out = layer.output_shape(shape)
            check_size("image_elements", math.prod(out),
                       f"layer {layer.name!r}: output of shape {list(out)}", error=ModelError)
            infos.append(LayerInfo(index, layer, shape, tuple(out)))
            shape = tuple(out)
            flowing = layer.output_kind
        return tuple(infos)

    # -- derived views -----------------------------------------------------------------------

    @property
    def infos(self):
        """One :class:`LayerInfo` per layer, in order."""
        return self._infos

    def info(self, name):
        for i in self._infos:
            if i.name == name:
                return i
        raise KeyError(name)

    @property
    def num_classes(self):
        return self._infos[-1].output_shape[0]

    @property
    def output_rule(self):
        """SPEC §8 score rule: ``"popcount"``, ``"value"``, ``"clipped"`` or ``"margin"``."""
        before = self._infos[-2].layer if len(self._infos) > 1 else None
        if isinstance(before, Threshold):
            return "margin"
        if isinstance(before, Clip):
            return "clipped"
        if isinstance(before, (BinaryConv2d, BinaryDense)):
            return "popcount"
        return "value"

    def blocks(self):
        """The compute layers, each with the clip / threshold / pool layers that follow it."""
        blocks, current = [], None
        for info in self._infos:
            layer = info.layer
            if isinstance(layer, COMPUTE_TYPES):
                if current:
                    blocks.append(Block(**current))
                current = {"compute": info, "clip": None, "threshold": None, "pool": None}
            elif isinstance(layer, Output):
                continue
            else:
                slot = {Clip: "clip", Threshold: "threshold", MaxPool: "pool"}[type(layer)]
                if current is None or current[slot] is not None or (
                        slot != "pool" and current["pool"] is not None) or (
                        slot == "clip" and current["threshold"] is not None):
                    raise ModelError(f"layer {layer.name!r}: unsupported position of a "
                                     f"{layer.kind} layer (one clip, threshold and pool per "
                                     f"compute layer, in that order)")
                current[slot] = info
        if current:
            blocks.append(Block(**current))
        return tuple(blocks)

    @property
    def total_operations(self):
        return sum(i.operations for i in self._infos)

    @property
    def total_weight_bits(self):
        return sum(i.weight_bits for i in self._infos)

    def fingerprint(self):
        """A short hex id of the network's canonical content (layers, parameters, arrays)."""
        h = hashlib.sha256()
        header = {"input_shape": self.input_shape, "quantizer": self.quantizer.kind,
                  "quantizer_params": self.quantizer.params(), "classes": self.classes,
                  "layers": [(l.kind, l.name, l.params()) for l in self.layers]}
        h.update(json.dumps(header, sort_keys=True).encode())
        for layer in self.layers:
            for key, array in sorted(layer.arrays().items()):
                h.update(key.encode())
                h.update(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"))
                         .tobytes())
        return h.hexdigest()[:16]
