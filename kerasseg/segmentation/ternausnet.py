"""TernausNet (Iglovikov and Shvets, 2018): ``unet11`` (VGG11 encoder) and ``unet16`` (VGG16).

A U-Net on an ImageNet VGG without batch norm, with learned upsampling: each decoder block
is conv3x3-ReLU, then a stride-2 3x3 transposed convolution and ReLU, on the concatenation
[previous block, encoder feature of the same stride] (`DECODER_BLOCKS` holds the channel
plan, in multiples of ``num_filters``). The transposed convolutions are aligned exactly
like PyTorch's ``ConvTranspose2d(3, stride=2, padding=1, output_padding=1)`` (see
`kerasseg.layers.decoders.torch_conv_transpose`), so converted TernausNet weights give the
same outputs.

Naming: ``unet11`` / ``unet16`` are TernausNet; ``unet_vgg11`` / ``unet_vgg16`` are the
generic U-Net decoder on the same encoders (`kerasseg.segmentation.encoder_unet`). The
docs' "Segmentation architectures" page explains the design, with diagrams; the zoo table
lists parameter counts.
"""

from __future__ import annotations

import os

import keras
from keras import layers

from kerasseg import encoders
from kerasseg.layers.blocks import conv_norm_act
from kerasseg.layers.decoders import ternausnet_decoder_block
from kerasseg.registry import register_model
from kerasseg.segmentation._encoder import (
    ENCODER_STRIDE,
    check_model_input_shape,
    check_positive_int,
    encoder_features,
)
from kerasseg.segmentation.heads import check_num_classes, resolve_activation, segmentation_head

#: The decoder blocks, coarsest first: (name, middle, out) channels as multiples of
#: ``num_filters``. Each doubles the size; ``dec1`` (a conv3x3-ReLU of ``num_filters``) and
#: the 1x1 output convolution follow at full resolution.
DECODER_BLOCKS = (
    ("center", 16, 8),
    ("dec5", 16, 8),
    ("dec4", 16, 4),
    ("dec3", 8, 2),
    ("dec2", 4, 1),
)
NUM_FILTERS = 32


def ternausnet(
    encoder: str = "vgg11",
    *,
    num_classes: int = 1,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    encoder_weights: str | os.PathLike | None = None,
    encoder_trainable: bool = True,
    num_filters: int = NUM_FILTERS,
    activation: str | None = "auto",
    name: str | None = None,
) -> keras.Model:
    """TernausNet: a VGG encoder and a decoder with learned (transposed-convolution) upsampling.

    Args:
        encoder: A VGG encoder; TernausNet uses ``"vgg11"`` (``unet11``) or ``"vgg16"``
            (``unet16``). The ``_bn`` variants work too (then the encoder has batch norm).
        num_classes: Output channels: 1 for binary segmentation, C for C classes.
        input_shape: (H, W, C_in); H and W may be None (any multiple of 32).
        encoder_weights: Passed to `kerasseg.encoders.get`: None (random initialisation) or
            a weights file.
        encoder_trainable: False freezes the encoder.
        num_filters: F in the channel plan (32 in the paper).
        activation: ``"auto"`` (sigmoid for one class, softmax for several),
            ``"sigmoid"``, ``"softmax"`` or None for logits (the reference returns logits).
        name: Model name; default ``"unet11"`` for VGG11, ``"unet16"`` for VGG16, else
            ``ternausnet_<encoder>``.

    Returns:
        A `keras.Model` mapping (B, H, W, C_in) images in 0..255 to (B, H, W, num_classes)
        float32 probabilities (or logits).

    Raises:
        ValueError: for invalid arguments, a non-VGG encoder (TernausNet needs the
            full-resolution feature), or a static size not divisible by 32 (the message names
            the nearest valid sizes); the model raises the same for such an input.
    """
    check_num_classes(num_classes)
    input_shape = check_model_input_shape(input_shape)
    check_positive_int(num_filters, "num_filters")
    spec = encoders.spec(encoder)
    if spec.family != "vgg":
        raise ValueError(
            f"TernausNet needs a VGG encoder (it concatenates the full-resolution feature); "
            f"got `encoder`={encoder!r}. Use `unet_{encoder}` for a U-Net on it."
        )
    output_activation = resolve_activation(activation, num_classes)

    inputs, features = encoder_features(
        encoder,
        input_shape,
        weights=encoder_weights,
        trainable=encoder_trainable,
        include_stride_1=True,
    )
    x = features[-1]  # pool5, stride 32
    skips = features[-2::-1]  # conv5 (stride 16) ... conv1 (stride 1)
    for (block, middle, out), skip in zip(DECODER_BLOCKS, skips):
        x = ternausnet_decoder_block(x, middle * num_filters, out * num_filters, name=block)
        x = layers.Concatenate(name=f"{block}_concat")([x, skip])
    x = conv_norm_act(x, num_filters, batch_norm=False, name="dec1")
    outputs = segmentation_head(x, num_classes, output_activation, name="final")
    default_name = {"vgg11": "unet11", "vgg16": "unet16"}.get(encoder, f"ternausnet_{encoder}")
    return keras.Model(inputs, outputs, name=name or default_name)


@register_model("unet11", family="ternausnet", encoder="vgg11", input_multiple=ENCODER_STRIDE)
def unet11(
    *,
    num_classes: int = 1,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    **kwargs,
) -> keras.Model:
    """TernausNet with a VGG11 encoder (Iglovikov and Shvets, 2018).

    ``ternausnet("vgg11", **kwargs)``; see `ternausnet`. Not to be confused with ``unet_vgg11``, the generic U-Net decoder on VGG11.
    """
    return ternausnet("vgg11", num_classes=num_classes, input_shape=input_shape, **kwargs)


@register_model("unet16", family="ternausnet", encoder="vgg16", input_multiple=ENCODER_STRIDE)
def unet16(
    *,
    num_classes: int = 1,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    **kwargs,
) -> keras.Model:
    """TernausNet's decoder on a VGG16 encoder.

    ``ternausnet("vgg16", **kwargs)``; see `ternausnet`. Not to be confused with ``unet_vgg16``, the generic U-Net decoder on VGG16.
    """
    return ternausnet("vgg16", num_classes=num_classes, input_shape=input_shape, **kwargs)


__all__ = ["DECODER_BLOCKS", "ternausnet", "unet11", "unet16"]
