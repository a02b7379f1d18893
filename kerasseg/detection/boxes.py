"""Box geometry with `keras.ops`: formats, IoU/GIoU/DIoU/CIoU, anchor encoding, clipping, validity.

This module is the one home of box geometry in kerasseg. Every function runs on any Keras
backend, inside a model or eagerly, and accepts any number of leading (batch) dimensions:
a box tensor has shape ``(..., 4)``. The NumPy twin `kerasseg.detection.boxes_np` has the
same functions for evaluation code that should not touch a deep-learning framework.

Conventions (the padded batches these boxes travel in: `kerasseg.detection.format`):

- The canonical format is ``"xyxy"`` in absolute pixels: ``(x_min, y_min, x_max, y_max)``
  with ``x`` along the image width. A box is *valid* when ``x_max > x_min`` and
  ``y_max > y_min``.
- Box sizes are ``x_max - x_min`` (no "+1" pixel convention), as in torchvision and
  pycocotools.

Formats understood by `convert_format`:

| name | coordinates |
|---|---|
| ``"xyxy"`` | ``x_min, y_min, x_max, y_max`` |
| ``"yxyx"`` | ``y_min, x_min, y_max, x_max`` (TensorFlow's `tf.image` order) |
| ``"xywh"`` | ``x_min, y_min, width, height`` (COCO) |
| ``"cxcywh"`` | ``x_center, y_center, width, height`` (alias ``"center_xywh"``; YOLO, DETR) |

Each name may be prefixed with ``"rel_"`` for coordinates relative to the image size
(``x / width``, ``y / height``, in 0..1 inside the image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from kerasseg.detection.box_formats import BBOX_XFORM_CLIP, FORMATS, parse_format

__all__ = [
    "BBOX_XFORM_CLIP",
    "FORMATS",
    "BoxCoder",
    "area",
    "clip_to_image",
    "convert_format",
    "decode",
    "elementwise_ciou",
    "elementwise_diou",
    "elementwise_giou",
    "elementwise_iou",
    "encode",
    "is_valid",
    "pairwise_giou",
    "pairwise_iou",
]


def _as_float(x: Any, dtype: Any = None) -> Any:
    """A float tensor: cast to `dtype` if given, else kept if float, else floatx."""
    x = ops.convert_to_tensor(x)
    if dtype is not None:
        return x if x.dtype == dtype else ops.cast(x, dtype)
    if "float" not in str(x.dtype):
        x = ops.cast(x, keras.config.floatx())
    return x


def _check_last_axis(boxes: Any, name: str) -> None:
    if len(boxes.shape) == 0 or (boxes.shape[-1] is not None and boxes.shape[-1] != 4):
        raise ValueError(f"`{name}` must have shape (..., 4), got shape {tuple(boxes.shape)}.")


def _box_pair(
    first: Any, second: Any, names: tuple[str, str] = ("boxes1", "boxes2")
) -> tuple[Any, Any]:
    """Two ``(..., 4)`` inputs as float tensors, the second in the first's dtype.

    Args:
        first: Boxes (or deltas); a float dtype is kept, others become floatx.
        second: Boxes (or anchors), cast to `first`'s dtype.
        names: The arguments' names, for the shape errors.

    Returns:
        ``(first, second)`` as tensors.

    Raises:
        ValueError: if either last axis is not 4.
    """
    first = _as_float(first)
    second = _as_float(second, first.dtype)
    _check_last_axis(first, names[0])
    _check_last_axis(second, names[1])
    return first, second


def _image_hw(image_shape: Any, dtype: Any) -> tuple[Any, Any]:
    if image_shape is None:
        raise ValueError("`image_shape` (height, width) is required to convert relative boxes.")
    if isinstance(image_shape, Sequence) and not isinstance(image_shape, str):
        if len(image_shape) != 2:
            raise ValueError(f"`image_shape` must be (height, width), got {tuple(image_shape)!r}.")
        height, width = image_shape
    else:  # a tensor of shape (..., 2)
        image_shape = _as_float(image_shape, dtype)
        height, width = image_shape[..., 0], image_shape[..., 1]
        # Broadcast over the box axis: (B, 2) -> (B, 1) against boxes (B, N).
        height, width = ops.expand_dims(height, -1), ops.expand_dims(width, -1)
        return height, width
    return _as_float(height, dtype), _as_float(width, dtype)


def _to_xyxy(boxes: Any, base: str) -> tuple[Any, Any, Any, Any]:
    a, b, c, d = (boxes[..., i] for i in range(4))
    if base == "xyxy":
        return a, b, c, d
    if base == "yxyx":
        return b, a, d, c
    if base == "xywh":
        return a, b, a + c, b + d
    # cxcywh
    return a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d


def _from_xyxy(x1: Any, y1: Any, x2: Any, y2: Any, base: str) -> tuple[Any, Any, Any, Any]:
    if base == "xyxy":
        return x1, y1, x2, y2
    if base == "yxyx":
        return y1, x1, y2, x2
    if base == "xywh":
        return x1, y1, x2 - x1, y2 - y1
    return 0.5 * (x1 + x2), 0.5 * (y1 + y2), x2 - x1, y2 - y1


def convert_format(boxes: Any, source: str, target: str, image_shape: Any = None) -> Any:
    """Converts boxes between formats and between relative and absolute coordinates.

    Args:
        boxes: Boxes of shape ``(..., 4)`` in the `source` format.
        source: The format of `boxes` (see the module docstring).
        target: The wanted format.
        image_shape: ``(height, width)`` of the image, needed only when exactly one of
            `source` / `target` is relative. Python numbers, scalars, or a tensor of
            shape ``(B, 2)`` for boxes of shape ``(B, N, 4)`` (one size per image).

    Returns:
        Float tensor of the same shape as `boxes`, in the `target` format.
    """
    src, src_rel = parse_format(source)
    dst, dst_rel = parse_format(target)
    boxes = _as_float(boxes)
    _check_last_axis(boxes, "boxes")
    if (src, src_rel) == (dst, dst_rel):
        return boxes
    x1, y1, x2, y2 = _to_xyxy(boxes, src)
    if src_rel != dst_rel:
        height, width = _image_hw(image_shape, boxes.dtype)
        if src_rel:
            x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
        else:
            x1, x2, y1, y2 = x1 / width, x2 / width, y1 / height, y2 / height
    return ops.stack(_from_xyxy(x1, y1, x2, y2, dst), axis=-1)


def area(boxes: Any) -> Any:
    """Areas of ``xyxy`` boxes; inverted (invalid) boxes have area 0.

    Args:
        boxes: ``(..., 4)`` xyxy boxes.

    Returns:
        ``(...)`` float areas, ``>= 0``.
    """
    boxes = _as_float(boxes)
    _check_last_axis(boxes, "boxes")
    width = ops.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    height = ops.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return width * height


def _safe_divide(numerator: Any, denominator: Any) -> Any:
    # 0/0 -> 0 (e.g. IoU of two empty boxes) instead of NaN, without a NaN gradient.
    positive = denominator > 0
    return ops.where(positive, numerator / ops.where(positive, denominator, 1.0), 0.0)


def _iou_parts(b1: Any, b2: Any) -> tuple[Any, Any]:
    """Intersection and union of broadcast-compatible xyxy boxes (last axis 4)."""
    inter_w = ops.maximum(
        ops.minimum(b1[..., 2], b2[..., 2]) - ops.maximum(b1[..., 0], b2[..., 0]), 0.0
    )
    inter_h = ops.maximum(
        ops.minimum(b1[..., 3], b2[..., 3]) - ops.maximum(b1[..., 1], b2[..., 1]), 0.0
    )
    intersection = inter_w * inter_h
    union = area(b1) + area(b2) - intersection
    return intersection, union


def _enclosing_area(b1: Any, b2: Any) -> Any:
    width = ops.maximum(b1[..., 2], b2[..., 2]) - ops.minimum(b1[..., 0], b2[..., 0])
    height = ops.maximum(b1[..., 3], b2[..., 3]) - ops.minimum(b1[..., 1], b2[..., 1])
    return ops.maximum(width, 0.0) * ops.maximum(height, 0.0)


def _pairwise_inputs(boxes1: Any, boxes2: Any) -> tuple[Any, Any]:
    boxes1, boxes2 = _box_pair(boxes1, boxes2)
    if len(boxes1.shape) < 2 or len(boxes2.shape) < 2:
        raise ValueError(
            "Pairwise IoU needs boxes of shape (..., N, 4) and (..., M, 4), got "
            f"{tuple(boxes1.shape)} and {tuple(boxes2.shape)}."
        )
    # (..., N, 1, 4) against (..., 1, M, 4) -> (..., N, M)
    return ops.expand_dims(boxes1, -2), ops.expand_dims(boxes2, -3)


def pairwise_iou(boxes1: Any, boxes2: Any) -> Any:
    """Intersection over union of every pair of boxes (torchvision's ``box_iou``).

    $$\\mathrm{IoU}(A, B) = \\frac{|A \\cap B|}{|A \\cup B|}$$

    Args:
        boxes1: ``(..., N, 4)`` xyxy boxes.
        boxes2: ``(..., M, 4)`` xyxy boxes; leading dimensions broadcast with `boxes1`'s.

    Returns:
        ``(..., N, M)`` IoU in 0..1. A pair whose union is empty (two zero-area boxes)
        has IoU 0, not NaN.
    """
    b1, b2 = _pairwise_inputs(boxes1, boxes2)
    intersection, union = _iou_parts(b1, b2)
    return _safe_divide(intersection, union)


def pairwise_giou(boxes1: Any, boxes2: Any) -> Any:
    """Generalized IoU of every pair of boxes (Rezatofighi et al., 2019).

    $$\\mathrm{GIoU}(A, B) = \\mathrm{IoU}(A, B) - \\frac{|C \\setminus (A \\cup B)|}{|C|}$$

    where $C$ is the smallest box enclosing $A$ and $B$.

    Args:
        boxes1: ``(..., N, 4)`` xyxy boxes.
        boxes2: ``(..., M, 4)`` xyxy boxes.

    Returns:
        ``(..., N, M)`` GIoU in -1..1 (torchvision's ``generalized_box_iou``).
    """
    b1, b2 = _pairwise_inputs(boxes1, boxes2)
    return _giou(b1, b2)


def _giou(b1: Any, b2: Any) -> Any:
    intersection, union = _iou_parts(b1, b2)
    enclosing = _enclosing_area(b1, b2)
    return _safe_divide(intersection, union) - _safe_divide(enclosing - union, enclosing)


def elementwise_iou(boxes1: Any, boxes2: Any) -> Any:
    """IoU of aligned pairs: ``boxes1[..., i, :]`` with ``boxes2[..., i, :]``.

    Args:
        boxes1: ``(..., 4)`` xyxy boxes.
        boxes2: ``(..., 4)`` xyxy boxes, broadcast-compatible with `boxes1`.

    Returns:
        ``(...)`` IoU in 0..1.
    """
    b1, b2 = _box_pair(boxes1, boxes2)
    intersection, union = _iou_parts(b1, b2)
    return _safe_divide(intersection, union)


def elementwise_giou(boxes1: Any, boxes2: Any) -> Any:
    """GIoU of aligned pairs (the quantity behind the GIoU loss ``1 - GIoU``).

    Args:
        boxes1: ``(..., 4)`` xyxy boxes.
        boxes2: ``(..., 4)`` xyxy boxes, broadcast-compatible with `boxes1`.

    Returns:
        ``(...)`` GIoU in -1..1.
    """
    b1, b2 = _box_pair(boxes1, boxes2)
    return _giou(b1, b2)


def _eps_divide(numerator: Any, denominator: Any, eps: float) -> Any:
    # `numerator / (denominator + eps)` where the denominator is positive, else 0, with no
    # NaN or huge gradient at a zero denominator (eps = 0 gives `_safe_divide`).
    positive = denominator > 0
    return ops.where(positive, numerator / ops.where(positive, denominator + eps, 1.0), 0.0)


def _centre_distance_ratio(b1: Any, b2: Any, eps: float) -> Any:
    """Squared centre distance over the squared diagonal of the enclosing box, in 0..1."""
    dx = 0.5 * (b1[..., 0] + b1[..., 2] - b2[..., 0] - b2[..., 2])
    dy = 0.5 * (b1[..., 1] + b1[..., 3] - b2[..., 1] - b2[..., 3])
    width = ops.maximum(b1[..., 2], b2[..., 2]) - ops.minimum(b1[..., 0], b2[..., 0])
    height = ops.maximum(b1[..., 3], b2[..., 3]) - ops.minimum(b1[..., 1], b2[..., 1])
    diagonal = ops.square(ops.maximum(width, 0.0)) + ops.square(ops.maximum(height, 0.0))
    return _eps_divide(ops.square(dx) + ops.square(dy), diagonal, eps)


def _aspect_angle(boxes: Any) -> Any:
    """``atan(w / h)`` in 0..pi/2 with sizes clamped at 0: pi/2 for ``h = 0 < w``, 0 for a point."""
    width = ops.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    height = ops.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    sized = ops.logical_or(width > 0, height > 0)
    # Double `where`: atan2's gradient at (0, 0) is 0 / 0.
    angle = ops.arctan2(ops.where(sized, width, 1.0), ops.where(sized, height, 1.0))
    return ops.where(sized, angle, 0.0)


def _complete_iou(b1: Any, b2: Any, eps: float) -> tuple[Any, Any]:
    """``(DIoU, CIoU)`` of broadcast xyxy boxes; `eps` as torchvision's losses (0: exact)."""
    intersection, union = _iou_parts(b1, b2)
    iou = _eps_divide(intersection, union, eps)
    diou = iou - _centre_distance_ratio(b1, b2, eps)
    v = (4.0 / math.pi**2) * ops.square(_aspect_angle(b1) - _aspect_angle(b2))
    # The trade-off weight is a constant for the gradient (Zheng et al.; torchvision's no_grad).
    alpha = ops.stop_gradient(_eps_divide(v, 1.0 - iou + v, eps))
    return diou, diou - alpha * v


def elementwise_diou(boxes1: Any, boxes2: Any) -> Any:
    """Distance IoU of aligned pairs (Zheng et al., 2020).

    $$\\mathrm{DIoU}(A, B) = \\mathrm{IoU}(A, B) - \\frac{\\rho^2(a, b)}{c^2}$$

    where $\\rho(a, b)$ is the distance between the box centres and $c$ the diagonal of the
    smallest box enclosing $A$ and $B$.

    Args:
        boxes1: ``(..., 4)`` xyxy boxes.
        boxes2: ``(..., 4)`` xyxy boxes, broadcast-compatible with `boxes1`.

    Returns:
        ``(...)`` DIoU in -1..1 (torchvision's ``distance_box_iou`` of each pair). Empty
        unions and enclosing boxes count as 0 instead of NaN.
    """
    b1, b2 = _box_pair(boxes1, boxes2)
    return _complete_iou(b1, b2, 0.0)[0]


def elementwise_ciou(boxes1: Any, boxes2: Any) -> Any:
    """Complete IoU of aligned pairs (Zheng et al., 2020): DIoU minus an aspect-ratio term.

    $$\\mathrm{CIoU} = \\mathrm{DIoU} - \\alpha v,\\quad
      v = \\frac{4}{\\pi^2}\\left(\\arctan\\frac{w_1}{h_1} - \\arctan\\frac{w_2}{h_2}\\right)^2,
      \\quad \\alpha = \\frac{v}{1 - \\mathrm{IoU} + v}$$

    $\\alpha$ is held constant for the gradient, as in the paper and torchvision.

    Args:
        boxes1: ``(..., 4)`` xyxy boxes.
        boxes2: ``(..., 4)`` xyxy boxes, broadcast-compatible with `boxes1`.

    Returns:
        ``(...)`` CIoU in -2..1 (torchvision's ``complete_box_iou`` of each pair). Finite
        for degenerate boxes: widths and heights are clamped at 0, a zero-height box has
        angle $\\pi/2$ (as torchvision) and a zero-size box angle 0 (torchvision: NaN).
    """
    b1, b2 = _box_pair(boxes1, boxes2)
    return _complete_iou(b1, b2, 0.0)[1]


def clip_to_image(boxes: Any, image_shape: Any) -> Any:
    """Clips xyxy boxes to the image: x into ``[0, width]``, y into ``[0, height]``.

    Args:
        boxes: ``(..., 4)`` xyxy boxes in absolute pixels.
        image_shape: ``(height, width)`` as numbers, or a ``(B, 2)`` tensor for boxes of
            shape ``(B, N, 4)``.

    Returns:
        Clipped boxes, same shape. A box entirely outside the image becomes degenerate
        (zero width or height); filter with `is_valid`.
    """
    boxes = _as_float(boxes)
    _check_last_axis(boxes, "boxes")
    height, width = _image_hw(image_shape, boxes.dtype)
    # minimum/maximum rather than ops.clip: the bounds may be per-image tensors.
    x1 = ops.minimum(ops.maximum(boxes[..., 0], 0.0), width)
    y1 = ops.minimum(ops.maximum(boxes[..., 1], 0.0), height)
    x2 = ops.minimum(ops.maximum(boxes[..., 2], 0.0), width)
    y2 = ops.minimum(ops.maximum(boxes[..., 3], 0.0), height)
    return ops.stack([x1, y1, x2, y2], axis=-1)


def is_valid(boxes: Any, min_size: float = 0.0) -> Any:
    """Which xyxy boxes are proper boxes: finite, wider and taller than `min_size`.

    Args:
        boxes: ``(..., 4)`` xyxy boxes.
        min_size: Minimum width and height (exclusive), in the boxes' units.

    Returns:
        ``(...)`` boolean tensor.
    """
    boxes = _as_float(boxes)
    _check_last_axis(boxes, "boxes")
    finite = ops.all(ops.isfinite(boxes), axis=-1)
    wide = (boxes[..., 2] - boxes[..., 0]) > min_size
    tall = (boxes[..., 3] - boxes[..., 1]) > min_size
    return ops.logical_and(finite, ops.logical_and(wide, tall))


def _check_variances(variances: Sequence[float]) -> tuple[float, float, float, float]:
    values = tuple(float(v) for v in variances)
    if len(values) != 4 or any(v <= 0 for v in values):
        raise ValueError(
            f"`variances` must be 4 positive numbers (vx, vy, vw, vh), got {variances!r}."
        )
    return values  # type: ignore[return-value]


def _centres(boxes: Any) -> tuple[Any, Any, Any, Any]:
    width = boxes[..., 2] - boxes[..., 0]
    height = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * width, boxes[..., 1] + 0.5 * height, width, height


def encode(boxes: Any, anchors: Any, variances: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Any:
    """Encodes boxes as regression targets relative to anchors (R-CNN / SSD deltas).

    With anchor centre $(x_a, y_a)$ and size $(w_a, h_a)$ and box centre/size
    $(x, y, w, h)$:

    $$d_x = \\frac{x - x_a}{w_a v_x},\\quad d_y = \\frac{y - y_a}{h_a v_y},\\quad
      d_w = \\frac{\\log(w / w_a)}{v_w},\\quad d_h = \\frac{\\log(h / h_a)}{v_h}$$

    SSD uses variances ``(0.1, 0.1, 0.2, 0.2)``; Faster R-CNN's weights ``(10, 10, 5, 5)``
    are ``1 / variances`` (use ``BoxCoder.from_weights``).

    Args:
        boxes: ``(..., 4)`` xyxy target boxes. They must have positive width and height
            (zero sizes give ``-inf``); drop degenerate boxes first.
        anchors: ``(..., 4)`` xyxy anchors, broadcast-compatible with `boxes`, e.g.
            ``(N, 4)`` against ``(B, N, 4)``.
        variances: ``(v_x, v_y, v_w, v_h)``, positive.

    Returns:
        ``(..., 4)`` deltas ``(d_x, d_y, d_w, d_h)``.
    """
    vx, vy, vw, vh = _check_variances(variances)
    boxes, anchors = _box_pair(boxes, anchors, ("boxes", "anchors"))
    x, y, w, h = _centres(boxes)
    xa, ya, wa, ha = _centres(anchors)
    return ops.stack(
        [
            (x - xa) / wa / vx,
            (y - ya) / ha / vy,
            ops.log(w / wa) / vw,
            ops.log(h / ha) / vh,
        ],
        axis=-1,
    )


def decode(
    deltas: Any,
    anchors: Any,
    variances: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    clip: float | None = BBOX_XFORM_CLIP,
) -> Any:
    """Inverse of `encode`: turns predicted deltas into xyxy boxes.

    Args:
        deltas: ``(..., 4)`` predicted ``(d_x, d_y, d_w, d_h)``.
        anchors: ``(..., 4)`` xyxy anchors, broadcast-compatible with `deltas`.
        variances: The variances used by `encode`.
        clip: Upper bound applied to the log-scale size deltas ``d_w * v_w`` and
            ``d_h * v_h`` before ``exp`` (`BBOX_XFORM_CLIP` by default, as torchvision);
            None disables it.

    Returns:
        ``(..., 4)`` xyxy boxes (not clipped to the image: see `clip_to_image`).
    """
    vx, vy, vw, vh = _check_variances(variances)
    deltas, anchors = _box_pair(deltas, anchors, ("deltas", "anchors"))
    xa, ya, wa, ha = _centres(anchors)
    dw = deltas[..., 2] * vw
    dh = deltas[..., 3] * vh
    if clip is not None:
        dw = ops.minimum(dw, float(clip))
        dh = ops.minimum(dh, float(clip))
    x = deltas[..., 0] * vx * wa + xa
    y = deltas[..., 1] * vy * ha + ya
    half_w = 0.5 * ops.exp(dw) * wa
    half_h = 0.5 * ops.exp(dh) * ha
    return ops.stack([x - half_w, y - half_h, x + half_w, y + half_h], axis=-1)


class BoxCoder:
    """Encodes boxes against anchors and decodes predictions, with fixed variances.

    A small serializable holder for `encode` / `decode` settings, to be owned by a
    detector head or a decoding layer (its `get_config` goes into theirs).

    Args:
        variances: ``(v_x, v_y, v_w, v_h)``; SSD: ``(0.1, 0.1, 0.2, 0.2)``.
        clip: Log-scale size clip applied in `decode` (see `decode`).

    Example:
        >>> coder = BoxCoder.from_weights((10.0, 10.0, 5.0, 5.0))  # Faster R-CNN
        >>> deltas = coder.encode(gt_boxes, anchors)
        >>> boxes = coder.decode(deltas, anchors)
    """

    def __init__(
        self,
        variances: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        clip: float | None = BBOX_XFORM_CLIP,
    ):
        self.variances = _check_variances(variances)
        self.clip = None if clip is None else float(clip)

    @classmethod
    def from_weights(
        cls, weights: Sequence[float], clip: float | None = BBOX_XFORM_CLIP
    ) -> BoxCoder:
        """A coder from torchvision-style weights ``(w_x, w_y, w_w, w_h) = 1 / variances``."""
        values = tuple(float(w) for w in weights)
        if len(values) != 4 or any(w <= 0 for w in values):
            raise ValueError(f"`weights` must be 4 positive numbers, got {weights!r}.")
        return cls(variances=tuple(1.0 / w for w in values), clip=clip)

    def encode(self, boxes: Any, anchors: Any) -> Any:
        """`encode` with this coder's variances."""
        return encode(boxes, anchors, self.variances)

    def decode(self, deltas: Any, anchors: Any) -> Any:
        """`decode` with this coder's variances and clip."""
        return decode(deltas, anchors, self.variances, self.clip)

    def get_config(self) -> dict[str, Any]:
        return {"variances": list(self.variances), "clip": self.clip}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BoxCoder:
        return cls(**config)

    def __repr__(self) -> str:
        return f"BoxCoder(variances={self.variances}, clip={self.clip})"
