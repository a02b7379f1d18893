"""Streaming segmentation metrics and the detection evaluator."""

from kerasseg.metrics import detection  # noqa: E402
from kerasseg.metrics.detection.keras_metric import (  # noqa: E402
    MeanAveragePrecision,
    pack_detections,
    pack_ground_truth,
)

# Detection: the evaluator package and its Keras metric.
__all__ = [  # noqa: PLE0604
    *globals().get("__all__", []),
    "detection",
    "MeanAveragePrecision",
    "pack_detections",
    "pack_ground_truth",
]
