"""Detection losses with `keras.ops`: focal classification, box regression, DFL.

Every loss is element-wise (no reduction): the detector sums over what it wants and divides
with `normalize_by_positives`. Boxes are ``(..., 4)`` xyxy (see `kerasseg.detection.boxes`).
Losses compute in the predictions' dtype, promoted from half precision to float32, and are
finite, with finite gradients, for degenerate boxes and logits of any size.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from kerasseg.detection.boxes import (
    _as_float,
    _check_last_axis,
    _complete_iou,
    _enclosing_area,
    _eps_divide,
    _iou_parts,
)
from kerasseg.losses._ops import compute_dtype, safe_pow

__all__ = [
    "BOX_LOSS_EPSILON",
    "bin_integral",
    "ciou_loss",
    "distribution_focal_loss",
    "giou_loss",
    "l1_loss",
    "normalize_by_positives",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
]

#: Added to the IoU-loss denominators, as torchvision's ``eps`` (a zero denominator gives 0).
BOX_LOSS_EPSILON = 1e-7

#: DFL targets are clipped to ``[0, reg_max - 1 - _DFL_MARGIN]`` so the right bin exists.
_DFL_MARGIN = 0.01


def _float(x: Any, dtype: Any = None) -> Any:
    """`x` as a float tensor: cast to `dtype` if given, else promoted from half to float32."""
    x = ops.convert_to_tensor(x)
    return _as_float(x, dtype or compute_dtype(x))


def _shape(x: Any) -> tuple:
    return tuple(x.shape)


def _check_same_shape(a: Any, b: Any, name_a: str, name_b: str, shape_b: tuple) -> None:
    """Raises when the static shapes disagree (unknown dimensions match anything)."""
    shape_a = _shape(a)
    same = len(shape_a) == len(shape_b) and all(
        x is None or y is None or x == y for x, y in zip(shape_a, shape_b)
    )
    if not same:
        raise ValueError(f"`{name_a}` must have the shape of `{name_b}`, {shape_b}, got {shape_a}.")


def _check_alpha(alpha: float | None) -> float | None:
    if alpha is None:
        return None
    value = float(alpha)
    if value < 0:
        return None
    if not value <= 1.0:  # also rejects NaN
        raise ValueError(
            f"`alpha` must be in [0, 1], or None or negative for no alpha weighting, got {alpha!r}."
        )
    return value


def _check_non_negative(value: float, name: str) -> float:
    number = float(value)
    if not number >= 0:  # also rejects NaN
        raise ValueError(f"`{name}` must be >= 0, got {value!r}.")
    return number


def sigmoid_focal_loss(
    labels: Any, logits: Any, alpha: float | None = 0.25, gamma: float = 2.0
) -> Any:
    """Element-wise sigmoid focal loss (Lin et al., 2017), as RetinaNet's classification loss.

    With $p = \\sigma(z)$ and $p_t = p\\,y + (1 - p)(1 - y)$:

    $$\\ell = -\\alpha_t\\,(1 - p_t)^{\\gamma}\\,
      \\left[y \\log p + (1 - y) \\log (1 - p)\\right],\\quad
      \\alpha_t = \\alpha\\,y + (1 - \\alpha)(1 - y)$$

    Equal to ``torchvision.ops.sigmoid_focal_loss(logits, labels, alpha, gamma,
    reduction="none")``, soft labels included.

    Args:
        labels: ``(...)`` targets in 0..1, usually 0/1 (one-hot classes of each anchor).
        logits: ``(...)`` raw scores, same shape as `labels`; any real value.
        alpha: Weight of the positives in 0..1 (negatives get ``1 - alpha``); None or a
            negative number (torchvision's ``-1``) disables the weighting.
        gamma: Focusing exponent >= 0; 0 gives the (alpha-weighted) binary cross-entropy.

    Returns:
        ``(...)`` losses >= 0, shaped like `logits`.

    Raises:
        ValueError: For `alpha` above 1, a negative `gamma`, or shapes that differ.
    """
    alpha = _check_alpha(alpha)
    gamma = _check_non_negative(gamma, "gamma")
    logits = _float(logits)
    labels = _float(labels, logits.dtype)
    _check_same_shape(labels, logits, "labels", "logits", _shape(logits))
    cross_entropy = -(labels * ops.log_sigmoid(logits) + (1.0 - labels) * ops.log_sigmoid(-logits))
    # 1 - p_t = p (1 - y) + (1 - p) y, without the cancellation of 1 - p_t near p_t = 1.
    one_minus_pt = ops.sigmoid(logits) * (1.0 - labels) + ops.sigmoid(-logits) * labels
    loss = cross_entropy * safe_pow(one_minus_pt, gamma)
    if alpha is not None:
        loss = loss * (alpha * labels + (1.0 - alpha) * (1.0 - labels))
    return loss


def smooth_l1_loss(targets: Any, predictions: Any, beta: float = 1.0 / 9.0) -> Any:
    """Element-wise smooth L1 (Huber) loss, the R-CNN / SSD box-regression loss.

    With $d = |\\hat{t} - t|$:

    $$\\ell = 0.5\\,d^2 / \\beta \\ \\text{if}\\ d < \\beta,\\quad
      \\ell = d - 0.5\\,\\beta \\ \\text{otherwise}$$

    Equal to ``torch.nn.functional.smooth_l1_loss(predictions, targets, beta=beta,
    reduction="none")``.

    Args:
        targets: ``(...)`` regression targets (e.g. encoded box deltas).
        predictions: ``(...)`` predictions, broadcast-compatible with `targets`.
        beta: Width >= 0 of the quadratic zone; 0 gives `l1_loss`.

    Returns:
        ``(...)`` losses >= 0.

    Raises:
        ValueError: For a negative `beta`.
    """
    beta = _check_non_negative(beta, "beta")
    predictions = _float(predictions)
    targets = _float(targets, predictions.dtype)
    difference = ops.abs(predictions - targets)
    if beta == 0:
        return difference
    return ops.where(
        difference < beta, 0.5 * ops.square(difference) / beta, difference - 0.5 * beta
    )


def l1_loss(targets: Any, predictions: Any) -> Any:
    """Element-wise absolute error $|\\hat{t} - t|$ (DETR's and FCOS-style box L1).

    Args:
        targets: ``(...)`` regression targets.
        predictions: ``(...)`` predictions, broadcast-compatible with `targets`.

    Returns:
        ``(...)`` losses >= 0.
    """
    predictions = _float(predictions)
    targets = _float(targets, predictions.dtype)
    return ops.abs(predictions - targets)


def _box_inputs(boxes_true: Any, boxes_pred: Any) -> tuple[Any, Any]:
    boxes_pred = _float(boxes_pred)
    boxes_true = _float(boxes_true, boxes_pred.dtype)
    _check_last_axis(boxes_true, "boxes_true")
    _check_last_axis(boxes_pred, "boxes_pred")
    return boxes_true, boxes_pred


def giou_loss(boxes_true: Any, boxes_pred: Any) -> Any:
    """Element-wise GIoU loss $1 - \\mathrm{GIoU}$ (Rezatofighi et al., 2019).

    $$\\ell = 1 - \\frac{|A \\cap B|}{|A \\cup B| + \\epsilon}
      + \\frac{|C| - |A \\cup B|}{|C| + \\epsilon}$$

    with $C$ the smallest box enclosing $A$ and $B$ and $\\epsilon$ = `BOX_LOSS_EPSILON`, as
    ``torchvision.ops.generalized_box_iou_loss(reduction="none")``.

    Args:
        boxes_true: ``(..., 4)`` xyxy target boxes.
        boxes_pred: ``(..., 4)`` xyxy predicted boxes, broadcast-compatible with
            `boxes_true`.

    Returns:
        ``(...)`` losses in 0..2 (0 for identical boxes). Degenerate boxes are allowed:
        sizes are clamped at 0 (an inverted box has area 0) and an empty union or
        enclosing box contributes 0.
    """
    boxes_true, boxes_pred = _box_inputs(boxes_true, boxes_pred)
    intersection, union = _iou_parts(boxes_pred, boxes_true)
    enclosing = _enclosing_area(boxes_pred, boxes_true)
    iou = _eps_divide(intersection, union, BOX_LOSS_EPSILON)
    return 1.0 - iou + _eps_divide(enclosing - union, enclosing, BOX_LOSS_EPSILON)


def ciou_loss(boxes_true: Any, boxes_pred: Any) -> Any:
    """Element-wise CIoU loss $1 - \\mathrm{CIoU}$ (Zheng et al., 2020), YOLOv8's box loss.

    $$\\ell = 1 - \\mathrm{IoU} + \\frac{\\rho^2}{c^2 + \\epsilon} + \\alpha v,\\quad
      v = \\frac{4}{\\pi^2}\\left(\\arctan\\frac{w}{h} - \\arctan\\frac{\\hat w}{\\hat h}\\right)^2,
      \\quad \\alpha = \\frac{v}{1 - \\mathrm{IoU} + v + \\epsilon}$$

    with $\\rho$ the distance between the box centres, $c$ the diagonal of the enclosing
    box, $\\mathrm{IoU} = |A \\cap B| / (|A \\cup B| + \\epsilon)$ and $\\alpha$ held constant
    for the gradient: ``torchvision.ops.complete_box_iou_loss(reduction="none", eps=1e-7)``.

    Args:
        boxes_true: ``(..., 4)`` xyxy target boxes.
        boxes_pred: ``(..., 4)`` xyxy predicted boxes, broadcast-compatible with
            `boxes_true`.

    Returns:
        ``(...)`` losses in 0..3 (0 for identical boxes). Degenerate boxes are allowed:
        sizes are clamped at 0, a zero-height box has aspect angle $\\pi/2$ (as torchvision)
        and a zero-size box angle 0 (torchvision gives NaN there).
    """
    boxes_true, boxes_pred = _box_inputs(boxes_true, boxes_pred)
    return 1.0 - _complete_iou(boxes_pred, boxes_true, BOX_LOSS_EPSILON)[1]


def _reg_max(logits: Any) -> int:
    reg_max = logits.shape[-1] if len(logits.shape) else None
    if reg_max is None or reg_max < 2:
        raise ValueError(
            "`logits` must have shape (..., reg_max) with a known reg_max >= 2 bins, "
            f"got shape {_shape(logits)}."
        )
    return int(reg_max)


def distribution_focal_loss(targets: Any, logits: Any) -> Any:
    """Element-wise distribution focal loss (Li et al., 2020; YOLOv8's DFL).

    Each continuous target $y$ (a box-side distance, in bins) is split between its two
    neighbouring bins $y_l = \\lfloor y \\rfloor$ and $y_r = y_l + 1$:

    $$\\ell = -\\left[(y_r - y) \\log S_{y_l} + (y - y_l) \\log S_{y_r}\\right],\\quad
      S = \\mathrm{softmax}(z)$$

    Args:
        targets: ``(...)`` distances in bins; clipped to ``[0, reg_max - 1.01]``.
        logits: ``(..., reg_max)`` unnormalised bin logits, reg_max >= 2 known statically.

    Returns:
        ``(...)`` losses >= 0; the minimum over the logits is the entropy of the two-bin
        split, reached when $S$ puts weight $y_r - y$ on $y_l$ and $y - y_l$ on $y_r$.

    Raises:
        ValueError: When the last axis of `logits` is unknown or < 2, or `targets` is not
            shaped like `logits` without that axis.
    """
    logits = _float(logits)
    reg_max = _reg_max(logits)
    targets = _float(targets, logits.dtype)
    _check_same_shape(targets, logits, "targets", "logits[..., 0]", _shape(logits)[:-1])
    y = ops.clip(targets, 0.0, reg_max - 1.0 - _DFL_MARGIN)
    left = ops.floor(y)
    left_index = ops.cast(left, "int32")
    weight_left = ops.expand_dims(left + 1.0 - y, -1)
    weight_right = ops.expand_dims(y - left, -1)
    weights = weight_left * ops.one_hot(left_index, reg_max, dtype=logits.dtype)
    weights = weights + weight_right * ops.one_hot(left_index + 1, reg_max, dtype=logits.dtype)
    return -ops.sum(weights * ops.log_softmax(logits, axis=-1), axis=-1)


def bin_integral(logits: Any) -> Any:
    """Expected bin of each distribution, $\\sum_i i\\,\\mathrm{softmax}(z)_i$ (DFL decoding).

    Args:
        logits: ``(..., reg_max)`` unnormalised bin logits, reg_max >= 2 known statically.

    Returns:
        ``(...)`` distances in bins, in 0..reg_max - 1.

    Raises:
        ValueError: When the last axis of `logits` is unknown or < 2.
    """
    logits = _float(logits)
    reg_max = _reg_max(logits)
    bins = ops.arange(reg_max, dtype=logits.dtype)
    return ops.sum(ops.softmax(logits, axis=-1) * bins, axis=-1)


def normalize_by_positives(loss_sum: Any, num_positives: Any) -> Any:
    """$\\text{loss\\_sum} / \\max(\\text{num\\_positives}, 1)$, RetinaNet's normalisation.

    Args:
        loss_sum: A summed loss, a scalar or ``(B,)`` per image.
        num_positives: Number of positive (matched) anchors, int or float, broadcast with
            `loss_sum`.

    Returns:
        The normalised loss, shaped as the broadcast of both; an image without positives
        is divided by 1 (never NaN).
    """
    loss_sum = _float(loss_sum)
    num_positives = ops.cast(ops.convert_to_tensor(num_positives), loss_sum.dtype)
    return loss_sum / ops.maximum(num_positives, 1.0)
