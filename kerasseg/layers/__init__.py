"""Reusable Keras layers and layer-building blocks.

Every class here is registered with `keras.saving` under the package ``kerasseg`` so that
models using it round-trip through ``model.save("x.keras")`` / ``keras.models.load_model``.
"""

from kerasseg.layers.blocks import conv_norm_act, double_conv, upsample
from kerasseg.layers.checks import DivisibleSizeCheck, nearest_valid_sizes
from kerasseg.layers.folding import fold_batch_norm
from kerasseg.layers.initializers import BilinearKernel
from kerasseg.layers.normalization import L2Normalization
from kerasseg.layers.pooling import MaxPoolingWithArgmax2D, MaxUnpooling2D
from kerasseg.layers.upsampling import BilinearUpsampling2D

__all__ = [
    "BilinearKernel",
    "BilinearUpsampling2D",
    "DivisibleSizeCheck",
    "L2Normalization",
    "MaxPoolingWithArgmax2D",
    "MaxUnpooling2D",
    "conv_norm_act",
    "double_conv",
    "fold_batch_norm",
    "nearest_valid_sizes",
    "upsample",
]
