"""ResNet encoders (He et al., 2016), laid out like torchvision's ``resnet*``.

ResNet18/34 use basic blocks (two 3x3 convolutions), ResNet50/101 bottleneck blocks
(1x1, 3x3, 1x1 with 4x expansion) in torchvision's "v1.5" form: a downsampling bottleneck
puts its stride on the 3x3 convolution, not on the first 1x1. The features are:

| stride | feature | layer |
|---|---|---|
| 2 | stem: 7x7/2 conv, BN, ReLU (before the max-pool) | ``relu`` |
| 4 | stage 1 (``layer1``, after the 3x3/2 max-pool) | ``layer1_{n}_out`` |
| 8 | stage 2 (``layer2``) | ``layer2_{n}_out`` |
| 16 | stage 3 (``layer3``) | ``layer3_{n}_out`` |
| 32 | stage 4 (``layer4``) | ``layer4_{n}_out`` |

as in segmentation_models_pytorch's ResNet encoders. There is no stride-1 feature: the first
layer already downsamples.

Layer names are torchvision's module paths with ``.`` replaced by ``_`` (``conv1``, ``bn1``,
``layer2_0_conv1``, ``layer2_0_downsample_0`` ...), plus ``*_pad``, ``*_relu{i}``, ``*_add``
and ``*_out`` for the parameter-free steps. Convolutions have no bias (torchvision's have
none). PyTorch pads symmetrically while Keras' "same" pads more at the bottom/right for
strided convolutions on even sizes, so every strided 3x3/7x7 convolution and the stem
max-pool get an explicit symmetric `ZeroPadding2D` and "valid" padding. Zero padding of the
max-pool is exact because its input is a ReLU output (>= 0), where PyTorch pads with -inf.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from kerasseg.encoders.specs import EncoderSpec, register_encoder

#: Block type and number of blocks in each of the four stages.
RESNET_LAYERS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}

#: Output channels per block = base width of the stage x expansion.
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = {"basic": 1, "bottleneck": 4}

_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}

for _name, (_block, _counts) in RESNET_LAYERS.items():
    register_encoder(
        EncoderSpec(
            name=_name,
            family="resnet",
            channels=(64,) + tuple(w * EXPANSION[_block] for w in STAGE_WIDTHS),
            stride_1_channels=None,
            torchvision_url=_URLS[_name],
        )
    )


def has_downsample(block: str, stage: int, index: int) -> bool:
    """Whether block `index` of `stage` (1..4) has a projection shortcut (``downsample``)."""
    # The first block of every stage changes the shape, except in layer1 of basic-block
    # ResNets (64 -> 64 channels at stride 1).
    return index == 0 and (stage > 1 or block == "bottleneck")


def _he_init() -> keras.initializers.Initializer:
    # torchvision's init: kaiming normal, fan_out, ReLU gain.
    return keras.initializers.VarianceScaling(
        2.0, mode="fan_out", distribution="untruncated_normal"
    )


def _conv(x: Any, filters: int, kernel: int, stride: int, name: str) -> Any:
    """Conv2D without bias, padded like PyTorch's ``padding=kernel // 2``."""
    if stride > 1 and kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:  # stride 1 with an odd kernel: "same" is symmetric; 1x1 needs no padding.
        padding = "same"
    return layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        use_bias=False,
        kernel_initializer=_he_init(),
        name=name,
    )(x)


def _bn(x: Any, name: str) -> Any:
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def _block(x: Any, block: str, width: int, stride: int, downsample: bool, name: str) -> Any:
    shortcut = x
    if block == "basic":
        x = _conv(x, width, 3, stride, f"{name}_conv1")
        x = layers.ReLU(name=f"{name}_relu1")(_bn(x, f"{name}_bn1"))
        x = _bn(_conv(x, width, 3, 1, f"{name}_conv2"), f"{name}_bn2")
    else:
        x = _conv(x, width, 1, 1, f"{name}_conv1")
        x = layers.ReLU(name=f"{name}_relu1")(_bn(x, f"{name}_bn1"))
        x = _conv(x, width, 3, stride, f"{name}_conv2")
        x = layers.ReLU(name=f"{name}_relu2")(_bn(x, f"{name}_bn2"))
        x = _bn(_conv(x, width * EXPANSION[block], 1, 1, f"{name}_conv3"), f"{name}_bn3")
    if downsample:
        shortcut = _conv(shortcut, width * EXPANSION[block], 1, stride, f"{name}_downsample_0")
        shortcut = _bn(shortcut, f"{name}_downsample_1")
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_out")(x)


def resnet_features(x: Any, name: str) -> list[Any]:
    """Applies ResNet encoder `name` to normalised images.

    Args:
        x: (B, H, W, C) normalised images; H and W divisible by 32.
        name: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"resnet101"``.

    Returns:
        Five features at strides 2, 4, 8, 16, 32: (B, H / s, W / s, channels).
    """
    block, counts = RESNET_LAYERS[name]
    x = _conv(x, 64, 7, 2, "conv1")
    x = layers.ReLU(name="relu")(_bn(x, "bn1"))
    features = [x]
    x = layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    for stage, (width, count) in enumerate(zip(STAGE_WIDTHS, counts), start=1):
        for index in range(count):
            stride = 2 if stage > 1 and index == 0 else 1
            x = _block(
                x,
                block,
                width,
                stride,
                has_downsample(block, stage, index),
                name=f"layer{stage}_{index}",
            )
        features.append(x)
    return features
