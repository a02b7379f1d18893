"""Decoder blocks shared by the encoder-decoder segmentation architectures.

Functional builders over standard Keras layers (plus `BilinearUpsampling2D`), so the models
stay serializable. Each returns symbolic tensors and names its layers with the given prefix.

* U-Net: `unet_decoder_block` (upsample, concatenate the skip, two conv-BN-ReLU) and
  `unet_decoder` (the whole expanding path over an encoder's features), as in
  segmentation_models_pytorch's ``UnetDecoder``. Used by ``unet_<encoder>`` and
  ``unet_fpn_<encoder>``.
* TernausNet: `ternausnet_decoder_block` (conv3x3-ReLU, then a transposed convolution that
  doubles the size, ReLU) on `torch_conv_transpose`, a Keras transposed convolution
  aligned exactly like PyTorch's ``ConvTranspose2d``.
* FPN: `fpn_top_down` (lateral 1x1 convolutions and the nearest-neighbour top-down pathway)
  and `fpn_segmentation_block` (conv3x3-GroupNorm-ReLU stages with bilinear 2x upsampling),
  as in smp's ``FPNDecoder`` (Kirillov et al.'s panoptic FPN head).
* `multiscale_fusion`: brings features of several strides to the finest one and merges them
  (the head of ``unet_fpn_<encoder>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras import layers

from kerasseg.layers.blocks import conv_norm_act, double_conv
from kerasseg.layers.upsampling import (
    INTERPOLATIONS,
    BilinearUpsampling2D,
    interpolating_upsampling,
)

UNET_INTERPOLATIONS = INTERPOLATIONS
MERGE_POLICIES = ("add", "concat")


def unet_decoder_block(
    x: Any,
    skip: Any | None,
    filters: int,
    *,
    batch_norm: bool = True,
    interpolation: str = "nearest",
    name: str,
) -> Any:
    """One U-Net decoder step: 2x upsampling, concatenation with the skip, two conv-BN-ReLU.

    Args:
        x: (B, H, W, C) features of the previous (coarser) decoder level.
        skip: (B, 2H, 2W, C_skip) encoder features of the target stride, or None (no skip).
        filters: Output channels of both 3x3 convolutions.
        batch_norm: Batch norm after each convolution (which then has no bias).
        interpolation: ``"nearest"`` or ``"bilinear"`` (half-pixel centres) upsampling.
        name: Prefix of the layer names.

    Returns:
        (B, 2H, 2W, filters) features. The concatenation order is [upsampled, skip], as in
        smp and TernausNet (it fixes the input-channel order of the first convolution).
    """
    if interpolation not in UNET_INTERPOLATIONS:
        raise ValueError(
            f"`interpolation` must be one of {UNET_INTERPOLATIONS}, got {interpolation!r}."
        )
    x = interpolating_upsampling(2, interpolation, name=f"{name}_upsample")(x)
    if skip is not None:
        x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    return double_conv(x, filters, batch_norm=batch_norm, name=name)


def unet_decoder(
    features: Sequence[Any],
    decoder_channels: Sequence[int],
    *,
    center: bool = False,
    batch_norm: bool = True,
    interpolation: str = "nearest",
    name: str = "decoder",
) -> list[Any]:
    """The U-Net expanding path over an encoder's features.

    Block i (0 = coarsest) upsamples 2x and concatenates ``features[-2 - i]``, the feature of
    the stride it reaches; once the features run out (the last block of an encoder whose
    finest feature is at stride 2) it upsamples without a skip.

    Args:
        features: Encoder features from the finest to the coarsest stride, each stride twice
            the previous one; the last (the bottleneck) is the decoder's input.
        decoder_channels: Output channels of each block, coarsest first, e.g.
            ``(256, 128, 64, 32, 16)``.
        center: Apply two conv-BN-ReLU (as many channels as the bottleneck) to the
            bottleneck first (smp's ``UnetCenterBlock``, which smp uses on VGG encoders).
        batch_norm: Batch norm after every convolution.
        interpolation: Upsampling mode, ``"nearest"`` or ``"bilinear"``.
        name: Prefix of the layer names (``{name}_center``, ``{name}_block{i}``).

    Returns:
        The output of every block, coarsest first: ``len(decoder_channels)`` tensors of
        shapes (B, H_i, W_i, decoder_channels[i]), each twice the size of the previous one.
    """
    x = features[-1]
    if center:
        x = double_conv(x, int(x.shape[-1]), batch_norm=batch_norm, name=f"{name}_center")
    skips = list(features[:-1])[::-1]  # coarsest first
    outputs = []
    for i, filters in enumerate(decoder_channels):
        skip = skips[i] if i < len(skips) else None
        x = unet_decoder_block(
            x,
            skip,
            filters,
            batch_norm=batch_norm,
            interpolation=interpolation,
            name=f"{name}_block{i}",
        )
        outputs.append(x)
    return outputs


def torch_conv_transpose(
    x: Any,
    filters: int,
    kernel_size: int,
    *,
    stride: int = 2,
    padding: int = 1,
    output_padding: int = 0,
    name: str,
) -> Any:
    """A transposed convolution aligned like PyTorch's ``ConvTranspose2d``.

    PyTorch's ``ConvTranspose2d(k, stride=s, padding=p, output_padding=op)`` sends input
    pixel i to outputs ``s * i + j - p`` (j = 0..k-1) and keeps sizes
    ``(n - 1) * s - 2p + k + op``. Keras' ``padding="same"`` crops a different border (for
    k=3, s=2 its output is shifted by one pixel against PyTorch's p=1, op=1), so this is a
    "valid" transposed convolution followed by cropping p pixels at the top/left and
    ``p - op`` at the bottom/right. The kernel is PyTorch's (in, out, kh, kw) weight
    transposed to (kh, kw, out, in), unflipped.

    Args:
        x: (B, H, W, C) features.
        filters: Output channels.
        kernel_size: Square kernel size k.
        stride: Stride s.
        padding: PyTorch's p.
        output_padding: PyTorch's op (at most `padding`).
        name: Name of the transposed convolution; the crop is ``{name}_crop``.

    Returns:
        (B, (H-1)s - 2p + k + op, (W-1)s - 2p + k + op, filters): (B, 2H, 2W, filters) for
        k=3, s=2, p=1, op=1 and for k=4, s=2, p=1, op=0.
    """
    if not 0 <= output_padding <= padding:
        raise ValueError(
            f"`output_padding` must be in [0, padding={padding}], got {output_padding!r}."
        )
    x = layers.Conv2DTranspose(
        filters,
        kernel_size,
        strides=stride,
        padding="valid",
        kernel_initializer="he_normal",
        name=name,
    )(x)
    crop = ((padding, padding - output_padding),) * 2
    if padding:
        x = layers.Cropping2D(crop, name=f"{name}_crop")(x)
    return x


def ternausnet_decoder_block(x: Any, middle: int, filters: int, *, name: str) -> Any:
    """TernausNet's decoder block: conv3x3-ReLU, then a 2x transposed convolution and ReLU.

    The transposed convolution is PyTorch's ``ConvTranspose2d(middle, filters, 3, stride=2,
    padding=1, output_padding=1)`` (see `torch_conv_transpose`). No normalisation.

    Args:
        x: (B, H, W, C) features (the concatenation [decoder, skip]).
        middle: Channels of the 3x3 convolution.
        filters: Output channels.
        name: Prefix: ``{name}_conv``, ``{name}_relu``, ``{name}_deconv``(``_crop``,
            ``_relu``).

    Returns:
        (B, 2H, 2W, filters) features, >= 0.
    """
    x = conv_norm_act(x, middle, batch_norm=False, name=name)
    x = torch_conv_transpose(
        x, filters, 3, stride=2, padding=1, output_padding=1, name=f"{name}_deconv"
    )
    return layers.ReLU(name=f"{name}_deconv_relu")(x)


def conv_gn_relu(x: Any, filters: int, *, groups: int = 32, name: str) -> Any:
    """3x3 convolution (no bias) -> GroupNormalization(`groups`, eps 1e-5) -> ReLU."""
    x = layers.Conv2D(
        filters,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    x = layers.GroupNormalization(groups, epsilon=1e-5, name=f"{name}_gn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def fpn_top_down(
    features: Sequence[Any],
    pyramid_channels: int,
    *,
    interpolation: str = "nearest",
    name: str = "fpn",
) -> list[Any]:
    """The FPN pyramid (Lin et al., 2017): lateral 1x1 convolutions and a top-down pathway.

    ``P_top = conv1x1(C_top)``; going down, ``P_l = upsample2x(P_{l+1}) + conv1x1(C_l)``.
    Convolutions have biases; there is no 3x3 smoothing convolution (smp's FPN has none:
    its segmentation blocks follow).

    Args:
        features: Encoder features from the finest to the coarsest stride, each stride twice
            the previous one (e.g. strides 4, 8, 16, 32).
        pyramid_channels: Channels of every pyramid level.
        interpolation: ``"nearest"`` (smp's default) or ``"bilinear"`` upsampling.
        name: Prefix: ``{name}_lateral{i}``, ``{name}_upsample{i}``, ``{name}_add{i}`` with
            i the index in `features`.

    Returns:
        The pyramid levels, finest first, (B, H_i, W_i, pyramid_channels) each.
    """
    last = len(features) - 1
    p = layers.Conv2D(pyramid_channels, 1, name=f"{name}_lateral{last}")(features[last])
    levels = [p]
    for i in reversed(range(last)):
        up = interpolating_upsampling(2, interpolation, name=f"{name}_upsample{i}")(p)
        lateral = layers.Conv2D(pyramid_channels, 1, name=f"{name}_lateral{i}")(features[i])
        p = layers.Add(name=f"{name}_add{i}")([up, lateral])
        levels.append(p)
    return levels[::-1]


def fpn_segmentation_block(
    x: Any, filters: int, upsamplings: int, *, groups: int = 32, name: str
) -> Any:
    """A semantic-FPN branch: conv3x3-GN-ReLU stages, each followed by a 2x upsampling.

    ``max(1, upsamplings)`` stages; the upsampling is bilinear with aligned corners (smp's
    ``Conv3x3GNReLU(upsample=True)``), so a level at stride 4 * 2**n reaches stride 4.

    Args:
        x: (B, H, W, C) pyramid level.
        filters: Output channels of every stage (divisible by `groups`).
        upsamplings: Number of 2x upsamplings (0 for the finest level: one stage, no
            upsampling).
        groups: GroupNormalization groups.
        name: Prefix: ``{name}_{j}_conv`` / ``_gn`` / ``_relu`` / ``_upsample``.

    Returns:
        (B, H * 2**upsamplings, W * 2**upsamplings, filters).
    """
    for j in range(max(1, upsamplings)):
        x = conv_gn_relu(x, filters, groups=groups, name=f"{name}_{j}")
        if j < upsamplings:
            x = BilinearUpsampling2D(2, align_corners=True, name=f"{name}_{j}_upsample")(x)
    return x


def multiscale_fusion(
    levels: Sequence[Any],
    scales: Sequence[int],
    filters: int,
    *,
    merge: str = "add",
    batch_norm: bool = True,
    name: str = "fusion",
) -> Any:
    """Brings features of several scales to the finest one and merges them.

    Each level gets a 3x3 conv-BN-ReLU to `filters` channels at its own resolution (cheap
    on the coarse levels), then bilinear upsampling by its scale factor; the results are
    summed (``"add"``) or concatenated (``"concat"``).

    Args:
        levels: Features (B, H / s_i, W / s_i, C_i).
        scales: Upsampling factor of each level to the common resolution (1 for the finest).
        filters: Channels of each level after its convolution.
        merge: ``"add"`` (output `filters` channels) or ``"concat"`` (``len(levels) *
            filters``).
        batch_norm: Batch norm after the per-level convolutions.
        name: Prefix: ``{name}_level{i}`` and ``{name}_merge``.

    Returns:
        (B, H, W, filters) for ``"add"``, (B, H, W, len(levels) * filters) for ``"concat"``.
    """
    if merge not in MERGE_POLICIES:
        raise ValueError(f"`merge` must be one of {MERGE_POLICIES}, got {merge!r}.")
    if len(levels) != len(scales):
        raise ValueError(
            f"`levels` and `scales` must have the same length, got {len(levels)} and {len(scales)}."
        )
    outputs = []
    for i, (x, scale) in enumerate(zip(levels, scales)):
        x = conv_norm_act(x, filters, batch_norm=batch_norm, name=f"{name}_level{i}")
        if scale > 1:
            x = interpolating_upsampling(scale, "bilinear", name=f"{name}_level{i}_upsample")(x)
        outputs.append(x)
    if len(outputs) == 1:
        return outputs[0]
    if merge == "add":
        return layers.Add(name=f"{name}_merge")(outputs)
    return layers.Concatenate(name=f"{name}_merge")(outputs)


__all__ = [
    "MERGE_POLICIES",
    "UNET_INTERPOLATIONS",
    "conv_gn_relu",
    "fpn_segmentation_block",
    "fpn_top_down",
    "multiscale_fusion",
    "ternausnet_decoder_block",
    "torch_conv_transpose",
    "unet_decoder",
    "unet_decoder_block",
]
