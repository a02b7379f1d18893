"""The model registry: `register_model`, `ModelEntry` and model names.

A leaf module: it imports nothing of kerasseg, so every builder module can import it
without depending on the zoo. `kerasseg.zoo` re-exports it and adds what sits above the
builders (the metafiles, weights, `get`, `info`, `list_models`).

Names are data: ``<arch>_<encoder>`` (``fpn_resnet34``), optionally followed by ``.<tag>``
for a set of task weights (``unet11.isbi2012``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["TASKS", "Builder", "ModelEntry", "builder_defaults", "register_model", "split_name"]

TASKS = ("segmentation", "detection")

Builder = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered model: everything the code knows about it.

    What only data can tell (weights, their URLs, hashes, licences, measured metrics) is in
    the zoo's metafiles, keyed by `name`.

    Attributes:
        name: Registered name, e.g. ``"unet"`` or ``"fpn_resnet34"``.
        builder: Function building the model: ``builder(*, num_classes, input_shape, **kw)``.
        task: ``"segmentation"`` or ``"detection"``.
        family: The architecture family, the stem of the metafile describing it
            (``"unet"`` for ``unet`` and every ``unet_<encoder>``).
        default_num_classes: The builder's default `num_classes` (read from its signature).
        default_input_shape: The builder's default `input_shape` (read from its signature);
            ``None`` entries mean any size (a multiple of `input_multiple`).
        encoder: The `kerasseg.encoders` name the model nests, or None. Its ImageNet
            weights, where a metafile lists them, are what ``weights="imagenet"`` loads.
        input_multiple: Static input sizes must be multiples of it (the model's total
            stride with its default arguments); None for any size.
        description: One line for listings.
    """

    name: str
    builder: Builder
    task: str
    family: str
    default_num_classes: int
    default_input_shape: tuple[int | None, ...]
    encoder: str | None = None
    input_multiple: int | None = None
    description: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str | None = None,
    *,
    family: str | None = None,
    task: str = "segmentation",
    encoder: str | None = None,
    input_multiple: int | None = None,
    description: str | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering a model builder under `name` (default: the function's name).

    The builder's keyword defaults for ``num_classes`` and ``input_shape`` are the model's
    defaults (the only place they are written); a builder without them is refused.

    Args:
        name: Registry name; must be new (a duplicate raises ValueError) and must not contain
            a dot (dots separate the weight tag).
        family: Architecture family, the stem of its metafile (``"fpn"``); default the name.
        task: ``"segmentation"`` or ``"detection"``.
        encoder: The `kerasseg.encoders` name the model nests, if any.
        input_multiple: What static input sizes must be multiples of; None for any size.
        description: One-line summary; defaults to the first line of the builder's docstring.

    Returns:
        The decorator, which returns the builder unchanged.
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")
    if input_multiple is not None and (
        isinstance(input_multiple, bool)
        or not isinstance(input_multiple, int)
        or input_multiple < 1
    ):
        raise ValueError(
            f"`input_multiple` must be a positive integer or None, got {input_multiple!r}."
        )

    def decorator(builder: Builder) -> Builder:
        model_name = name or builder.__name__
        if "." in model_name:
            raise ValueError(
                f"Model name {model_name!r} must not contain '.': it separates the weight tag "
                f"('<arch>_<encoder>.<tag>')."
            )
        if model_name in _REGISTRY:
            existing = _REGISTRY[model_name].builder
            raise ValueError(
                f"A model named {model_name!r} is already registered (by "
                f"{existing.__module__}.{existing.__qualname__}); names must be unique."
            )
        summary = description
        if summary is None:
            doc = (builder.__doc__ or "").strip()
            summary = doc.splitlines()[0] if doc else ""
        num_classes, input_shape = builder_defaults(builder)
        _REGISTRY[model_name] = ModelEntry(
            name=model_name,
            builder=builder,
            task=task,
            family=family or model_name,
            default_num_classes=num_classes,
            default_input_shape=input_shape,
            encoder=encoder,
            input_multiple=input_multiple,
            description=summary,
        )
        return builder

    return decorator


def builder_defaults(builder: Builder) -> tuple[int, tuple[int | None, ...]]:
    """``(num_classes, input_shape)``: the keyword defaults of a builder's signature.

    Raises:
        TypeError: when the builder lacks a default for either.
    """
    parameters = inspect.signature(builder).parameters
    defaults = []
    for argument in ("num_classes", "input_shape"):
        parameter = parameters.get(argument)
        if parameter is None or parameter.default is inspect.Parameter.empty:
            raise TypeError(
                f"Builder {builder.__module__}.{builder.__qualname__} must take `{argument}` "
                f"with a default value: the registry reads the model's defaults from it."
            )
        defaults.append(parameter.default)
    num_classes, input_shape = defaults
    return int(num_classes), tuple(input_shape)


def split_name(name: str) -> tuple[str, str | None]:
    """``"unet11.isbi2012"`` -> ``("unet11", "isbi2012")``; ``"unet"`` -> ``("unet", None)``."""
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a model name (str), got {type(name).__name__}.")
    arch, _, tag = name.partition(".")
    return arch, (tag or None)
