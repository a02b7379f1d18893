"""Registry of model builders: `register_model`, `get`, `list_models`, `info`.

Names are data: `<arch>_<encoder>` (``fpn_resnet34``), optionally followed by ``.<tag>`` for a
set of task weights (``unet11.isbi2012``). A builder is a function
``builder(*, num_classes, input_shape, **overrides) -> keras.Model`` decorated with
`register_model`; the modules holding builders are imported the first time the registry is
read, so importing the zoo stays cheap.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import logging
import os
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

TASKS = ("segmentation", "detection")

# Modules whose import registers builders. The zoo sits above the architectures in the
# dependency order, so it may import them; they only ever import `register_model`.
_BUILDER_MODULES = ("kerasseg.segmentation",)

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
        weights: Names of the pretrained weight sets available (empty: random init only).
    """

    name: str
    builder: Builder
    task: str
    default_num_classes: int
    default_input_shape: tuple[int | None, ...]
    description: str = ""
    weights: tuple[str, ...] = ()


_REGISTRY: dict[str, ModelEntry] = {}
_builders_loaded = False


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
        name: Registry name; must be new (a duplicate raises ValueError).
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


def _load_builders() -> None:
    global _builders_loaded
    if _builders_loaded:
        return
    for module in _BUILDER_MODULES:
        importlib.import_module(module)
    _builders_loaded = True


def _entry(name: str) -> ModelEntry:
    _load_builders()
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a model name (str), got {type(name).__name__}.")
    arch = name.split(".", 1)[0]
    if arch in _REGISTRY:
        if "." in name:
            tag = name.split(".", 1)[1]
            raise ValueError(
                f"Model {arch!r} has no weights tagged {tag!r}. Available weight sets: "
                f"{list(_REGISTRY[arch].weights) or 'none'}."
            )
        return _REGISTRY[arch]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown model name {name!r}.{hint} `kerasseg.zoo.list_models()` lists the "
        f"{len(_REGISTRY)} registered models."
    )


def list_models(
    pattern: str = "*", pretrained: bool | None = None, task: str | None = None
) -> list[str]:
    """Names of the registered models, sorted.

    Args:
        pattern: Shell-style wildcard on the name, e.g. ``"unet*"`` or ``"*_resnet34"``.
        pretrained: If True, only models with pretrained weights; if False, only without;
            None for all.
        task: ``"segmentation"`` or ``"detection"`` to filter by task; None for all.

    Returns:
        Matching model names.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS} or None, got {task!r}.")
    _load_builders()
    names = []
    for entry in _REGISTRY.values():
        if not fnmatch.fnmatchcase(entry.name, pattern):
            continue
        if task is not None and entry.task != task:
            continue
        if pretrained is not None and bool(entry.weights) != pretrained:
            continue
        names.append(entry.name)
    return sorted(names)


def info(name: str) -> dict[str, Any]:
    """Describes a registered model without building it.

    Returns:
        A dict with ``name``, ``task``, ``description``, ``default_num_classes``,
        ``default_input_shape``, ``weights`` and ``builder`` (its dotted path).
    """
    entry = _entry(name)
    return {
        "name": entry.name,
        "task": entry.task,
        "description": entry.description,
        "default_num_classes": entry.default_num_classes,
        "default_input_shape": entry.default_input_shape,
        "weights": list(entry.weights),
        "builder": f"{entry.builder.__module__}.{entry.builder.__qualname__}",
    }


def get(
    name: str,
    *,
    weights: str | os.PathLike | None = "default",
    num_classes: int | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    **overrides: Any,
) -> Any:
    """Builds a registered model, optionally loading weights.

    Args:
        name: Registered name (see `list_models`).
        weights: ``"default"`` (the model's default pretrained weights, or random
            initialisation when it has none), ``None`` (random initialisation), or the path of
            a ``.weights.h5`` file saved from the same architecture.
        num_classes: Output classes; the entry's default when None.
        input_shape: (H, W, C) with ``None`` for any size; the entry's default when None.
        **overrides: Further keyword arguments for the builder (e.g. ``depth=3``).

    Returns:
        An uncompiled `keras.Model`.
    """
    entry = _entry(name)
    model = entry.builder(
        num_classes=entry.default_num_classes if num_classes is None else num_classes,
        input_shape=entry.default_input_shape if input_shape is None else tuple(input_shape),
        **overrides,
    )
    if weights is None or weights == "default":
        # No registered model lists pretrained weights yet (they arrive with the zoo's
        # metafiles), so "default" is random initialisation.
        return model
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(
            f"`weights` must be 'default', None or the path of a .weights.h5 file; {path!r} is "
            f"none of these (no such file). Weight sets of {entry.name!r}: "
            f"{list(entry.weights) or 'none'}."
        )
    try:
        model.load_weights(path)
    except Exception as error:  # Keras raises several types for incompatible files.
        raise ValueError(
            f"Could not load weights file {path!r} into {entry.name!r}: {error}"
        ) from error
    logger.info("Loaded weights for %s from %s", entry.name, path)
    return model
