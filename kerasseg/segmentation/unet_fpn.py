"""U-Net + FPN: ``unet_fpn_<encoder>``, a U-Net decoder with a multi-scale (FPN-style) head.

A U-Net decoder predicts from its last, finest level only; the coarse decoder levels, which
see the most context, reach the output only through the chain of upsampling blocks. This
model keeps the U-Net decoder of ``unet_<encoder>`` (the same blocks,
`kerasseg.layers.decoders.unet_decoder`) and, as a feature pyramid network does, lets
*every* decoder level feed the prediction directly (a "hypercolumn" over the decoder):

```
encoder           U-Net decoder (unet_<encoder>)        per-level head           fusion
c5  s32  ---+
c4  s16  ---+-> block0  s16  256 ch --> conv3x3-BN-ReLU 32 -> bilinear x16 --+
c3   s8  ------> block1   s8  128 ch --> conv3x3-BN-ReLU 32 -> bilinear x8  --+
c2   s4  ------> block2   s4   64 ch --> conv3x3-BN-ReLU 32 -> bilinear x4  --+-- sum (32 ch, s1)
c1   s2  ------> block3   s2   32 ch --> conv3x3-BN-ReLU 32 -> bilinear x2  --+
                 block4   s1   16 ch --> conv3x3-BN-ReLU 32 -----------------+
                         spatial dropout 0.2 -> conv3x3-BN-ReLU 32 -> conv1x1 -> classes
```

Choices: each level is projected to a common ``head_channels`` (32) *before* upsampling,
where it is cheap, with a 3x3 convolution so each level also adapts its features for the
head; the levels are merged by **sum** (``merge="add"``), as in smp's FPN, which keeps one
32-channel map at full resolution instead of five (``merge="concat"`` is available and
gives 160 channels); a 3x3 conv-BN-ReLU mixes the merged map, then a 1x1 convolution gives
the classes. Merging at full resolution (the finest decoder level) keeps the U-Net's
full-resolution detail, unlike smp's FPN which predicts at stride 4 and upsamples.

Cost over ``unet_<encoder>``: 152,336 more parameters with one class (``unet_fpn_resnet34``
24,588,705 vs ``unet_resnet34`` 24,436,369; the head is independent of the encoder) and
five 32-channel maps at full resolution.
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
