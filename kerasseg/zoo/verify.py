"""Verification: the metafiles against the code, and the cached files against their hashes.

It sits above `kerasseg.zoo.metafiles` (which only reads and validates the files) and
`kerasseg.zoo.registry`, so neither of those imports the other's world. ``python -m
kerasseg.zoo.verify "fpn_*"`` prints draft metafile entries for registered models that no
metafile lists yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kerasseg import encoders
from kerasseg.zoo import recipes, registry
from kerasseg.zoo import remote as dl
from kerasseg.zoo.metafiles import EncoderWeights, Index, load_index
from kerasseg.zoo.weights import (
    TRAINED_WEIGHTS,
    CacheEntry,
    check_converted,
    check_trained,
    converted_path,
    trained_dir,
    trained_names,
)

# --------------------------------------------------------------------------------------------
# Cross-checks with the code (used by the tests and `kerasseg zoo verify --metafiles`)


def builder_path(builder: Any) -> str:
    """``module.qualname`` of a builder, as metafiles write it."""
    return f"{builder.__module__}.{builder.__qualname__}"


def check_against_registry(index: Index | None = None) -> list[str]:
    """Problems between the metafiles and the registered builders and encoders (empty: none).

    Checks that every model entry names a registered model whose builder is the one named,
    with the same defaults; that encoders exist and that each ``encoder`` entry has
    weights; and that every task weights' recipe loads and trains that model.
    """
    index = index or load_index()
    problems = []
    for card in index.models.values():
        where = f"{card.metafile}: model {card.name!r}"
        entry = registry.registered(card.name)
        if entry is None:
            problems.append(f"{where}: no model of that name is registered")
            continue
        if builder_path(entry.builder) != card.builder:
            problems.append(
                f"{where}: `builder` is {card.builder!r} but the registered builder is "
                f"{builder_path(entry.builder)!r}"
            )
        if entry.task != card.task:
            problems.append(f"{where}: task {card.task!r} != registered {entry.task!r}")
        if (entry.default_num_classes, tuple(entry.default_input_shape)) != (
            card.default_num_classes,
            tuple(card.default_input_shape),
        ):
            problems.append(
                f"{where}: defaults (num_classes={card.default_num_classes}, input_shape="
                f"{list(card.default_input_shape)}) != registered (num_classes="
                f"{entry.default_num_classes}, input_shape={list(entry.default_input_shape)})"
            )
        if card.encoder is not None and card.encoder not in encoders.list_encoders():
            problems.append(f"{where}: unknown encoder {card.encoder!r}")
        for tag, weights in card.weights.items():
            try:
                recipe = recipes.load_recipe(weights.recipe)
            except (OSError, ValueError) as error:
                problems.append(f"{where}: weights {tag!r}: recipe does not load: {error}")
                continue
            if recipe.name != weights.name:
                problems.append(
                    f"{where}: weights {tag!r}: recipe {weights.recipe} is named "
                    f"{recipe.name!r}, expected {weights.name!r}"
                )
    for weights in index.encoder_weights.values():
        if weights.encoder not in encoders.list_encoders():
            problems.append(
                f"{weights.metafile}: encoder weights {weights.name!r}: unknown encoder "
                f"{weights.encoder!r}"
            )
    return problems


def draft_entries(pattern: str = "*", *, count_params: bool = True) -> str:
    """YAML model entries for registered models that no metafile lists yet, to review and paste.

    ``python -m kerasseg.zoo.verify "fpn_*"`` prints them. The encoder is inferred from
    the name's ``_<encoder>`` suffix, the default weights are ``imagenet`` where that encoder
    has ImageNet weights, and ``params`` is measured by building each model (slow for many).
    """
    index = load_index()
    entries = []
    for name in registry.list_registered(pattern):
        if name in index.models:
            continue
        entry = registry.registered(name)
        encoder = registry.infer_encoder(name)
        card: dict[str, Any] = {
            "name": name,
            "builder": builder_path(entry.builder),
            "task": entry.task,
            "encoder": encoder,
            "defaults": {
                "num_classes": entry.default_num_classes,
                "input_shape": list(entry.default_input_shape),
            },
            "input": {"divisible_by": 32} if encoder else None,
            "default_weights": "imagenet" if encoder and index.imagenet_for(encoder) else None,
            "weights": {},
        }
        if card["input"] is None:
            del card["input"]
        if count_params:
            card["params"] = int(
                entry.builder(
                    num_classes=entry.default_num_classes, input_shape=entry.default_input_shape
                ).count_params()
            )
        entries.append(card)
    return yaml.safe_dump({"models": entries}, sort_keys=False, default_flow_style=None)


# --------------------------------------------------------------------------------------------
# Verification of the whole cache


def _in_channel_variants(weights: EncoderWeights) -> list[Path]:
    base = converted_path(weights)
    stem = base.name[: -len(".weights.h5")]
    found = sorted(base.parent.glob(f"{stem}.in*.weights.h5")) if base.parent.is_dir() else []
    return [base, *found]


def verify_cache(names: list[str] | None = None) -> list[CacheEntry]:
    """Re-hashes the cached files: downloads, converted encoders and trained weights.

    Args:
        names: Restrict to these models (their ImageNet and task weights), tags
            (``"unet11.isbi2012"``) or encoder weights (``"resnet34.imagenet"``); None: every
            file the metafiles know of plus everything in the cache.

    Returns:
        One `CacheEntry` per file, status ``"ok"``, ``"corrupt"`` or ``"missing"``. Nothing is
        deleted: a corrupt file is replaced the next time it is used.
    """
    index = load_index()
    encoder_names: set[str] = set()
    tag_names: set[str] = set()
    if names is None:
        encoder_names = set(index.encoder_weights)
        tag_names = {w.name for card in index.models.values() for w in card.weights.values()}
        tag_names |= set(trained_names())
    else:
        for name in names:
            if name in index.encoder_weights:
                encoder_names.add(name)
                continue
            arch, tag = registry.split_name(name)
            card = index.model(arch)
            if tag is not None:
                registry.resolve(name)  # unknown names raise with suggestions
                tag_names.add(name)
                continue
            registry.resolve(arch)
            if card is not None:
                encoder_names |= set(card.encoder_weights.values())
                tag_names |= {w.name for w in card.weights.values()}
            tag_names |= {n for n in trained_names() if n.split(".", 1)[0] == arch}

    entries = []
    for name in sorted(encoder_names):
        weights = index.encoder_weights[name]
        status, detail = dl.check_cached(weights.file)
        entries.append(CacheEntry("download", name, weights.file.cache_path(), status, detail))
        for path in _in_channel_variants(weights):
            status, detail = check_converted(weights, path)
            entries.append(CacheEntry("converted", name, path, status, detail))
    for name in sorted(tag_names):
        arch, tag = registry.split_name(name)
        card = index.model(arch)
        hosted = card.weights.get(tag) if card else None
        if hosted is not None and hosted.file is not None:
            status, detail = dl.check_cached(hosted.file)
            entries.append(CacheEntry("download", name, hosted.file.cache_path(), status, detail))
        status, detail = check_trained(name)
        if hosted is None or hosted.file is None or status != "missing":
            entries.append(
                CacheEntry("trained", name, trained_dir(name) / TRAINED_WEIGHTS, status, detail)
            )
    return entries


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(draft_entries(sys.argv[1] if len(sys.argv) > 1 else "*"))
