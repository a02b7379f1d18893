"""`L2Normalization`: SSD's rescaled L2 normalisation of a feature map (Liu et al., 2016).

SSD300 normalises VGG's conv4_3 feature to unit L2 norm across channels at every pixel
and multiplies it by a learnable per-channel scale initialised to 20, because that
feature's values are much larger than those of the deeper layers it is trained with.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["L2Normalization"]


@keras.saving.register_keras_serializable(package="kerasseg")
class L2Normalization(keras.layers.Layer):
    """``scale * x / max(||x||_2, epsilon)``, the norm taken over the channels.

    Equal to torchvision's SSD ``scale_weight.view(1, -1, 1, 1) * F.normalize(x)`` on
    channels-last tensors. The norm is computed in float32 (also under mixed precision) as
    ``sqrt(max(sum(x**2), epsilon**2))``: the same value, and a zero gradient rather than
    NaN at a pixel whose features are all 0 (after a ReLU).

    Args:
        initial_scale: Initial value of every channel's scale (SSD: 20).
        epsilon: Lower bound of the norm, > 0 (torchvision's ``F.normalize``: 1e-12).
        **kwargs: `keras.layers.Layer` arguments.

    Input shape: ``(B, H, W, C)``. Output: the same shape. Weights: ``scale`` ``(C,)``.
    """

    def __init__(self, initial_scale: float = 20.0, epsilon: float = 1e-12, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"`epsilon` must be a number > 0, got {epsilon!r}.")
        if isinstance(initial_scale, bool) or not isinstance(initial_scale, (int, float)):
            raise ValueError(f"`initial_scale` must be a number, got {initial_scale!r}.")
        self.initial_scale = float(initial_scale)
        self.epsilon = float(epsilon)

    def build(self, input_shape: tuple) -> None:
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"`L2Normalization` needs a known channel count, got input shape {input_shape}."
            )
        self.scale = self.add_weight(
            name="scale",
            shape=(channels,),
            initializer=keras.initializers.Constant(self.initial_scale),
        )

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, "float32")
        squared = ops.sum(ops.square(x), axis=-1, keepdims=True)
        norm = ops.sqrt(ops.maximum(squared, self.epsilon**2))
        scale = ops.cast(self.scale, "float32")
        return ops.cast(x / norm * scale, self.compute_dtype)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(initial_scale=self.initial_scale, epsilon=self.epsilon)
        return config
