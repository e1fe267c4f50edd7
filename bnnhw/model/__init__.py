"""bnnhw's model layer: IR, model files, batch-norm folding, input quantizers and packing.

Pure NumPy: nothing here imports Amaranth.
"""

from .batchnorm import bn_sign_reference, fold_batchnorm
from .io import load_bnn_pynq, load_model, save_model
from .layers import (BinaryConv2d, BinaryDense, Clip, FixedPointQuantizer, MaxPool,
                     MultibitConv2d, Output, Threshold, ThresholdQuantizer, popcount_bits)
from .network import Block, LayerInfo, Network

__all__ = [
    "Network", "LayerInfo", "Block",
    "MultibitConv2d", "BinaryConv2d", "BinaryDense", "Threshold", "Clip", "MaxPool", "Output",
    "ThresholdQuantizer", "FixedPointQuantizer", "popcount_bits",
    "load_model", "save_model", "load_bnn_pynq", "fold_batchnorm", "bn_sign_reference",
]
