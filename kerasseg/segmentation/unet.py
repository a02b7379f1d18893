"""U-Net (Ronneberger, Fischer and Brox, 2015).

A contracting path of double 3x3 convolutions and 2x2 max-pooling, an expanding path that
upsamples, concatenates the encoder features of the same scale (the skip connections) and
applies another double convolution, and a 1x1 convolution to class scores.

Differences to the paper, as in most modern implementations: "same" padding (the output has
the input's size, no cropping of skips), optional batch normalisation, and a configurable
depth and width. The input is an image in 0..255; the model rescales it to 0..1 itself.
"""

from __future__ import annotations

import keras
from keras import layers

from kerasseg.layers.blocks import UPSAMPLING_MODES, double_conv, upsample
from kerasseg.layers.checks import DivisibleSizeCheck, check_input_shape
from kerasseg.registry import register_model
from kerasseg.segmentation.checks import check_model_input_shape, check_positive_int
from kerasseg.segmentation.heads import check_num_classes, resolve_activation, segmentation_head


@register_model("unet", family="unet", input_multiple=2**4)  # 2**depth
def unet(
    *,
    num_classes: int = 1,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    depth: int = 4,
    filters: int = 64,
    batch_norm: bool = True,
    upsampling: str = "transpose",
    dropout: float = 0.0,
    activation: str | None = "auto",
    name: str = "unet",
) -> keras.Model:
    """The original U-Net with configurable depth and width.

    Args:
        num_classes: Output channels: 1 for binary segmentation, C for C classes.
        input_shape: (H, W, C_in); H and W may be None (any size divisible by 2**depth).
        depth: Number of 2x downsamplings (4 in the paper).
        filters: Channels of the first level; level i has ``filters * 2**i`` (64 in the paper).
        batch_norm: Batch normalisation after every convolution (not in the paper).
        upsampling: ``"transpose"`` (learned 2x2 transposed convolution, as in the paper),
            ``"bilinear"`` or ``"nearest"``.
        dropout: Dropout rate at the bottom of the contracting path (the paper uses 0.5);
            0 disables it.
        activation: Output activation: ``"auto"`` (sigmoid for one class, softmax for
            several), ``"sigmoid"``, ``"softmax"`` or None for logits.
        name: Model name.

    Returns:
        A `keras.Model` mapping (B, H, W, C_in) images in 0..255 to (B, H, W, num_classes)
        float32 probabilities (or logits).

    Raises:
        ValueError: for invalid arguments, or a static input size not divisible by
            ``2**depth`` (the message names the nearest valid sizes). A model built for any
            size raises the same error when called on such an input.
    """
    check_num_classes(num_classes)
    input_shape = check_model_input_shape(input_shape)
    check_positive_int(depth, "depth")
    check_positive_int(filters, "filters")
    if upsampling not in UPSAMPLING_MODES:
        raise ValueError(f"`upsampling` must be one of {UPSAMPLING_MODES}, got {upsampling!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
    output_activation = resolve_activation(activation, num_classes)
    stride = 2**depth
    reason = f"U-Net with depth {depth} halves the size {depth} times"
    check_input_shape(input_shape, stride, reason)

    inputs = keras.Input(shape=input_shape, name="image")
    x = DivisibleSizeCheck(stride, reason=reason, name="size_check")(inputs)
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(x)

    skips = []
    for level in range(depth):
        x = double_conv(x, filters * 2**level, batch_norm=batch_norm, name=f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level}_pool")(x)

    x = double_conv(x, filters * 2**depth, batch_norm=batch_norm, name="bottom")
    if dropout:
        x = layers.Dropout(dropout, name="bottom_dropout")(x)

    for level in reversed(range(depth)):
        level_filters = filters * 2**level
        x = upsample(x, level_filters, mode=upsampling, name=f"up{level}_upsample")
        x = layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = double_conv(x, level_filters, batch_norm=batch_norm, name=f"up{level}")

    outputs = segmentation_head(x, num_classes, output_activation)
    return keras.Model(inputs, outputs, name=name)
