"""Necks: what turns a backbone's features into the levels a detection head reads.

`path_aggregation` is YOLOv8's PAN (Liu et al., 2018, in ultralytics' layout): a top-down
pass (nearest 2x upsampling, concatenation, C2f) followed by a bottom-up pass (stride-2
conv, concatenation, C2f) over C3-C5.

`feature_pyramid` is the detection FPN of Lin et al. (2017) with RetinaNet's two extra
levels, laid out as torchvision's ``FeaturePyramidNetwork`` + ``LastLevelP6P7`` so that
its weights convert one to one: lateral 1x1 convolutions, nearest 2x top-down
upsampling, 3x3 output convolutions, and P6/P7 as stride-2 3x3 convolutions (P7 after a
ReLU). Stride-2 convolutions pad one pixel on every side, as PyTorch does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import layers

from kerasseg.detection.darknet import c2f_block, conv_bn_silu

__all__ = ["conv", "feature_pyramid", "kaiming_uniform", "path_aggregation"]


def kaiming_uniform() -> keras.initializers.Initializer:
    """PyTorch's ``kaiming_uniform_(a=1)`` (torchvision's FPN init): U(+-sqrt(3 / fan_in))."""
    return keras.initializers.VarianceScaling(1.0, mode="fan_in", distribution="uniform")


def conv(
    filters: int,
    kernel_size: int,
    strides: int = 1,
    name: str | None = None,
    kernel_initializer: Any = None,
    bias_initializer: Any = "zeros",
    activation: str | None = None,
) -> Any:
    """A conv with PyTorch's symmetric padding (``kernel_size // 2`` on every side).

    For stride 1 that is Keras' ``"same"``; for stride 2 Keras would pad only the
    bottom/right, which shifts the grid by half a pixel against a converted PyTorch model.

    Returns:
        A callable ``x -> y`` (padding layer and convolution).
    """
    pad = kernel_size // 2
    convolution = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same" if strides == 1 or pad == 0 else "valid",
        activation=activation,
        kernel_initializer=kernel_initializer or kaiming_uniform(),
        bias_initializer=bias_initializer,
        name=name,
    )
    if strides == 1 or pad == 0:
        return convolution
    padding = layers.ZeroPadding2D(pad, name=None if name is None else f"{name}_pad")
    return lambda x: convolution(padding(x))


def feature_pyramid(
    features: Sequence[Any],
    channels: int = 256,
    extra_levels: int = 2,
    extra_from: str = "p5",
    first_level: int = 3,
    name: str = "fpn",
) -> list[Any]:
    """FPN levels from backbone features at consecutive strides (C3, C4, C5 -> P3 ... P7).

    Args:
        features: Backbone features, finest first, each at twice the stride of the one
            before (e.g. strides 8, 16, 32).
        channels: Channels of every output level.
        extra_levels: Stride-2 levels added on top of the coarsest (RetinaNet: 2, P6 and P7).
        extra_from: What the first extra level convolves: ``"p5"`` (the coarsest pyramid
            output, torchvision's RetinaNet) or ``"c5"`` (the coarsest backbone feature,
            the paper's).
        first_level: Pyramid level of the first feature (3: stride 8), for the layer names.
        name: Prefix of the layer names: ``{name}_lateral3``, ``{name}_output3``, ...,
            ``{name}_p6``, ``{name}_p7``.

    Returns:
        ``len(features) + extra_levels`` tensors ``(B, H_l, W_l, channels)``, finest first.
    """
    if extra_from not in ("p5", "c5"):
        raise ValueError(f"`extra_from` must be 'p5' or 'c5', got {extra_from!r}.")
    if not features:
        raise ValueError("`features` must hold at least one backbone feature.")
    init = kaiming_uniform()
    laterals = [
        layers.Conv2D(
            channels, 1, kernel_initializer=init, name=f"{name}_lateral{first_level + i}"
        )(f)
        for i, f in enumerate(features)
    ]
    merged = [laterals[-1]]
    for i in range(len(features) - 2, -1, -1):
        upsampled = layers.UpSampling2D(
            2, interpolation="nearest", name=f"{name}_up{first_level + i}"
        )(merged[0])
        merged.insert(
            0, layers.Add(name=f"{name}_merge{first_level + i}")([laterals[i], upsampled])
        )
    outputs = [
        layers.Conv2D(
            channels,
            3,
            padding="same",
            kernel_initializer=init,
            name=f"{name}_output{first_level + i}",
        )(m)
        for i, m in enumerate(merged)
    ]
    source = outputs[-1] if extra_from == "p5" else features[-1]
    for k in range(extra_levels):
        level = first_level + len(features) + k
        if k > 0:
            source = layers.ReLU(name=f"{name}_p{level}_relu")(source)
        source = conv(channels, 3, strides=2, name=f"{name}_p{level}")(source)
        outputs.append(source)
    return outputs


def path_aggregation(
    features: Sequence[Any],
    top_down_repeats: int = 1,
    bottom_up_repeats: int = 1,
    name: str = "pan",
) -> list[Any]:
    """YOLOv8's path-aggregation neck on C3, C4, C5 (strides 8, 16, 32).

    Every output keeps its input's channels. Concatenations put the resampled map first,
    as ultralytics does, so converted weights line up.

    Args:
        features: ``[C3, C4, C5]``, ``(B, H_l, W_l, C_l)``, finest first.
        top_down_repeats: Bottlenecks of the top-down C2f blocks.
        bottom_up_repeats: Bottlenecks of the bottom-up C2f blocks (ultralytics: as top-down;
            keras-cv's YOLOV8Detector: 2).
        name: Layer name prefix.

    Returns:
        ``[P3, P4, P5]`` with the channels of ``[C3, C4, C5]``.
    """
    if len(features) != 3:
        raise ValueError(f"`features` must be [C3, C4, C5], got {len(features)} tensors.")
    c3, c4, c5 = features
    ch3, ch4, ch5 = (f.shape[-1] for f in features)

    def up(x: Any, level: int) -> Any:
        return layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up{level}")(x)

    def merge(parts: list[Any], filters: int, repeats: int, block: str) -> Any:
        x = layers.Concatenate(name=f"{block}_merge")(parts)
        return c2f_block(x, filters, repeats, shortcut=False, name=block)

    t4 = merge([up(c5, 4), c4], ch4, top_down_repeats, f"{name}_td4")
    p3 = merge([up(t4, 3), c3], ch3, top_down_repeats, f"{name}_td3")
    down3 = conv_bn_silu(p3, ch3, 3, strides=2, name=f"{name}_down3")
    p4 = merge([down3, t4], ch4, bottom_up_repeats, f"{name}_bu4")
    down4 = conv_bn_silu(p4, ch4, 3, strides=2, name=f"{name}_down4")
    p5 = merge([down4, c5], ch5, bottom_up_repeats, f"{name}_bu5")
    return [p3, p4, p5]
