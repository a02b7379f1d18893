"""Feature Pyramid Network for segmentation: ``fpn_<encoder>`` (``fpn_resnet34`` ...).

The semantic-segmentation FPN head of Kirillov et al.'s Panoptic FPN (2019), as
segmentation_models_pytorch's ``FPN`` builds it:

```
encoder stride  pyramid (256 ch)               segmentation branch (128 ch)
 c5      32  -> P5 = conv1x1(c5)            -> [conv3x3-GN-ReLU, up2] x 3 --+
 c4      16  -> P4 = up2(P5) + conv1x1(c4)  -> [conv3x3-GN-ReLU, up2] x 2 --+
 c3       8  -> P3 = up2(P4) + conv1x1(c3)  -> [conv3x3-GN-ReLU, up2] x 1 --+-- sum: 128, stride 4
 c2       4  -> P2 = up2(P3) + conv1x1(c2)  ->  conv3x3-GN-ReLU            --+
                    spatial dropout 0.2 -> conv1x1 -> classes -> bilinear x4 -> stride 1
```

Pyramid: 1x1 lateral convolutions (with bias) to 256 channels on the stride 4..32 features
and nearest-neighbour 2x top-down upsampling, summed. Each level then gets a branch of
conv3x3 (no bias) - GroupNorm(32 groups, eps 1e-5) - ReLU stages with bilinear 2x
upsampling (aligned corners) until it reaches stride 4. The four branches are summed
(smp's ``merge_policy="add"``; ``"concat"`` gives 4 x 128 channels), passed through
channel-wise (spatial) dropout, smp's ``Dropout2d(0.2)``, and a 1x1 convolution to the
classes, upsampled 4x bilinearly (aligned corners) to full resolution. The stride-2 feature
is not used.

With one class, ``fpn_resnet34`` has exactly smp's ``FPN("resnet34")`` trainable parameters
(23,155,393), and with smp's weights it gives smp's outputs.

Not qubvel's Keras ``segmentation_models`` FPN, which is a different, heavier variant: its
pyramid levels are at strides 16, 8, 4 and 2 (the stride-32 output enters the first one, the
finest level is at 1/2 scale), each level gets two conv-BN-ReLU, the levels are concatenated by default (4 x 128 channels at 1/2
scale) and a 3x3 convolution follows before the last 2x upsampling. Its decoder has ~1.4x
the parameters of this one on ResNet34 and roughly ten times the multiply-adds, since it
works at 1/2 instead of 1/4 scale.
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
