"""The evaluation entry points: ``evaluate`` and the accumulating ``DetectionEvaluator``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from kerasseg.metrics.detection import coco as coco_protocol
from kerasseg.metrics.detection.coco import STAT_NAMES, evaluate_coco
from kerasseg.metrics.detection.inputs import (
    BoxTable,
    from_coco,
    is_coco_dataset,
    table_from_arrays,
)
from kerasseg.metrics.detection.result import PROTOCOLS, DetectionResult
from kerasseg.metrics.detection.voc import evaluate_voc

logger = logging.getLogger(__name__)


def _check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"`protocol` must be one of {PROTOCOLS}; got {protocol!r}.")
    return protocol


def _check_max_detections(max_detections: Sequence[int]) -> tuple[int, ...]:
    values = tuple(int(m) for m in max_detections)
    if len(values) != 3 or any(m < 1 for m in values) or list(values) != sorted(values):
        raise ValueError(
            "`max_detections` must be three ascending positive integers (COCO: (1, 10, 100)); "
            f"got {max_detections!r}."
        )
    return values


def _names(class_names: Sequence[str] | Mapping[int, str] | None) -> dict[int, str]:
    if class_names is None:
        return {}
    if isinstance(class_names, Mapping):
        return {int(k): str(v) for k, v in class_names.items()}
    return {i: str(name) for i, name in enumerate(class_names)}


def _progress_bar(progress: bool | None, total: int, desc: str) -> Any:
    # disable=None: tqdm shows the bar only when writing to a terminal.
    disable = None if progress is None else not progress
    return tqdm(total=total, desc=desc, disable=disable, leave=False, unit="step")


def run_protocol(
    gt: BoxTable,
    dt: BoxTable,
    *,
    protocol: str,
    num_images: int,
    class_ids: np.ndarray,
    class_names: dict[int, str],
    max_detections: tuple[int, ...] = coco_protocol.MAX_DETECTIONS,
    iou_threshold: float = 0.5,
    pixel_inclusive: bool = False,
    progress: bool | None = None,
) -> DetectionResult:
    """Runs one protocol on validated tables and packages the result."""
    class_ids = np.asarray(class_ids, np.int64)
    # COCO: one step per detection rank in the matching (added there) plus accumulation;
    # VOC: one step per class.
    total = 1 if protocol == "coco" else len(class_ids)
    with _progress_bar(progress, total, f"mAP ({protocol})") as bar:
        if protocol == "coco":
            arrays = evaluate_coco(
                gt,
                dt,
                num_images=num_images,
                category_ids=class_ids,
                max_detections=max_detections,
                progress=bar,
            )
            # Per class: AP@[.5:.95] over area "all" and the largest maxDets.
            per_class = arrays.precision[:, :, :, 0, -1]
            ap = np.array(
                [
                    np.mean(per_class[:, :, k]) if np.all(per_class[:, :, k] > -1) else np.nan
                    for k in range(len(class_ids))
                ]
            )
            counted = gt.select(~gt.crowd)
            num_gt = np.bincount(
                np.searchsorted(class_ids, counted.classes), minlength=len(class_ids)
            )
            return DetectionResult(
                protocol=protocol,
                class_ids=class_ids,
                class_names=class_names,
                stats=arrays.stats,
                summary={name: float(v) for name, v in zip(STAT_NAMES, arrays.stats)},
                ap=ap,
                num_ground_truth=num_gt,
                num_images=num_images,
                precision=arrays.precision,
                recall=arrays.recall,
                iou_thresholds=coco_protocol.IOU_THRESHOLDS,
                recall_thresholds=coco_protocol.RECALL_THRESHOLDS,
                max_detections=arrays.max_detections,
                _ground_truth=gt,
                _detections=dt,
            )
        arrays = evaluate_voc(
            gt,
            dt,
            num_images=num_images,
            category_ids=class_ids,
            use_07_metric=protocol == "voc07",
            iou_threshold=iou_threshold,
            pixel_inclusive=pixel_inclusive,
            progress=bar,
        )
        return DetectionResult(
            protocol=protocol,
            class_ids=class_ids,
            class_names=class_names,
            stats=np.array([arrays.map]),
            summary={"map": arrays.map, "map50": arrays.map},
            ap=arrays.ap,
            num_ground_truth=arrays.num_positives,
            num_images=num_images,
            curves=arrays.curves,
            iou_thresholds=np.array([iou_threshold]),
            _ground_truth=gt,
            _detections=dt,
        )


class DetectionEvaluator:
    """Accumulates ground truth and detections batch by batch, then evaluates.

    Example:
        ```python
        evaluator = DetectionEvaluator("coco", num_classes=3)
        for images, ground_truth in dataset:
            evaluator.update(ground_truth, model.predict_on_batch(images))
        result = evaluator.result()
        print(result)  # the 12-line COCO table
        ```

    Args:
        protocol: "coco" (AP@[.5:.95] etc., pycocotools' rules), "voc07" (11-point AP at
            IoU > 0.5) or "voc" (all-point AP, VOC2010+).
        num_classes: Classes are ``0 .. num_classes - 1`` (a class id outside raises).
            None: the classes seen in the ground truth and detections.
        class_names: Names by class id (a list indexed by id, or a dict).
        max_detections: COCO maxDets, per image and class (default (1, 10, 100)).
        iou_threshold: VOC only: a detection needs IoU strictly above it (default 0.5).
        pixel_inclusive: VOC only: the original devkit's ``+1`` convention, where ``x2``
            and ``y2`` are inclusive pixel indices (width = ``x2 - x1 + 1``). Default
            False: boxes are continuous coordinates, width = ``x2 - x1``.
        progress: Show a tqdm progress bar: None (default) when writing to a terminal,
            True always, False never.
    """

    def __init__(
        self,
        protocol: str = "coco",
        *,
        num_classes: int | None = None,
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        max_detections: Sequence[int] = coco_protocol.MAX_DETECTIONS,
        iou_threshold: float = 0.5,
        pixel_inclusive: bool = False,
        progress: bool | None = None,
    ) -> None:
        self.protocol = _check_protocol(protocol)
        if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
            raise ValueError(
                f"`num_classes` must be a positive integer or None; got {num_classes!r}."
            )
        self.num_classes = None if num_classes is None else int(num_classes)
        self.class_names = _names(class_names)
        self.max_detections = _check_max_detections(max_detections)
        if not 0.0 <= float(iou_threshold) < 1.0:
            raise ValueError(f"`iou_threshold` must be in [0, 1); got {iou_threshold}.")
        self.iou_threshold = float(iou_threshold)
        self.pixel_inclusive = bool(pixel_inclusive)
        self.progress = progress
        self.reset()

    def reset(self) -> None:
        """Forgets everything accumulated."""
        self._gt: list[BoxTable] = []
        self._dt: list[BoxTable] = []
        self._num_images = 0

    @property
    def num_images(self) -> int:
        """Images accumulated so far."""
        return self._num_images

    def _check_classes(self, table: BoxTable, what: str) -> None:
        if self.num_classes is not None and len(table):
            bad = table.classes >= self.num_classes
            if np.any(bad):
                raise ValueError(
                    f"`{what}` has class {int(table.classes[bad][0])}, outside "
                    f"0..{self.num_classes - 1} (`num_classes={self.num_classes}`)."
                )

    def update(self, ground_truth: Any, detections: Any) -> None:
        """Adds one batch (or one image, or a list of images).

        Args:
            ground_truth: A padded batch ``{"boxes": (B, N, 4), "classes": (B, N)}``
                (xyxy pixels, class -1 = padding; optional ``"iscrowd"``, ``"difficult"``
                (B, N) flags and COCO ``"area"``), one image's dict with (N, 4) boxes, or
                a list of per-image dicts.
            detections: The same structure with ``"scores"``: ``{"boxes": (B, M, 4),
                "classes": (B, M), "scores": (B, M)}``.

        Raises:
            ValueError: Mismatched image counts or shapes, negative widths, non-finite
                values, classes outside ``num_classes``.
        """
        if isinstance(ground_truth, Mapping) != isinstance(detections, Mapping):
            raise TypeError(
                "`ground_truth` and `detections` must both be dicts or both be lists of "
                f"per-image dicts; got {type(ground_truth).__name__} and "
                f"{type(detections).__name__}."
            )
        if not isinstance(ground_truth, Mapping):
            ground_truth, detections = list(ground_truth), list(detections)
            if len(ground_truth) != len(detections):
                raise ValueError(
                    f"`ground_truth` has {len(ground_truth)} images but `detections` has "
                    f"{len(detections)}."
                )
            for gt_image, dt_image in zip(ground_truth, detections):
                self.update(gt_image, dt_image)
            return
        gt, n_gt = table_from_arrays(
            ground_truth, is_detection=False, image_offset=self._num_images, what="ground_truth"
        )
        dt, n_dt = table_from_arrays(
            detections, is_detection=True, image_offset=self._num_images, what="detections"
        )
        if n_gt != n_dt:
            raise ValueError(
                f"`ground_truth` holds {n_gt} images but `detections` holds {n_dt}; they must "
                "describe the same batch."
            )
        self._check_classes(gt, "ground_truth")
        self._check_classes(dt, "detections")
        self._gt.append(gt)
        self._dt.append(dt)
        self._num_images += n_gt

    def result(self) -> DetectionResult:
        """Evaluates everything accumulated so far."""
        gt = BoxTable.concatenate(self._gt, with_scores=False)
        dt = BoxTable.concatenate(self._dt, with_scores=True)
        if self.num_classes is not None:
            class_ids = np.arange(self.num_classes, dtype=np.int64)
        else:
            class_ids = np.union1d(gt.classes, dt.classes).astype(np.int64)
        return run_protocol(
            gt,
            dt,
            protocol=self.protocol,
            num_images=self._num_images,
            class_ids=class_ids,
            class_names=self.class_names,
            max_detections=self.max_detections,
            iou_threshold=self.iou_threshold,
            pixel_inclusive=self.pixel_inclusive,
            progress=self.progress,
        )


def evaluate(
    ground_truth: Any,
    detections: Any,
    protocol: str = "coco",
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    max_detections: Sequence[int] = coco_protocol.MAX_DETECTIONS,
    iou_threshold: float = 0.5,
    pixel_inclusive: bool = False,
    progress: bool | None = None,
) -> DetectionResult:
    """Evaluates detections against ground truth (mAP, per-class AP, PR curves).

    Accepted inputs (the two arguments must match):

    * COCO JSON: ``ground_truth`` a COCO dataset dict or path (``images``,
      ``annotations`` with ``bbox`` as ``[x, y, w, h]``, ``area``, ``iscrowd``;
      ``categories``), ``detections`` a results list or path (``image_id``,
      ``category_id``, ``bbox``, ``score``). Images are taken in ascending id order,
      as pycocotools does.
    * A padded batch dict ``{"boxes": (B, N, 4), "classes": (B, N)[, "scores"]}`` (xyxy
      pixels, negative class = padding), or a list of such batches.
    * A list of per-image dicts with (N, 4) boxes.

    Args:
        ground_truth: See above. Optional per-box ``"iscrowd"`` (COCO crowd regions) and
            ``"difficult"`` (VOC) flags.
        detections: See above; needs ``"scores"``.
        protocol: "coco", "voc07" or "voc" (see :class:`DetectionEvaluator`).
        num_classes: Array inputs: classes are ``0 .. num_classes - 1``. Ignored for COCO
            JSON, whose categories come from the dataset.
        class_names: Names by class id (list or dict). COCO JSON: from the categories.
        max_detections: COCO maxDets (default (1, 10, 100)).
        iou_threshold: VOC IoU threshold (strict, default 0.5).
        pixel_inclusive: VOC ``+1`` pixel convention (default False).
        progress: tqdm progress bar: None = when on a terminal, True, False.

    Returns:
        A :class:`DetectionResult`; ``print(result)`` shows the summary table.
    """
    _check_protocol(protocol)
    if is_coco_dataset(ground_truth):
        inputs = from_coco(ground_truth, detections)
        names = inputs.category_names
        names.update(_names(class_names))
        return run_protocol(
            inputs.ground_truth,
            inputs.detections,
            protocol=protocol,
            num_images=len(inputs.image_ids),
            class_ids=inputs.category_ids,
            class_names=names,
            max_detections=_check_max_detections(max_detections),
            iou_threshold=iou_threshold,
            pixel_inclusive=pixel_inclusive,
            progress=progress,
        )
    evaluator = DetectionEvaluator(
        protocol,
        num_classes=num_classes,
        class_names=class_names,
        max_detections=max_detections,
        iou_threshold=iou_threshold,
        pixel_inclusive=pixel_inclusive,
        progress=progress,
    )
    if isinstance(ground_truth, Mapping):
        evaluator.update(ground_truth, detections)
    else:
        ground_truth, detections = list(ground_truth), list(detections)
        if len(ground_truth) != len(detections):
            raise ValueError(
                f"`ground_truth` has {len(ground_truth)} entries but `detections` has "
                f"{len(detections)}."
            )
        for gt_entry, dt_entry in zip(ground_truth, detections):
            evaluator.update(gt_entry, dt_entry)
    return evaluator.result()
