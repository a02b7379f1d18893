"""Object detection: box geometry, anchors, NMS (and, later, the detectors).

`boxes` is the one home of box geometry (`keras.ops`; `boxes_np` is its NumPy twin),
`anchors` generates multi-level anchors, `nms` holds greedy / class-aware / Soft-NMS and
the `NonMaxSuppression` layer.
"""

from kerasseg.detection import anchors, boxes, boxes_np, nms
from kerasseg.detection.anchors import AnchorGenerator
from kerasseg.detection.boxes import BoxCoder
from kerasseg.detection.nms import NonMaxSuppression, batched_nms, non_max_suppression, soft_nms

__all__ = [
    "AnchorGenerator",
    "BoxCoder",
    "NonMaxSuppression",
    "anchors",
    "batched_nms",
    "boxes",
    "boxes_np",
    "nms",
    "non_max_suppression",
    "soft_nms",
]
