"""Recipe training: a recipe's model built, trained on its data, and kept in the cache.

Above `kerasseg.zoo.recipes` (reading recipes), `kerasseg.zoo.weights` (the cache) and
`kerasseg.zoo.registry` (building models); `kerasseg zoo train` calls `train`.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable
from typing import Any

import keras

from kerasseg.training import DetectionTrainConfig, TrainConfig
from kerasseg.zoo import registry
from kerasseg.zoo import weights as zw
from kerasseg.zoo.recipes import load_recipe, resolve_data

logger = logging.getLogger(__name__)

__all__ = ["build_detector", "build_training_model", "train"]


def build_training_model(config: TrainConfig, channels: int) -> keras.Model:
    """Seeds Keras with ``config.seed`` and builds ``config.model`` from random weights.

    Args:
        config: The model name, classes, builder arguments and seed.
        channels: Input channels of the images (any height and width).

    Returns:
        The model, in the state `kerasseg.training.train_segmentation` expects.
    """
    keras.utils.set_random_seed(config.seed)
    return registry.get(
        config.model,
        weights=None,
        num_classes=config.num_classes,
        input_shape=(None, None, channels),
        **config.model_kwargs,
    )


def build_detector(config: DetectionTrainConfig) -> keras.Model:
    """Seeds Keras with ``config.seed`` and builds ``config.model`` for square inputs.

    Args:
        config: The detector name, classes, input size, builder arguments and seed.

    Returns:
        The detector, input shape ``(image_size, image_size, 3)``, uncompiled.
    """
    keras.utils.set_random_seed(config.seed)
    size = int(config.image_size)
    return registry.get(
        config.model,
        weights=config.weights,
        num_classes=config.num_classes,
        input_shape=(size, size, 3),
        **config.model_kwargs,
    )


def train(
    name_or_path: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    report: Callable[[str], None] = logger.info,
    verbose: str | int = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Runs a recipe and stores the weights in the cache under the recipe's name.

    Writes ``$KERASSEG_HOME/trained/<name>/``: ``model.weights.h5``, ``record.json`` (its
    SHA-256 and size, the validation metrics, the recipe's SHA-256, versions, timing),
    ``recipe.yml`` (the recipe as run) and ``run/`` (the outputs of
    `kerasseg.training.train_segmentation`). The folder is replaced atomically: an interrupted
    run leaves the previous entry in place.

    Args:
        name_or_path: A recipe name (``"unet11.isbi2012"``) or file.
        data_root: Folder holding the data sets (see `data_roots`).
        report: Receives one line per epoch.
        verbose: Keras ``fit`` verbosity.
        progress: Progress bar when ImageNet weights must be downloaded.

    Returns:
        The record written (``record.json``).
    """
    from kerasseg.data.masks import SegmentationFolder
    from kerasseg.training import train_segmentation

    recipe = load_recipe(name_or_path)
    registry.resolve(recipe.model)  # an unknown model fails before any work
    folder_path = resolve_data(recipe, data_root)
    spec = recipe.data
    folder = SegmentationFolder(
        folder_path / spec.images,
        folder_path / spec.masks,
        channels=spec.channels,
        mask_values=spec.mask_values,
        num_classes=None if recipe.num_classes == 1 else recipe.num_classes,
    )
    bad = [i for i in spec.train + spec.val if not 0 <= i < len(folder)]
    if bad:
        raise ValueError(
            f"Recipe {recipe.name!r}: indices {bad} are outside 0..{len(folder) - 1} "
            f"({len(folder)} images in {folder_path})."
        )
    extra = {}
    if recipe.init == "imagenet":
        encoder = registry.encoder_weights_name(recipe.model, "imagenet")
        extra["encoder_weights"] = str(
            zw.encoder_weights_path(
                encoder,
                in_channels=spec.channels,
                progress=progress,
                command=f"kerasseg zoo download {encoder}",
            )
        )
    config = recipe.train_config(**extra)

    final = zw.trained_dir(recipe.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        results = train_segmentation(
            build_training_model(config, folder.channels),
            folder,
            train_indices=list(spec.train),
            val_indices=list(spec.val),
            config=config,
            output_dir=staging / "run",
            what=", ".join(spec.classes) or "foreground",
            report=report,
            verbose=verbose,
        )
        model = keras.models.load_model(staging / "run" / "model.keras")
        model.save_weights(staging / zw.TRAINED_WEIGHTS)
        (staging / zw.TRAINED_RECIPE).write_text(recipe.text, encoding="utf-8")
        record = {
            "name": recipe.name,
            **zw.file_record(staging / zw.TRAINED_WEIGHTS),
            "recipe_sha256": recipe.sha256,
            "recipe_source": str(recipe.path) if recipe.path else None,
            "metrics": [
                {
                    "dataset": spec.dataset,
                    "split": f"validation: indices {_ranges(spec.val)} of {folder_path}",
                    "values": {k: round(float(v), 6) for k, v in results["validation"].items()},
                    "source": "kerasseg zoo train (this machine)",
                    "recipe": zw.TRAINED_RECIPE,
                    "date": zw.now(),
                }
            ],
            "train_seconds": results["train_seconds"],
            "data": str(folder_path),
            "created": zw.now(),
            **zw.versions(),
        }
        zw.write_json_atomic(staging / zw.TRAINED_RECORD, record)
        old = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.old")
        if final.exists():
            os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("Trained %s: %s; weights in %s", recipe.name, record["metrics"][0]["values"], final)
    return record


def _ranges(indices: tuple[int, ...]) -> str:
    parts, start = [], None
    ordered = sorted(indices)
    for i, value in enumerate(ordered):
        start = value if start is None else start
        if i + 1 == len(ordered) or ordered[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ",".join(parts)
