"""SegNet (Badrinarayanan, Kendall & Cipolla, 2017).

An encoder of VGG16's 13 convolutional layers (each followed by batch normalisation and
ReLU, in five blocks that end with a 2x2 max-pool) and a decoder that mirrors it. Every
encoder pooling remembers *where* each maximum came from (`MaxPoolingWithArgmax2D`); the
matching decoder step puts the values back at exactly those positions, zeros elsewhere
(`MaxUnpooling2D`), and 3x3 conv-BN-ReLU layers densify the sparse map. Only the indices
travel from encoder to decoder (no feature maps are copied, unlike U-Net), and the decoder
has no fully connected layers. The last decoder convolution produces the class scores.

Channel plan (VGG16; the decoder layer mirroring encoder conv ``(b, i)`` maps its output
channels back to its input channels, so the decoder is the encoder read backwards):

| block | encoder (after ``block{b}_pool`` the stride is) | decoder (after ``dec{b}_unpool``) |
|---|---|---|
| 1 | 3 -> 64 -> 64, pool (2) | 64 -> 64 -> ``num_classes`` (``head_conv``) |
| 2 | 64 -> 128 -> 128, pool (4) | 128 -> 128 -> 64 |
| 3 | 128 -> 256 -> 256 -> 256, pool (8) | 256 -> 256 -> 256 -> 128 |
| 4 | 256 -> 512 -> 512 -> 512, pool (16) | 512 -> 512 -> 512 -> 256 |
| 5 | 512 -> 512 -> 512 -> 512, pool (32) | 512 -> 512 -> 512 -> 512 |

The channel table is not copied here: it is `kerasseg.encoders.vgg.VGG_BLOCKS`, so
``segnet_vgg11``/``13``/``19`` follow the same rule.

**Layer names.** The encoder's layers carry the names of the `kerasseg.encoders` VGG
encoder of the same name (``normalize``, ``block{b}_conv{i}``, ``block{b}_bn{i}``,
``block{b}_relu{i}``, ``block{b}_pool``), so its weights load into SegNet by layer name:
``segnet(..., encoder_weights=path)`` does that for a file `kerasseg.encoders.get` reads
(a torchvision ImageNet checkpoint such as ``vgg16_bn-6c64b313.pth``, or a ``.weights.h5``
of the encoder), and `copy_encoder_weights` does it for a built encoder model. The
decoder's layers are ``dec{b}_unpool``, ``dec{b}_conv{i}``, ``dec{b}_bn{i}``,
``dec{b}_relu{i}`` (the paper's ``upsample{b}`` and ``conv{b}_{i}_D``) and ``head_conv``
(``conv1_1_D``), followed by the float32 activation ``head_{activation}``.

**Differences to the paper.** The input is an RGB image in 0..255, normalised with the
ImageNet statistics inside the model (the paper applies local contrast normalisation
beforehand). The size must be divisible by 32: unpooling to the pre-pool size would cope
with odd sizes, but a row dropped by a pooling would never receive a value.
"""

from __future__ import annotations

import os

import keras
from keras import layers

from kerasseg import encoders
from kerasseg.encoders.normalization import input_normalization
from kerasseg.encoders.vgg import vgg_config, vgg_conv
from kerasseg.layers.checks import DivisibleSizeCheck, check_input_shape
from kerasseg.layers.pooling import IMPLEMENTATIONS, MaxPoolingWithArgmax2D, MaxUnpooling2D
from kerasseg.segmentation._encoder import register_encoder_variants
from kerasseg.segmentation.checks import check_model_input_shape
from kerasseg.segmentation.heads import check_num_classes, resolve_activation

#: Total stride of the encoder (five 2x2 poolings); inputs must be multiples of it.
OUTPUT_STRIDE = 32

_DEFAULT_INPUT_SHAPE = (None, None, 3)


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def segnet(
    encoder: str = "vgg16_bn",
    *,
    num_classes: int = 11,
    input_shape: tuple[int | None, int | None, int] = _DEFAULT_INPUT_SHAPE,
    width: float = 1.0,
    encoder_weights: str | os.PathLike | None = None,
    pooling_implementation: str = "auto",
    activation: str | None = "auto",
    name: str | None = None,
) -> keras.Model:
    """SegNet on a VGG encoder, with max-pooling indices carried to the decoder.

    The registered builders (``segnet_vgg16`` ...) call this with the ``_bn`` encoders, as
    in the paper.

    Args:
        encoder: A VGG encoder name: ``"vgg16_bn"`` (the paper's), ``"vgg11_bn"``,
            ``"vgg13_bn"``, ``"vgg19_bn"``, or the same without ``_bn`` (then no batch
            normalisation anywhere).
        num_classes: Output channels: 1 for binary segmentation, C for C classes (11 for
            CamVid, as in the paper).
        input_shape: (H, W, C_in); H and W may be None (any size divisible by 32).
        width: Multiplier of every channel count (1.0: the paper's). Smaller values give a
            light model for small data or quick tests, whose encoder no longer fits the
            VGG weights.
        encoder_weights: None (random initialisation), or a weights file for encoder
            `encoder` as `kerasseg.encoders.get` reads it (a torchvision ImageNet
            checkpoint, e.g. ``vgg16_bn-6c64b313.pth``, or a ``.weights.h5`` saved from that
            encoder); copied into SegNet's encoder layers by name. Needs ``width=1``.
        pooling_implementation: `MaxPoolingWithArgmax2D`'s ``implementation``: ``"auto"``,
            ``"tensorflow"`` (TensorFlow's kernel; no XLA) or ``"ops"`` (any backend, XLA).
        activation: ``"auto"`` (sigmoid for one class, softmax for several), ``"sigmoid"``,
            ``"softmax"`` or None for logits; float32.
        name: Model name; default ``"segnet_{encoder}"`` without ``_bn``.

    Returns:
        A `keras.Model` mapping (B, H, W, C_in) images in 0..255 to (B, H, W, num_classes)
        float32 probabilities (or logits).

    Raises:
        ValueError: for invalid arguments, or a static input size not divisible by 32 (the
            message names the nearest valid sizes). A model built for any size raises the
            same error when called on such an input.
    """
    encoder_spec = encoders.spec(encoder)
    if encoder_spec.family != "vgg":
        raise ValueError(
            f"`encoder` must be a VGG encoder (SegNet mirrors VGG's conv blocks), got "
            f"{encoder!r}; choose from {encoders.list_encoders('vgg*')}."
        )
    check_num_classes(num_classes)
    input_shape = check_model_input_shape(input_shape)
    if not isinstance(width, (int, float)) or isinstance(width, bool) or width <= 0:
        raise ValueError(f"`width` must be a positive number, got {width!r}.")
    if encoder_weights is not None and width != 1:
        raise ValueError(
            f"`encoder_weights` needs the encoder's own channel counts (width=1), got "
            f"width={width!r}."
        )
    if pooling_implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"`pooling_implementation` must be one of {IMPLEMENTATIONS}, got "
            f"{pooling_implementation!r}."
        )
    output_activation = resolve_activation(activation, num_classes)
    reason = "SegNet's encoder halves the size 5 times"
    check_input_shape(input_shape, OUTPUT_STRIDE, reason)
    blocks, batch_norm = vgg_config(encoder)
    blocks = tuple(tuple(_scaled(c, width) for c in block) for block in blocks)

    inputs = keras.Input(shape=input_shape, name="image")
    x = DivisibleSizeCheck(OUTPUT_STRIDE, reason=reason, name="size_check")(inputs)
    x = input_normalization(input_shape[2], encoder_spec.mean, encoder_spec.std)(x)

    # Encoder: VGG's blocks, each pooling returning its argmax indices.
    pooled = []  # (pre-pool features, indices) per block
    for b, block in enumerate(blocks, start=1):
        for i, filters in enumerate(block, start=1):
            x = vgg_conv(x, filters, batch_norm=batch_norm, prefix=f"block{b}", index=i)
        before = x
        x, indices = MaxPoolingWithArgmax2D(
            2, implementation=pooling_implementation, name=f"block{b}_pool"
        )(x)
        pooled.append((before, indices))

    # Decoder: unpool with block b's indices, then block b's convolutions backwards, each
    # mapping its encoder twin's output channels back to that twin's input channels.
    for b in range(len(blocks), 0, -1):
        before, indices = pooled[b - 1]
        x = MaxUnpooling2D(name=f"dec{b}_unpool")([x, indices, before])
        block = blocks[b - 1]
        for i in range(len(block), 0, -1):
            if b == 1 and i == 1:
                break  # the last one is the classifier, below
            filters = block[i - 2] if i > 1 else blocks[b - 2][-1]
            x = vgg_conv(x, filters, batch_norm=batch_norm, prefix=f"dec{b}", index=i)

    x = layers.Conv2D(num_classes, 3, padding="same", name="head_conv")(x)
    outputs = layers.Activation(
        output_activation or "linear",
        dtype="float32",
        name=f"head_{output_activation or 'logits'}",
    )(x)
    model = keras.Model(inputs, outputs, name=name or f"segnet_{encoder.removesuffix('_bn')}")
    if encoder_weights is not None:
        source = encoders.get(encoder, input_shape=input_shape, weights=encoder_weights)
        copy_encoder_weights(source, model)
    return model


def copy_encoder_weights(encoder: keras.Model, model: keras.Model) -> list[str]:
    """Copies the weights of every layer of `encoder` into the layer of `model` with its name.

    For SegNet, `encoder` is ``kerasseg.encoders.get("vgg16_bn")`` (or the VGG encoder the
    SegNet was built on) holding, e.g., converted ImageNet weights:

    ```python
    encoder = kerasseg.encoders.get("vgg16_bn", weights="vgg16_bn-6c64b313.pth")
    model = kerasseg.zoo.get("segnet_vgg16", weights=None, num_classes=12)
    copy_encoder_weights(encoder, model)   # the 13 convolutions and their batch norms
    ```

    Args:
        encoder: Source model.
        model: Target model with a same-named, same-shaped layer for every weighted layer
            of `encoder`.

    Returns:
        The names of the layers copied.

    Raises:
        ValueError: naming the layer, when `model` lacks one or its weights differ in shape
            (nothing is copied then).
    """
    pairs = []
    for layer in encoder.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            target = model.get_layer(layer.name)
        except ValueError:
            raise ValueError(
                f"Cannot copy encoder weights: {model.name!r} has no layer named "
                f"{layer.name!r} (from {encoder.name!r})."
            ) from None
        shapes = [tuple(w.shape) for w in weights]
        target_shapes = [tuple(w.shape) for w in target.get_weights()]
        if shapes != target_shapes:
            raise ValueError(
                f"Cannot copy encoder weights: layer {layer.name!r} has weights of shapes "
                f"{shapes} in {encoder.name!r} but {target_shapes} in {model.name!r}."
            )
        pairs.append((target, weights))
    for target, weights in pairs:
        target.set_weights(weights)
    return [target.name for target, _ in pairs]


SEGNET_MODELS = register_encoder_variants(
    "segnet",
    segnet,
    globals(),
    summary="SegNet (the paper's decoder, unpooling with the encoder's pooling indices)",
    # The paper's encoders have batch normalisation; the names leave out the "_bn".
    encoder_names={v: f"{v}_bn" for v in ("vgg16", "vgg11", "vgg13", "vgg19")},
    num_classes=11,
)
