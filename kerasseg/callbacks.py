"""Keras callbacks: detection mAP on validation data at the end of an epoch.

``MeanAveragePrecisionCallback`` runs the model on validation images, evaluates the
detections with :func:`kerasseg.metrics.detection.evaluate` and writes the numbers into the
epoch's ``logs`` (``val_map``, ``val_map50``, ``val_map75``, ...), where ``EarlyStopping``,
``ModelCheckpoint``, ``CSVLogger``, ``TensorBoard`` and ``History`` find them. Keras calls
callbacks in list order and appends ``History`` and the progress bar last, so place this
callback *before* the callbacks that read its numbers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import keras

from kerasseg.detection.format import unpack_detections, unpack_ground_truth
from kerasseg.metrics.detection import coco as coco_protocol
from kerasseg.metrics.detection.evaluator import DetectionEvaluator
from kerasseg.metrics.detection.result import DetectionResult

logger = logging.getLogger(__name__)

_GT_FLAGS = {"coco": "iscrowd", "voc07": "difficult", "voc": "difficult"}


def _take_batch(value: Any, start: int, stop: int) -> Any:
    if isinstance(value, Mapping):
        return {k: v[start:stop] for k, v in value.items()}
    return value[start:stop]


def _batches(val_data: Any, batch_size: int) -> Iterable[tuple[Any, Any]]:
    """(images, ground truth) batches from an array pair or a re-iterable of batches."""
    if isinstance(val_data, tuple) and len(val_data) == 2 and hasattr(val_data[0], "shape"):
        images, ground_truth = val_data
        total = int(images.shape[0])
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            yield images[start:stop], _take_batch(ground_truth, start, stop)
        return
    for batch in val_data:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(
                f"`val_data` must yield (images, ground_truth) batches; got {type(batch).__name__}."
            )
        yield batch[0], batch[1]


class MeanAveragePrecisionCallback(keras.callbacks.Callback):
    """Evaluates detection mAP on validation data every ``every`` epochs.

    Example:
        ```python
        callbacks = [
            MeanAveragePrecisionCallback(val_dataset, protocol="coco", num_classes=20),
            keras.callbacks.EarlyStopping(monitor="val_map", mode="max", patience=5),
            keras.callbacks.ModelCheckpoint("best.keras", monitor="val_map", mode="max",
                                            save_best_only=True),
        ]
        model.fit(train_dataset, epochs=50, callbacks=callbacks)
        ```

    Args:
        val_data: Validation data: a re-iterable of ``(images, ground_truth)`` batches (a
            ``tf.data.Dataset``, a ``keras.utils.PyDataset``, a list...), or a pair
            ``(images, ground_truth)`` of arrays, batched here by ``batch_size``.
            ``ground_truth`` is a padded dict ``{"boxes": (B, M, 4), "classes": (B, M)
            [, "iscrowd" | "difficult": (B, M)]}`` (xyxy pixels, class -1 = padding) or a
            packed (B, M, 5|6) tensor (see ``kerasseg.metrics.pack_ground_truth``).
        every: Evaluate after every ``every``-th epoch (and after the last one). Epochs
            in between add nothing to the logs.
        protocol: "coco", "voc07" or "voc".
        prefix: Prepended to the log keys (``val_map``, ``val_map50``, ``val_map75``,
            ``val_map_small``, ..., ``val_mar100``, ...; VOC: ``val_map``, ``val_map50``).
        pr_curve_dir: If set, a PR-curve PNG per evaluation is written there
            (``pr_curves_epoch{N:03d}.png``; needs matplotlib).
        num_classes: Classes are ``0 .. num_classes - 1`` (None: those seen).
        class_names: Names by class id, for per-class keys and plots.
        predict_fn: ``fn(model, images) -> detections`` (a dict ``{"boxes", "classes",
            "scores"}`` of (B, N, ...) arrays or a packed (B, N, 6) array). Default:
            ``model.predict_on_batch(images)``, which fits a model whose output is the
            decoded detections. Use it when training a raw-output model and decoding
            separately.
        batch_size: Batch size when ``val_data`` is an array pair.
        log_per_class: Also log ``{prefix}ap_{class name}`` for every class.
        max_detections: COCO maxDets.
        iou_threshold: VOC IoU threshold.
        pixel_inclusive: VOC ``+1`` pixel convention.

    Attributes:
        last_result: The latest :class:`~kerasseg.metrics.detection.DetectionResult`
            (``print(callback.last_result)`` shows the table).
    """

    def __init__(
        self,
        val_data: Any,
        every: int = 1,
        protocol: str = "coco",
        prefix: str = "val_",
        pr_curve_dir: str | os.PathLike | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        predict_fn: Callable[[keras.Model, Any], Any] | None = None,
        batch_size: int = 8,
        log_per_class: bool = False,
        max_detections: Sequence[int] = coco_protocol.MAX_DETECTIONS,
        iou_threshold: float = 0.5,
        pixel_inclusive: bool = False,
    ) -> None:
        super().__init__()
        if int(every) != every or every < 1:
            raise ValueError(f"`every` must be a positive integer; got {every!r}.")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
        self.val_data = val_data
        self.every = int(every)
        self.prefix = prefix
        self.pr_curve_dir = None if pr_curve_dir is None else os.fspath(pr_curve_dir)
        self.predict_fn = predict_fn
        self.batch_size = int(batch_size)
        self.log_per_class = log_per_class
        self.protocol = protocol
        self._evaluator_args = dict(
            num_classes=num_classes,
            class_names=class_names,
            max_detections=max_detections,
            iou_threshold=iou_threshold,
            pixel_inclusive=pixel_inclusive,
            progress=False,
        )
        DetectionEvaluator(protocol, **self._evaluator_args)  # validates the options now
        self.last_result: DetectionResult | None = None

    def _predict(self, images: Any) -> Any:
        if self.predict_fn is not None:
            return self.predict_fn(self.model, images)
        return self.model.predict_on_batch(images)

    def evaluate(self) -> DetectionResult:
        """Runs the model over ``val_data`` and evaluates (also usable outside ``fit``)."""
        evaluator = DetectionEvaluator(self.protocol, **self._evaluator_args)
        flag = _GT_FLAGS[self.protocol]
        for images, ground_truth in _batches(self.val_data, self.batch_size):
            detections = unpack_detections(self._predict(images), "the model's predictions")
            evaluator.update(
                unpack_ground_truth(ground_truth, flag, "the ground truth in `val_data`"),
                detections,
            )
        if evaluator.num_images == 0:
            raise ValueError("`val_data` yielded no images.")
        return evaluator.result()

    def _due(self, epoch: int) -> bool:
        last = self.params.get("epochs") if self.params else None
        return (epoch + 1) % self.every == 0 or (last is not None and epoch + 1 == last)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._due(epoch):
            return
        result = self.evaluate()
        self.last_result = result
        values = {f"{self.prefix}{key}": float(value) for key, value in result.summary.items()}
        if self.log_per_class:
            for class_id, value in result.per_class_ap.items():
                name = result.class_name(class_id).replace(" ", "_")
                values[f"{self.prefix}ap_{name}"] = float(value)
        if logs is not None:
            logs.update(values)
        logger.info("Epoch %d detection mAP (%s):\n%s", epoch + 1, self.protocol, result)
        if self.pr_curve_dir is not None:
            self._save_pr_curves(result, epoch)

    def _save_pr_curves(self, result: DetectionResult, epoch: int) -> None:
        from kerasseg.visualize import plot_pr_curves

        os.makedirs(self.pr_curve_dir, exist_ok=True)
        figure = plot_pr_curves(result, title=f"Epoch {epoch + 1}")
        path = os.path.join(self.pr_curve_dir, f"pr_curves_epoch{epoch + 1:03d}.png")
        figure.savefig(path, dpi=100)
        logger.info("Wrote %s", path)
