"""VGG encoders (Simonyan and Zisserman, 2015), laid out like torchvision's ``vgg*``.

Five blocks of 3x3 convolutions (+ batch norm for the ``_bn`` variants) + ReLU, each followed
by a 2x2 max-pool. Block b works at stride ``2**(b-1)``. The features are:

| stride | feature | layer |
|---|---|---|
| 1 | last conv(+BN)+ReLU of block 1 (only with ``include_stride_1=True``) | ``block1_relu{n}`` |
| 2 | last conv(+BN)+ReLU of block 2 | ``block2_relu{n}`` |
| 4 | last conv(+BN)+ReLU of block 3 | ``block3_relu{n}`` |
| 8 | last conv(+BN)+ReLU of block 4 | ``block4_relu{n}`` |
| 16 | last conv(+BN)+ReLU of block 5 | ``block5_relu{n}`` |
| 32 | the final 2x2 max-pool, after block 5 | ``block5_pool`` |

This is segmentation_models_pytorch's VGG encoder definition (features taken just before each
max-pool, plus the last pool) and TernausNet's (conv1 ... conv5 and pool(conv5)).

Layers: ``block{b}_conv{i}`` (Conv2D with bias, as torchvision's), ``block{b}_bn{i}``,
``block{b}_relu{i}``, ``block{b}_pool``. A 3x3 stride-1 "same" convolution pads one pixel on
every side, exactly like torchvision's ``padding=1``; 2x2 stride-2 pooling needs no padding
for the even sizes an input divisible by 32 produces.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from kerasseg.encoders.specs import EncoderSpec, register_encoder

#: Output channels of the convolutions of each of the five blocks (torchvision cfgs A, B, D, E).
VGG_BLOCKS: dict[str, tuple[tuple[int, ...], ...]] = {
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "vgg19": (
        (64, 64),
        (128, 128),
        (256, 256, 256, 256),
        (512, 512, 512, 512),
        (512, 512, 512, 512),
    ),
}

_URLS = {
    "vgg11": "https://download.pytorch.org/models/vgg11-8a719046.pth",
    "vgg11_bn": "https://download.pytorch.org/models/vgg11_bn-6002323d.pth",
    "vgg13": "https://download.pytorch.org/models/vgg13-19584684.pth",
    "vgg13_bn": "https://download.pytorch.org/models/vgg13_bn-abd245e5.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg16_bn": "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    "vgg19_bn": "https://download.pytorch.org/models/vgg19_bn-c79401a0.pth",
}


def vgg_config(name: str) -> tuple[tuple[tuple[int, ...], ...], bool]:
    """The block channel plan and whether `name` (e.g. ``"vgg16_bn"``) uses batch norm."""
    base, batch_norm = (name[: -len("_bn")], True) if name.endswith("_bn") else (name, False)
    return VGG_BLOCKS[base], batch_norm


for _base, _blocks in VGG_BLOCKS.items():
    for _name in (_base, f"{_base}_bn"):
        register_encoder(
            EncoderSpec(
                name=_name,
                family="vgg",
                channels=tuple(block[-1] for block in _blocks[1:]) + (_blocks[-1][-1],),
                stride_1_channels=_blocks[0][-1],
                torchvision_url=_URLS[_name],
            )
        )


def vgg_conv(x: Any, filters: int, *, batch_norm: bool, prefix: str, index: int) -> Any:
    """One VGG layer: 3x3 "same" Conv2D (with bias) -> optional BatchNormalization -> ReLU.

    Layers are named ``{prefix}_conv{index}``, ``{prefix}_bn{index}``, ``{prefix}_relu{index}``
    and initialised like torchvision's. Shared with SegNet, whose encoder must keep these
    names (so VGG weights load into it by name) and whose decoder mirrors these layers.

    Args:
        x: (B, H, W, C) features.
        filters: Output channels.
        batch_norm: Whether to add BatchNormalization (torchvision's ``_bn`` variants).
        prefix: Layer-name prefix, e.g. ``"block3"``.
        index: Layer number within the block (1-based).

    Returns:
        (B, H, W, filters) features after the ReLU.
    """
    x = layers.Conv2D(
        filters,
        3,
        padding="same",
        # torchvision's init: kaiming normal (fan_out, ReLU gain), zero bias.
        kernel_initializer=keras.initializers.VarianceScaling(
            2.0, mode="fan_out", distribution="untruncated_normal"
        ),
        name=f"{prefix}_conv{index}",
    )(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{prefix}_bn{index}")(x)
    return layers.ReLU(name=f"{prefix}_relu{index}")(x)


def vgg_block(x: Any, block: int, channels: tuple[int, ...], *, batch_norm: bool) -> Any:
    """The convolutions of VGG block `block` (1..5), without its pooling.

    Args:
        x: (B, H, W, C) input of the block.
        block: Block number, used in the layer names (``block{block}_conv{i}`` ...).
        channels: Output channels of its convolutions, e.g. ``VGG_BLOCKS["vgg16"][2]``.
        batch_norm: Whether the convolutions are followed by batch normalisation.

    Returns:
        (B, H, W, channels[-1]) output of the block's last ReLU.
    """
    for i, filters in enumerate(channels, start=1):
        x = vgg_conv(x, filters, batch_norm=batch_norm, prefix=f"block{block}", index=i)
    return x


def vgg_features(x: Any, name: str) -> list[Any]:
    """Applies VGG encoder `name` to normalised images.

    Args:
        x: (B, H, W, C) normalised images; H and W divisible by 32.
        name: ``"vgg11"``, ``"vgg11_bn"``, ... ``"vgg19_bn"``.

    Returns:
        Six features at strides 1, 2, 4, 8, 16, 32: (B, H / s, W / s, channels).
    """
    blocks, batch_norm = vgg_config(name)
    features = []
    for b, block in enumerate(blocks, start=1):
        x = vgg_block(x, b, block, batch_norm=batch_norm)
        features.append(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{b}_pool")(x)
    features.append(x)
    # features: blocks 1..5 (strides 1..16) then the last pool (stride 32).
    return features
