"""Training and evaluating a segmentation model on a folder of images and masks.

The one implementation behind ``kerasseg demo``, ``kerasseg train`` and
``kerasseg evaluate``: build the model from the zoo, compile it with a kerasseg loss and
metrics, fit, and write the results (model, history, metrics, overlays) to a folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kerasseg import losses, metrics
from kerasseg.data.masks import SegmentationFolder
from kerasseg.segmentation.inference import predict_padded
from kerasseg.visualize import overlay_panel, save_png

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    """What to train and how.

    Attributes:
        model: Zoo name of the architecture.
        model_kwargs: Extra builder arguments (e.g. ``{"filters": 16}``).
        num_classes: 1 for binary segmentation, else the number of classes (incl. background).
        epochs: Training epochs.
        steps_per_epoch: Batches per epoch (the training set repeats with fresh augmentation).
        batch_size: Training batch size.
        crop_size: Side of the square random training crops.
        learning_rate: Adam learning rate (cosine-decayed to 1% over the run).
        seed: Seed of initialisation, shuffling and augmentation.
    """

    model: str = "unet"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    num_classes: int = 1
    epochs: int = 10
    steps_per_epoch: int = 20
    batch_size: int = 4
    crop_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0


def _mode(num_classes: int) -> str:
    return "binary" if num_classes == 1 else "multiclass"


def segmentation_metrics(num_classes: int) -> list[keras.metrics.Metric]:
    """Dice, Jaccard and cosine of the foreground (binary) or macro over classes."""
    mode = _mode(num_classes)
    options: dict[str, Any] = {"mode": mode, "num_classes": max(num_classes, 1)}
    if mode == "multiclass":
        options["average"] = "macro"
    return [
        metrics.Dice(name="dice", **options),
        metrics.Jaccard(name="jaccard", **options),
        metrics.Cosine(name="cosine", **options),
    ]


def compile_for_segmentation(model: keras.Model, config: TrainConfig, total_steps: int) -> None:
    """Adam with cosine decay, ``BceDice`` (BCE - ln Dice), and the dataset-level metrics."""
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, decay_steps=max(total_steps, 1), alpha=0.01
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=losses.BceDice(mode=_mode(config.num_classes)),
        metrics=segmentation_metrics(config.num_classes),
    )


class EpochReport(keras.callbacks.Callback):
    """Calls `report` with one line per epoch: the validation Dice and Jaccard."""

    def __init__(
        self,
        report: Callable[[str], None],
        epochs: int,
        what: str,
        *,
        after_progress_bar: bool = False,
    ) -> None:
        super().__init__()
        self.report = report
        # Keras' progress bar has not ended its line when epoch-end callbacks run.
        self.prefix = "\n" if after_progress_bar else ""
        self.epochs = epochs
        self.what = what
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        elapsed = time.perf_counter() - self.started
        self.report(
            f"{self.prefix}epoch {epoch + 1}/{self.epochs}: validation Dice ({self.what}) "
            f"{logs.get('val_dice', float('nan')):.4f}, Jaccard "
            f"{logs.get('val_jaccard', float('nan')):.4f}  (loss {logs.get('loss', float('nan')):.4f}, "
            f"{elapsed:.0f} s)"
        )


def evaluate_arrays(
    model: keras.Model, images: np.ndarray, masks: np.ndarray, num_classes: int
) -> tuple[dict[str, float], np.ndarray]:
    """Dataset-level Dice/Jaccard/cosine of `model` on full-size images (padded if needed).

    Returns:
        ``(scores, predictions)`` with predictions (N, H, W, num_classes).
    """
    predictions = predict_padded(model, images, batch_size=2)
    scores = {}
    for metric in segmentation_metrics(num_classes):
        metric.update_state(masks, predictions)
        scores[metric.name] = float(metric.result())
    return scores, predictions


def _hard_masks(predictions: np.ndarray, num_classes: int) -> np.ndarray:
    if num_classes == 1:
        return (predictions[..., 0] > 0.5).astype(np.uint8)
    return np.argmax(predictions, axis=-1).astype(np.uint8)


def write_overlays(
    output_dir: Path,
    images: np.ndarray,
    masks: np.ndarray,
    predictions: np.ndarray,
    names: Sequence[str],
    num_classes: int,
) -> list[Path]:
    """One PNG per image: the image, the ground truth and the prediction side by side."""
    output_dir.mkdir(parents=True, exist_ok=True)
    hard = _hard_masks(predictions, num_classes)
    paths = []
    for image, mask, pred, name in zip(images, masks, hard, names):
        path = output_dir / f"{name}_overlay.png"
        save_png(overlay_panel(image, mask[..., 0] > 0, pred > 0), str(path))
        paths.append(path)
    return paths


def train_segmentation(
    model: keras.Model,
    folder: SegmentationFolder,
    *,
    train_indices: Sequence[int],
    val_indices: Sequence[int],
    config: TrainConfig,
    output_dir: str | Path,
    what: str = "foreground",
    report: Callable[[str], None] = logger.info,
    verbose: str | int = "auto",
) -> dict[str, Any]:
    """Trains a built segmentation model on a folder and writes the results.

    Writes into `output_dir`: ``model.keras`` (self-contained: loads with plain
    `keras.models.load_model` after ``import kerasseg``), ``history.csv`` and
    ``history.json`` (per-epoch loss and metrics), ``results.json`` (final validation
    scores, configuration, timing) and ``overlays/*.png``.

    Args:
        model: The model to train, built for ``config.num_classes`` classes and the folder's
            channels (`kerasseg.zoo.recipe_training.build_training_model` builds ``config.model``
            with ``config.seed``).
        folder: The data.
        train_indices: Pairs used for training (random crops, flips, rotations).
        val_indices: Pairs used for validation, at full size.
        config: Model and optimisation settings.
        output_dir: Folder for the outputs (created).
        what: Name of the foreground class for the report lines.
        report: Receives one line per epoch.
        verbose: Keras `fit` verbosity.

    Returns:
        The content of ``results.json``.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    compile_for_segmentation(model, config, config.epochs * config.steps_per_epoch)
    train_data = folder.dataset(
        indices=train_indices,
        batch_size=config.batch_size,
        crop_size=(config.crop_size, config.crop_size),
        augment=True,
        shuffle=True,
        repeat=True,
        seed=config.seed,
    )
    val_images, val_masks = folder.load(val_indices)
    started = time.perf_counter()
    history = model.fit(
        train_data,
        validation_data=(val_images, val_masks),
        validation_batch_size=2,
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        shuffle=False,
        verbose=verbose,
        callbacks=[
            keras.callbacks.CSVLogger(str(output_dir / "history.csv")),
            EpochReport(report, config.epochs, what, after_progress_bar=verbose in (1, "auto")),
        ],
    )
    train_seconds = time.perf_counter() - started
    model.save(output_dir / "model.keras")
    scores, predictions = evaluate_arrays(model, val_images, val_masks, config.num_classes)
    names = [folder.pairs[i][0].stem for i in val_indices]
    write_overlays(
        output_dir / "overlays", val_images, val_masks, predictions, names, config.num_classes
    )
    history_lists = {k: [float(v) for v in values] for k, values in history.history.items()}
    (output_dir / "history.json").write_text(json.dumps(history_lists, indent=2))
    results = {
        "validation": scores,
        "validation_images": names,
        "train_images": [folder.pairs[i][0].stem for i in train_indices],
        "train_seconds": round(train_seconds, 1),
        "config": dataclasses.asdict(config),
        "data": {"images": str(folder.images_dir), "masks": str(folder.masks_dir)},
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results
