"""Anchor / ground-truth matching for anchor-based detectors, batched and padded.

`IoUMatcher` (Faster R-CNN, RetinaNet) and `SSDMatcher` reproduce torchvision's ``Matcher``
and ``SSDMatcher`` image by image on a padded batch; `match_anchors` computes the IoU and
matches, `assign_targets` turns the matches into per-anchor training targets and
`topk_hard_negatives` is SSD's hard negative mining.

Shapes: B images, M ground-truth rows per image (padded: class -1, or ``valid`` False) and
N anchors (N >= 1). Everything is `keras.ops` and traces with B, M and N unknown; M may
be 0. A match is a gt index ``m >= 0`` or one of the negative codes below; a padding row
is never matched.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from kerasseg.detection.boxes import pairwise_iou

__all__ = [
    "BELOW_LOW_THRESHOLD",
    "BETWEEN_THRESHOLDS",
    "IoUMatcher",
    "SSDMatcher",
    "assign_targets",
    "gather_matched",
    "match_anchors",
    "topk_hard_negatives",
]

#: Match code of a background anchor (best IoU below the low threshold).
BELOW_LOW_THRESHOLD = -1
#: Match code of an ignored anchor (best IoU between the thresholds, or matched to an
#: ignored gt): neither positive nor negative in the classification loss.
BETWEEN_THRESHOLDS = -2

_NEG_INF = float("-inf")


def _check_rank(x: Any, rank: int, name: str, expected: str) -> None:
    if len(x.shape) != rank:
        raise ValueError(f"`{name}` must have shape {expected}, got shape {tuple(x.shape)}.")


def _as_float(x: Any) -> Any:
    x = ops.convert_to_tensor(x)
    return x if "float" in str(x.dtype) else ops.cast(x, "float32")


def _first_argmax(x: Any, maximum: Any, axis: int) -> Any:
    """Index of the first entry of rank-3 `x` equal to `maximum` along `axis` (int32).

    The tie rule of ``torch.max(dim)``, independent of the backend's ``argmax``.
    """
    size = ops.shape(x)[axis]
    shape = [1, 1, 1]
    shape[axis] = -1
    positions = ops.reshape(ops.arange(size, dtype="int32"), shape)
    is_max = x == ops.expand_dims(maximum, axis)
    return ops.min(ops.where(is_max, positions, size), axis=axis)


class IoUMatcher:
    """Matches anchors to ground truth by IoU: torchvision's ``Matcher``, batched.

    For each anchor, its best valid gt (highest IoU; ties: the lowest gt index) is its
    match when that IoU is ``>= high_threshold``; ``BETWEEN_THRESHOLDS`` when it is in
    ``[low_threshold, high_threshold)``; ``BELOW_LOW_THRESHOLD`` when it is below
    ``low_threshold`` or the image has no valid gt.

    With ``allow_low_quality_matches`` (Faster R-CNN's RPN), every anchor that has the
    highest IoU of some valid gt (ties included) is matched anyway, as in torchvision's
    ``set_low_quality_matches_``, with two torchvision details kept:

    - such an anchor is matched to *its own* best gt, which may differ from the gt that
      selected it;
    - a valid gt whose IoU is 0 with every anchor (a degenerate box, or one outside the
      anchors' reach) selects every anchor, and each of them is matched to its best gt
      even at IoU 0: drop such boxes before matching if that is not wanted.

    Args:
        high_threshold: IoU from which a match is positive, in ``[low_threshold, 1]``.
        low_threshold: IoU below which an anchor is background, in ``[0, high_threshold]``.
        allow_low_quality_matches: Also match the best anchors of each gt (see above).

    Raises:
        ValueError: unless ``0 <= low_threshold <= high_threshold <= 1``.

    Example:
        >>> matcher = IoUMatcher(0.5, 0.4)  # RetinaNet
        >>> matches = matcher(iou, valid)  # (B, M, N), (B, M) -> (B, N)
    """

    def __init__(
        self,
        high_threshold: float,
        low_threshold: float,
        allow_low_quality_matches: bool = False,
    ):
        high, low = float(high_threshold), float(low_threshold)
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(
                "`low_threshold` and `high_threshold` must satisfy 0 <= low_threshold <= "
                f"high_threshold <= 1; got low_threshold={low_threshold!r}, "
                f"high_threshold={high_threshold!r}."
            )
        self.high_threshold = high
        self.low_threshold = low
        self.allow_low_quality_matches = bool(allow_low_quality_matches)

    def _quality(self, iou: Any, valid: Any) -> Any:
        """IoU with invalid rows at -inf and one extra -inf row (index M): (B, M + 1, N).

        The extra row keeps every reduction over the gt axis non-empty when M == 0, and
        loses every comparison, so no anchor can end up matched to a padding row.
        """
        iou = _as_float(iou)
        valid = ops.cast(ops.convert_to_tensor(valid), "bool")
        _check_rank(iou, 3, "iou", "(B, M, N)")
        _check_rank(valid, 2, "valid", "(B, M)")
        for axis, name in ((0, "B"), (1, "M")):
            a, b = iou.shape[axis], valid.shape[axis]
            if a is not None and b is not None and a != b:
                raise ValueError(
                    f"`valid` must have shape (B, M) matching `iou` (B, M, N); got {name} = "
                    f"{b} for `valid` and {a} for `iou` (shapes {tuple(valid.shape)} and "
                    f"{tuple(iou.shape)})."
                )
        quality = ops.where(ops.expand_dims(valid, -1), iou, _NEG_INF)
        return ops.pad(quality, [[0, 0], [0, 1], [0, 0]], constant_values=_NEG_INF)

    def _match(self, quality: Any) -> Any:
        best = ops.max(quality, axis=1)  # (B, N)
        best_gt = _first_argmax(quality, best, axis=1)
        matches = ops.where(
            best < self.low_threshold,
            BELOW_LOW_THRESHOLD,
            ops.where(best < self.high_threshold, BETWEEN_THRESHOLDS, best_gt),
        )
        if self.allow_low_quality_matches:
            highest = ops.expand_dims(ops.max(quality, axis=2), -1)  # (B, M + 1, 1)
            # Invalid rows are -inf throughout: their "highest" -inf must select nothing.
            ties = ops.logical_and(quality == highest, highest > _NEG_INF)
            matches = ops.where(ops.any(ties, axis=1), best_gt, matches)
        return ops.cast(matches, "int32")

    def __call__(self, iou: Any, valid: Any) -> Any:
        """Matches each anchor of each image.

        Args:
            iou: ``(B, M, N)`` float IoU of gt ``m`` with anchor ``n`` (in 0..1; any
                finite match quality works).
            valid: ``(B, M)`` bool, False on padding rows (and on any gt not to match).

        Returns:
            ``(B, N)`` int32: the matched gt index in ``[0, M)``, or
            ``BELOW_LOW_THRESHOLD`` / ``BETWEEN_THRESHOLDS``.
        """
        return self._match(self._quality(iou, valid))

    def get_config(self) -> dict[str, Any]:
        return {
            "high_threshold": self.high_threshold,
            "low_threshold": self.low_threshold,
            "allow_low_quality_matches": self.allow_low_quality_matches,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> IoUMatcher:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SSDMatcher(IoUMatcher):
    """SSD matching: torchvision's ``SSDMatcher``, batched.

    First ``IoUMatcher(threshold, threshold)``: an anchor is matched to its best gt when
    the IoU is ``>= threshold``, else background (never ``BETWEEN_THRESHOLDS``). Then
    every valid gt is matched to its best anchor (ties: the lowest anchor index),
    overriding; when several gts share a best anchor, the highest gt index wins (what
    torchvision's index assignment does on the CPU, for the gt counts of real images). As
    in torchvision, a valid gt with IoU 0 with every anchor still takes anchor 0.

    Args:
        threshold: IoU threshold, in ``[0, 1]``.

    Raises:
        ValueError: unless ``0 <= threshold <= 1``.
    """

    def __init__(self, threshold: float = 0.5):
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"`threshold` must be in [0, 1]; got {threshold!r}.")
        super().__init__(threshold, threshold, allow_low_quality_matches=False)
        self.threshold = float(threshold)

    def __call__(self, iou: Any, valid: Any) -> Any:
        """Matches each anchor of each image (arguments and result as `IoUMatcher`)."""
        quality = self._quality(iou, valid)
        matches = self._match(quality)
        highest = ops.max(quality, axis=2)  # (B, M + 1); -inf on invalid rows
        best_anchor = _first_argmax(quality, highest, axis=2)
        num_gt, num_anchors = ops.shape(quality)[1], ops.shape(quality)[2]
        anchor_ids = ops.reshape(ops.arange(num_anchors, dtype="int32"), (1, 1, -1))
        gt_ids = ops.reshape(ops.arange(num_gt, dtype="int32"), (1, -1, 1))
        is_best = ops.logical_and(
            ops.expand_dims(best_anchor, -1) == anchor_ids,
            ops.expand_dims(highest > _NEG_INF, -1),
        )
        forced = ops.max(ops.where(is_best, gt_ids, -1), axis=1)  # (B, N)
        return ops.cast(ops.where(forced >= 0, forced, matches), "int32")

    def get_config(self) -> dict[str, Any]:
        return {"threshold": self.threshold}


def match_anchors(matcher: IoUMatcher, anchors: Any, gt_boxes: Any, gt_valid: Any) -> Any:
    """IoU of every gt box with every anchor, then `matcher`.

    Args:
        matcher: An `IoUMatcher` or `SSDMatcher` (any callable ``(iou, valid) -> matches``).
        anchors: ``(N, 4)`` xyxy anchors shared by the batch, or ``(B, N, 4)`` per image.
        gt_boxes: ``(B, M, 4)`` xyxy gt boxes, in the anchors' units (absolute pixels).
        gt_valid: ``(B, M)`` bool, False on padding rows.

    Returns:
        ``(B, N)`` int32 matches (see `IoUMatcher.__call__`).
    """
    gt_boxes = ops.convert_to_tensor(gt_boxes)
    anchors = ops.convert_to_tensor(anchors)
    _check_rank(gt_boxes, 3, "gt_boxes", "(B, M, 4)")
    if len(anchors.shape) not in (2, 3):
        raise ValueError(
            f"`anchors` must have shape (N, 4) or (B, N, 4), got shape {tuple(anchors.shape)}."
        )
    return matcher(pairwise_iou(gt_boxes, anchors), gt_valid)


def gather_matched(values: Any, matches: Any, fill: Any = 0) -> Any:
    """Per-anchor values of the matched gt.

    Args:
        values: ``(B, M, ...)`` one value (or vector) per gt row.
        matches: ``(B, N)`` int matches, ``< 0`` where unmatched.
        fill: The value of the unmatched anchors.

    Returns:
        ``(B, N, ...)`` with the dtype of `values`: ``values[b, matches[b, n]]``, or
        `fill` where ``matches[b, n] < 0``. Works for M == 0 (all `fill`).
    """
    values = ops.convert_to_tensor(values)
    matches = ops.cast(ops.convert_to_tensor(matches), "int32")
    if len(values.shape) < 2:
        raise ValueError(f"`values` must have shape (B, M, ...), got shape {tuple(values.shape)}.")
    _check_rank(matches, 2, "matches", "(B, N)")
    num_gt = ops.shape(values)[1]
    extra = len(values.shape) - 2
    # Row M holds `fill`: unmatched anchors gather it; also valid when M == 0.
    padded = ops.pad(values, [[0, 0], [0, 1]] + [[0, 0]] * extra, constant_values=fill)
    index = ops.where(matches >= 0, matches, num_gt)
    for _ in range(extra):
        index = ops.expand_dims(index, -1)
    return ops.take_along_axis(padded, index, axis=1)


def assign_targets(
    matcher: IoUMatcher,
    anchors: Any,
    gt_boxes: Any,
    gt_classes: Any,
    gt_ignore: Any = None,
) -> dict[str, Any]:
    """Matches anchors to the padded ground truth and returns per-anchor targets.

    Rows whose class is negative (``PAD_CLASS`` -1) are padding and never matched. Rows
    flagged in `gt_ignore` (e.g. COCO crowd boxes) take part in the matching, and the
    anchors they win become ignored (``BETWEEN_THRESHOLDS``), even when another gt
    overlaps them less.

    Args:
        matcher: An `IoUMatcher` or `SSDMatcher`.
        anchors: ``(N, 4)`` or ``(B, N, 4)`` xyxy anchors.
        gt_boxes: ``(B, M, 4)`` float xyxy gt boxes in absolute pixels.
        gt_classes: ``(B, M)`` int class ids ``>= 0``, -1 on padding rows.
        gt_ignore: Optional ``(B, M)`` bool, True for gt boxes to ignore.

    Returns:
        A dict: ``"matches"`` ``(B, N)`` int32, a gt index or ``BELOW_LOW_THRESHOLD`` (-1)
        or ``BETWEEN_THRESHOLDS`` (-2, also for anchors matched to an ignored gt);
        ``"boxes"`` ``(B, N, 4)`` float, the matched gt box, 0 where unmatched;
        ``"classes"`` ``(B, N)`` int32, the matched class, -1 background, -2 ignored;
        ``"positive"`` ``(B, N)`` bool, matched to a gt; ``"negative"`` ``(B, N)`` bool,
        background (trainable negatives); ``"num_positives"`` ``(B,)`` float32, positives
        per image.
    """
    gt_boxes = _as_float(gt_boxes)
    gt_classes = ops.cast(ops.convert_to_tensor(gt_classes), "int32")
    _check_rank(gt_classes, 2, "gt_classes", "(B, M)")
    matches = match_anchors(matcher, anchors, gt_boxes, gt_classes >= 0)
    if gt_ignore is not None:
        gt_ignore = ops.convert_to_tensor(gt_ignore)
        _check_rank(gt_ignore, 2, "gt_ignore", "(B, M)")
        ignored = gather_matched(ops.cast(gt_ignore, "int32"), matches, 0) > 0
        matches = ops.where(ignored, BETWEEN_THRESHOLDS, matches)
    positive = matches >= 0
    classes = ops.where(positive, gather_matched(gt_classes, matches, 0), matches)
    return {
        "matches": matches,
        "boxes": gather_matched(gt_boxes, matches, 0.0),
        "classes": ops.cast(classes, "int32"),
        "positive": positive,
        "negative": matches == BELOW_LOW_THRESHOLD,
        "num_positives": ops.sum(ops.cast(positive, "float32"), axis=1),
    }


def topk_hard_negatives(loss: Any, positive: Any, negative: Any, ratio: float = 3.0) -> Any:
    """SSD hard negative mining: the negatives with the highest loss, per image.

    Each image keeps its ``k = ratio * num_positives`` hardest negatives, as torchvision's
    SSD ``compute_loss``: anchor ``n`` is kept when its rank among the image's negatives,
    by decreasing `loss`, is ``< k`` (so a fractional ``k`` rounds up), and at most all
    the negatives are kept. Equal losses rank by anchor index, lowest first. An image
    without positives keeps no negatives, so it adds nothing to the classification loss.

    Differences from torchvision: anchors neither `positive` nor `negative` (ignored) are
    never kept; and when ``k`` exceeds the number of negatives, torchvision's mask also
    covers positives (counting their loss twice), this one only the negatives.

    Args:
        loss: ``(B, N)`` float classification loss per anchor (finite).
        positive: ``(B, N)`` bool positive anchors.
        negative: ``(B, N)`` bool candidate negatives (background); positives excluded.
        ratio: Negatives per positive, ``>= 0``.

    Returns:
        ``(B, N)`` bool mask of the kept negatives.

    Raises:
        ValueError: if `ratio` is negative or not finite.
    """
    if not 0.0 <= float(ratio) < float("inf"):
        raise ValueError(f"`ratio` must be a finite number >= 0; got {ratio!r}.")
    loss = _as_float(loss)
    positive = ops.cast(ops.convert_to_tensor(positive), "bool")
    negative = ops.cast(ops.convert_to_tensor(negative), "bool")
    for x, name in ((loss, "loss"), (positive, "positive"), (negative, "negative")):
        _check_rank(x, 2, name, "(B, N)")
    candidate = ops.logical_and(negative, ops.logical_not(positive))
    budget = float(ratio) * ops.sum(ops.cast(positive, "float32"), axis=1, keepdims=True)
    # Stable sort by decreasing loss (keras' argsort is stable on every backend: TF sorts
    # with top_k, lower index first). The rank counts candidates only, so where the
    # non-candidates land in the order does not matter.
    order = ops.argsort(ops.where(candidate, -loss, float("inf")), axis=1)
    sorted_candidate = ops.take_along_axis(ops.cast(candidate, "int32"), order, axis=1)
    sorted_rank = ops.cumsum(sorted_candidate, axis=1) - 1
    rank = ops.take_along_axis(sorted_rank, ops.argsort(order, axis=1), axis=1)
    return ops.logical_and(candidate, ops.cast(rank, "float32") < budget)
