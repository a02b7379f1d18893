"""Streaming segmentation metrics and the detection evaluator.

* Segmentation: `Dice`, `Jaccard`, `Cosine` (dataset-level, from accumulated TP/FP/FN/TN).
* Detection: `kerasseg.metrics.detection.evaluate` (plain NumPy, COCO / VOC07 / VOC) and its
  Keras metric `MeanAveragePrecision`.
"""

from kerasseg.metrics import detection
from kerasseg.metrics.detection.keras_metric import (
    MeanAveragePrecision,
    pack_detections,
    pack_ground_truth,
)
from kerasseg.metrics.segmentation import ConfusionMetric, Cosine, Dice, Jaccard

__all__ = [
    "ConfusionMetric",
    "Cosine",
    "Dice",
    "Jaccard",
    "MeanAveragePrecision",
    "detection",
    "pack_detections",
    "pack_ground_truth",
]
