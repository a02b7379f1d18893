"""Dynamic label assignment for anchor-free detectors: TOOD's task-aligned assigner.

`task_aligned_assign` is the task-aligned assigner of TOOD (Feng et al., 2021, "TOOD:
Task-aligned One-stage Object Detection", https://arxiv.org/abs/2108.07755) with the
choices of YOLOv8 (ultralytics' ``TaskAlignedAssigner``: top 10 anchors per gt, CIoU
overlaps, ``alpha = 0.5``, ``beta = 6``). Unlike `kerasseg.detection.matching`, which
matches fixed anchor boxes by IoU, it ranks anchor *points* by how well the current
predictions (class score and box) already fit each gt, so the assignment follows the
model during training.

Shapes: B images, N anchor points shared by the batch, C classes and M padded gt rows per
image. Everything is `keras.ops` and traces with B, N and M unknown; M may be 0. The
work is dense, ``O(B * M * N)`` memory, as in ultralytics.
"""

from __future__ import annotations

import math
from typing import Any

from keras import ops

from kerasseg.detection.boxes import elementwise_ciou
from kerasseg.detection.matching import gather_matched
from kerasseg.losses._ops import compute_dtype

__all__ = ["task_aligned_assign"]


def _check_rank(x: Any, rank: int, name: str, expected: str) -> None:
    if len(x.shape) != rank:
        raise ValueError(f"`{name}` must have shape {expected}, got shape {tuple(x.shape)}.")


def _check_parameters(top_k: int, alpha: float, beta: float, eps: float) -> int:
    if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
        raise ValueError(f"`top_k` must be an integer >= 1, got {top_k!r}.")
    for value, name in ((alpha, "alpha"), (beta, "beta"), (eps, "eps")):
        if not (float(value) >= 0 and math.isfinite(float(value))):  # also rejects NaN
            raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}.")
    return int(top_k)


def _top_k_mask(metric: Any, k: int) -> Any:
    """Boolean mask of the `k` largest entries along the last axis of a ``>= 0`` `metric`.

    Equal values rank the lower index first (the order of TensorFlow's ``top_k`` and of a
    stable descending sort), so the set is deterministic on every backend. Only the k-th
    value is taken from ``top_k``; the mask is then built without a scatter: everything
    above it, plus the first tied entries that still fit.
    """
    # k columns of -1 (below every metric) keep top_k valid when N < k: the k-th value is
    # then -1 and all N entries are selected.
    padded = ops.pad(metric, [[0, 0], [0, 0], [0, k]], constant_values=-1.0)
    kth = ops.top_k(padded, k, sorted=True)[0][..., k - 1 : k]  # (B, M, 1)
    above = metric > kth
    tied = metric == kth
    room = k - ops.sum(ops.cast(above, "int32"), axis=-1, keepdims=True)
    tie_rank = ops.cumsum(ops.cast(tied, "int32"), axis=-1)  # 1 for the first tied entry
    return ops.logical_or(above, ops.logical_and(tied, tie_rank <= room))


def task_aligned_assign(
    scores: Any,
    pred_boxes: Any,
    anchor_points: Any,
    gt_boxes: Any,
    gt_classes: Any,
    gt_valid: Any = None,
    *,
    top_k: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    eps: float = 1e-9,
) -> dict[str, Any]:
    """Task-aligned assignment of anchor points to ground truth (TOOD, as in YOLOv8).

    For each valid gt ``m`` and anchor point ``n`` of an image:

    1. ``n`` is a *candidate* of ``m`` when its centre lies strictly inside the gt box:
       the smallest of its four distances to the box sides is ``> eps``.
    2. On candidates, ``overlap = max(CIoU(gt_m, pred_n), 0)`` and the alignment metric
       ``t = s ** alpha * overlap ** beta``, ``s`` the predicted score of the gt's class;
       both are 0 elsewhere.
    3. Gt ``m`` selects its `top_k` anchors by ``t`` among all N (``min(top_k, N)`` when
       N is smaller; equal metrics rank the lower anchor index first), and keeps those
       that are candidates: the positives of ``m``. A gt therefore gets at most `top_k`
       positives, fewer when fewer anchor centres fall inside it.
    4. An anchor selected by several gts goes to the gt of highest overlap among all the
       gts it is a candidate of (ties: the lowest gt index), as ultralytics' ``argmax``
       over every gt, which may be a gt that did not select it.
    5. Target scores (TOOD's normalised alignment): with ``t`` and ``overlap`` zeroed off
       the final positives, each gt's metrics are rescaled so that its best positive gets
       its best positive overlap: ``t * max_n(overlap) / (max_n(t) + eps)``. An anchor's
       target is that value at its gt's class, 0 for the other classes.

    This reproduces ultralytics' ``TaskAlignedAssigner`` (YOLOv8: ``topk=10, alpha=0.5,
    beta=6.0``) except where ultralytics is arbitrary or reads padding: its top-k tie
    order (``torch.topk``'s) is unspecified, and an anchor claimed by several gts that
    all overlap it with 0 goes to gt 0 there (possibly a padding row), here to the first
    gt it lies in. Ties in the top-k only matter for candidates of metric 0 (CIoU ``<=
    0``), which then become positives with target score 0 (as in ultralytics): no weight
    in YOLOv8's score-weighted box losses and the background class target.

    Args:
        scores: ``(B, N, C)`` predicted class probabilities in ``[0, 1]`` (after the
            sigmoid). Treated as constants (no gradient flows through the assignment).
        pred_boxes: ``(B, N, 4)`` predicted xyxy boxes in pixels (constants too).
        anchor_points: ``(N, 2)`` anchor centres ``(x, y)`` in pixels.
        gt_boxes: ``(B, M, 4)`` xyxy gt boxes in pixels.
        gt_classes: ``(B, M)`` int class ids in ``[0, C)``, -1 on padding rows.
        gt_valid: Optional ``(B, M)`` bool, False on rows to leave out; combined with
            ``gt_classes >= 0`` (the default alone).
        top_k: Anchors selected per gt, ``>= 1``.
        alpha: Exponent of the class score in the metric, ``>= 0``.
        beta: Exponent of the overlap in the metric, ``>= 0``.
        eps: Margin of the centre-inside test and of the normalisation's denominator.

    Returns:
        A dict of per-anchor targets, zero / -1 on negatives:
        ``"positive"`` ``(B, N)`` bool (foreground); ``"gt_index"`` ``(B, N)`` int32, the
        assigned gt row in ``[0, M)``, 0 where not positive; ``"classes"`` ``(B, N)``
        int32, the assigned class, -1 where not positive; ``"boxes"`` ``(B, N, 4)`` float,
        the assigned gt box, 0 where not positive; ``"scores"`` ``(B, N, C)`` float, the
        normalised alignment in ``[0, 1]`` at the assigned class, 0 elsewhere. An image
        without valid gts is all negative. Floats are in the dtype of `pred_boxes`,
        promoted from half precision to float32.

    Raises:
        ValueError: for wrong ranks or parameters out of range.
    """
    k = _check_parameters(top_k, alpha, beta, eps)
    pred_boxes = ops.convert_to_tensor(pred_boxes)
    dtype = compute_dtype(pred_boxes)
    # The assignment is a target, not part of the graph to differentiate.
    pred_boxes = ops.stop_gradient(ops.cast(pred_boxes, dtype))
    scores = ops.stop_gradient(ops.cast(ops.convert_to_tensor(scores), dtype))
    anchor_points = ops.cast(ops.convert_to_tensor(anchor_points), dtype)
    gt_boxes = ops.cast(ops.convert_to_tensor(gt_boxes), dtype)
    gt_classes = ops.cast(ops.convert_to_tensor(gt_classes), "int32")
    for x, rank, name, expected in (
        (scores, 3, "scores", "(B, N, C)"),
        (pred_boxes, 3, "pred_boxes", "(B, N, 4)"),
        (anchor_points, 2, "anchor_points", "(N, 2)"),
        (gt_boxes, 3, "gt_boxes", "(B, M, 4)"),
        (gt_classes, 2, "gt_classes", "(B, M)"),
    ):
        _check_rank(x, rank, name, expected)
    valid = gt_classes >= 0
    if gt_valid is not None:
        gt_valid = ops.cast(ops.convert_to_tensor(gt_valid), "bool")
        _check_rank(gt_valid, 2, "gt_valid", "(B, M)")
        valid = ops.logical_and(valid, gt_valid)

    # One extra invalid gt row keeps every reduction over the gt axis non-empty (M == 0).
    boxes_p = ops.pad(gt_boxes, [[0, 0], [0, 1], [0, 0]])
    classes_p = ops.pad(gt_classes, [[0, 0], [0, 1]], constant_values=-1)
    valid_p = ops.pad(ops.cast(valid, "int32"), [[0, 0], [0, 1]]) > 0  # (B, M + 1)
    num_rows = ops.shape(boxes_p)[1]

    # 1. Candidates (B, M + 1, N): anchor centre strictly inside a valid gt.
    px = ops.reshape(anchor_points[:, 0], (1, 1, -1))
    py = ops.reshape(anchor_points[:, 1], (1, 1, -1))
    x1, y1, x2, y2 = (ops.expand_dims(boxes_p[..., i], -1) for i in range(4))
    inside = ops.minimum(ops.minimum(px - x1, py - y1), ops.minimum(x2 - px, y2 - py))
    candidate = ops.logical_and(inside > eps, ops.expand_dims(valid_p, -1))

    # 2. Overlaps and alignment metric, 0 off the candidates.
    ciou = elementwise_ciou(ops.expand_dims(boxes_p, 2), ops.expand_dims(pred_boxes, 1))
    overlap = ops.where(candidate, ops.maximum(ciou, 0.0), 0.0)
    per_class = ops.transpose(scores, (0, 2, 1))  # (B, C, N)
    class_index = ops.expand_dims(ops.maximum(classes_p, 0), -1)  # (B, M + 1, 1)
    class_score = ops.take_along_axis(per_class, class_index, axis=1)  # (B, M + 1, N)
    metric = ops.where(candidate, ops.power(class_score, alpha) * ops.power(overlap, beta), 0.0)

    # 3. Each gt's top-k anchors by metric; non-candidates (metric 0) drop out here.
    mask_pos = ops.logical_and(_top_k_mask(metric, k), candidate)

    # 4. Anchors claimed by several gts keep the candidate gt of highest overlap.
    gt_ids = ops.reshape(ops.arange(num_rows, dtype="int32"), (1, -1, 1))
    claims = ops.sum(ops.cast(mask_pos, "int32"), axis=1, keepdims=True)  # (B, 1, N)
    ranked = ops.where(candidate, overlap, -1.0)
    is_best = ranked == ops.max(ranked, axis=1, keepdims=True)
    best_gt = ops.min(ops.where(is_best, gt_ids, num_rows), axis=1, keepdims=True)
    mask_pos = ops.where(claims > 1, gt_ids == best_gt, mask_pos)

    positive = ops.any(mask_pos, axis=1)  # (B, N)
    # Exactly one gt per positive anchor now: the sum picks its index.
    gt_index = ops.sum(ops.where(mask_pos, gt_ids, 0), axis=1)
    matches = ops.where(positive, gt_index, -1)
    classes = gather_matched(gt_classes, matches, -1)
    boxes = gather_matched(gt_boxes, matches, 0.0)

    # 5. Normalised alignment: per gt, metric * best overlap / best metric (positives only).
    pos_metric = ops.where(mask_pos, metric, 0.0)
    best_overlap = ops.max(ops.where(mask_pos, overlap, 0.0), axis=-1, keepdims=True)
    best_metric = ops.max(pos_metric, axis=-1, keepdims=True)
    norm = ops.max(pos_metric * best_overlap / (best_metric + eps), axis=1)  # (B, N)
    class_ids = ops.arange(ops.shape(scores)[-1], dtype="int32")
    one_hot = ops.expand_dims(classes, -1) == class_ids  # False for -1
    target_scores = ops.where(one_hot, ops.expand_dims(norm, -1), 0.0)

    return {
        "positive": positive,
        "gt_index": ops.cast(gt_index, "int32"),
        "classes": ops.cast(classes, "int32"),
        "boxes": boxes,
        "scores": ops.cast(target_scores, dtype),
    }
