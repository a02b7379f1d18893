"""Feature Pyramid Network for segmentation: ``fpn_<encoder>`` (``fpn_resnet34`` ...).

The semantic-segmentation head of Kirillov et al.'s Panoptic FPN (2019) as
segmentation_models_pytorch's ``FPN`` builds it: a 256-channel top-down pyramid on the
stride 4..32 features (`kerasseg.layers.decoders.fpn_top_down`), a conv3x3-GroupNorm-ReLU
branch per level upsampled to stride 4 (`kerasseg.layers.decoders.fpn_segmentation_block`),
their sum, spatial dropout, a 1x1 convolution to the classes and a bilinear 4x upsampling
(aligned corners, as smp). With one class and smp's weights it has smp's parameters and
outputs (tested). The docs' "Segmentation architectures" page explains the design, with
a diagram.
"""

from __future__ import annotations

import os

import keras
from keras import layers

from kerasseg.layers.decoders import (
    MERGE_POLICIES,
    UNET_INTERPOLATIONS,
    fpn_segmentation_block,
    fpn_top_down,
)
from kerasseg.segmentation._encoder import (
    check_choice,
    check_model_input_shape,
    check_positive_int,
    check_rate,
    encoder_features,
    register_encoder_variants,
)
from kerasseg.segmentation.heads import check_num_classes, resolve_activation, segmentation_head

#: smp's FPN defaults.
PYRAMID_CHANNELS = 256
SEGMENTATION_CHANNELS = 128
GROUPS = 32
DROPOUT = 0.2
#: The branches meet at stride 4; the head upsamples back to full resolution.
OUTPUT_STRIDE = 4


def fpn(
    encoder: str,
    *,
    num_classes: int = 1,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    encoder_weights: str | os.PathLike | None = None,
    encoder_trainable: bool = True,
    pyramid_channels: int = PYRAMID_CHANNELS,
    segmentation_channels: int = SEGMENTATION_CHANNELS,
    merge: str = "add",
    dropout: float = DROPOUT,
    interpolation: str = "nearest",
    activation: str | None = "auto",
    name: str | None = None,
) -> keras.Model:
    """FPN segmentation head (segmentation_models_pytorch's ``FPN``) on encoder `encoder`.

    Args:
        encoder: Encoder name, see `kerasseg.encoders.list_encoders` (``"resnet34"``...).
        num_classes: Output channels: 1 for binary segmentation, C for C classes.
        input_shape: (H, W, C_in); H and W may be None (any multiple of 32).
        encoder_weights: Passed to `kerasseg.encoders.get`: None (random initialisation) or
            a weights file.
        encoder_trainable: False freezes the encoder (its batch norm then runs in inference
            mode).
        pyramid_channels: Channels of the pyramid levels P2..P5.
        segmentation_channels: Channels of the segmentation branches (a multiple of 32, the
            GroupNorm groups).
        merge: ``"add"`` (smp's default) or ``"concat"`` to combine the four branches.
        dropout: Rate of the channel-wise dropout before the head; 0 disables it.
        interpolation: Top-down upsampling, ``"nearest"`` (smp's default) or
            ``"bilinear"``.
        activation: ``"auto"`` (sigmoid for one class, softmax for several),
            ``"sigmoid"``, ``"softmax"`` or None for logits.
        name: Model name; default ``fpn_<encoder>``.

    Returns:
        A `keras.Model` mapping (B, H, W, C_in) images in 0..255 to (B, H, W, num_classes)
        float32 probabilities (or logits).

    Raises:
        ValueError: for invalid arguments or a static size not divisible by 32 (the message
            names the nearest valid sizes); the model raises the same for such an input.
    """
    check_num_classes(num_classes)
    input_shape = check_model_input_shape(input_shape)
    check_positive_int(pyramid_channels, "pyramid_channels")
    check_positive_int(segmentation_channels, "segmentation_channels")
    if segmentation_channels % GROUPS:
        raise ValueError(
            f"`segmentation_channels` must be a multiple of {GROUPS} (the GroupNorm groups), "
            f"got {segmentation_channels}."
        )
    check_choice(merge, MERGE_POLICIES, "merge")
    dropout = check_rate(dropout, "dropout")
    check_choice(interpolation, UNET_INTERPOLATIONS, "interpolation")
    output_activation = resolve_activation(activation, num_classes)

    inputs, features = encoder_features(
        encoder, input_shape, weights=encoder_weights, trainable=encoder_trainable
    )
    # Strides 4, 8, 16, 32 (features[0] is stride 2, unused).
    pyramid = fpn_top_down(features[1:], pyramid_channels, interpolation=interpolation, name="fpn")
    # P5 first, as smp orders them (the channel order of the "concat" merge).
    branches = [
        fpn_segmentation_block(
            pyramid[i], segmentation_channels, i, groups=GROUPS, name=f"seg_p{i + 2}"
        )
        for i in reversed(range(len(pyramid)))
    ]
    if merge == "add":
        x = layers.Add(name="merge")(branches)
    else:
        x = layers.Concatenate(name="merge")(branches)
    if dropout:
        x = layers.SpatialDropout2D(dropout, name="dropout")(x)
    outputs = segmentation_head(x, num_classes, output_activation, upsampling=OUTPUT_STRIDE)
    return keras.Model(inputs, outputs, name=name or f"fpn_{encoder}")


FPN_MODELS = register_encoder_variants(
    "fpn",
    fpn,
    globals(),
    summary="FPN segmentation head (segmentation_models_pytorch's FPN)",
)

__all__ = ["FPN_MODELS", "fpn"]
