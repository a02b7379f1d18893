"""Fully convolutional networks: FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell, 2015).

An ImageNet classifier becomes a dense predictor once its fully connected layers are read
as convolutions (`kerasseg.segmentation.fcn_conversion.fully_convolutional` does that for
any Keras classifier): the class scores then form a coarse map at the encoder's stride 32.
FCN upsamples that map to the input size with a transposed convolution initialised to
bilinear interpolation, and refines it with scores from finer encoder features:

| variant | scores from | fusion | final upsampling |
|---|---|---|---|
| FCN-32s | stride 32 | (none) | 32x (kernel 64) |
| FCN-16s | stride 32, 16 | up2(score32) + score16 | 16x (kernel 32) |
| FCN-8s | stride 32, 16, 8 | up2(up2(score32) + score16) + score8 | 8x (kernel 16) |

Layers (paper / reference Caffe names in brackets):

| layer | what | initialisation |
|---|---|---|
| ``fc6``, ``fc7`` (+ ``_bn``, ``_relu``, ``_dropout``) | the head on the stride-32 features: k x k conv, then 1x1 conv [fc6, fc7] | He normal |
| ``score32`` | 1x1 conv to class scores [score_fr] | zeros (as in the paper) |
| ``score16``, ``score8`` | 1x1 conv of the stride-16/8 skip features to scores [score_pool4, score_pool3] | zeros (as in the paper) |
| ``skip16_pool``, ``skip8_pool`` | VGG only: 2x2 max-pool making the paper's pool4/pool3 | - |
| ``up32to16``, ``up16to8`` | 2x transposed conv, kernel 4, no bias [upscore2, upscore_pool4] | bilinear, learned |
| ``fuse16``, ``fuse8`` | sum [fuse_pool4, fuse_pool3] | - |
| ``upscore`` | final 8x/16x/32x transposed conv, no bias [upscore8/16/32] | bilinear, fixed by default |
| ``head_{activation}`` | float32 output activation | - |

**Skip features.** The encoders return, for VGG, the last ReLU of each block *before* its
max-pool; the paper scores pool3 and pool4, i.e. those features after the pool. So for VGG
encoders the stride-8 and stride-16 skips are ``MaxPooling2D(2)`` of the stride-4 and
stride-8 features, which is exactly pool3 (256 channels for VGG16) and pool4 (512). For
ResNet the stage outputs at strides 8 and 16 (``layer2``, ``layer3``) are used as they are.

**Geometry.** Every convolution uses "same" padding and each transposed convolution
(kernel $2f$, stride $f$) gives exactly $f$ times its input, so for sizes divisible by 32
the fused maps line up with no cropping (the reference pads the input by 100 pixels and
crops instead; the two agree in the interior). The transposed convolutions start as
bilinear interpolation (`kerasseg.layers.BilinearKernel`); the final one stays fixed, as
in the paper, unless ``learn_final_upsampling=True``.

**Head defaults** per encoder family (``fc_channels=0`` scores the encoder features
directly; the docs' "Segmentation architectures" page discusses the head's size):

| encoder | fc_channels | fc_kernel_size | fc_batch_norm | dropout |
|---|---|---|---|---|
| VGG (paper) | 4096 | 7 | False | 0.5 |
| ResNet | 512 | 3 | True | 0.1 |

The models take RGB images in 0..255 and normalise them inside (the encoder's ImageNet
statistics). The encoder is a nested model named ``"encoder"`` (built by
`kerasseg.encoders.get`), so ``model.get_layer("encoder")`` reaches it, e.g. to freeze it or
to load weights.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import keras
from keras import layers

from kerasseg import encoders
from kerasseg.layers.checks import DivisibleSizeCheck, check_input_shape
from kerasseg.layers.initializers import BilinearKernel
from kerasseg.segmentation._encoder import register_encoder_variants
from kerasseg.segmentation.checks import check_int, check_model_input_shape
from kerasseg.segmentation.heads import check_num_classes, resolve_activation

#: FCN variants: name -> encoder strides whose scores are fused (coarsest first).
VARIANTS: dict[str, tuple[int, ...]] = {"32s": (32,), "16s": (32, 16), "8s": (32, 16, 8)}

#: Head defaults per encoder family (see the module notes).
HEAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "vgg": {"fc_channels": 4096, "fc_kernel_size": 7, "fc_batch_norm": False, "dropout": 0.5},
    "resnet": {"fc_channels": 512, "fc_kernel_size": 3, "fc_batch_norm": True, "dropout": 0.1},
}

#: The encoder's stride; inputs must be multiples of it.
OUTPUT_STRIDE = 32

_DEFAULT_INPUT_SHAPE = (None, None, 3)


def transposed_upsampling(
    x: Any, channels: int, factor: int, *, trainable: bool = True, name: str
) -> Any:
    """Upsamples by `factor` with a bilinear-initialised transposed convolution.

    Kernel ``2 * factor``, stride `factor`, "same" padding, no bias (as in FCN): the output
    is exactly `factor` times the input in height and width.

    Args:
        x: (B, H, W, channels) scores.
        channels: Channels of `x` (and of the output).
        factor: Upsampling factor (an even integer for the exact bilinear interior).
        trainable: Whether the kernel is learned.
        name: Layer name.

    Returns:
        (B, factor * H, factor * W, channels).
    """
    layer = layers.Conv2DTranspose(
        channels,
        2 * factor,
        strides=factor,
        padding="same",
        use_bias=False,
        kernel_initializer=BilinearKernel(),
        name=name,
    )
    layer.trainable = trainable
    return layer(x)


def _score(x: Any, num_classes: int, name: str) -> Any:
    # The paper zero-initialises all score layers: training starts from the coarser
    # prediction and the skips only add what improves it.
    return layers.Conv2D(
        num_classes, 1, kernel_initializer="zeros", bias_initializer="zeros", name=name
    )(x)


def _fc_head(x: Any, channels: int, kernel_size: int, batch_norm: bool, dropout: float) -> Any:
    """fc6 (k x k conv) and fc7 (1x1 conv), each + optional BN + ReLU + dropout."""
    for layer_name, size in (("fc6", kernel_size), ("fc7", 1)):
        x = layers.Conv2D(
            channels,
            size,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer="he_normal",
            name=layer_name,
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{layer_name}_bn")(x)
        x = layers.ReLU(name=f"{layer_name}_relu")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{layer_name}_dropout")(x)
    return x


def fcn(
    encoder: str = "vgg16",
    *,
    variant: str = "8s",
    num_classes: int = 21,
    input_shape: tuple[int | None, int | None, int] = _DEFAULT_INPUT_SHAPE,
    fc_channels: int | None = None,
    fc_kernel_size: int | None = None,
    fc_batch_norm: bool | None = None,
    dropout: float | None = None,
    learn_final_upsampling: bool = False,
    encoder_weights: str | os.PathLike | None = None,
    activation: str | None = "auto",
    name: str | None = None,
) -> keras.Model:
    """An FCN (Long, Shelhamer & Darrell, 2015) on any kerasseg encoder.

    The registered builders (``fcn8s_vgg16``, ``fcn16s_resnet50`` ...) call this; use it
    directly for other encoders (``kerasseg.encoders.list_encoders()``).

    Args:
        encoder: Encoder name, e.g. ``"vgg16"`` (the paper's) or ``"resnet50"``.
        variant: ``"32s"``, ``"16s"`` or ``"8s"``: the stride of the finest scores fused.
        num_classes: Output channels: 1 for binary segmentation, C for C classes (21 for
            PASCAL VOC, as in the paper).
        input_shape: (H, W, C_in); H and W may be None (any size divisible by 32).
        fc_channels: Channels of fc6 and fc7; 0 removes them (class scores straight from
            the encoder's stride-32 features). Default per encoder family (module notes):
            4096 for VGG (the paper), 512 for ResNet.
        fc_kernel_size: Kernel size of fc6 (7 for VGG, from its 7x7 pool5 map; 3 for ResNet).
        fc_batch_norm: Batch normalisation after fc6/fc7 (False for VGG, True for ResNet).
        dropout: Dropout rate after fc6 and fc7 (0.5 for VGG as in the paper, 0.1 for
            ResNet); 0 disables it.
        learn_final_upsampling: Train the final upsampling too; the paper keeps it fixed
            at bilinear interpolation (False). The 2x fusion upsamplings are always learned.
        encoder_weights: None (random initialisation), or a weights file for the encoder
            as `kerasseg.encoders.get` takes it (a ``.weights.h5`` of the same encoder or a
            torchvision ImageNet checkpoint).
        activation: ``"auto"`` (sigmoid for one class, softmax for several), ``"sigmoid"``,
            ``"softmax"`` or None for logits. Applied after the final upsampling, in float32.
        name: Model name; default ``"fcn{variant}_{encoder}"``.

    Returns:
        A `keras.Model` mapping (B, H, W, C_in) images in 0..255 to (B, H, W, num_classes)
        float32 probabilities (or logits).

    Raises:
        ValueError: for invalid arguments, or a static input size not divisible by 32 (the
            message names the nearest valid sizes). A model built for any size raises the
            same error when called on such an input.
    """
    encoder_spec = encoders.spec(encoder)
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {tuple(VARIANTS)}, got {variant!r}.")
    check_num_classes(num_classes)
    input_shape = check_model_input_shape(input_shape)
    defaults = HEAD_DEFAULTS[encoder_spec.family]
    fc_channels = defaults["fc_channels"] if fc_channels is None else fc_channels
    fc_kernel_size = defaults["fc_kernel_size"] if fc_kernel_size is None else fc_kernel_size
    fc_batch_norm = defaults["fc_batch_norm"] if fc_batch_norm is None else fc_batch_norm
    dropout = defaults["dropout"] if dropout is None else dropout
    check_int(fc_channels, "fc_channels", minimum=0)
    check_int(fc_kernel_size, "fc_kernel_size", minimum=1)
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
    output_activation = resolve_activation(activation, num_classes)
    reason = "the encoder halves the size 5 times"
    check_input_shape(input_shape, OUTPUT_STRIDE, reason)

    strides = VARIANTS[variant]
    # VGG's skips are the paper's pool3/pool4: the pool of the next finer feature.
    vgg = encoder_spec.family == "vgg"
    wanted = {32} | {s // 2 if vgg else s for s in strides[1:]}
    backbone = encoders.get(
        encoder, input_shape=input_shape, weights=encoder_weights, model_name="encoder"
    )

    inputs = keras.Input(shape=input_shape, name="image")
    x = DivisibleSizeCheck(OUTPUT_STRIDE, reason=reason, name="size_check")(inputs)
    features = dict(zip(encoder_spec.feature_strides(), backbone(x)))
    features = {s: f for s, f in features.items() if s in wanted}

    x = features[32]
    if fc_channels:
        x = _fc_head(x, fc_channels, fc_kernel_size, fc_batch_norm, float(dropout))
    scores = _score(x, num_classes, "score32")
    for coarse, fine in itertools.pairwise(strides):
        up = transposed_upsampling(scores, num_classes, 2, name=f"up{coarse}to{fine}")
        skip = features[fine // 2] if vgg else features[fine]
        if vgg:
            skip = layers.MaxPooling2D(2, name=f"skip{fine}_pool")(skip)
        scores = layers.Add(name=f"fuse{fine}")([up, _score(skip, num_classes, f"score{fine}")])
    x = transposed_upsampling(
        scores, num_classes, strides[-1], trainable=learn_final_upsampling, name="upscore"
    )
    # Same convention as `segmentation_head`, but after the upsampling: float32 output.
    outputs = layers.Activation(
        output_activation or "linear",
        dtype="float32",
        name=f"head_{output_activation or 'logits'}",
    )(x)
    return keras.Model(inputs, outputs, name=name or f"fcn{variant}_{encoder}")


#: What each variant fuses, for the registered builders' one-line summaries.
_VARIANT_SUMMARIES = {
    "32s": "FCN-32s: class scores at stride 32, upsampled 32x",
    "16s": "FCN-16s: stride-32 scores fused with stride-16 ones, upsampled 16x",
    "8s": "FCN-8s, the paper's best: scores fused down to stride 8, upsampled 8x",
}
#: The paper's VGG16 and the ResNets (skips from their stride-16 and stride-8 stages).
FCN_ENCODERS = ("vgg16", "resnet18", "resnet34", "resnet50", "resnet101")

FCN_MODELS = [
    name
    for variant, summary in _VARIANT_SUMMARIES.items()
    for name in register_encoder_variants(
        f"fcn{variant}",
        fcn,
        globals(),
        summary=summary,
        family="fcn",
        encoder_names=FCN_ENCODERS,
        num_classes=21,
        build_kwargs={"variant": variant},
    )
]
