"""Object detection: the padded detection format, box geometry, anchors, NMS, the detectors.

`format` defines the dense padded dict every part exchanges (keys, padding, packing);
`boxes` is the one home of box geometry (`keras.ops`; `boxes_np` is its NumPy twin),
`anchors` generates multi-level anchors, `nms` holds greedy / class-aware / Soft-NMS and
the `NonMaxSuppression` layer. The detectors (`retinanet`, `ssd`, `yolov8`, ...) are `detector.Detector`
models built from `matching`, `losses`, `necks`, `heads` and `postprocess`; importing this
package registers their builders in the zoo. `format`, `box_formats` and `boxes_np` need no Keras: the
NumPy evaluator imports them in an environment without it.
"""

import importlib.util

from kerasseg.detection import box_formats, boxes_np, format

if importlib.util.find_spec("keras") is not None:
    from kerasseg.detection import (
        anchors,
        assigners,
        boxes,
        losses,
        matching,
        nms,
        retinanet,
        ssd,
        yolo,
        yolov8,
    )
    from kerasseg.detection.anchors import AnchorGenerator
    from kerasseg.detection.boxes import BoxCoder
    from kerasseg.detection.detector import AnchorDetector, Detector
    from kerasseg.detection.nms import (
        NonMaxSuppression,
        batched_nms,
        non_max_suppression,
        soft_nms,
    )
    from kerasseg.detection.postprocess import DetectionDecoder
    from kerasseg.detection.retinanet import RetinaNet
    from kerasseg.detection.ssd import SSD
    from kerasseg.detection.yolo import YOLOv2
    from kerasseg.detection.yolov8 import YOLOv8

__all__ = [
    "SSD",
    "AnchorDetector",
    "AnchorGenerator",
    "BoxCoder",
    "DetectionDecoder",
    "Detector",
    "NonMaxSuppression",
    "RetinaNet",
    "YOLOv2",
    "YOLOv8",
    "anchors",
    "assigners",
    "batched_nms",
    "box_formats",
    "boxes",
    "boxes_np",
    "format",
    "losses",
    "matching",
    "nms",
    "non_max_suppression",
    "retinanet",
    "soft_nms",
    "ssd",
    "yolo",
    "yolov8",
]
