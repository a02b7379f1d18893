"""Box overlap for the evaluator (plain NumPy, float64).

The arithmetic follows the references operation by operation so that IoUs are
bit-identical to theirs, which matters at the threshold comparisons:

* COCO (pycocotools' ``bbIou``): ``w = min(x2) - max(x1)``, zero unless ``w > 0`` and
  ``h > 0``; ``union = (area_d + area_g) - inter`` with areas ``width * height`` of the
  boxes; for a crowd ground truth ``union = area_d``.
* VOC (the devkit's ``voc_eval``): ``iw = max(min(x2) - max(x1) [+ 1], 0)``, areas
  ``(x2 - x1 [+ 1]) (y2 - y1 [+ 1])``, ``union = (area_d + area_g) - inter``.
"""

from __future__ import annotations

import numpy as np


def _as_boxes(name: str, boxes: np.ndarray) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"`{name}` must have shape (N, 4) (xyxy); got {array.shape}.")
    return array


def iou_matrix(
    boxes1: np.ndarray,
    boxes2: np.ndarray,
    *,
    crowd: np.ndarray | None = None,
) -> np.ndarray:
    """Pairwise IoU of two sets of ``xyxy`` boxes, COCO's way.

    Args:
        boxes1: (N, 4) boxes, e.g. detections, ``x1 <= x2``, ``y1 <= y2``, in pixels.
        boxes2: (M, 4) boxes, e.g. ground truth.
        crowd: Optional (M,) bool; where true, the overlap with ``boxes2[j]`` is
            ``intersection / area(boxes1[i])`` (COCO's rule for crowd regions).

    Returns:
        (N, M) float64 IoUs in [0, 1].
    """
    a = _as_boxes("boxes1", boxes1)
    b = _as_boxes("boxes2", boxes2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    if crowd is None:
        crowd_b = np.zeros(len(b), bool)
    else:
        crowd_b = np.asarray(crowd, bool)
        if crowd_b.shape != (len(b),):
            raise ValueError(f"`crowd` must have shape ({len(b)},); got {crowd_b.shape}.")
    return coco_pair_iou(
        a[:, None, :], area_a[:, None], b[None, :, :], area_b[None, :], crowd_b[None, :]
    )


def coco_pair_iou(
    d_boxes: np.ndarray,
    d_area: np.ndarray,
    g_boxes: np.ndarray,
    g_area: np.ndarray,
    g_crowd: np.ndarray,
) -> np.ndarray:
    """Elementwise (broadcast) COCO IoU of detection and ground-truth boxes.

    Args:
        d_boxes, g_boxes: (..., 4) xyxy boxes (broadcastable).
        d_area, g_area: (...) ``width * height`` of each box as originally given.
        g_crowd: (...) bool crowd flags of the ground truth.

    Returns:
        (...) float64 IoUs.
    """
    w = np.minimum(d_boxes[..., 2], g_boxes[..., 2]) - np.maximum(d_boxes[..., 0], g_boxes[..., 0])
    h = np.minimum(d_boxes[..., 3], g_boxes[..., 3]) - np.maximum(d_boxes[..., 1], g_boxes[..., 1])
    overlap = (w > 0) & (h > 0)
    inter = np.where(overlap, w * h, 0.0)
    union = np.where(g_crowd, d_area, (d_area + g_area) - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where(overlap, iou, 0.0)


def voc_pair_iou(
    d_boxes: np.ndarray,
    g_boxes: np.ndarray,
    *,
    pixel_inclusive: bool = False,
) -> np.ndarray:
    """Elementwise (broadcast) IoU with the PASCAL VOC devkit's arithmetic.

    Args:
        d_boxes, g_boxes: (..., 4) xyxy boxes (broadcastable).
        pixel_inclusive: Use the original devkit's convention that ``x2``/``y2`` are
            inclusive pixel indices, so a box spans ``x2 - x1 + 1`` pixels.

    Returns:
        (...) float64 IoUs (0 where the union is empty).
    """
    one = 1.0 if pixel_inclusive else 0.0
    iw = np.maximum(
        np.minimum(d_boxes[..., 2], g_boxes[..., 2])
        - np.maximum(d_boxes[..., 0], g_boxes[..., 0])
        + one,
        0.0,
    )
    ih = np.maximum(
        np.minimum(d_boxes[..., 3], g_boxes[..., 3])
        - np.maximum(d_boxes[..., 1], g_boxes[..., 1])
        + one,
        0.0,
    )
    inter = iw * ih
    d_area = (d_boxes[..., 2] - d_boxes[..., 0] + one) * (d_boxes[..., 3] - d_boxes[..., 1] + one)
    g_area = (g_boxes[..., 2] - g_boxes[..., 0] + one) * (g_boxes[..., 3] - g_boxes[..., 1] + one)
    union = (d_area + g_area) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where(union > 0, iou, 0.0)
