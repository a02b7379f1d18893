"""The result object the evaluator returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kerasseg.metrics.detection import coco as coco_protocol
from kerasseg.metrics.detection.confusion import confusion_matrix as _confusion_matrix
from kerasseg.metrics.detection.inputs import BoxTable

PROTOCOLS = ("coco", "voc07", "voc")

_COCO_LINES = (
    # (is AP, IoU label, area, maxDets index)
    (True, None, "all", -1),
    (True, 0.5, "all", -1),
    (True, 0.75, "all", -1),
    (True, None, "small", -1),
    (True, None, "medium", -1),
    (True, None, "large", -1),
    (False, None, "all", 0),
    (False, None, "all", 1),
    (False, None, "all", 2),
    (False, None, "small", -1),
    (False, None, "medium", -1),
    (False, None, "large", -1),
)


@dataclass(repr=False)
class DetectionResult:
    """Everything one evaluation produced.

    Attributes:
        protocol: "coco", "voc07" or "voc".
        class_ids: (K,) the evaluated class (category) ids, ascending.
        class_names: Class id -> name, where known.
        stats: COCO: the 12 numbers in pycocotools' order (AP@[.5:.95], AP50, AP75,
            AP small/medium/large, AR@1/10/100, AR small/medium/large), -1 where
            undefined. VOC: a 1-element array with the mAP.
        summary: The same numbers by name: ``map``, ``map50``, ``map75``, ``map_small``,
            ``map_medium``, ``map_large``, ``mar1``, ``mar10``, ``mar100``, ``mar_small``,
            ``mar_medium``, ``mar_large`` (COCO); ``map`` and ``map50`` (VOC, equal).
        ap: (K,) per-class AP (COCO: AP@[.5:.95], area all, the largest maxDets; VOC:
            the protocol's AP). NaN for classes without ground truth.
        num_ground_truth: (K,) ground truth counted per class (COCO: not crowd;
            VOC: not difficult).
        num_images: Number of images evaluated.
        precision: COCO only: (T, R, K, A, M) precision, pycocotools' ``eval["precision"]``.
        recall: COCO only: (T, K, A, M) recall, pycocotools' ``eval["recall"]``.
        curves: VOC only: per class ``(recall, precision)``, one point per detection.
        iou_thresholds: (T,) COCO IoU thresholds; VOC: the single threshold.
        recall_thresholds: (R,) COCO recall points (None for VOC).
        max_detections: COCO maxDets (M,).
    """

    protocol: str
    class_ids: np.ndarray
    class_names: dict[int, str]
    stats: np.ndarray
    summary: dict[str, float]
    ap: np.ndarray
    num_ground_truth: np.ndarray
    num_images: int
    precision: np.ndarray | None = None
    recall: np.ndarray | None = None
    curves: list[tuple[np.ndarray, np.ndarray]] | None = None
    iou_thresholds: np.ndarray = field(default_factory=lambda: coco_protocol.IOU_THRESHOLDS)
    recall_thresholds: np.ndarray | None = None
    max_detections: tuple[int, ...] = coco_protocol.MAX_DETECTIONS
    _ground_truth: BoxTable | None = None
    _detections: BoxTable | None = None

    @property
    def map(self) -> float:
        """The protocol's headline mAP (COCO: AP@[.5:.95])."""
        return float(self.summary["map"])

    def class_name(self, class_id: int) -> str:
        """The class's name, or its id as text."""
        return self.class_names.get(int(class_id), str(int(class_id)))

    @property
    def per_class_ap(self) -> dict[int, float]:
        """Class id -> AP (NaN without ground truth)."""
        return {int(c): float(a) for c, a in zip(self.class_ids, self.ap)}

    @property
    def per_class_ap_by_name(self) -> dict[str, float]:
        """Class name (or id as text) -> AP."""
        return {self.class_name(c): float(a) for c, a in zip(self.class_ids, self.ap)}

    def _class_index(self, class_id: int) -> int:
        index = int(np.searchsorted(self.class_ids, class_id))
        if index >= len(self.class_ids) or self.class_ids[index] != class_id:
            raise ValueError(
                f"`class_id` {class_id} was not evaluated; classes are {self.class_ids.tolist()}."
            )
        return index

    def per_class_ap_at(self, iou_threshold: float = 0.5) -> dict[int, float]:
        """COCO: class id -> AP at one IoU threshold (area all, largest maxDets)."""
        t = self._iou_index(iou_threshold)
        out = {}
        for k, class_id in enumerate(self.class_ids):
            values = self.precision[t, :, k, 0, -1]
            out[int(class_id)] = float(np.mean(values)) if np.all(values > -1) else float("nan")
        return out

    def _iou_index(self, iou_threshold: float) -> int:
        if self.protocol != "coco":
            raise ValueError("IoU thresholds other than the protocol's exist only for 'coco'.")
        matches = np.flatnonzero(np.isclose(self.iou_thresholds, iou_threshold, atol=1e-9))
        if matches.size == 0:
            raise ValueError(
                f"`iou_threshold` must be one of {np.round(self.iou_thresholds, 2).tolist()}; "
                f"got {iou_threshold}."
            )
        return int(matches[0])

    def pr_curve(self, class_id: int, iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """A class's precision-recall curve.

        Args:
            class_id: The class id.
            iou_threshold: COCO: which IoU threshold (0.5, 0.55, ..., 0.95); the curve is
                the interpolated precision at the 101 recall points (area all, largest
                maxDets). VOC: ignored (the protocol's threshold).

        Returns:
            ``(recall, precision)`` 1-D arrays. Empty for COCO classes without ground truth.
        """
        k = self._class_index(class_id)
        if self.protocol == "coco":
            precision = self.precision[self._iou_index(iou_threshold), :, k, 0, -1]
            if np.any(precision < 0):
                return np.zeros(0), np.zeros(0)
            return self.recall_thresholds.copy(), precision.copy()
        recall, precision = self.curves[k]
        return recall.copy(), precision.copy()

    def pr_curves(self, iou_threshold: float = 0.5) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Class id -> ``(recall, precision)`` for every class with ground truth."""
        return {
            int(c): self.pr_curve(int(c), iou_threshold)
            for c, n in zip(self.class_ids, self.num_ground_truth)
            if n > 0
        }

    def confusion_matrix(
        self, iou_threshold: float = 0.5, score_threshold: float = 0.0
    ) -> np.ndarray:
        """(K + 1) x (K + 1) counts, rows ground truth, columns predictions.

        Index K (the last row and column) is background: the last row counts detections
        that match no ground truth (false positives), the last column ground truth that no
        detection matches (misses). Matching is class-agnostic, one-to-one, greedy by IoU;
        crowd/difficult ground truth is left out (a detection on it is not counted).

        Args:
            iou_threshold: IoU needed for a detection to match a ground truth box.
            score_threshold: Detections scoring below it are dropped first.

        Returns:
            int64 array of shape (K + 1, K + 1), classes in ``class_ids`` order.
        """
        if not 0.0 <= float(iou_threshold) <= 1.0:
            raise ValueError(f"`iou_threshold` must be in [0, 1]; got {iou_threshold}.")
        if self._ground_truth is None or self._detections is None:
            raise ValueError("This result does not keep the boxes needed for a confusion matrix.")
        return _confusion_matrix(
            self._ground_truth,
            self._detections,
            category_ids=self.class_ids,
            iou_threshold=iou_threshold,
            score_threshold=score_threshold,
        )

    def __str__(self) -> str:
        if self.protocol == "coco":
            return self._coco_table()
        return self._voc_table()

    def __repr__(self) -> str:
        return (
            f"DetectionResult(protocol={self.protocol!r}, map={self.map:.4f}, "
            f"classes={len(self.class_ids)}, images={self.num_images})"
        )

    def _coco_table(self) -> str:
        lines = []
        thresholds = self.iou_thresholds
        for value, (is_ap, iou, area, m) in zip(self.stats, _COCO_LINES):
            title = "Average Precision" if is_ap else "Average Recall"
            kind = "(AP)" if is_ap else "(AR)"
            if iou is None:
                iou_text = f"{thresholds[0]:0.2f}:{thresholds[-1]:0.2f}"
            else:
                iou_text = f"{iou:0.2f}"
            max_det = self.max_detections[m]
            lines.append(
                f" {title:<18} {kind} @[ IoU={iou_text:<9} | area={area:>6s} | "
                f"maxDets={max_det:>3d} ] = {value:0.3f}"
            )
        return "\n".join(lines)

    def _voc_table(self) -> str:
        name = "VOC2007 11-point" if self.protocol == "voc07" else "VOC all-point"
        width = max([len(self.class_name(c)) for c in self.class_ids] + [5])
        lines = [f"{name} AP @ IoU > {float(self.iou_thresholds[0]):g}"]
        lines.append(f" {'class':<{width}}  {'gt':>6}  {'AP':>6}")
        for class_id, count, value in zip(self.class_ids, self.num_ground_truth, self.ap):
            text = "   n/a" if np.isnan(value) else f"{value:6.4f}"
            lines.append(f" {self.class_name(class_id):<{width}}  {int(count):>6}  {text}")
        lines.append(f" {'mAP':<{width}}  {int(np.sum(self.num_ground_truth)):>6}  {self.map:6.4f}")
        return "\n".join(lines)
