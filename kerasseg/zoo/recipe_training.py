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
    recipe = load_recipe(name_or_path)
    registry.resolve(recipe.model)  # an unknown model fails before any work
    folder_path = resolve_data(recipe, data_root)
    run = _run_detection if recipe.task == "detection" else _run_segmentation

    final = zw.trained_dir(recipe.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        metrics, train_seconds = run(
            recipe, folder_path, staging / "run", report=report, verbose=verbose, progress=progress
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
                    "dataset": recipe.data.dataset,
                    "split": split,
                    "values": values,
                    "source": "kerasseg zoo train (this machine)",
                    "recipe": zw.TRAINED_RECIPE,
                    "date": zw.now(),
                }
                for split, values in metrics
            ],
            "train_seconds": train_seconds,
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


def _run_segmentation(
    recipe: Any, folder_path: Any, output_dir: Any, *, report: Any, verbose: Any, progress: bool
) -> tuple[list[tuple[str, dict[str, float]]], float]:
    """Trains a segmentation recipe into `output_dir`; its validation metrics and time."""
    from kerasseg.data.masks import SegmentationFolder
    from kerasseg.training import train_segmentation

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

    results = train_segmentation(
        build_training_model(config, folder.channels),
        folder,
        train_indices=list(spec.train),
        val_indices=list(spec.val),
        config=config,
        output_dir=output_dir,
        what=", ".join(spec.classes) or "foreground",
        report=report,
        verbose=verbose,
    )
    values = {k: round(float(v), 6) for k, v in results["validation"].items()}
    split = f"validation: indices {_ranges(spec.val)} of {folder_path}"
    return [(split, values)], results["train_seconds"]


def _detection_values(scores: dict[str, Any]) -> dict[str, Any]:
    """The metrics record of a `kerasseg.training.detection_scores` summary."""
    coco = scores["coco"]
    values = {"coco_ap": coco["map"], "coco_ap50": coco["map50"], "voc07_map": scores["voc07_map"]}
    for name, per_class in scores["per_class"].items():
        values[f"voc07_ap/{name}"] = per_class["voc07_ap"]
        values[f"coco_ap/{name}"] = per_class["ap"]
    return values


def _run_detection(
    recipe: Any, folder_path: Any, output_dir: Any, *, report: Any, verbose: Any, progress: bool
) -> tuple[list[tuple[str, dict[str, Any]]], float]:
    """Trains a detection recipe into `output_dir`; validation and test metrics, time."""
    from kerasseg.data import load_voc
    from kerasseg.training import evaluate_detection, train_detection

    del progress  # detection recipes start from random weights
    spec = recipe.data
    classes = list(spec.classes)
    train_set = load_voc(folder_path, spec.train, classes)
    val_set = load_voc(folder_path, spec.val, classes)
    config = recipe.train_config()
    model = build_detector(config)
    results = train_detection(
        model,
        train_set,
        val_set,
        config=config,
        output_dir=output_dir,
        report=report,
        verbose=verbose,
    )
    metrics = [
        (
            f"{spec.val} ({len(val_set)} images, original pixels)",
            _detection_values(results["validation"]),
        )
    ]
    if spec.test:
        test_set = load_voc(folder_path, spec.test, classes)
        scores, coco, _, _ = evaluate_detection(
            model, test_set, letterbox=config.letterbox, batch_size=config.batch_size
        )
        logger.info("Test (COCO protocol, original pixels):\n%s", coco)
        metrics.append(
            (f"{spec.test} ({len(test_set)} images, original pixels)", _detection_values(scores))
        )
    return metrics, results["train_seconds"]


def _ranges(indices: tuple[int, ...]) -> str:
    parts, start = [], None
    ordered = sorted(indices)
    for i, value in enumerate(ordered):
        start = value if start is None else start
        if i + 1 == len(ordered) or ordered[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ",".join(parts)
