"""`encoder_features`: the input, its size check and an encoder's features, for the
segmentation and detection builders alike."""

from __future__ import annotations

import os
from typing import Any

import keras

from kerasseg.encoders.build import get
from kerasseg.encoders.specs import spec
from kerasseg.layers.checks import DivisibleSizeCheck, check_input_shape

#: Total stride of every encoder (five 2x downsamplings); inputs must be multiples of it.
ENCODER_STRIDE = 32


def encoder_features(
    encoder: str,
    input_shape: tuple[int | None, int | None, int],
    *,
    weights: str | os.PathLike | None = None,
    trainable: bool = True,
    include_stride_1: bool = False,
) -> tuple[Any, list[Any]]:
    """The model input, its size check, and the encoder's features.

    Args:
        encoder: Encoder name (see `kerasseg.encoders.list_encoders`).
        input_shape: Checked (H, W, C); static H and W must be multiples of 32.
        weights: Passed to `kerasseg.encoders.get`.
        trainable: The encoder's ``trainable`` flag (False freezes it, BN included).
        include_stride_1: Also return the encoder's full-resolution feature (VGG only).

    Returns:
        ``(inputs, features)``: the `keras.Input` (images in 0..255) and the features at
        strides (1,) 2, 4, 8, 16, 32, finest first.

    Raises:
        ValueError: for an unknown encoder or a static size not divisible by 32 (naming the
            nearest valid sizes). The model raises the same error for such an input at call
            time.
    """
    spec(encoder)  # unknown names raise here, with suggestions
    reason = f"the {encoder} encoder halves the size 5 times"
    check_input_shape(input_shape, ENCODER_STRIDE, reason)
    inputs = keras.Input(shape=input_shape, name="image")
    x = DivisibleSizeCheck(ENCODER_STRIDE, reason=reason, name="size_check")(inputs)
    backbone = get(
        encoder,
        input_shape=input_shape,
        weights=weights,
        include_stride_1=include_stride_1,
        trainable=trainable,
    )
    return inputs, list(backbone(x))
