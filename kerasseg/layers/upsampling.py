"""Bilinear upsampling by an integer factor with PyTorch's two pixel-alignment conventions.

Keras' ``UpSampling2D(interpolation="bilinear")`` uses half-pixel centres (PyTorch's
``align_corners=False``). Several reference decoders (segmentation_models_pytorch's FPN and
its segmentation head) upsample with ``align_corners=True``, which maps the corner pixels of
input and output onto each other: output index ``i`` samples the input at
``i * (n - 1) / (m - 1)`` for an input of size ``n`` and an output of size ``m``. The two
differ by up to a pixel near the borders, so reproducing those models (and running their
converted weights) needs this layer.

`interpolating_upsampling` is what every decoder upsamples with: Keras' ``UpSampling2D`` for
nearest neighbours, this layer (half-pixel centres) for bilinear. Keras' own bilinear path
calls ``ops.image.resize`` with the tensor-valued target size of a dynamic input, which
fails in a traced graph ("Using a symbolic `tf.Tensor` as a Python `bool`") once a model
runs at a second input size or is reloaded after training.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from kerasseg.utils.checks import check_positive_int


def _source_coordinates(n: Any, scale: int, align_corners: bool) -> Any:
    """Float32 input coordinates sampled by the ``n * scale`` output pixels of one axis."""
    m = n * scale
    out = ops.cast(ops.arange(m), "float32")
    if align_corners:
        # (n - 1) / (m - 1), and 0 for a single output pixel (then every output is pixel 0).
        ratio = ops.cast(n - 1, "float32") / ops.cast(ops.maximum(m - 1, 1), "float32")
        return out * ratio
    # Half-pixel centres; PyTorch clamps negative coordinates of the first pixels to 0.
    return ops.maximum((out + 0.5) / float(scale) - 0.5, 0.0)


def _resize_axis(x: Any, axis: int, scale: int, align_corners: bool) -> Any:
    n = ops.shape(x)[axis]
    source = _source_coordinates(n, scale, align_corners)
    low = ops.floor(source)
    weight = source - low
    low = ops.minimum(ops.cast(low, "int32"), n - 1)
    high = ops.minimum(low + 1, n - 1)
    shape = [1, 1, 1, 1]
    shape[axis] = -1
    weight = ops.cast(ops.reshape(weight, shape), x.dtype)
    a = ops.take(x, low, axis=axis)
    b = ops.take(x, high, axis=axis)
    return a + (b - a) * weight


@keras.saving.register_keras_serializable(package="kerasseg")
class BilinearUpsampling2D(keras.layers.Layer):
    """Bilinear upsampling of height and width by an integer factor.

    Equals ``torch.nn.functional.interpolate(x, scale_factor=size, mode="bilinear",
    align_corners=align_corners)`` on channels-last tensors.

    Args:
        size: Integer upsampling factor (>= 1), the same for height and width.
        align_corners: True: corner pixels of input and output are aligned (sample positions
            ``i * (n - 1) / (m - 1)``). False: half-pixel centres, like Keras'
            ``UpSampling2D(interpolation="bilinear")`` and PyTorch's default.

    Input shape: (B, H, W, C). Output shape: (B, size * H, size * W, C), same dtype.
    """

    def __init__(self, size: int = 2, align_corners: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        check_positive_int(size, "size")
        self.size = size
        self.align_corners = bool(align_corners)

    def call(self, inputs: Any) -> Any:
        if self.size == 1:
            return inputs
        x = _resize_axis(inputs, 1, self.size, self.align_corners)
        return _resize_axis(x, 2, self.size, self.align_corners)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        batch, height, width, channels = input_shape
        scale = self.size
        return (
            batch,
            None if height is None else height * scale,
            None if width is None else width * scale,
            channels,
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size, "align_corners": self.align_corners}


#: The interpolations `interpolating_upsampling` takes.
INTERPOLATIONS = ("nearest", "bilinear")


def interpolating_upsampling(factor: int, interpolation: str, name: str) -> keras.layers.Layer:
    """A layer upsampling (B, H, W, C) by an integer `factor` by interpolation.

    Args:
        factor: Upsampling factor (>= 1).
        interpolation: ``"nearest"`` (repeat) or ``"bilinear"`` (half-pixel centres, equal
            to Keras' ``UpSampling2D(interpolation="bilinear")`` and PyTorch's
            ``align_corners=False``, but valid on inputs of any size in a traced graph).
        name: Layer name.

    Returns:
        The layer; its output is (B, factor * H, factor * W, C).
    """
    if interpolation == "nearest":
        return keras.layers.UpSampling2D(factor, interpolation="nearest", name=name)
    if interpolation == "bilinear":
        return BilinearUpsampling2D(factor, align_corners=False, name=name)
    raise ValueError(f"`interpolation` must be one of {INTERPOLATIONS}, got {interpolation!r}.")


__all__ = ["INTERPOLATIONS", "BilinearUpsampling2D", "interpolating_upsampling"]
