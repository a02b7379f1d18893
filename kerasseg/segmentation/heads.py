"""Output heads shared by the segmentation architectures."""

from __future__ import annotations

from typing import Any

from keras import layers

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
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer, got {num_classes!r}.")
    return num_classes


def segmentation_head(
    x: Any, num_classes: int, activation: str | None, *, name: str = "head"
) -> Any:
    """1x1 convolution to `num_classes` scores, then the output activation in float32.

    The activation layer is float32 even under a mixed-precision policy, so probabilities
    (and the losses computed from them) keep full precision.

    Args:
        x: (B, H, W, C) decoder features.
        num_classes: Output channels.
        activation: ``"sigmoid"``, ``"softmax"`` or None (logits).
        name: Prefix of the layer names.

    Returns:
        (B, H, W, num_classes) float32 probabilities, or logits when `activation` is None.
    """
    x = layers.Conv2D(num_classes, 1, name=f"{name}_conv")(x)
    return layers.Activation(activation or "linear", dtype="float32", name=f"{name}_{activation or 'logits'}")(x)
