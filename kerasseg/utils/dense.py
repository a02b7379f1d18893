"""Shared handling of dense (per-pixel) targets and predictions.

Losses and metrics accept the same three modes and the same target layouts; this module is
the one place that turns them into a common form: a float one-hot target of the prediction's
shape, and a validity mask that is 0 where `ignore_index` marks a pixel as unlabelled.

Layouts (NHWC; any number of spatial axes works the same way):

* ``"binary"``: ``y_pred`` (B, H, W, 1) or (B, H, W); ``y_true`` of the same shape, in {0, 1}.
* ``"multilabel"``: ``y_pred`` (B, H, W, C); ``y_true`` (B, H, W, C) in {0, 1}.
* ``"multiclass"``: ``y_pred`` (B, H, W, C) with C >= 2; ``y_true`` integer class ids
  (B, H, W) or (B, H, W, 1), or one-hot (B, H, W, C).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

MODES = ("binary", "multiclass", "multilabel")


def check_mode(mode: str) -> str:
    """Returns `mode` if it is one of `MODES`, else raises a ValueError naming the choices."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    return mode


def _static_shape(x: Any) -> tuple:
    return tuple(x.shape)


def standardize_prediction(y_pred: Any, mode: str) -> Any:
    """Gives a binary prediction its channel axis and checks the channel count.

    Args:
        y_pred: Scores or probabilities, (B, H, W, C); (B, H, W) is accepted for binary.
        mode: One of `MODES`.

    Returns:
        `y_pred` with a channel axis, (B, H, W, C).
    """
    shape = _static_shape(y_pred)
    if mode == "binary":
        if shape and shape[-1] != 1 and not (len(shape) >= 4 and shape[-1] is None):
            # (B, H, W) without a channel axis: add it.
            if len(shape) == 3:
                return ops.expand_dims(y_pred, -1)
            raise ValueError(
                "mode='binary' expects `y_pred` with one channel, shape (B, H, W, 1); got shape "
                f"{shape}. For C > 1 channels use mode='multilabel' (independent sigmoids) or "
                "mode='multiclass' (softmax)."
            )
        return y_pred
    if len(shape) < 3:
        raise ValueError(
            f"mode={mode!r} expects `y_pred` of shape (B, H, W, C); got shape {shape}."
        )
    if mode == "multiclass" and shape[-1] is not None and shape[-1] < 2:
        raise ValueError(
            "mode='multiclass' expects `y_pred` with C >= 2 channels (one per class); got shape "
            f"{shape}. For a single foreground class use mode='binary'."
        )
    return y_pred


def probabilities(y_pred: Any, *, mode: str, from_logits: bool) -> Any:
    """Turns scores into probabilities: sigmoid for binary/multilabel, softmax for multiclass.

    Args:
        y_pred: (B, H, W, C) scores (`from_logits=True`) or probabilities in [0, 1].
        mode: One of `MODES`.
        from_logits: Whether `y_pred` holds logits.

    Returns:
        Probabilities, (B, H, W, C), in [0, 1].
    """
    if not from_logits:
        return y_pred
    if mode == "multiclass":
        return ops.softmax(y_pred, axis=-1)
    return ops.sigmoid(y_pred)


def multiclass_labels(y_true: Any, y_pred: Any) -> Any | None:
    """Multiclass targets as class ids, or None when they are one-hot.

    Args:
        y_true: Class ids (B, H, W) or (B, H, W, 1), or one-hot (B, H, W, C).
        y_pred: The standardized prediction, (B, H, W, C); only its shape is used.

    Returns:
        None for one-hot targets, else the (B, H, W) class ids as float32, rounded (any
        integer or float dtype is read this way).

    Raises:
        ValueError: for any other shape.
    """
    pred_shape = _static_shape(y_pred)
    true_shape = _static_shape(y_true)
    num_classes = pred_shape[-1]
    if len(true_shape) == len(pred_shape) and true_shape[-1] == num_classes:
        return None
    if len(true_shape) == len(pred_shape):
        if true_shape[-1] not in (1, None):
            raise ValueError(
                "mode='multiclass' expects `y_true` as class ids (B, H, W) or (B, H, W, 1), or "
                f"one-hot (B, H, W, {num_classes}); got shape {true_shape} for `y_pred` of "
                f"shape {pred_shape}."
            )
        labels = y_true[..., 0]
    elif len(true_shape) == len(pred_shape) - 1:
        labels = y_true
    else:
        raise ValueError(
            "mode='multiclass' expects `y_true` as class ids (B, H, W) or (B, H, W, 1), or "
            f"one-hot (B, H, W, C); got shape {true_shape} for `y_pred` of shape {pred_shape}."
        )
    return ops.round(ops.cast(labels, "float32"))


def one_hot_targets(
    y_true: Any,
    y_pred: Any,
    *,
    mode: str,
    ignore_index: int | None = None,
) -> tuple[Any, Any]:
    """Brings targets into the prediction's layout and marks the pixels to ignore.

    Args:
        y_true: Targets in one of the layouts of the module docstring.
        y_pred: The standardized prediction, (B, H, W, C); only its shape and dtype are used.
        mode: One of `MODES`.
        ignore_index: Target value that marks unlabelled pixels (or, for multilabel, unlabelled
            entries), which then count neither as positive nor as negative.

    Returns:
        `(target, valid)`: `target` is a float one-hot (or binary) tensor shaped like `y_pred`
        with 0 at ignored places; `valid` is 1.0 where the target is labelled and 0.0 where it
        is ignored, shaped (B, H, W, 1) for multiclass and like `y_pred` otherwise.
    """
    dtype = y_pred.dtype
    pred_shape = _static_shape(y_pred)
    true_shape = _static_shape(y_true)
    num_classes = pred_shape[-1]

    if mode == "multiclass":
        labels = multiclass_labels(y_true, y_pred)
        if labels is None:  # one-hot targets
            if ignore_index is not None:
                # One-hot targets cannot carry an ignore value; unlabelled pixels are all-zero rows.
                target = ops.cast(y_true, dtype)
                valid = ops.cast(ops.sum(target, axis=-1, keepdims=True) > 0, dtype)
                return target, valid
            target = ops.cast(y_true, dtype)
            return target, ops.ones_like(target[..., :1])
        labels = ops.cast(labels, "int32")
        if ignore_index is not None:
            valid = ops.not_equal(labels, ignore_index)
            labels = ops.where(valid, labels, ops.zeros_like(labels))
            valid = ops.cast(ops.expand_dims(valid, -1), dtype)
        else:
            valid = ops.ones(ops.shape(ops.expand_dims(labels, -1)), dtype=dtype)
        target = ops.one_hot(labels, num_classes, dtype=dtype)
        return target * valid, valid

    # binary and multilabel: element-wise {0, 1} targets of the prediction's shape.
    if mode == "binary" and len(true_shape) == len(pred_shape) - 1:
        y_true = ops.expand_dims(y_true, -1)
        true_shape = _static_shape(y_true)
    if len(true_shape) != len(pred_shape) or true_shape[-1] not in (num_classes, None):
        raise ValueError(
            f"mode={mode!r} expects `y_true` of the same shape as `y_pred` {pred_shape}; got "
            f"shape {true_shape}."
        )
    target = ops.cast(y_true, dtype)
    if ignore_index is not None:
        valid = ops.cast(ops.not_equal(target, ignore_index), dtype)
        return target * valid, valid
    return target, ops.ones_like(target)


def spatial_axes(x: Any) -> tuple[int, ...]:
    """The axes between batch and channels of an (B, ..., C) tensor, e.g. (1, 2) for NHWC."""
    return tuple(range(1, len(_static_shape(x)) - 1))


def floatx_of(x: Any) -> str:
    """Dtype name of a tensor, for casts that must follow the input's precision."""
    return keras.backend.standardize_dtype(x.dtype)
