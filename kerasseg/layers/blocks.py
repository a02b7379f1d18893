"""Functional building blocks shared by the segmentation decoders.

These build standard Keras layers (so models stay serializable without custom classes) and
are the one home of the conv-norm-activation pattern, the U-Net double convolution and the
decoder's upsampling step.
"""

from __future__ import annotations

from typing import Any

from keras import layers

from kerasseg.layers.upsampling import interpolating_upsampling

UPSAMPLING_MODES = ("transpose", "bilinear", "nearest")


def conv_norm_act(
    x: Any,
    filters: int,
    *,
    kernel_size: int = 3,
    batch_norm: bool = True,
    activation: str = "relu",
    name: str,
) -> Any:
    """Conv2D (same padding) -> optional BatchNormalization -> activation.

    Args:
        x: (B, H, W, C_in) features.
        filters: Output channels.
        kernel_size: Square kernel size.
        batch_norm: Whether to normalise; the convolution drops its bias when it does.
        activation: Keras activation name.
        name: Prefix of the layer names.

    Returns:
        (B, H, W, filters) features.
    """
    x = layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=not batch_norm,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    if batch_norm:
        # PyTorch's defaults (momentum 0.1 there): moving statistics that catch up within a
        # few dozen steps, so short trainings validate well in inference mode.
        x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return layers.Activation(activation, name=f"{name}_{activation}")(x)


def double_conv(x: Any, filters: int, *, batch_norm: bool = True, name: str) -> Any:
    """Two 3x3 conv-norm-ReLU layers: the basic block of U-Net (Ronneberger et al., 2015)."""
    x = conv_norm_act(x, filters, batch_norm=batch_norm, name=f"{name}_1")
    return conv_norm_act(x, filters, batch_norm=batch_norm, name=f"{name}_2")


def upsample(x: Any, filters: int, *, mode: str = "transpose", name: str) -> Any:
    """Doubles height and width.

    Args:
        x: (B, H, W, C) features.
        filters: Output channels of the learned (``"transpose"``) upsampling; the
            interpolating modes keep C channels.
        mode: ``"transpose"`` (2x2 stride-2 transposed convolution, as in U-Net),
            ``"bilinear"`` or ``"nearest"`` interpolation.
        name: Layer name.

    Returns:
        (B, 2H, 2W, filters) for ``"transpose"``, else (B, 2H, 2W, C).
    """
    if mode == "transpose":
        return layers.Conv2DTranspose(
            filters, 2, strides=2, kernel_initializer="he_normal", name=name
        )(x)
    if mode in ("bilinear", "nearest"):
        return interpolating_upsampling(2, mode, name=name)(x)
    raise ValueError(f"`upsampling` must be one of {UPSAMPLING_MODES}, got {mode!r}.")


__all__ = ["UPSAMPLING_MODES", "conv_norm_act", "double_conv", "upsample"]
