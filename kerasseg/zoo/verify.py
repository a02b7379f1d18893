"""Verification: the metafiles against the code, and the cached files against their hashes.

It sits above `kerasseg.zoo.metafiles` (which only reads and validates the files) and
`kerasseg.zoo.registry`, so neither of those imports the other's world. It also writes the
zoo's generated data, the parameter counts of ``zoo/params.yml`` (``kerasseg zoo params
--write``).
"""

from __future__ import annotations

from pathlib import Path

import keras

from kerasseg import encoders
from kerasseg.utils.files import atomic_path
from kerasseg.zoo import recipes, registry
from kerasseg.zoo import remote as dl
from kerasseg.zoo.metafiles import (
    PARAMS_FILE,
    EncoderWeights,
    Index,
    clear_cache,
    load_index,
    packaged_root,
)
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


def check_against_registry(index: Index | None = None) -> list[str]:
    """Problems between the metafiles and the registered builders and encoders (empty: none).

    Checks that every model entry names a registered model of the metafile's family; that
    encoder weights are for the model's encoder and that ``imagenet`` defaults have such
    weights; that converted weights are for a model their format converts to; that every
    task weights' recipe loads and trains that model; and that the generated parameter
    counts name registered models only.
    """
    from kerasseg.zoo.convert_detection import TORCHVISION_DETECTORS

    index = index or load_index()
    problems = []
    for card in index.models.values():
        where = f"{card.metafile}: model {card.name!r}"
        entry = registry.registered(card.name)
        if entry is None:
            problems.append(f"{where}: no model of that name is registered")
            continue
        if entry.family != card.family:
            problems.append(
                f"{where}: the model is registered in family {entry.family!r}, so its entry "
                f"belongs in metafiles/{entry.family}.yml"
            )
        for key, weights_name in card.encoder_weights.items():
            weights = index.encoder_weights.get(weights_name)
            if weights is not None and weights.encoder != entry.encoder:
                problems.append(
                    f"{where}: encoder_weights.{key} ({weights_name!r}) is for encoder "
                    f"{weights.encoder!r}, but the model's encoder is {entry.encoder!r}"
                )
        if card.default_weights == "imagenet" and not card.encoder_weights:
            if entry.encoder is None or index.imagenet_for(entry.encoder) is None:
                problems.append(
                    f"{where}: default_weights 'imagenet', but no metafile lists ImageNet "
                    f"weights for its encoder {entry.encoder!r}"
                )
        for key, converted in card.converted_weights.items():
            if converted.format == "torchvision" and card.name not in TORCHVISION_DETECTORS:
                problems.append(
                    f"{where}: converted_weights.{key}: no torchvision conversion for this "
                    f"model (kerasseg.zoo.convert_detection converts "
                    f"{sorted(TORCHVISION_DETECTORS)})"
                )
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
    unknown = sorted(set(index.params) - set(registry.list_registered()))
    if unknown:
        problems.append(
            f"{PARAMS_FILE}: counts for unregistered models {unknown}; regenerate it with "
            f"`{PARAMS_COMMAND}`"
        )
    return problems


# --------------------------------------------------------------------------------------------
# Generated data: parameter counts

#: The command that writes ``zoo/params.yml``.
PARAMS_COMMAND = "kerasseg zoo params --write"


def count_params(name: str) -> int:
    """Parameters of a registered model built with its defaults."""
    entry = registry.registered(name) or registry.resolve(name)[0]
    # Only the graph is needed to count: skip initialising (up to 136M) weights.
    with keras.StatelessScope():
        model = entry.builder(
            num_classes=entry.default_num_classes, input_shape=entry.default_input_shape
        )
    return int(model.count_params())


def params_yaml(counts: dict[str, int]) -> str:
    """The text of ``params.yml`` for `counts` (sorted, with the header saying how to regenerate)."""
    lines = [
        "# Generated: parameters of each registered model built with its defaults",
        f"# (count_params(), random init). Do not edit: run `{PARAMS_COMMAND}`.",
        *(f"{name}: {counts[name]}" for name in sorted(counts)),
    ]
    return "\n".join(lines) + "\n"


def write_params(path: Path | None = None, pattern: str = "*") -> Path:
    """Counts the parameters of every registered model matching `pattern` (slow: builds each)
    and writes them, with the counts already there for other models, to the packaged
    ``params.yml`` (or `path`)."""
    from tqdm.auto import tqdm

    packaged = packaged_root() / PARAMS_FILE
    path = path or packaged
    counts = dict(load_index().params) if path == packaged else {}
    registered = registry.list_registered()
    counts = {name: count for name, count in counts.items() if name in registered}
    for name in tqdm(registry.list_registered(pattern), desc="counting parameters", unit="model"):
        counts[name] = count_params(name)
        keras.backend.clear_session()
    with atomic_path(path) as partial:
        partial.write_text(params_yaml(counts), encoding="utf-8")
    clear_cache()
    return path


# --------------------------------------------------------------------------------------------
# Verification of the whole cache


def _in_channel_variants(weights: EncoderWeights) -> list[Path]:
    base = converted_path(weights)
    stem = base.name[: -len(".weights.h5")]
    found = sorted(base.parent.glob(f"{stem}.in*.weights.h5")) if base.parent.is_dir() else []
    return [base, *found]


def verify_cache(names: list[str] | None = None) -> list[CacheEntry]:
    """Re-hashes the cached files: downloads, converted encoders and models, trained weights.

    Args:
        names: Restrict to these models (their ImageNet, converted and task weights), tags
            (``"unet11.isbi2012"``), encoder weights (``"resnet34.imagenet"``) or converted
            weights (``"retinanet_resnet50.coco"``); None: every file the metafiles know of
            plus everything in the cache.

    Returns:
        One `CacheEntry` per file, status ``"ok"``, ``"corrupt"`` or ``"missing"``. Nothing is
        deleted: a corrupt file is replaced the next time it is used.
    """
    index = load_index()
    encoder_names: set[str] = set()
    converted_names: set[str] = set()
    tag_names: set[str] = set()
    if names is None:
        encoder_names = set(index.encoder_weights)
        converted_names = {
            w.name for card in index.models.values() for w in card.converted_weights.values()
        }
        tag_names = {w.name for card in index.models.values() for w in card.weights.values()}
        tag_names |= set(trained_names())
    else:
        for name in names:
            if name in index.encoder_weights:
                encoder_names.add(name)
                continue
            if index.converted(name) is not None:
                converted_names.add(name)
                continue
            arch, tag = registry.split_name(name)
            if tag is not None:
                registry.resolve(name)  # unknown names raise with suggestions
                tag_names.add(name)
                continue
            registry.resolve(arch)
            card = registry.model_card(arch)
            encoder_names |= set(card.encoder_weights.values())
            converted_names |= {w.name for w in card.converted_weights.values()}
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
    for name in sorted(converted_names):
        converted = index.converted(name)
        status, detail = dl.check_cached(converted.file)
        entries.append(CacheEntry("download", name, converted.file.cache_path(), status, detail))
        path = converted_path(converted)
        status, detail = check_converted(converted, path)
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
