"""The model registry: `register_model`, `ModelEntry` and model names.

A leaf module: it imports nothing of kerasseg, so every builder module can import it
without depending on the zoo. `kerasseg.zoo` re-exports it and adds what sits above the
builders (the metafiles, weights, `get`, `info`, `list_models`).

Names are data: ``<arch>_<encoder>`` (``fpn_resnet34``), optionally followed by ``.<tag>``
for a set of task weights (``unet11.isbi2012``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["TASKS", "Builder", "ModelEntry", "register_model", "split_name"]

TASKS = ("segmentation", "detection")

Builder = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        name: Registered name, e.g. ``"unet"`` or ``"fpn_resnet34"``.
        builder: Function building the model: ``builder(*, num_classes, input_shape, **kw)``.
        task: ``"segmentation"`` or ``"detection"``.
        default_num_classes: Classes the builder uses when `get` is given none.
        default_input_shape: Input shape the builder uses when `get` is given none; ``None``
            entries mean any size (subject to the model's stride).
        description: One line for listings.
    """

    name: str
    builder: Builder
    task: str
    default_num_classes: int
    default_input_shape: tuple[int | None, ...]
    description: str = ""


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str | None = None,
    *,
    task: str = "segmentation",
    default_num_classes: int = 1,
    default_input_shape: tuple[int | None, ...] = (None, None, 3),
    description: str | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering a model builder under `name` (default: the function's name).

    Args:
        name: Registry name; must be new (a duplicate raises ValueError) and must not contain
            a dot (dots separate the weight tag).
        task: ``"segmentation"`` or ``"detection"``.
        default_num_classes: Classes used when `get` is called without `num_classes`.
        default_input_shape: Input shape used when `get` is called without one.
        description: One-line summary; defaults to the first line of the builder's docstring.

    Returns:
        The decorator, which returns the builder unchanged.
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}.")

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
        _REGISTRY[model_name] = ModelEntry(
            name=model_name,
            builder=builder,
            task=task,
            default_num_classes=default_num_classes,
            default_input_shape=tuple(default_input_shape),
            description=summary,
        )
        return builder

    return decorator


def split_name(name: str) -> tuple[str, str | None]:
    """``"unet11.isbi2012"`` -> ``("unet11", "isbi2012")``; ``"unet"`` -> ``("unet", None)``."""
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a model name (str), got {type(name).__name__}.")
    arch, _, tag = name.partition(".")
    return arch, (tag or None)
