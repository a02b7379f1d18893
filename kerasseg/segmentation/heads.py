"""Output heads shared by the segmentation architectures."""

from __future__ import annotations

from typing import Any

from keras import layers

from kerasseg.layers.upsampling import BilinearUpsampling2D
from kerasseg.utils.checks import check_positive_int

OUTPUT_ACTIVATIONS = ("auto", "sigmoid", "softmax", None)


def resolve_activation(activation: str | None, num_classes: int) -> str | None:
    """``"auto"`` -> sigmoid for one class, softmax for several; otherwise checked as given."""
    if activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            f"`activation` must be one of {OUTPUT_ACTIVATIONS} (None gives logits), got "
            f"{activation!r}."
        )
    if activation == "auto":
        return "sigmoid" if num_classes == 1 else "softmax"
    return activation


def check_num_classes(num_classes: int) -> int:
    return check_positive_int(num_classes, "num_classes")


def segmentation_head(
    x: Any,
    num_classes: int,
    activation: str | None,
    *,
    kernel_size: int = 1,
    upsampling: int = 1,
    name: str = "head",
) -> Any:
    """Convolution to `num_classes` scores, optional upsampling, then the output activation.

    The activation layer is float32 even under a mixed-precision policy, so probabilities
    (and the losses computed from them) keep full precision. `kernel_size` and `upsampling`
    are those of segmentation_models_pytorch's ``SegmentationHead`` (3 and 1 in its U-Net,
    1 and 4 in its FPN); the upsampling is bilinear with aligned corners, as there.

    Args:
        x: (B, H, W, C) decoder features.
        num_classes: Output channels.
        activation: ``"sigmoid"``, ``"softmax"`` or None (logits).
        kernel_size: Square kernel of the convolution ("same" padding).
        upsampling: Integer factor of the bilinear upsampling after the convolution.
        name: Prefix of the layer names.

    Returns:
        (B, H * upsampling, W * upsampling, num_classes) float32 probabilities, or logits
        when `activation` is None.
    """
    x = layers.Conv2D(num_classes, kernel_size, padding="same", name=f"{name}_conv")(x)
    if upsampling > 1:
        x = BilinearUpsampling2D(upsampling, align_corners=True, name=f"{name}_upsample")(x)
    return layers.Activation(
        activation or "linear", dtype="float32", name=f"{name}_{activation or 'logits'}"
    )(x)
