"""U-Net on a pretrained encoder: ``unet_<encoder>`` (``unet_resnet34``, ``unet_vgg11`` ...).

The decoder of segmentation_models_pytorch's ``Unet``: five blocks, each a 2x upsampling
(nearest by default), the concatenation [upsampled, encoder skip] and two conv3x3-BN-ReLU;
on VGG encoders a "center" block first (smp's rule, `uses_center_block`); a 3x3
convolution to the classes at full resolution. With one class it has exactly smp's
trainable parameters (tested for every encoder). The docs' "Segmentation architectures"
page explains the design, with a diagram.

Naming: ``unet_vgg11`` is this decoder on VGG11; ``unet11`` / ``unet16`` are TernausNet
(`kerasseg.segmentation.ternausnet`), and plain ``unet`` is the original U-Net
(`kerasseg.segmentation.unet`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras

from kerasseg import encoders
from kerasseg.layers.decoders import UNET_INTERPOLATIONS, unet_decoder
from kerasseg.segmentation._encoder import (
    check_choice,
    check_decoder_channels,
    check_model_input_shape,
    encoder_features,
    register_encoder_variants,
)
from kerasseg.segmentation.heads import check_num_classes, resolve_activation, segmentation_head

#: smp's default decoder: output channels of the five blocks, stride 16 to stride 1.
DECODER_CHANNELS = (256, 128, 64, 32, 16)
#: smp's head: a 3x3 convolution to the classes.
HEAD_KERNEL_SIZE = 3


def uses_center_block(encoder: str) -> bool:
    """smp's rule for the center block (`center=None`): used on VGG encoders only."""
    return encoders.spec(encoder).family == "vgg"


def encoder_unet(
    encoder: str,
    *,
    num_classes: int = 1,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    encoder_weights: str | os.PathLike | None = None,
    encoder_trainable: bool = True,
    decoder_channels: Sequence[int] = DECODER_CHANNELS,
    decoder_batch_norm: bool = True,
    center: bool | None = None,
    stride_1_skip: bool = False,
    interpolation: str = "nearest",
    activation: str | None = "auto",
    name: str | None = None,
) -> keras.Model:
    """U-Net decoder (segmentation_models_pytorch's ``Unet``) on encoder `encoder`.

    Args:
        encoder: Encoder name, see `kerasseg.encoders.list_encoders` (``"resnet34"``...).
        num_classes: Output channels: 1 for binary segmentation, C for C classes.
        input_shape: (H, W, C_in); H and W may be None (any multiple of 32). C_in = 1 gives
            a grayscale model (see `kerasseg.encoders.get`).
        encoder_weights: Passed to `kerasseg.encoders.get`: None (random initialisation) or
            a weights file.
        encoder_trainable: False freezes the encoder (its batch norm then runs in inference
            mode).
        decoder_channels: Output channels of the five decoder blocks, coarsest first.
        decoder_batch_norm: Batch norm in the decoder convolutions (smp's
            ``decoder_use_norm``); without it the convolutions have biases.
        center: Apply smp's center block (two conv3x3-BN-ReLU) to the stride-32 feature.
            None: smp's rule, only on VGG encoders.
        stride_1_skip: Concatenate the encoder's full-resolution feature in the last block
            (VGG only). smp never does (default False, for parity).
        interpolation: Decoder upsampling, ``"nearest"`` (smp's default) or ``"bilinear"``.
        activation: ``"auto"`` (sigmoid for one class, softmax for several),
            ``"sigmoid"``, ``"softmax"`` or None for logits.
        name: Model name; default ``unet_<encoder>``.

    Returns:
        A `keras.Model` mapping (B, H, W, C_in) images in 0..255 to (B, H, W, num_classes)
        float32 probabilities (or logits).

    Raises:
        ValueError: for invalid arguments or a static size not divisible by 32 (the message
            names the nearest valid sizes); the model raises the same for such an input.
    """
    check_num_classes(num_classes)
    input_shape = check_model_input_shape(input_shape)
    spec = encoders.spec(encoder)
    decoder_channels = check_decoder_channels(decoder_channels)
    check_choice(interpolation, UNET_INTERPOLATIONS, "interpolation")
    if stride_1_skip and not spec.has_stride_1:
        raise ValueError(
            f"`stride_1_skip=True` needs an encoder with a full-resolution feature (VGG); "
            f"{encoder!r} has none."
        )
    output_activation = resolve_activation(activation, num_classes)
    if center is None:
        center = uses_center_block(encoder)

    inputs, features = encoder_features(
        encoder,
        input_shape,
        weights=encoder_weights,
        trainable=encoder_trainable,
        include_stride_1=stride_1_skip,
    )
    x = unet_decoder(
        features,
        decoder_channels,
        center=center,
        batch_norm=decoder_batch_norm,
        interpolation=interpolation,
        name="decoder",
    )[-1]
    outputs = segmentation_head(x, num_classes, output_activation, kernel_size=HEAD_KERNEL_SIZE)
    return keras.Model(inputs, outputs, name=name or f"unet_{encoder}")


UNET_MODELS = register_encoder_variants(
    "unet",
    encoder_unet,
    globals(),
    summary="U-Net decoder (segmentation_models_pytorch's Unet)",
)

__all__ = ["DECODER_CHANNELS", "UNET_MODELS", "encoder_unet"]
