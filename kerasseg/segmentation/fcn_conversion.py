"""A trained classifier turned into a fully convolutional network (Long et al., 2015).

**Why it works.** Let the classifier's feature extractor map its native input to an
$h \\times w \\times c$ feature map $F$, which `Flatten` turns into a vector
$v_{(i w + j) c + k} = F_{i j k}$ (row-major over H, W, C in channels-last) and a `Dense`
layer maps to

$$z_u = b_u + \\sum_{i, j, k} F_{i j k}\\, W_{(i w + j) c + k,\\, u}.$$

That is exactly a "valid" convolution with an $h \\times w$ kernel
$K_{i j k u} = W_{(i w + j) c + k,\\, u}$ (the Dense kernel reshaped in C order to
(h, w, c, units)), evaluated at the single position where it fits. Dense layers after
that act on a 1x1 map, i.e. are 1x1 convolutions; activations, dropout and
per-channel normalisation act on the channel axis either way.

On a larger input the feature extractor (convolutions and poolings, all translation
equivariant) produces a larger map, and the converted head slides over it: the score
at output position $(p, q)$ is the classifier evaluated on the input window whose
features are $F[p : p + h, q : q + w]$, i.e. the native-size window starting at input
pixel $(p\\, s, q\\, s)$, $s$ being the extractor's total stride. One forward pass thus
classifies every window of a sliding-window search, sharing the computation of the
overlapping parts; upsampling that coarse score map is FCN-32s, the starting point of
FCN-16s/8s.

The equality per window is exact when the extractor uses "valid" padding. With
"same" padding a window near the edge of a crop is padded with zeros in the classifier
but sees real neighbouring pixels in the FCN, so scores agree exactly only at the
classifier's native size (the acceptance check: output (B, 1, 1, classes) equal to
the classifier's (B, classes)).

**Global pooling heads.** ``GlobalAveragePooling2D`` (or ``GlobalMaxPooling2D``) on an
$h \\times w$ map followed by Dense layers is converted into
``AveragePooling2D`` (``MaxPooling2D``) with pool size $(h, w)$ and stride 1, followed
by 1x1 convolutions: again the classifier evaluated at every native-size window. (A
1x1 convolution applied before the global average would be equivalent only for a
purely linear head, and a classifier run on the whole larger image gives one score,
not a map.)
"""

from __future__ import annotations

import logging
from typing import Any

import keras
from keras import layers

logger = logging.getLogger(__name__)

#: Layers that may sit between the Flatten/global pooling and the output.
_ELEMENTWISE_HEAD_LAYERS = (
    layers.Activation,
    layers.ReLU,
    layers.LeakyReLU,
    layers.ELU,
    layers.Dropout,
    layers.GaussianDropout,
    layers.GaussianNoise,
    layers.AlphaDropout,
    layers.Identity,
)
#: Head layers that act along one axis, which must be the last (channel) axis.
_AXIS_HEAD_LAYERS = (layers.Softmax, layers.BatchNormalization, layers.LayerNormalization)
_GLOBAL_POOLING = {
    layers.GlobalAveragePooling2D: layers.AveragePooling2D,
    layers.GlobalMaxPooling2D: layers.MaxPooling2D,
}
_HEAD_START = (layers.Flatten, *_GLOBAL_POOLING)


def _describe(layer: Any) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _supported_head_names() -> str:
    classes = (layers.Dense, *_ELEMENTWISE_HEAD_LAYERS, *_AXIS_HEAD_LAYERS)
    return ", ".join(cls.__name__ for cls in classes)


def _producer(tensor: Any) -> tuple[Any, list[Any]]:
    """The layer that produced a symbolic tensor, and that call's input tensors."""
    history = tensor._keras_history
    node = history.operation._inbound_nodes[history.node_index]
    return history.operation, list(node.input_tensors)


def _find_head(classifier: keras.Model) -> tuple[Any, Any, list[Any]]:
    """Walks back from the output to the Flatten/global pooling.

    Returns:
        (start layer, its input tensor, the head layers after it in call order).
    """
    has_start = any(isinstance(layer, _HEAD_START) for layer in classifier.layers)
    head: list[Any] = []
    tensor = classifier.outputs[0]
    while True:
        layer, inputs = _producer(tensor)
        if isinstance(layer, _HEAD_START):
            start, features = layer, inputs[0]
            break
        supported = isinstance(layer, (layers.Dense, *_ELEMENTWISE_HEAD_LAYERS, *_AXIS_HEAD_LAYERS))
        if not supported or len(inputs) != 1:
            if has_start:
                raise ValueError(
                    f"Cannot convert {classifier.name!r}: {_describe(layer)} lies between the "
                    "Flatten/global pooling and the output, and only these head layers can "
                    f"be turned into convolutions: {_supported_head_names()}."
                )
            raise ValueError(
                f"Cannot convert {classifier.name!r}: it has no Flatten (or "
                "GlobalAveragePooling2D/GlobalMaxPooling2D) + Dense head; walking back from "
                f"the output, {_describe(layer)} is not a head layer "
                f"({_supported_head_names()})."
            )
        head.append(layer)
        tensor = inputs[0]
    head.reverse()
    if not any(isinstance(layer, layers.Dense) for layer in head):
        raise ValueError(
            f"Cannot convert {classifier.name!r}: no Dense layer follows {_describe(start)}, "
            "so there is nothing to turn into a convolution."
        )
    return start, features, head


def _check_start(start: Any, features: Any) -> tuple[int, int, int]:
    """(h, w, c) of the feature map at the Flatten/global pooling, with clear errors."""
    shape = tuple(features.shape)
    if len(shape) != 4:
        raise ValueError(
            f"Cannot convert: {_describe(start)} receives a {len(shape)}-D tensor of shape "
            f"{shape}; expected a 4-D (B, H, W, C) feature map."
        )
    data_format = getattr(start, "data_format", None) or keras.config.image_data_format()
    if data_format != "channels_last":
        raise ValueError(
            f"Cannot convert: {_describe(start)} uses data_format={data_format!r}; only "
            "channels_last classifiers are supported."
        )
    height, width, channels = shape[1:]
    if None in (height, width, channels):
        raise ValueError(
            f"Cannot convert: the feature map entering {_describe(start)} has unknown size "
            f"{shape}, so the classifier's native window is unknown. Build the classifier "
            "with a fixed input size, e.g. keras.Input((224, 224, 3))."
        )
    return int(height), int(width), int(channels)


def _rebuild_extractor(classifier: keras.Model, features: Any) -> tuple[Any, Any]:
    """Clones the layers from the input to `features` onto a (None, None, C) input."""
    source = classifier.inputs[0]
    new_input = keras.Input(
        shape=(None, None, source.shape[-1]),
        dtype=source.dtype,
        name=source._keras_history.operation.name,
    )
    extractor = keras.Model(source, features)
    try:
        clone = keras.models.clone_model(extractor, input_tensors=new_input)
    except Exception as error:
        raise ValueError(
            f"Cannot convert {classifier.name!r}: its feature extractor could not be rebuilt "
            f"for inputs of any size ((None, None, {source.shape[-1]})): {error}"
        ) from error
    clone.set_weights(extractor.get_weights())
    return new_input, clone.outputs[0]


def _dense_to_conv(dense: Any, kernel_hw: tuple[int, int], in_channels: int) -> Any:
    """A Conv2D equal to `dense` applied to the flattened (kh, kw, in_channels) window."""
    if getattr(dense, "quantization_mode", None):
        raise ValueError(f"Cannot convert quantized {_describe(dense)}; convert before quantizing.")
    config = dense.get_config()
    conv = layers.Conv2D(
        filters=dense.units,
        kernel_size=kernel_hw,
        padding="valid",
        data_format="channels_last",
        activation=config["activation"],
        use_bias=dense.use_bias,
        kernel_regularizer=config.get("kernel_regularizer"),
        bias_regularizer=config.get("bias_regularizer"),
        dtype=dense.dtype_policy,
        name=dense.name,
    )
    conv.build((None, None, None, in_channels))
    # `dense.kernel` is the effective kernel (LoRA merged). Row-major reshape matches
    # Flatten's (i * w + j) * c + k order.
    kernel = keras.ops.convert_to_numpy(dense.kernel)
    weights = [kernel.reshape(*kernel_hw, in_channels, dense.units)]
    if dense.use_bias:
        weights.append(keras.ops.convert_to_numpy(dense.bias))
    conv.set_weights(weights)
    return conv


def _copy_axis_layer(layer: Any) -> Any:
    """Softmax/BatchNorm/LayerNorm on the last axis of (B, units), moved to (B, H, W, units)."""
    config = layer.get_config()
    axis = config.get("axis", -1)
    axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
    if axes not in ([-1], [1]):
        raise ValueError(
            f"Cannot convert {_describe(layer)}: it acts on axis {axis!r} of the flat head; "
            "only the feature axis (-1) maps to the channel axis of a score map."
        )
    config["axis"] = -1 if not isinstance(axis, (list, tuple)) else [-1]
    return type(layer).from_config(config)


def fully_convolutional(classifier: keras.Model, *, name: str | None = None) -> keras.Model:
    """Converts a classifier with a Flatten + Dense head into an equivalent fully conv. model.

    The first Dense after ``Flatten`` becomes a ``Conv2D`` whose kernel covers the whole
    feature map at the Flatten (the Dense kernel reshaped from (h*w*c, units) to
    (h, w, c, units)); later Dense layers become 1x1 convolutions; activations, dropout,
    Softmax and BatchNormalization are kept. ``GlobalAveragePooling2D`` /
    ``GlobalMaxPooling2D`` heads become (h, w) average/max pooling with stride 1. The
    feature extractor is cloned onto an input of shape (None, None, C) with its weights
    copied, so the result shares no variables with `classifier`. See the module notes
    for why the result classifies every native-size window at once.

    Args:
        classifier: A built, channels-last, single-input single-output `keras.Model`
            (Sequential or functional) on images of a fixed native size (h0, w0, C),
            whose output is computed by ``Flatten`` (or global pooling) followed only by
            Dense, activation, dropout/noise, Softmax and BatchNormalization/
            LayerNormalization (on the feature axis) layers.
        name: Name of the new model; defaults to ``"<classifier name>_fcn"``.

    Returns:
        A model from (B, H, W, C) images, H >= h0 and W >= w0, to (B, H', W', units)
        score maps with $H' = \\lfloor (H - h_0) / s \\rfloor + 1$ for an extractor of
        total stride $s$ without padding (and about that with "same" padding). On
        (B, h0, w0, C) inputs it returns (B, 1, 1, units) equal to the classifier's
        output. Built from standard Keras layers only: it saves and loads as
        ``.keras`` without custom objects.

    Raises:
        ValueError: naming the layer, for a classifier without a Flatten/global-pooling +
            Dense head, with unsupported layers after the head, whose feature map at the
            Flatten has an unknown size, or with several inputs or outputs.
    """
    if not isinstance(classifier, keras.Model):
        raise TypeError(f"`classifier` must be a keras.Model, got {type(classifier).__name__}.")
    try:
        inputs, outputs = classifier.inputs, classifier.outputs
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"`classifier` {classifier.name!r} has no defined inputs/outputs (not built); "
            "build it on a keras.Input of its native size first."
        ) from error
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"`classifier` {classifier.name!r} must have one input and one output, got "
            f"{len(inputs or [])} input(s) and {len(outputs or [])} output(s)."
        )
    if len(inputs[0].shape) != 4:
        raise ValueError(
            f"`classifier` {classifier.name!r} must take 4-D (B, H, W, C) images, got input "
            f"shape {tuple(inputs[0].shape)}."
        )

    start, features, head = _find_head(classifier)
    height, width, channels = _check_start(start, features)
    new_input, x = _rebuild_extractor(classifier, features)

    if isinstance(start, layers.Flatten):
        window, in_channels = (height, width), channels
    else:
        pooling = _GLOBAL_POOLING[type(start)](
            pool_size=(height, width),
            strides=1,
            padding="valid",
            data_format="channels_last",
            dtype=start.dtype_policy,
            name=start.name,
        )
        x = pooling(x)
        window, in_channels = (1, 1), channels

    for layer in head:
        if isinstance(layer, layers.Dense):
            new_layer = _dense_to_conv(layer, window, in_channels)
            window, in_channels = (1, 1), layer.units
        else:
            if isinstance(layer, _AXIS_HEAD_LAYERS):
                new_layer = _copy_axis_layer(layer)
            else:
                new_layer = type(layer).from_config(layer.get_config())
            new_layer.build((None, None, None, in_channels))
            new_layer.set_weights(layer.get_weights())
        x = new_layer(x)

    logger.debug(
        "Converted %r: %s on a %dx%dx%d map -> %d head layer(s).",
        classifier.name,
        type(start).__name__,
        height,
        width,
        channels,
        len(head),
    )
    return keras.Model(new_input, x, name=name or f"{classifier.name}_fcn")
