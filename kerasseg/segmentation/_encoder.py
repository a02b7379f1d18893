"""What every architecture on a swappable encoder shares: argument checks, the input and
size check, the encoder call, and registering one zoo builder per encoder.

An architecture module writes one generic builder ``build(encoder, *, num_classes,
input_shape, ...)`` and calls `register_encoder_variants`, which adds ``<arch>_<encoder>``
builders (``fpn_resnet34`` ...) to the module and to the zoo.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import keras

from kerasseg import encoders
from kerasseg.encoders.features import (  # noqa: F401  (re-exported for the builders)
    ENCODER_STRIDE,
    encoder_features,
)
from kerasseg.registry import register_model
from kerasseg.segmentation.checks import (  # noqa: F401  (re-exported for the builders)
    check_choice,
    check_model_input_shape,
    check_positive_int,
    check_rate,
)


def check_decoder_channels(decoder_channels: Any, blocks: int = 5) -> tuple[int, ...]:
    """Validates one output channel count per decoder block (stride 16 to 1: 5 blocks)."""
    try:
        channels = tuple(decoder_channels)
    except TypeError:
        channels = ()
    if len(channels) != blocks:
        raise ValueError(
            f"`decoder_channels` must give {blocks} channel counts (one per decoder block, "
            f"stride 16 to 1), got {decoder_channels!r}."
        )
    for value in channels:
        check_positive_int(value, "decoder_channels")
    return channels


def register_encoder_variants(
    arch: str,
    build: Callable[..., keras.Model],
    namespace: dict[str, Any],
    *,
    summary: str,
    family: str | None = None,
    encoder_names: Iterable[str] | Mapping[str, str] | None = None,
    num_classes: int = 1,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    build_kwargs: Mapping[str, Any] | None = None,
) -> list[str]:
    """Registers a builder ``<arch>_<encoder>`` per encoder and puts it in `namespace`.

    Each builder is ``builder(*, num_classes=num_classes, input_shape=input_shape,
    **kwargs)`` calling ``build(encoder, num_classes=..., input_shape=...,
    name="<arch>_<encoder>", **build_kwargs, **kwargs)``.

    Args:
        arch: Architecture prefix of the names, e.g. ``"fpn"`` or ``"fcn8s"``.
        build: The generic builder, taking the encoder name first.
        namespace: The defining module's ``globals()``: the builders become its attributes.
        summary: One line, completed with " on a <encoder> encoder." for the zoo listing.
        family: The metafile family; default `arch`.
        encoder_names: Encoders to register (default all of `kerasseg.encoders`), or a
            mapping from the name's suffix to the encoder (``{"vgg16": "vgg16_bn"}``).
        num_classes: The builders' default number of classes.
        input_shape: The builders' default input shape.
        build_kwargs: Fixed keyword arguments for `build` (``{"variant": "8s"}``).

    Returns:
        The registered names.
    """
    names = encoder_names if encoder_names is not None else encoders.list_encoders()
    suffixes = dict(names) if isinstance(names, Mapping) else {e: e for e in names}
    registered = []
    for suffix, encoder in suffixes.items():
        model_name = f"{arch}_{suffix}"
        builder = _variant(
            build, encoder, model_name, summary, num_classes, input_shape, dict(build_kwargs or {})
        )
        builder.__module__ = namespace["__name__"]
        namespace[model_name] = register_model(
            model_name, family=family or arch, encoder=encoder, input_multiple=ENCODER_STRIDE
        )(builder)
        registered.append(model_name)
    return registered


def _variant(
    build: Callable[..., keras.Model],
    encoder: str,
    model_name: str,
    summary: str,
    default_classes: int,
    default_shape: tuple[int | None, int | None, int],
    build_kwargs: dict[str, Any],
) -> Callable[..., keras.Model]:
    def builder(
        *,
        num_classes: int = default_classes,
        input_shape: tuple[int | None, int | None, int] = default_shape,
        **kwargs: Any,
    ) -> keras.Model:
        kwargs.setdefault("name", model_name)
        return build(
            encoder, num_classes=num_classes, input_shape=input_shape, **build_kwargs, **kwargs
        )

    fixed = "".join(f", {k}={v!r}" for k, v in build_kwargs.items())
    builder.__name__ = builder.__qualname__ = model_name
    builder.__doc__ = (
        f"{summary} on a {encoder} encoder.\n\n"
        f"``{build.__name__}({encoder!r}{fixed}, **kwargs)``; see `{build.__name__}` for the "
        f"arguments."
    )
    return builder
