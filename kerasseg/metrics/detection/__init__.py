"""Detection mAP evaluator: COCO (pycocotools-exact), VOC2007 11-point and VOC all-point.

Plain NumPy, independent of Keras. Boxes are ``xyxy`` in pixels; COCO JSON (``xywh``) is
converted at the input boundary.

```python
from kerasseg.metrics.detection import evaluate

result = evaluate(ground_truth, detections, protocol="coco")
print(result)            # the 12-line COCO table
result.map, result.per_class_ap, result.pr_curve(class_id=1)
```
"""

from kerasseg.metrics.detection.coco import (
    AREA_LABELS,
    AREA_RANGES,
    IOU_THRESHOLDS,
    RECALL_THRESHOLDS,
    STAT_NAMES,
)
from kerasseg.metrics.detection.evaluator import DetectionEvaluator, evaluate
from kerasseg.metrics.detection.iou import iou_matrix
from kerasseg.metrics.detection.result import PROTOCOLS, DetectionResult
from kerasseg.metrics.detection.voc import voc_ap

__all__ = [
    "AREA_LABELS",
    "AREA_RANGES",
    "IOU_THRESHOLDS",
    "PROTOCOLS",
    "RECALL_THRESHOLDS",
    "STAT_NAMES",
    "DetectionEvaluator",
    "DetectionResult",
    "evaluate",
    "iou_matrix",
    "voc_ap",
]
