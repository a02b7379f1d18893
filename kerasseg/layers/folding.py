"""Batch-norm folding: a trained model rewritten for faster inference.

In inference mode a ``BatchNormalization`` layer is a fixed per-channel affine map,

$$\\mathrm{BN}(z) = \\gamma \\frac{z - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta
= s\\,z + (\\beta - s\\,\\mu), \\qquad s = \\frac{\\gamma}{\\sqrt{\\sigma^2 + \\epsilon}},$$

with the moving mean $\\mu$ and variance $\\sigma^2$. When it directly follows a linear
layer $z = W x + b$ (a convolution or ``Dense`` without activation), the pair is one
linear layer with kernel $s \\odot W$ (each output channel's kernel scaled by its $s$) and
bias $s\\,(b - \\mu) + \\beta$. Folding removes the two elementwise passes over every
normalised feature map (and lets the backend fuse convolution, bias and ReLU into one
kernel). On the U-Net-ResNet34 of ``benchmarks/segmentation_throughput.py`` it makes float32
inference about 5 % faster on CPU; the outputs equal the original's up to float32 rounding.

The folded model is for inference and export: it has no batch norm left, so training it
further is training a different (un-normalised) network.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import keras
import numpy as np
from keras import layers

logger = logging.getLogger(__name__)

#: Linear layers a following batch norm can be folded into.
_CONVOLUTIONS = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_TRANSPOSED_CONVOLUTIONS = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_DEPTHWISE_CONVOLUTIONS = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
_FOLDABLE = (*_CONVOLUTIONS, *_TRANSPOSED_CONVOLUTIONS, *_DEPTHWISE_CONVOLUTIONS, layers.Dense)


def fold_batch_norm(model: keras.Model) -> keras.Model:
    """Returns a copy of `model` with batch norms folded into the layers before them.

    Every ``BatchNormalization`` whose input is the output of a ``Conv1D/2D/3D``,
    ``Conv*DTranspose``, ``DepthwiseConv1D/2D`` or ``Dense`` layer without activation, used
    by nothing else, normalising the channel axis, is removed and the layer's kernel and
    bias absorb its inference-mode affine map (see the module docstring). Nested
    functional and sequential models (such as an encoder) are folded too. Batch norms
    that do not fit (after an activation, after an ``Add``, on a shared layer, on another
    axis) stay as they are; the count of both is logged at INFO level.

    The original model is not changed. The copy keeps the layer names, dtype policies and
    every other weight, and saves and loads like any Keras model.

    Args:
        model: A built functional or sequential Keras model.

    Returns:
        A new model computing the same function in inference mode (equal up to float32
        rounding: the folded kernels are computed in float64 and stored in the kernel's
        dtype). It is meant for inference; it has no batch norm to train.

    Raises:
        TypeError: `model` is a subclassed model (its graph cannot be rewritten).
        ValueError: `model` is a sequential model that has not been built.
    """
    counts: Counter = Counter()
    folded = _fold(model, counts)
    logger.info(
        "fold_batch_norm(%s): folded %d BatchNormalization layers; %d left unfolded.",
        model.name,
        counts["folded"],
        counts["kept"],
    )
    return folded


def _fold(model: keras.Model, counts: Counter) -> keras.Model:
    if isinstance(model, keras.Sequential):
        return _fold_sequential(model, counts)
    if _is_functional(model):
        return _fold_functional(model, counts)
    raise TypeError(
        f"`model` must be a functional or sequential Keras model; got {model.name!r} of "
        f"the subclassed type {type(model).__name__}, whose graph cannot be rewritten."
    )


def _is_functional(model: Any) -> bool:
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")


def _channel_axis(layer: keras.layers.Layer, rank: int) -> int:
    """Non-negative channel axis of the layer's rank-`rank` output."""
    if isinstance(layer, layers.Dense) or getattr(layer, "data_format", None) != "channels_first":
        return rank - 1
    return 1


def _can_fold_into(layer: Any, batch_norm: layers.BatchNormalization) -> bool:
    if not isinstance(layer, _FOLDABLE):
        return False
    if keras.activations.serialize(layer.activation) != "linear":
        return False
    if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
        return False
    rank = batch_norm.input_spec.ndim  # set when the batch norm was built
    return batch_norm.axis % rank == _channel_axis(layer, rank)


def _folded_weights(layer: Any, batch_norm: layers.BatchNormalization) -> list[np.ndarray]:
    """[kernel, bias] of `layer` with `batch_norm` (inference mode) applied to its output."""
    weights = [np.asarray(w, dtype=np.float64) for w in layer.get_weights()]
    kernel = weights[0]
    channels = batch_norm.moving_mean.shape[0]
    bias = weights[1] if layer.use_bias else np.zeros(channels)
    mean = np.asarray(batch_norm.moving_mean, np.float64)
    variance = np.asarray(batch_norm.moving_variance, np.float64)
    gamma = np.asarray(batch_norm.gamma, np.float64) if batch_norm.scale else np.ones(channels)
    beta = np.asarray(batch_norm.beta, np.float64) if batch_norm.center else np.zeros(channels)
    scale = gamma / np.sqrt(variance + batch_norm.epsilon)
    if isinstance(layer, _TRANSPOSED_CONVOLUTIONS):  # kernel (*window, out, in)
        kernel = kernel * scale[:, None]
    elif isinstance(layer, _DEPTHWISE_CONVOLUTIONS):  # kernel (*window, in, multiplier)
        kernel = kernel * scale.reshape(kernel.shape[-2:])
    else:  # kernel (..., out)
        kernel = kernel * scale
    dtype = layer.kernel.dtype
    return [kernel.astype(dtype), (scale * (bias - mean) + beta).astype(dtype)]


def _with_bias(layer: Any) -> Any:
    return type(layer).from_config({**layer.get_config(), "use_bias": True})


def _copy_layer(layer: Any) -> Any:
    return type(layer).from_config(layer.get_config())


def _fold_functional(model: keras.Model, counts: Counter) -> keras.Model:
    nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
    calls = Counter(id(node.operation) for node in nodes)
    consumers = Counter(id(t) for node in nodes for t in node.input_tensors)
    outputs = {id(t) for t in model.outputs}

    folds: dict[int, layers.BatchNormalization] = {}  # id(producer) -> its batch norm
    for node in nodes:
        batch_norm = node.operation
        if not isinstance(batch_norm, layers.BatchNormalization):
            continue
        tensor = node.input_tensors[0] if len(node.input_tensors) == 1 else None
        producer = tensor._keras_history.operation if tensor is not None else None
        if (
            producer is not None
            and calls[id(batch_norm)] == 1
            and calls[id(producer)] == 1
            and consumers[id(tensor)] == 1
            and id(tensor) not in outputs
            and _can_fold_into(producer, batch_norm)
        ):
            folds[id(producer)] = batch_norm
        else:
            counts["kept"] += 1
    removed = {id(batch_norm) for batch_norm in folds.values()}
    clones: list[tuple[Any, Any]] = []

    def clone(layer: Any) -> Any:
        if isinstance(layer, keras.Model):
            return _fold(layer, counts)  # comes with its weights
        if id(layer) in removed:
            return layer  # never called (see `call`), so not part of the copy
        new = _with_bias(layer) if id(layer) in folds else _copy_layer(layer)
        clones.append((layer, new))
        return new

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if id(layer) in removed:
            return args[0]
        return layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for old, new in clones:
        if id(old) in folds:
            new.set_weights(_folded_weights(old, folds[id(old)]))
            counts["folded"] += 1
        elif old.weights:
            new.set_weights(old.get_weights())
    return folded


def _fold_sequential(model: keras.Sequential, counts: Counter) -> keras.Sequential:
    if not model.built:
        raise ValueError(
            f"`model` ({model.name!r}) is a sequential model that has not been built; call "
            "it on data or `model.build(input_shape)` first."
        )
    old_layers = list(model.layers)
    new_layers: list[Any] = []
    weights: list[tuple[Any, list[np.ndarray]]] = []
    i = 0
    while i < len(old_layers):
        layer = old_layers[i]
        following = old_layers[i + 1] if i + 1 < len(old_layers) else None
        if isinstance(layer, keras.Model):
            new_layers.append(_fold(layer, counts))
        elif isinstance(following, layers.BatchNormalization) and _can_fold_into(layer, following):
            new = _with_bias(layer)
            new_layers.append(new)
            weights.append((new, _folded_weights(layer, following)))
            counts["folded"] += 1
            i += 1  # the batch norm is absorbed
        else:
            counts["kept"] += isinstance(layer, layers.BatchNormalization)
            new = _copy_layer(layer)
            new_layers.append(new)
            weights.append((new, layer.get_weights()))
        i += 1
    folded = keras.Sequential(
        [keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype), *new_layers],
        name=model.name,
    )
    for new, values in weights:
        if values:
            new.set_weights(values)
    return folded


__all__ = ["fold_batch_norm"]
