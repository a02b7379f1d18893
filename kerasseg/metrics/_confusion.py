"""Per-image, per-class confusion counts of dense predictions (private helper).

The streaming metrics of `kerasseg.metrics.segmentation` reduce every batch to four counts per
image and class: true positives, false positives, false negatives and true negatives. This module
computes them exactly: unweighted counts are summed as int32 (exact for up to 2**31 - 1 pixels
per image and class, where a float32 sum stops being exact above 2**24) and returned as float64
(exact up to 2**53), so the accumulated totals stay exact on any realistic data set.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from kerasseg.utils import dense
from kerasseg.utils.value_checks import check_dense_values, nan_unless

_NARROW_FLOATS = ("float16", "bfloat16")


def _describe(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def check_static_shapes(y_pred: Any, target: Any, num_classes: int, mode: str) -> None:
    """Checks the channel count and that targets and predictions cover the same pixels.

    Args:
        y_pred: Standardized prediction, (B, ..., C).
        target: The one-hot target from `dense.one_hot_targets`, (B, ..., C).
        num_classes: The channel count the metric was configured with.
        mode: The metric's mode, for the messages.

    Raises:
        ValueError: when a statically known dimension disagrees.
    """
    pred_shape = tuple(y_pred.shape)
    channels = pred_shape[-1]
    if channels is not None and channels != num_classes:
        raise ValueError(
            f"The metric was built with mode={mode!r} and num_classes={num_classes}, so `y_pred` "
            f"must have {num_classes} channel(s) on its last axis; got `y_pred` of shape "
            f"{_describe(pred_shape)}."
        )
    target_shape = tuple(target.shape)
    for got, want in zip(target_shape[:-1], pred_shape[:-1]):
        if got is not None and want is not None and got != want:
            raise ValueError(
                "`y_true` and `y_pred` must cover the same batch and spatial positions; got "
                f"`y_true` covering {_describe(target_shape[:-1])} and `y_pred` of shape "
                f"{_describe(pred_shape)}."
            )


def binarize_prediction(
    y_pred: Any, *, mode: str, threshold: float, from_logits: bool, num_classes: int
) -> Any:
    """Turns scores into hard per-class decisions.

    Args:
        y_pred: Standardized prediction, (B, ..., C): probabilities, or logits if `from_logits`.
        mode: "multiclass" takes the argmax over C; "binary"/"multilabel" threshold each channel.
        threshold: Probability threshold (binary/multilabel): positive where p >= threshold.
        from_logits: Apply a sigmoid before thresholding (binary/multilabel). The argmax of
            logits equals that of softmax probabilities, so multiclass skips the softmax.
        num_classes: C.

    Returns:
        Boolean tensor (B, ..., C); exactly one True per pixel for multiclass.
    """
    if mode == "multiclass":
        ids = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        return ops.equal(ops.expand_dims(ids, -1), ops.arange(num_classes, dtype="int32"))
    if dense.floatx_of(y_pred) in _NARROW_FLOATS:
        # Compare in float32 so neither the sigmoid nor the threshold is rounded to float16.
        y_pred = ops.cast(y_pred, "float32")
    probs = ops.sigmoid(y_pred) if from_logits else y_pred
    return ops.greater_equal(probs, ops.cast(threshold, probs.dtype))


def _weights_like(sample_weight: Any, y_pred: Any) -> Any:
    """Reshapes `sample_weight` so it broadcasts against (B, ..., C) as float64."""
    rank = len(y_pred.shape)
    weight = ops.cast(sample_weight, "float64")
    weight_rank = len(weight.shape)
    if weight_rank == 0:
        return ops.reshape(weight, (1,) * rank)
    if weight_rank == 1:
        return ops.reshape(weight, (-1,) + (1,) * (rank - 1))
    if weight_rank == rank - 1:
        weight = ops.expand_dims(weight, -1)
    elif weight_rank != rank:
        raise ValueError(
            "`sample_weight` must have shape (B,), (B, H, W), (B, H, W, 1) or the shape of "
            f"`y_pred` {_describe(tuple(y_pred.shape))}; got shape "
            f"{_describe(tuple(weight.shape))}."
        )
    for got, want in zip(tuple(weight.shape), tuple(y_pred.shape)):
        if got is not None and want is not None and got not in (1, want):
            raise ValueError(
                "`sample_weight` must broadcast against `y_pred` of shape "
                f"{_describe(tuple(y_pred.shape))}; got shape {_describe(tuple(weight.shape))}."
            )
    return weight


def confusion_counts(
    y_true: Any,
    y_pred: Any,
    *,
    mode: str,
    num_classes: int,
    threshold: float,
    from_logits: bool,
    ignore_index: int | None,
    sample_weight: Any = None,
    check_values: bool = False,
    owner: str = "metric",
) -> tuple[Any, Any, Any, Any, Any]:
    """True/false positives/negatives per image and class.

    Args:
        y_true: Targets in a layout of `kerasseg.utils.dense` (any integer or float dtype).
        y_pred: Probabilities (or logits), (B, H, W, C); (B, H, W) for binary.
        mode: "binary" | "multiclass" | "multilabel".
        num_classes: C (1 for binary).
        threshold: Binarization threshold for binary/multilabel probabilities.
        from_logits: Whether `y_pred` holds logits.
        ignore_index: Target value of pixels (entries, for multilabel) that count nowhere.
        sample_weight: Optional weights broadcastable to the pixels: (B,), (B, H, W),
            (B, H, W, 1) or (B, H, W, C). Counts become weighted sums.
        check_values: Check the values of `y_true` and `y_pred` (see
            `kerasseg.utils.value_checks.check_dense_values`).
        owner: Who checks, for the error messages.

    Returns:
        `(tp, fp, fn, tn, image_weight)`: the first four are float64 (B, C); `image_weight` is
        float64 (B,): 1 per image, or the image's mean sample weight when weights are given.
        When a value check fails where it cannot raise (XLA, JAX `jit`), the four counts are
        NaN, so the metric's result becomes NaN.

    Raises:
        ValueError: for shape errors, and (eagerly, with `check_values`) for bad values;
            tf.errors.InvalidArgumentError for bad values at run time of a TensorFlow graph.
    """
    y_pred = dense.standardize_prediction(y_pred, mode)
    target, valid = dense.one_hot_targets(y_true, y_pred, mode=mode, ignore_index=ignore_index)
    check_static_shapes(y_pred, target, num_classes, mode)
    ok = None
    if check_values:
        ok = check_dense_values(
            y_true,
            y_pred,
            mode=mode,
            from_logits=from_logits,
            ignore_index=ignore_index,
            owner=owner,
        )

    predicted = binarize_prediction(
        y_pred, mode=mode, threshold=threshold, from_logits=from_logits, num_classes=num_classes
    )
    actual = ops.greater(target, ops.cast(0.5, target.dtype))
    valid = ops.greater(valid, ops.cast(0.5, valid.dtype))
    axes = dense.spatial_axes(y_pred)
    both = ops.logical_and(predicted, actual)

    if sample_weight is None:
        # Exact integer counting; float32 sums would round above 2**24 pixels.
        def count(mask: Any) -> Any:
            return ops.cast(ops.sum(ops.cast(mask, "int32"), axis=axes), "float64")

        tp = count(ops.logical_and(both, valid))
        pred_pos = count(ops.logical_and(predicted, valid))
        true_pos = count(ops.logical_and(actual, valid))
        num_valid = count(valid)
        image_weight = ops.ones_like(tp[:, 0])
    else:
        weight = _weights_like(sample_weight, y_pred)
        valid_weight = weight * ops.cast(valid, "float64")

        def count(mask: Any) -> Any:
            return ops.sum(ops.cast(mask, "float64") * valid_weight, axis=axes)

        tp = count(both)
        pred_pos = count(predicted)
        true_pos = count(actual)
        num_valid = ops.sum(valid_weight, axis=axes)
        non_batch = tuple(range(1, len(weight.shape)))
        image_weight = ops.mean(weight, axis=non_batch) + ops.zeros_like(tp[:, 0])

    fp = pred_pos - tp
    fn = true_pos - tp
    tn = num_valid - pred_pos - true_pos + tp  # broadcasts (B, 1) against (B, C)
    tp, fp, fn, tn = (nan_unless(ok, x) for x in (tp, fp, fn, tn))
    return tp, fp, fn, tn, image_weight
