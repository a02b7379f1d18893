"""Detection heads: small convolutional towers applied to every pyramid level.

`decoupled_head` is YOLOv8's: separate box and class branches per level (weights not
shared across levels), each two conv-BN-SiLU blocks and a 1x1 predictor.

`conv_tower_head` is RetinaNet's classification / box subnet (Lin et al., 2017), laid out
as torchvision's ``RetinaNetClassificationHead`` / ``RetinaNetRegressionHead``: the same
layers (shared weights) run on every level, ``convs`` 3x3 convolutions with ReLU and a
3x3 convolution to ``num_anchors * outputs_per_anchor`` channels, initialised with
N(0, 0.01) weights. With `prior_probability` the last bias is
$-\\log((1 - \\pi) / \\pi)$, so that every anchor starts with foreground probability
$\\pi$ and the many easy negatives do not swamp the first steps of training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import layers

from kerasseg.detection.darknet import conv_bn_silu, torch_conv_initializer
from kerasseg.utils.checks import check_positive_int

__all__ = ["conv_tower_head", "decoupled_head", "prior_bias"]

#: The head's weight initialisation: N(0, 0.01), as the paper and torchvision.
HEAD_STDDEV = 0.01


def prior_bias(probability: float) -> float:
    """The logit bias $-\\log((1 - \\pi) / \\pi)$ giving sigmoid probability `probability`."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"`prior_probability` must be in (0, 1), got {probability!r}.")
    return -math.log((1.0 - probability) / probability)


def conv_tower_head(
    levels: Sequence[Any],
    outputs_per_anchor: int,
    num_anchors: int,
    *,
    convs: int = 4,
    channels: int = 256,
    prior_probability: float | None = None,
    norm: str | None = None,
    name: str = "head",
) -> list[Any]:
    """One head, weights shared across levels, applied to each of `levels`.

    Args:
        levels: Pyramid levels ``(B, H_l, W_l, C)`` (symbolic tensors), finest first.
        outputs_per_anchor: Values predicted per anchor (4 for boxes, the classes for
            classification).
        num_anchors: Anchors per location (the same on every level).
        convs: 3x3 convolution + ReLU blocks before the predictor.
        channels: Channels of those convolutions.
        prior_probability: For classification heads, the initial foreground probability
            $\\pi$ of the last layer's bias (0.01 in RetinaNet); None: zero bias.
        norm: None (torchvision's RetinaNet) or ``"group"`` (GroupNorm with 32 groups
            after each convolution, as FCOS and RetinaNet v2).
        name: Prefix of the layer names.

    Returns:
        Per level, ``(B, H_l, W_l, num_anchors * outputs_per_anchor)`` with channel
        ``a * outputs_per_anchor + k`` for anchor ``a`` (the anchor order of
        `kerasseg.detection.anchors`).
    """
    check_positive_int(outputs_per_anchor, "outputs_per_anchor")
    check_positive_int(num_anchors, "num_anchors")
    check_positive_int(channels, "channels")
    if not isinstance(convs, int) or convs < 0:
        raise ValueError(f"`convs` must be a non-negative int, got {convs!r}.")
    if norm not in (None, "group"):
        raise ValueError(f"`norm` must be None or 'group', got {norm!r}.")
    init = keras.initializers.RandomNormal(stddev=HEAD_STDDEV)
    tower = []
    for i in range(convs):
        tower.append(
            layers.Conv2D(
                channels,
                3,
                padding="same",
                kernel_initializer=init,
                use_bias=norm is None,
                name=f"{name}_conv{i}",
            )
        )
        if norm == "group":
            tower.append(layers.GroupNormalization(32, epsilon=1e-5, name=f"{name}_norm{i}"))
        tower.append(layers.ReLU(name=f"{name}_relu{i}"))
    bias = 0.0 if prior_probability is None else prior_bias(prior_probability)
    predictor = layers.Conv2D(
        num_anchors * outputs_per_anchor,
        3,
        padding="same",
        kernel_initializer=init,
        bias_initializer=keras.initializers.Constant(bias),
        name=f"{name}_predictor",
    )
    outputs = []
    for level in levels:
        x = level
        for layer in tower:
            x = layer(x)
        outputs.append(predictor(x))
    return outputs


#: ultralytics' class-bias prior: about 5 objects per 640 x 640 image, spread over classes.
_OBJECTS_PER_IMAGE = 5.0
_REFERENCE_SIZE = 640.0


def decoupled_head(
    levels: Sequence[Any],
    num_classes: int,
    strides: Sequence[int],
    *,
    reg_max: int = 16,
    box_channels: int | None = None,
    class_channels: int | None = None,
    name: str = "head",
) -> tuple[list[Any], list[Any]]:
    r"""YOLOv8's head: per level a box branch (4 x `reg_max` distance-bin logits) and a
    class branch (`num_classes` logits), with ultralytics' initial biases (box 1.0; class
    $\log(5 / C / (640 / s)^2)$, a prior of ~5 objects per 640-pixel image).

    Args:
        levels: ``[P3, P4, P5]`` ``(B, H_l, W_l, C_l)``, finest first.
        num_classes: Object classes ``C``.
        strides: Stride of each level (for the class bias).
        reg_max: Bins of each box side's distance distribution.
        box_channels: Width of the box branch; default ultralytics'
            ``max(16, C_3 / 4, 4 * reg_max)``.
        class_channels: Width of the class branch; default ``max(C_3, min(C, 100))``.
        name: Layer name prefix.

    Returns:
        ``(box_maps, class_maps)``: per level ``(B, H_l, W_l, 4 * reg_max)`` logits (side
        major: left, top, right, bottom, each `reg_max` bins) and ``(B, H_l, W_l, C)``
        logits.
    """
    check_positive_int(num_classes, "num_classes")
    check_positive_int(reg_max, "reg_max")
    if len(strides) != len(levels):
        raise ValueError(
            f"`strides` must give one stride per level ({len(levels)}), got {list(strides)}."
        )
    finest = levels[0].shape[-1]
    box_channels = box_channels or max(16, finest // 4, 4 * reg_max)
    class_channels = class_channels or max(finest, min(num_classes, 100))
    box_maps, class_maps = [], []
    for i, (level, stride) in enumerate(zip(levels, strides)):
        x = conv_bn_silu(level, box_channels, 3, name=f"{name}{i}_box1")
        x = conv_bn_silu(x, box_channels, 3, name=f"{name}{i}_box2")
        box_maps.append(
            layers.Conv2D(
                4 * reg_max,
                1,
                kernel_initializer=torch_conv_initializer(),
                bias_initializer=keras.initializers.Constant(1.0),
                name=f"{name}{i}_box_predictor",
            )(x)
        )
        prior = math.log(_OBJECTS_PER_IMAGE / num_classes / (_REFERENCE_SIZE / stride) ** 2)
        x = conv_bn_silu(level, class_channels, 3, name=f"{name}{i}_class1")
        x = conv_bn_silu(x, class_channels, 3, name=f"{name}{i}_class2")
        class_maps.append(
            layers.Conv2D(
                num_classes,
                1,
                kernel_initializer=torch_conv_initializer(),
                bias_initializer=keras.initializers.Constant(prior),
                name=f"{name}{i}_class_predictor",
            )(x)
        )
    return box_maps, class_maps
