"""NumPy twin of `kerasseg.detection.boxes`, for evaluation and data code.

Same functions, same conventions (xyxy absolute pixels by default, widths ``x_max - x_min``,
leading batch dimensions allowed), computed in float64 with NumPy only: the module itself imports no
deep-learning framework (the `kerasseg.detection` package around it imports Keras). The two modules are
tested against the same reference values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kerasseg.detection.box_formats import BBOX_XFORM_CLIP, FORMATS, parse_format

__all__ = [
    "BBOX_XFORM_CLIP",
    "FORMATS",
    "area",
    "check_boxes",
    "clip_to_image",
    "convert_format",
    "decode",
    "elementwise_giou",
    "elementwise_iou",
    "encode",
    "is_valid",
    "pairwise_giou",
    "pairwise_iou",
]


def _as_boxes(boxes: Any, name: str = "boxes") -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != 4:
        raise ValueError(f"`{name}` must have shape (..., 4), got shape {array.shape}.")
    return array


def _split(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(boxes[..., i] for i in range(4))


def _image_hw(image_shape: Any) -> tuple[Any, Any]:
    if image_shape is None:
        raise ValueError("`image_shape` (height, width) is required to convert relative boxes.")
    shape = np.asarray(image_shape, dtype=np.float64)
    if shape.ndim == 1:
        if shape.shape[0] != 2:
            raise ValueError(f"`image_shape` must be (height, width), got {image_shape!r}.")
        return shape[0], shape[1]
    if shape.shape[-1] != 2:
        raise ValueError(f"`image_shape` must have shape (..., 2), got {shape.shape}.")
    return shape[..., 0:1], shape[..., 1:2]  # (B, 1) against boxes (B, N)


def convert_format(boxes: Any, source: str, target: str, image_shape: Any = None) -> np.ndarray:
    """See `kerasseg.detection.boxes.convert_format`. Returns float64."""
    src, src_rel = parse_format(source)
    dst, dst_rel = parse_format(target)
    boxes = _as_boxes(boxes)
    if (src, src_rel) == (dst, dst_rel):
        return boxes.copy()
    a, b, c, d = _split(boxes)
    if src == "xyxy":
        x1, y1, x2, y2 = a, b, c, d
    elif src == "yxyx":
        x1, y1, x2, y2 = b, a, d, c
    elif src == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    else:
        x1, y1, x2, y2 = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    if src_rel != dst_rel:
        height, width = _image_hw(image_shape)
        scale_x, scale_y = (width, height) if src_rel else (1.0 / width, 1.0 / height)
        x1, x2, y1, y2 = x1 * scale_x, x2 * scale_x, y1 * scale_y, y2 * scale_y
    if dst == "xyxy":
        out = (x1, y1, x2, y2)
    elif dst == "yxyx":
        out = (y1, x1, y2, x2)
    elif dst == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    else:
        out = (0.5 * (x1 + x2), 0.5 * (y1 + y2), x2 - x1, y2 - y1)
    return np.stack(out, axis=-1)


def area(boxes: Any) -> np.ndarray:
    """See `kerasseg.detection.boxes.area`."""
    boxes = _as_boxes(boxes)
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(
        boxes[..., 3] - boxes[..., 1], 0, None
    )


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _iou_parts(b1: np.ndarray, b2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inter_w = np.clip(
        np.minimum(b1[..., 2], b2[..., 2]) - np.maximum(b1[..., 0], b2[..., 0]), 0, None
    )
    inter_h = np.clip(
        np.minimum(b1[..., 3], b2[..., 3]) - np.maximum(b1[..., 1], b2[..., 1]), 0, None
    )
    intersection = inter_w * inter_h
    return intersection, area(b1) + area(b2) - intersection


def _giou(b1: np.ndarray, b2: np.ndarray) -> np.ndarray:
    intersection, union = _iou_parts(b1, b2)
    width = np.clip(
        np.maximum(b1[..., 2], b2[..., 2]) - np.minimum(b1[..., 0], b2[..., 0]), 0, None
    )
    height = np.clip(
        np.maximum(b1[..., 3], b2[..., 3]) - np.minimum(b1[..., 1], b2[..., 1]), 0, None
    )
    enclosing = width * height
    return _divide(intersection, union) - _divide(enclosing - union, enclosing)


def _pairwise(boxes1: Any, boxes2: Any) -> tuple[np.ndarray, np.ndarray]:
    b1, b2 = _as_boxes(boxes1, "boxes1"), _as_boxes(boxes2, "boxes2")
    if b1.ndim < 2 or b2.ndim < 2:
        raise ValueError(
            "Pairwise IoU needs boxes of shape (..., N, 4) and (..., M, 4), got "
            f"{b1.shape} and {b2.shape}."
        )
    return b1[..., :, None, :], b2[..., None, :, :]


def pairwise_iou(boxes1: Any, boxes2: Any) -> np.ndarray:
    """See `kerasseg.detection.boxes.pairwise_iou`: ``(..., N, 4), (..., M, 4) -> (..., N, M)``."""
    b1, b2 = _pairwise(boxes1, boxes2)
    intersection, union = _iou_parts(b1, b2)
    return _divide(intersection, union)


def pairwise_giou(boxes1: Any, boxes2: Any) -> np.ndarray:
    """See `kerasseg.detection.boxes.pairwise_giou`."""
    return _giou(*_pairwise(boxes1, boxes2))


def elementwise_iou(boxes1: Any, boxes2: Any) -> np.ndarray:
    """See `kerasseg.detection.boxes.elementwise_iou`."""
    b1, b2 = _as_boxes(boxes1, "boxes1"), _as_boxes(boxes2, "boxes2")
    intersection, union = _iou_parts(b1, b2)
    return _divide(intersection, union)


def elementwise_giou(boxes1: Any, boxes2: Any) -> np.ndarray:
    """See `kerasseg.detection.boxes.elementwise_giou`."""
    return _giou(_as_boxes(boxes1, "boxes1"), _as_boxes(boxes2, "boxes2"))


def clip_to_image(boxes: Any, image_shape: Any) -> np.ndarray:
    """See `kerasseg.detection.boxes.clip_to_image`."""
    boxes = _as_boxes(boxes)
    height, width = _image_hw(image_shape)
    x1, y1, x2, y2 = _split(boxes)
    return np.stack(
        [
            np.minimum(np.maximum(x1, 0), width),
            np.minimum(np.maximum(y1, 0), height),
            np.minimum(np.maximum(x2, 0), width),
            np.minimum(np.maximum(y2, 0), height),
        ],
        axis=-1,
    )


def is_valid(boxes: Any, min_size: float = 0.0) -> np.ndarray:
    """See `kerasseg.detection.boxes.is_valid`."""
    boxes = _as_boxes(boxes)
    finite = np.all(np.isfinite(boxes), axis=-1)
    with np.errstate(invalid="ignore"):
        wide = (boxes[..., 2] - boxes[..., 0]) > min_size
        tall = (boxes[..., 3] - boxes[..., 1]) > min_size
    return finite & wide & tall


def check_boxes(boxes: Any, name: str = "boxes", allow_empty_boxes: bool = True) -> np.ndarray:
    """Validates an array of xyxy boxes and returns it as float64.

    Args:
        boxes: ``(..., 4)`` xyxy boxes.
        name: The argument name used in error messages.
        allow_empty_boxes: Whether zero-width/height boxes (``x_max == x_min``) pass;
            inverted boxes (``x_max < x_min``) never do.

    Returns:
        The boxes as a float64 array.

    Raises:
        ValueError: naming `name`, the first offending index and its values, when the
            shape is not ``(..., 4)``, a coordinate is not finite, or a box is inverted.
    """
    array = _as_boxes(boxes, name)
    finite = np.all(np.isfinite(array), axis=-1)
    if not np.all(finite):
        index = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(
            f"`{name}` has a non-finite box at index {index}: {array[index].tolist()}."
        )
    widths, heights = array[..., 2] - array[..., 0], array[..., 3] - array[..., 1]
    bad = (widths <= 0) | (heights <= 0) if not allow_empty_boxes else (widths < 0) | (heights < 0)
    if np.any(bad):
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        relation = ">=" if allow_empty_boxes else ">"
        raise ValueError(
            f"`{name}` must hold xyxy boxes with x_max {relation} x_min and y_max {relation} "
            f"y_min; box {index} is {array[index].tolist()} ({int(bad.sum())} such boxes). "
            "Is the format 'xywh' rather than 'xyxy'?"
        )
    return array


def _centres(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    width = boxes[..., 2] - boxes[..., 0]
    height = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * width, boxes[..., 1] + 0.5 * height, width, height


def encode(
    boxes: Any, anchors: Any, variances: Sequence[float] = (1.0, 1.0, 1.0, 1.0)
) -> np.ndarray:
    """See `kerasseg.detection.boxes.encode`."""
    vx, vy, vw, vh = _variances(variances)
    x, y, w, h = _centres(_as_boxes(boxes))
    xa, ya, wa, ha = _centres(_as_boxes(anchors, "anchors"))
    with np.errstate(divide="ignore"):
        return np.stack(
            [(x - xa) / wa / vx, (y - ya) / ha / vy, np.log(w / wa) / vw, np.log(h / ha) / vh],
            axis=-1,
        )


def decode(
    deltas: Any,
    anchors: Any,
    variances: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    clip: float | None = BBOX_XFORM_CLIP,
) -> np.ndarray:
    """See `kerasseg.detection.boxes.decode`."""
    vx, vy, vw, vh = _variances(variances)
    deltas = _as_boxes(deltas, "deltas")
    xa, ya, wa, ha = _centres(_as_boxes(anchors, "anchors"))
    dw, dh = deltas[..., 2] * vw, deltas[..., 3] * vh
    if clip is not None:
        dw, dh = np.minimum(dw, clip), np.minimum(dh, clip)
    x = deltas[..., 0] * vx * wa + xa
    y = deltas[..., 1] * vy * ha + ya
    half_w, half_h = 0.5 * np.exp(dw) * wa, 0.5 * np.exp(dh) * ha
    return np.stack([x - half_w, y - half_h, x + half_w, y + half_h], axis=-1)


def _variances(variances: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(v) for v in variances)
    if len(values) != 4 or any(v <= 0 for v in values):
        raise ValueError(
            f"`variances` must be 4 positive numbers (vx, vy, vw, vh), got {variances!r}."
        )
    return values
