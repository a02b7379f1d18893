"""CSP-Darknet: the YOLOv8 backbone and the blocks its neck reuses.

The layout is ultralytics' YOLOv8 (``yolov8.yaml``): a stride-2 convolution before every
stage, a C2f block (a cross-stage-partial block whose bottleneck outputs are all
concatenated) in each stage, and SPPF (three chained 5x5 max-poolings) at the end. Every
convolution is conv + batch norm (eps 1e-3, PyTorch momentum 0.03) + SiLU, padded
symmetrically as in PyTorch, so the layers line up with the PyTorch model's.

A model size is a `CSPDarknetConfig`: the base widths and depths of ``yolov8.yaml``
scaled by a width and a depth multiple (``n``: 0.25 / 0.33, ``s``: 0.5 / 0.33).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
from keras import layers

__all__ = [
    "CSPDarknetConfig",
    "c2f_block",
    "conv_bn_silu",
    "csp_darknet",
    "sppf_block",
    "torch_conv_initializer",
]

#: ``yolov8.yaml``'s base channels at strides 2, 4, 8, 16, 32 and C2f depths of stages 1-4.
BASE_WIDTHS = (64, 128, 256, 512, 1024)
BASE_DEPTHS = (3, 6, 6, 3)
#: Batch norm of ultralytics' ``Conv``: eps 1e-3, PyTorch momentum 0.03 (Keras 0.97).
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.97
SPPF_POOL = 5


def torch_conv_initializer() -> keras.initializers.Initializer:
    """PyTorch's default conv init, ``kaiming_uniform_(a=sqrt(5))``: U(+-1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform")


@dataclasses.dataclass(frozen=True)
class CSPDarknetConfig:
    """A CSP-Darknet size: ``yolov8.yaml`` scaled by width and depth multiples.

    Attributes:
        width: Width multiple of `BASE_WIDTHS` (channels rounded up to multiples of 8).
        depth: Depth multiple of the C2f depths (rounded, at least 1).
        max_channels: Cap on the base channels before the width multiple.
    """

    width: float
    depth: float
    max_channels: int = 1024

    def channels(self, base: int) -> int:
        """Channels of a layer with `base` channels in ``yolov8.yaml``."""
        return int(math.ceil(min(base, self.max_channels) * self.width / 8) * 8)

    def repeats(self, base: int) -> int:
        """Bottlenecks of a C2f block with `base` repeats in ``yolov8.yaml``."""
        return max(round(base * self.depth), 1)

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels at strides 2, 4, 8, 16, 32."""
        return tuple(self.channels(c) for c in BASE_WIDTHS)


def conv_bn_silu(
    x: Any, filters: int, kernel_size: int = 1, strides: int = 1, name: str = "conv"
) -> Any:
    """Convolution (no bias, PyTorch padding ``kernel_size // 2``) + batch norm + SiLU.

    Args:
        x: ``(B, H, W, C)`` symbolic tensor.
        filters: Output channels.
        kernel_size: Square kernel size.
        strides: 1 or 2.
        name: Layer name prefix: ``{name}_conv``, ``{name}_bn``, ``{name}_silu``.

    Returns:
        ``(B, H / strides, W / strides, filters)``.
    """
    pad = kernel_size // 2
    if strides > 1 and pad:
        # Keras' "same" would pad only bottom/right for stride 2; PyTorch pads every side.
        x = layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        use_bias=False,
        kernel_initializer=torch_conv_initializer(),
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation("silu", name=f"{name}_silu")(x)


def c2f_block(x: Any, filters: int, repeats: int, shortcut: bool, name: str) -> Any:
    """C2f: two 1x1 projections to half of `filters` each, run `repeats` 3x3-3x3 bottlenecks on the
    second, concatenate both and every bottleneck output, project to `filters`.

    Args:
        x: ``(B, H, W, C)``.
        filters: Output channels (the hidden width is half of them).
        repeats: Bottlenecks.
        shortcut: Residual connections in the bottlenecks (backbone yes, neck no).
        name: Layer name prefix.

    Returns:
        ``(B, H, W, filters)``.
    """
    hidden = filters // 2
    # PyTorch's C2f splits one 1x1 conv + BN of 2 * hidden channels in halves; two 1x1
    # convs + BN of hidden channels each compute exactly that (BN is per channel).
    first = conv_bn_silu(x, hidden, 1, name=f"{name}_in0")
    branch = conv_bn_silu(x, hidden, 1, name=f"{name}_in1")
    parts = [first, branch]
    for i in range(repeats):
        y = conv_bn_silu(branch, hidden, 3, name=f"{name}_b{i}_conv1")
        y = conv_bn_silu(y, hidden, 3, name=f"{name}_b{i}_conv2")
        branch = layers.Add(name=f"{name}_b{i}_add")([branch, y]) if shortcut else y
        parts.append(branch)
    x = layers.Concatenate(name=f"{name}_concat")(parts)
    return conv_bn_silu(x, filters, 1, name=f"{name}_out")


def sppf_block(x: Any, filters: int, name: str = "sppf") -> Any:
    """SPPF: three chained 5x5 stride-1 max-poolings, all four maps concatenated (a fast
    equivalent of SPP's parallel 5/9/13 poolings).

    Args:
        x: ``(B, H, W, C)``.
        filters: Output channels.
        name: Layer name prefix.

    Returns:
        ``(B, H, W, filters)``.
    """
    hidden = x.shape[-1] // 2
    x = conv_bn_silu(x, hidden, 1, name=f"{name}_in")
    pooled = [x]
    for i in range(3):
        pooled.append(
            layers.MaxPooling2D(SPPF_POOL, strides=1, padding="same", name=f"{name}_pool{i}")(
                pooled[-1]
            )
        )
    x = layers.Concatenate(name=f"{name}_concat")(pooled)
    return conv_bn_silu(x, filters, 1, name=f"{name}_out")


def csp_darknet(x: Any, config: CSPDarknetConfig, name: str = "backbone") -> list[Any]:
    """The YOLOv8 backbone on preprocessed images.

    Args:
        x: ``(B, H, W, 3)`` images scaled to 0..1; H and W multiples of 32.
        config: The model size.
        name: Layer name prefix.

    Returns:
        The features at strides 8, 16 and 32 (C3, C4, C5 with SPPF), finest first, with
        ``config.widths[2:]`` channels.
    """
    widths = config.widths
    x = conv_bn_silu(x, widths[0], 3, strides=2, name=f"{name}_stem")
    features = []
    for stage, (filters, base_depth) in enumerate(zip(widths[1:], BASE_DEPTHS), start=1):
        x = conv_bn_silu(x, filters, 3, strides=2, name=f"{name}_stage{stage}_down")
        x = c2f_block(
            x, filters, config.repeats(base_depth), shortcut=True, name=f"{name}_stage{stage}"
        )
        if stage == len(BASE_DEPTHS):
            x = sppf_block(x, filters, name=f"{name}_sppf")
        if stage >= 2:
            features.append(x)
    return features
