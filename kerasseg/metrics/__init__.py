"""Streaming segmentation metrics and the detection evaluator.

* Segmentation: `Dice`, `Jaccard`, `Cosine` (dataset-level, from accumulated TP/FP/FN/TN).
* Detection: `kerasseg.metrics.detection.evaluate` (plain NumPy, COCO / VOC07 / VOC) and its
  Keras metric `MeanAveragePrecision`.
"""

import importlib
import importlib.util
from typing import Any

from kerasseg.detection.format import pack_detections, pack_ground_truth  # no Keras needed
from kerasseg.metrics import detection  # plain NumPy: imports without Keras

# The Keras metrics, by the module that defines them. They are imported here (registering
# them with keras.saving) whenever Keras is there, which the install guarantees; without it
# `kerasseg.metrics.detection` still works and these raise Keras' ImportError when used.
_KERAS_METRICS = {
    "ConfusionMetric": "kerasseg.metrics.segmentation",
    "Cosine": "kerasseg.metrics.segmentation",
    "Dice": "kerasseg.metrics.segmentation",
    "Jaccard": "kerasseg.metrics.segmentation",
    "MeanAveragePrecision": "kerasseg.metrics.detection.keras_metric",
}


def __getattr__(name: str) -> Any:
    if name in _KERAS_METRICS:
        value = getattr(importlib.import_module(_KERAS_METRICS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kerasseg.metrics' has no attribute {name!r}")


if importlib.util.find_spec("keras") is not None:
    from kerasseg.metrics.detection.keras_metric import MeanAveragePrecision
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
