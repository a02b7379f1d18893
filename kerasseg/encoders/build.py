"""`get`: builds an encoder as a `keras.Model` returning its multi-scale features."""

from __future__ import annotations

import logging
import os

import keras

from kerasseg.encoders.convert import (
    ConversionReport,
    StateDictSource,
    load_torchvision_weights,
    save_weights,
)
from kerasseg.encoders.normalization import input_normalization
from kerasseg.encoders.resnet import resnet_features
from kerasseg.encoders.specs import spec as get_spec
from kerasseg.encoders.vgg import vgg_features
from kerasseg.utils.checks import check_positive_int

logger = logging.getLogger(__name__)

_FAMILIES = {"vgg": vgg_features, "resnet": resnet_features}

#: File suffixes `get(weights=path)` reads: Keras weights, or torchvision state dicts.
KERAS_WEIGHTS_SUFFIX = ".weights.h5"
TORCH_SUFFIXES = (".pth", ".pt", ".npz")


def _resolve_input_shape(
    input_shape: tuple[int | None, int | None, int] | None, in_channels: int | None
) -> tuple[int | None, int | None, int]:
    if in_channels is not None:
        check_positive_int(in_channels, "in_channels")
    if input_shape is None:
        return (None, None, 3 if in_channels is None else in_channels)
    shape = tuple(input_shape)
    if len(shape) != 3 or not isinstance(shape[2], int) or shape[2] < 1:
        raise ValueError(
            f"`input_shape` must be (height, width, channels) with a known channel count and "
            f"None for any size, got {input_shape!r}."
        )
    if in_channels is not None and in_channels != shape[2]:
        raise ValueError(
            f"`in_channels`={in_channels} disagrees with the channels of `input_shape`="
            f"{input_shape!r}; give one of them, or make them agree."
        )
    for axis, size in zip(("height", "width"), shape[:2]):
        if size is not None and (size < 32 or size % 32):
            raise ValueError(
                f"Encoders downsample 5 times, so the input {axis} must be a multiple of 32 "
                f"(or None for any size); `input_shape` has {axis} {size}."
            )
    return shape


def get(
    name: str,
    *,
    input_shape: tuple[int | None, int | None, int] | None = None,
    weights: str | os.PathLike | None = None,
    in_channels: int | None = None,
    include_stride_1: bool = False,
    trainable: bool = True,
    model_name: str | None = None,
) -> keras.Model:
    """Builds encoder `name`: images in, features at strides 2, 4, 8, 16, 32 out.

    The model normalises its input itself (see `kerasseg.encoders.normalization`), so it takes
    raw images. The exact feature definitions are given per family in
    `kerasseg.encoders.vgg` and `kerasseg.encoders.resnet`.

    Args:
        name: Encoder name, see `list_encoders` (``"vgg11"``, ``"vgg16_bn"``, ``"resnet34"``...).
        input_shape: (H, W, C) with None for any size; H and W must be multiples of 32.
            Default ``(None, None, in_channels)``.
        weights: None (random initialisation, torchvision's scheme), or the path of a file:
            a ``.weights.h5`` saved from the same encoder (same `in_channels`), or a torchvision
            state dict (``.pth``/``.pt``, read without PyTorch; or ``.npz`` of the same names),
            converted with `kerasseg.zoo.convert` (3-channel kernels are adapted to
            `in_channels`). ``"imagenet"`` is not available here: the model zoo downloads the
            checkpoints (see the error message for the URL).
        in_channels: Input channels; default `input_shape`'s, else 3. With 1 the model takes
            grayscale images.
        include_stride_1: Also return the full-resolution feature, first (VGG only; ResNet
            raises ValueError since it has none).
        trainable: Value of the model's ``trainable`` flag. ``False`` freezes the weights and
            runs batch norm in inference mode (Keras' rule for frozen BN layers).
        model_name: Name of the returned model; default `name`.

    Returns:
        A `keras.Model` mapping (B, H, W, C) float images in 0..255 to a list of features
        ``[(B, H/s, W/s, channels_s) for s in strides]``, with strides (1,) 2, 4, 8, 16, 32
        and channels `feature_channels(name, include_stride_1)`.

    Raises:
        ValueError: for an unknown name, bad shapes, ``include_stride_1`` on ResNet, or
            weights that are not available or do not fit.
    """
    encoder = get_spec(name)
    strides = encoder.feature_strides(include_stride_1)  # raises for ResNet + stride 1
    input_shape = _resolve_input_shape(input_shape, in_channels)
    channels = input_shape[2]
    weights_path = _check_weights(name, weights)

    inputs = keras.Input(shape=input_shape, name="image")
    x = input_normalization(channels, encoder.mean, encoder.std)(inputs)
    features = _FAMILIES[encoder.family](x, name)
    if len(strides) < len(features):  # VGG without its stride-1 feature
        features = features[len(features) - len(strides) :]
    model = keras.Model(inputs, features, name=model_name or name)

    if weights_path is not None:
        _load_weights(model, name, weights_path)
    model.trainable = trainable
    return model


def _check_weights(name: str, weights: str | os.PathLike | None) -> str | None:
    if weights is None:
        return None
    if isinstance(weights, str) and weights == "imagenet":
        raise ValueError(
            f"`weights='imagenet'` is not available from `kerasseg.encoders.get`: downloading "
            f"ImageNet weights is the model zoo's job (`kerasseg.zoo`). Pass weights=None, or "
            f"the path of torchvision's checkpoint downloaded yourself "
            f"({get_spec(name).torchvision_url}), which is converted exactly."
        )
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"`weights` must be None or a file path, got {type(weights).__name__}: {weights!r}."
        )
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(f"`weights` must be None or an existing file; {path!r} does not exist.")
    if not path.endswith((KERAS_WEIGHTS_SUFFIX,) + TORCH_SUFFIXES):
        raise ValueError(
            f"`weights` file {path!r} has an unknown type: expected a Keras "
            f"'{KERAS_WEIGHTS_SUFFIX}' file or a torchvision state dict "
            f"({', '.join(TORCH_SUFFIXES)})."
        )
    return path


def _load_weights(model: keras.Model, name: str, path: str) -> None:
    if path.endswith(KERAS_WEIGHTS_SUFFIX):
        try:
            model.load_weights(path)
        except Exception as error:  # Keras raises several types for incompatible files.
            raise ValueError(
                f"Could not load weights file {path!r} into encoder {name!r} with input "
                f"{model.input_shape}: {error}"
            ) from error
        logger.info("Loaded %s weights from %s", name, path)
        return
    logger.info("Converting torchvision checkpoint %s for %s", path, name)
    load_torchvision_weights(model, path, encoder=name)  # logs its report


def convert_torchvision(
    name: str,
    source: StateDictSource,
    *,
    input_shape: tuple[int | None, int | None, int] | None = None,
    in_channels: int | None = None,
    include_stride_1: bool = False,
    trainable: bool = True,
) -> keras.Model:
    """Builds encoder `name` and loads a torchvision state dict into it.

    Args:
        name: Encoder name (also torchvision's model name), e.g. ``"vgg11"``.
        source: State dict or file path (see `read_state_dict`).
        input_shape: As for `kerasseg.encoders.get`.
        in_channels: As for `kerasseg.encoders.get`; RGB kernels are adapted to it (see
            `adapt_input_conv`).
        include_stride_1: As for `kerasseg.encoders.get`.
        trainable: As for `kerasseg.encoders.get`.

    Returns:
        The encoder with the converted weights (see `load_torchvision_weights` for the
        checks and the report, which is logged at INFO level).
    """
    model = get(
        name,
        input_shape=input_shape,
        in_channels=in_channels,
        include_stride_1=include_stride_1,
    )
    load_torchvision_weights(model, source, encoder=name)
    model.trainable = trainable
    return model


def convert_torchvision_file(
    name: str,
    source: StateDictSource,
    destination: str | os.PathLike,
    *,
    in_channels: int = 3,
) -> ConversionReport:
    """Converts a torchvision checkpoint to a ``.weights.h5`` file for encoder `name`.

    Returns:
        The `ConversionReport` of the conversion.
    """
    model = get(name, in_channels=in_channels)
    report = load_torchvision_weights(model, source, encoder=name)
    save_weights(model, destination)
    return report
