"""Object detection: the padded detection format, box geometry, anchors, NMS (and, later,
the detectors).

`format` defines the dense padded dict every part exchanges (keys, padding, packing);
`boxes` is the one home of box geometry (`keras.ops`; `boxes_np` is its NumPy twin),
`anchors` generates multi-level anchors, `nms` holds greedy / class-aware / Soft-NMS and
the `NonMaxSuppression` layer. `format`, `box_formats` and `boxes_np` need no Keras: the
NumPy evaluator imports them in an environment without it.
"""

import importlib.util

from kerasseg.detection import box_formats, boxes_np, format

if importlib.util.find_spec("keras") is not None:
    from kerasseg.detection import anchors, boxes, nms
    from kerasseg.detection.anchors import AnchorGenerator
    from kerasseg.detection.boxes import BoxCoder
    from kerasseg.detection.nms import (
        NonMaxSuppression,
        batched_nms,
        non_max_suppression,
        soft_nms,
    )

__all__ = [
    "AnchorGenerator",
    "BoxCoder",
    "NonMaxSuppression",
    "anchors",
    "batched_nms",
    "box_formats",
    "boxes",
    "boxes_np",
    "format",
    "nms",
    "non_max_suppression",
    "soft_nms",
]
