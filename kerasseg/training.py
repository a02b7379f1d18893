"""Training and evaluating segmentation models and detectors.

The one implementation behind ``kerasseg demo``, ``kerasseg train`` and
``kerasseg evaluate``: build the model from the zoo, compile it with a kerasseg loss and
metrics, fit, and write the results (model, history, metrics, overlays) to a folder.

Segmentation trains on a `SegmentationFolder` (`train_segmentation`); detection on
`DetectionAnnotations` from the VOC or COCO loaders (`train_detection`), with images
letterboxed (or resized) to one square size and boxes mapped back to the original pixels
for evaluation (`detect`, `evaluate_detection`).
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


# Detection ------------------------------------------------------------------------------

#: Written next to a trained detector's ``model.keras``: what ``evaluate`` and ``predict``
#: need besides the model (class names, COCO category ids, how images were resized).
DETECTION_INFO_FILE = "detection.json"


@dataclasses.dataclass
class DetectionTrainConfig:
    """What detector to train and how.

    Attributes:
        model: Zoo name of a detector (its registry task is ``"detection"``).
        model_kwargs: Extra builder arguments (e.g. ``{"channels": 64}``).
        weights: Zoo weights: None (random initialisation) or ``"imagenet"`` (the
            backbone's ImageNet weights, converted once and cached).
        num_classes: Object classes (without background); set from the data.
        epochs: Training epochs.
        steps_per_epoch: Batches per epoch; None: one pass over the training images.
        batch_size: Training batch size.
        image_size: Side of the square network input (a multiple of the model's stride).
        letterbox: Keep the aspect ratio and pad (True) or stretch to the square (False).
        max_boxes: Boxes per image in a batch; None: the most any training image has.
        flip: Random horizontal flips.
        scale_range: Random scale jitter ``(low, high)`` of the fitted image followed by a
            random crop or padding back to the input size
            (`kerasseg.data.detection_augment.random_scale_crop`); None: none.
        flip_vertical: Random top-bottom flips too (data without an "up", as microscopy).
        colour: Random brightness, contrast, saturation and hue.
        mosaic: Probability of a 4-image mosaic per training image.
        learning_rate: Peak Adam learning rate, reached after `warmup_steps` and then
            cosine-decayed to 1% over the run.
        warmup_steps: Linear warm-up steps from a tenth of the learning rate.
        clipnorm: Gradient norm clipping (detectors from scratch need it early on).
        map_every: Evaluate the validation mAP every this many epochs during training (and
            after the last); 0: only once, after training.
        seed: Seed of initialisation, shuffling and flips.
    """

    model: str = "retinanet_resnet18"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    weights: str | None = None
    num_classes: int = 1
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 8
    image_size: int = 256
    letterbox: bool = True
    max_boxes: int | None = None
    flip: bool = True
    scale_range: tuple[float, float] | None = None
    flip_vertical: bool = False
    colour: bool = False
    mosaic: float = 0.0
    learning_rate: float = 1e-3
    warmup_steps: int = 20
    clipnorm: float | None = 10.0
    map_every: int = 1
    seed: int = 0


def compile_for_detection(
    model: keras.Model, config: DetectionTrainConfig, total_steps: int
) -> None:
    """Adam with a linear warm-up and cosine decay; the detector's own loss."""
    warmup = min(config.warmup_steps, max(total_steps - 1, 0))
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate * (0.1 if warmup else 1.0),
        decay_steps=max(total_steps - warmup, 1),
        alpha=0.01,
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=config.clipnorm))


def detector_input_size(model: keras.Model) -> tuple[int, int]:
    """The static ``(height, width)`` a detector was built for.

    Raises:
        ValueError: if the model's input size is not static.
    """
    height, width = model.input_shape[1:3]
    if height is None or width is None:
        raise ValueError(
            f"{model.name} has no static input size (input shape {model.input_shape}); "
            "build it with input_shape=(S, S, 3) to predict with letterboxing or resizing."
        )
    return int(height), int(width)


def _fit_images(images: Sequence[np.ndarray], size: tuple[int, int], letterbox: bool) -> np.ndarray:
    """Letterboxes or resizes images of any sizes to one (B, H, W, 3) float32 batch."""
    from kerasseg.data import detection_transforms as T

    empty = {"boxes": np.zeros((0, 4), np.float32)}
    batch = []
    for image in images:
        if letterbox:
            fitted, _ = T.letterbox(image, empty, size)
        else:
            fitted, _ = T.resize(image, empty, size)
        batch.append(np.asarray(fitted, np.float32))
    return np.stack(batch)


def _to_original(
    boxes: np.ndarray, image_hw: tuple[int, int], size: tuple[int, int], letterbox: bool
) -> np.ndarray:
    """Maps (N, 4) xyxy boxes from the network input back to the image, clipped to it."""
    from kerasseg.data import detection_transforms as T

    height, width = image_hw
    if letterbox:
        boxes = np.asarray(T.unletterbox_boxes(boxes, image_hw, size))
    else:
        scale = np.array([width / size[1], height / size[0]] * 2, np.float32)
        boxes = np.asarray(boxes, np.float32) * scale
    return np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)


def detect(
    model: keras.Model,
    images: Sequence[np.ndarray],
    *,
    letterbox: bool = True,
    batch_size: int = 8,
) -> list[dict[str, np.ndarray]]:
    """Runs a detector on images of any sizes; boxes come back in each image's pixels.

    Args:
        model: A detector with a static input size (see `detector_input_size`).
        images: (H, W, 3) arrays in 0..255, each of its own size.
        letterbox: How the images are fitted to the input: as in training.
        batch_size: Images per forward pass.

    Returns:
        Per image ``{"boxes": (n, 4) xyxy pixels clipped to the image, "classes": (n,)
        int32, "scores": (n,) float32}``, padding removed, best score first.
    """
    size = detector_input_size(model)
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        output = model.predict_on_batch(_fit_images(chunk, size, letterbox))
        boxes, classes, scores = (np.asarray(output[k]) for k in ("boxes", "classes", "scores"))
        for i, image in enumerate(chunk):
            keep = classes[i] >= 0
            order = np.argsort(-scores[i][keep], kind="stable")
            results.append(
                {
                    "boxes": _to_original(boxes[i][keep][order], image.shape[:2], size, letterbox),
                    "classes": classes[i][keep][order].astype(np.int32),
                    "scores": scores[i][keep][order].astype(np.float32),
                }
            )
    return results


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) float32 RGB in 0..255 (grey and RGBA converted)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.float32)


def detect_records(
    model: keras.Model, records: Sequence[Any], *, letterbox: bool = True, batch_size: int = 8
) -> list[dict[str, np.ndarray]]:
    """`detect` on the images of `DetectionRecord`s, read a batch at a time."""
    results = []
    for start in range(0, len(records), batch_size):
        chunk = [read_rgb(r.image_path) for r in records[start : start + batch_size]]
        results += detect(model, chunk, letterbox=letterbox, batch_size=batch_size)
    return results


def _finite_or_none(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 6)


def detection_scores(coco: Any, voc07: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """The JSON summary of a COCO and a VOC2007 evaluation of the same detections.

    Args:
        coco: The COCO-protocol `kerasseg.metrics.detection.DetectionResult`.
        voc07: The VOC2007 11-point one.
        class_names: Names by class id.

    Returns:
        ``{"images", "coco": {map, map50, map75, ..., mar100, ...}, "voc07_map",
        "per_class": {name: {"ap", "ap50", "voc07_ap", "ground_truth"}}}``; undefined
        values (a class without ground truth) are None.
    """
    ap50 = coco.per_class_ap_at(0.5)
    per_class = {}
    for index, class_id in enumerate(coco.class_ids):
        per_class[class_names[int(class_id)]] = {
            "ap": _finite_or_none(coco.ap[index]),
            "ap50": _finite_or_none(ap50[int(class_id)]),
            "voc07_ap": _finite_or_none(voc07.per_class_ap[int(class_id)]),
            "ground_truth": int(coco.num_ground_truth[index]),
        }
    return {
        "images": int(coco.num_images),
        "coco": {key: _finite_or_none(value) for key, value in coco.summary.items()},
        "voc07_map": _finite_or_none(voc07.map),
        "per_class": per_class,
    }


def evaluate_detection(
    model: keras.Model,
    annotations: Any,
    *,
    letterbox: bool = True,
    batch_size: int = 8,
) -> tuple[dict[str, Any], Any, Any, list[dict[str, np.ndarray]]]:
    """COCO and VOC2007 mAP of a detector on annotated images, in original pixels.

    Args:
        model: The detector (static input size).
        annotations: `kerasseg.data.DetectionAnnotations` with the model's class ids.
        letterbox: As in training.
        batch_size: Images per forward pass.

    Returns:
        ``(scores, coco_result, voc07_result, detections)``: the `detection_scores`
        summary, both `DetectionResult`s (``print`` shows their tables) and the
        per-image detections.
    """
    from kerasseg.metrics.detection import evaluate

    if not len(annotations):
        raise ValueError(f"No images to evaluate in {annotations.report.source}.")
    detections = detect_records(
        model, annotations.records, letterbox=letterbox, batch_size=batch_size
    )
    truth = annotations.ground_truth()
    options = dict(
        num_classes=annotations.num_classes, class_names=annotations.class_names, progress=False
    )
    coco = evaluate(truth, detections, "coco", **options)
    voc07 = evaluate(truth, detections, "voc07", **options)
    return detection_scores(coco, voc07, annotations.class_names), coco, voc07, detections


def _train_pipeline(annotations: Any, config: DetectionTrainConfig, max_boxes: int) -> Any:
    """Shuffled, flipped, fitted, padded, repeated fixed-shape batches."""
    import tensorflow as tf

    from kerasseg.data.detection_augment import detection_augmentation

    size = (config.image_size, config.image_size)
    augmenting = bool(config.scale_range or config.flip_vertical or config.colour or config.mosaic)
    dataset = annotations.to_dataset(
        max_boxes=max_boxes,
        on_overflow="warn",
        image_size=size,
        letterbox=config.letterbox,
        flip=config.flip and not augmenting,  # else the augmentation flips
        shuffle=True,
        seed=config.seed,
    ).repeat()
    if augmenting:
        # On the fitted image: scale 1 is the input the detector sees at test time.
        augment = detection_augmentation(
            size,
            scale_range=tuple(config.scale_range or (1.0, 1.0)),
            flip_horizontal=config.flip,
            flip_vertical=config.flip_vertical,
            colour=config.colour,
            mosaic_probability=config.mosaic,
            seed=config.seed,
        )
        dataset = augment.apply(dataset, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(config.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _map_callback(annotations: Any, config: DetectionTrainConfig) -> keras.callbacks.Callback:
    """The validation mAP during training (on the fitted images, COCO protocol)."""
    from kerasseg.callbacks import MeanAveragePrecisionCallback

    data = annotations.to_dataset(
        batch_size=config.batch_size,
        image_size=(config.image_size, config.image_size),
        letterbox=config.letterbox,
    )
    return MeanAveragePrecisionCallback(
        data,
        every=config.map_every,
        num_classes=annotations.num_classes,
        class_names=annotations.class_names,
    )


class DetectionEpochReport(keras.callbacks.Callback):
    """Calls `report` with one line per epoch: loss, validation mAP when measured, time."""

    def __init__(
        self, report: Callable[[str], None], epochs: int, *, after_progress_bar: bool = False
    ) -> None:
        super().__init__()
        self.report = report
        self.prefix = "\n" if after_progress_bar else ""
        self.epochs = epochs
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        line = f"{self.prefix}epoch {epoch + 1}/{self.epochs}: loss {logs.get('loss', float('nan')):.4f}"
        if "val_map" in logs:
            line += f", validation mAP {logs['val_map']:.4f}, mAP50 {logs['val_map50']:.4f}"
        self.report(f"{line}  ({time.perf_counter() - self.started:.0f} s)")


def detection_info(annotations: Any, config: DetectionTrainConfig) -> dict[str, Any]:
    """What ``evaluate`` and ``predict`` need besides the saved model (`DETECTION_INFO_FILE`).

    COCO data keeps its category ids; other data gets ids ``1..K`` (COCO's convention
    of leaving 0 to the background) for the COCO-format results.
    """
    category_ids = annotations.category_ids or list(range(1, annotations.num_classes + 1))
    return {
        "task": "detection",
        "model": config.model,
        "class_names": list(annotations.class_names),
        "category_ids": [int(c) for c in category_ids],
        "image_size": [config.image_size, config.image_size],
        "letterbox": config.letterbox,
    }


def inference_copy(model: keras.Model) -> keras.Model:
    """An uncompiled copy of a trained model with its weights, for saving without the
    optimizer's state (a third of an Adam-trained ``.keras`` file's size)."""
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def train_detection(
    model: keras.Model,
    train: Any,
    val: Any | None,
    *,
    config: DetectionTrainConfig,
    output_dir: str | Path,
    report: Callable[[str], None] = logger.info,
    verbose: str | int = "auto",
) -> dict[str, Any]:
    """Trains a built detector on annotated images and writes the results.

    Writes into `output_dir`: ``model.keras`` (the trained detector without the
    optimizer's state; loads with `keras.models.load_model` after ``import kerasseg``),
    ``detection.json`` (class names, COCO category ids, input size
    and resizing: what ``kerasseg evaluate`` / ``predict`` read), ``history.csv`` and
    ``history.json`` (per-epoch loss parts, validation mAP when measured) and
    ``results.json`` (the `detection_scores` of the validation images in their
    original pixels, configuration, timing).

    Args:
        model: The detector, built for ``config`` (`kerasseg.zoo.recipe_training.build_detector`).
        train: `kerasseg.data.DetectionAnnotations` to train on.
        val: Annotations to validate on (same class names), or None for no validation.
        config: Model and optimisation settings.
        output_dir: Folder for the outputs (created).
        report: Receives one line per epoch.
        verbose: Keras `fit` verbosity.

    Returns:
        The content of ``results.json``.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if getattr(model, "num_classes", train.num_classes) != train.num_classes:
        raise ValueError(
            f"The model detects {model.num_classes} classes but the training data has "
            f"{train.num_classes} ({train.class_names}); build it with "
            "`config.num_classes = train.num_classes`."
        )
    if len(train) < config.batch_size:
        raise ValueError(
            f"`batch_size` {config.batch_size} exceeds the {len(train)} training images; "
            "use a smaller batch size."
        )
    max_boxes = config.max_boxes or train.max_boxes()
    steps = config.steps_per_epoch or max(1, len(train) // config.batch_size)
    compile_for_detection(model, config, config.epochs * steps)
    callbacks: list[keras.callbacks.Callback] = []
    if val is not None and config.map_every > 0:
        callbacks.append(_map_callback(val, config))
    callbacks += [
        keras.callbacks.CSVLogger(str(output_dir / "history.csv")),
        DetectionEpochReport(report, config.epochs, after_progress_bar=verbose in (1, "auto")),
    ]
    started = time.perf_counter()
    history = model.fit(
        _train_pipeline(train, config, max_boxes),
        epochs=config.epochs,
        steps_per_epoch=steps,
        shuffle=False,  # the pipeline shuffles
        verbose=verbose,
        callbacks=callbacks,
    )
    train_seconds = time.perf_counter() - started
    inference_copy(model).save(output_dir / "model.keras")
    info = detection_info(train, config)
    (output_dir / DETECTION_INFO_FILE).write_text(json.dumps(info, indent=2))
    history_lists = {k: [float(v) for v in values] for k, values in history.history.items()}
    (output_dir / "history.json").write_text(json.dumps(history_lists, indent=2))
    results: dict[str, Any] = {"task": "detection"}
    if val is not None:
        started_eval = time.perf_counter()
        results["validation"], coco, _, _ = evaluate_detection(
            model, val, letterbox=config.letterbox, batch_size=config.batch_size
        )
        results["validation_seconds"] = round(time.perf_counter() - started_eval, 1)
        logger.info("Validation (COCO protocol, original pixels):\n%s", coco)
    results.update(
        {
            "train_images": len(train),
            "validation_images": len(val) if val is not None else 0,
            "max_boxes": max_boxes,
            "steps": config.epochs * steps,
            "train_seconds": round(train_seconds, 1),
            "seconds_per_step": round(train_seconds / max(config.epochs * steps, 1), 3),
            "config": dataclasses.asdict(config),
            "classes": info["class_names"],
            "data": {
                "train": train.report.source,
                "validation": val.report.source if val else None,
            },
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
        }
    )
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results
