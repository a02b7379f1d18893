"""U-Net + FPN: ``unet_fpn_<encoder>``, a U-Net decoder whose every level feeds the output.

The U-Net decoder of ``unet_<encoder>`` (`kerasseg.layers.decoders.unet_decoder`) with an
FPN-style multi-scale head (`kerasseg.layers.decoders.multiscale_fusion`): each decoder
level is projected to ``head_channels`` by a conv3x3-BN-ReLU, upsampled bilinearly to full
resolution and the levels are summed (``merge="add"``) or concatenated; spatial dropout,
a conv3x3-BN-ReLU and a 1x1 convolution to the classes follow. The docs' "Segmentation
architectures" page explains the choices, with a diagram.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
from keras import layers

from kerasseg.layers.blocks import conv_norm_act
from kerasseg.layers.decoders import (
    MERGE_POLICIES,
    UNET_INTERPOLATIONS,
    multiscale_fusion,
    unet_decoder,
)
from kerasseg.segmentation._encoder import (
    check_choice,
    check_decoder_channels,
    check_model_input_shape,
    check_positive_int,
    check_rate,
    encoder_features,
    register_encoder_variants,
)
from kerasseg.segmentation.encoder_unet import DECODER_CHANNELS, uses_center_block
from kerasseg.segmentation.heads import check_num_classes, resolve_activation, segmentation_head

#: Channels of every level in the multi-scale head and of the merged map.
HEAD_CHANNELS = 32
DROPOUT = 0.2


def unet_fpn(
    encoder: str,
    *,
    num_classes: int = 1,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    encoder_weights: str | os.PathLike | None = None,
    encoder_trainable: bool = True,
    decoder_channels: Sequence[int] = DECODER_CHANNELS,
    decoder_batch_norm: bool = True,
    center: bool | None = None,
    interpolation: str = "nearest",
    head_channels: int = HEAD_CHANNELS,
    merge: str = "add",
    dropout: float = DROPOUT,
    activation: str | None = "auto",
    name: str | None = None,
) -> keras.Model:
    """U-Net decoder on encoder `encoder` whose every level feeds a multi-scale head.

    Args:
        encoder: Encoder name, see `kerasseg.encoders.list_encoders` (``"resnet34"``...).
        num_classes: Output channels: 1 for binary segmentation, C for C classes.
        input_shape: (H, W, C_in); H and W may be None (any multiple of 32).
        encoder_weights: Passed to `kerasseg.encoders.get`: None (random initialisation) or
            a weights file.
        encoder_trainable: False freezes the encoder (its batch norm then runs in inference
            mode).
        decoder_channels: Output channels of the five U-Net decoder blocks, coarsest first.
        decoder_batch_norm: Batch norm in the decoder and head convolutions.
        center: smp's center block on the bottleneck; None: on VGG encoders only (as
            ``unet_<encoder>``).
        interpolation: U-Net decoder upsampling, ``"nearest"`` or ``"bilinear"``.
        head_channels: Channels each decoder level is projected to, and of the merged map
            (per level with ``merge="concat"``).
        merge: ``"add"`` (sum) or ``"concat"`` of the upsampled levels.
        dropout: Rate of the channel-wise dropout after the merge; 0 disables it.
        activation: ``"auto"`` (sigmoid for one class, softmax for several),
            ``"sigmoid"``, ``"softmax"`` or None for logits.
        name: Model name; default ``unet_fpn_<encoder>``.

    Returns:
        A `keras.Model` mapping (B, H, W, C_in) images in 0..255 to (B, H, W, num_classes)
        float32 probabilities (or logits).

    Raises:
        ValueError: for invalid arguments or a static size not divisible by 32 (the message
            names the nearest valid sizes); the model raises the same for such an input.
    """
    check_num_classes(num_classes)
    input_shape = check_model_input_shape(input_shape)
    decoder_channels = check_decoder_channels(decoder_channels)
    check_choice(interpolation, UNET_INTERPOLATIONS, "interpolation")
    check_positive_int(head_channels, "head_channels")
    check_choice(merge, MERGE_POLICIES, "merge")
    dropout = check_rate(dropout, "dropout")
    output_activation = resolve_activation(activation, num_classes)
    if center is None:
        center = uses_center_block(encoder)

    inputs, features = encoder_features(
        encoder, input_shape, weights=encoder_weights, trainable=encoder_trainable
    )
    levels = unet_decoder(
        features,
        decoder_channels,
        center=center,
        batch_norm=decoder_batch_norm,
        interpolation=interpolation,
        name="decoder",
    )
    scales = [2 ** (len(levels) - 1 - i) for i in range(len(levels))]  # 16, 8, 4, 2, 1
    x = multiscale_fusion(
        levels,
        scales,
        head_channels,
        merge=merge,
        batch_norm=decoder_batch_norm,
        name="fusion",
    )
    if dropout:
        x = layers.SpatialDropout2D(dropout, name="dropout")(x)
    x = conv_norm_act(x, head_channels, batch_norm=decoder_batch_norm, name="fusion_conv")
    outputs = segmentation_head(x, num_classes, output_activation)
    return keras.Model(inputs, outputs, name=name or f"unet_fpn_{encoder}")


UNET_FPN_MODELS = register_encoder_variants(
    "unet_fpn",
    unet_fpn,
    globals(),
    summary="U-Net decoder with an FPN-style multi-scale head",
)

__all__ = ["HEAD_CHANNELS", "UNET_FPN_MODELS", "unet_fpn"]
