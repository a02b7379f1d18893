"""Prediction on images of any size with models that need a size multiple."""

from __future__ import annotations

import keras
import numpy as np

from kerasseg.layers.checks import DivisibleSizeCheck


def required_multiple(model: keras.Model) -> int:
    """The size multiple a model checks for (its `DivisibleSizeCheck` layers), 1 if none."""
    multiple = 1
    pending = list(model.layers)
    while pending:  # nested models (encoders) are searched too
        layer = pending.pop()
        if isinstance(layer, DivisibleSizeCheck):
            multiple = int(np.lcm(multiple, layer.divisor))
        elif isinstance(layer, keras.Model):
            pending.extend(layer.layers)
    return multiple


def predict_padded(model: keras.Model, images: np.ndarray, *, batch_size: int = 1) -> np.ndarray:
    """Predicts on images whose size is not a multiple of the model's stride.

    Pads height and width up to the next multiple by reflection (which keeps the borders'
    statistics, unlike zeros), predicts, and crops the prediction back.

    Args:
        model: A segmentation model taking (B, H, W, C) images.
        images: (N, H, W, C) array, values in the model's input range (0..255).
        batch_size: Prediction batch size.

    Returns:
        (N, H, W, num_classes) predictions.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"`images` must have shape (N, H, W, C); got {images.shape}.")
    multiple = required_multiple(model)
    height, width = images.shape[1:3]
    pad_h = -height % multiple
    pad_w = -width % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "symmetric"
        images = np.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode=mode)
    prediction = model.predict(images, batch_size=batch_size, verbose=0)
    return prediction[:, :height, :width]
