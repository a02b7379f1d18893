"""The base class of the dense losses: shared arguments, target handling and reductions.

Every kerasseg loss is a `SegmentationLoss`. It owns the arguments that all losses share
(`mode`, `from_logits`, `ignore_index`, `class_weights`, `per_image`, `check_values` and
Keras' `reduction`, `name`, `dtype`), turns `(y_true, y_pred)` into a common form with
`kerasseg.utils.dense`, checks their values with `kerasseg.utils.value_checks`, and
provides the two reductions the losses are built from:

* pixel-wise losses (cross-entropy, focal): a weighted mean over the labelled pixels,
* region losses (Dice, Jaccard, Tversky, Lovász): one value per class, then a weighted
  mean over the selected classes.

`call` returns one value per image, shape (B,), when `per_image=True`, and a scalar for the
whole batch otherwise; Keras' `reduction` then averages (or sums) over the images.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from kerasseg.losses._ops import compute_dtype, dtype_to_config
from kerasseg.losses.combined import LossArithmetic
from kerasseg.utils.dense import check_mode, one_hot_targets, standardize_prediction
from kerasseg.utils.value_checks import check_dense_values, nan_unless

__all__ = ["SegmentationLoss"]

_CLASS_CHOICES = ("all", "present")


def _check_ignore_index(ignore_index: Any) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise ValueError(
            f"`ignore_index` must be an integer label value or None; got {ignore_index!r}."
        )
    return int(ignore_index)


def _check_class_weights(class_weights: Any, mode: str) -> list[float] | None:
    if class_weights is None:
        return None
    if mode == "binary":
        raise ValueError(
            "`class_weights` weights the channels of a multiclass or multilabel prediction; "
            "mode='binary' has a single channel. Got class_weights="
            f"{class_weights!r} with mode='binary'."
        )
    values = np.asarray(class_weights, dtype="float64")
    if values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(
            "`class_weights` must be a non-empty 1-D sequence of finite numbers, one per "
            f"class; got {class_weights!r}."
        )
    if np.any(values < 0) or not np.any(values > 0):
        raise ValueError(
            "`class_weights` must be >= 0 with at least one positive weight; got "
            f"{class_weights!r}."
        )
    return [float(v) for v in values]


def check_classes(classes: Any, mode: str) -> str | list[int] | None:
    """Validates a `classes` argument: None, "all", "present" or a list of channel ids."""
    if classes is None or (isinstance(classes, str) and classes in _CLASS_CHOICES):
        return classes
    if isinstance(classes, str):
        raise ValueError(
            f"`classes` must be None, 'all', 'present' or a list of class ids; got {classes!r}."
        )
    try:
        ids = [int(c) for c in classes]
    except (TypeError, ValueError):
        raise ValueError(
            f"`classes` must be None, 'all', 'present' or a list of class ids; got {classes!r}."
        ) from None
    if (
        not ids
        or any(c < 0 for c in ids)
        or any(isinstance(c, bool) or not isinstance(c, numbers.Integral) for c in classes)
    ):
        raise ValueError(
            f"`classes` as a list must hold non-negative integer class ids; got {classes!r}."
        )
    if mode == "binary":
        raise ValueError(
            "A list of `classes` selects channels of a multiclass or multilabel prediction; "
            f"mode='binary' has a single channel. Got classes={classes!r}."
        )
    return sorted(set(ids))


def _check_leading_dims(y_true: Any, y_pred: Any, mode: str) -> None:
    """Raises when the batch/spatial dimensions of `y_true` and `y_pred` disagree."""
    pred_shape = tuple(y_pred.shape)
    true_shape = tuple(y_true.shape)
    leading = len(pred_shape) - 1
    if len(true_shape) not in (leading, leading + 1):
        return  # the rank itself is wrong: `one_hot_targets` explains the expected layouts.
    for true_dim, pred_dim in zip(true_shape[:leading], pred_shape[:leading]):
        if true_dim is not None and pred_dim is not None and true_dim != pred_dim:
            if mode == "multiclass":
                expected = f"class ids {pred_shape[:-1]} or one-hot {pred_shape}"
            else:
                expected = f"{pred_shape}"
            raise ValueError(
                f"`y_true` and `y_pred` must have the same batch and spatial dimensions (NHWC). "
                f"For `y_pred` of shape {pred_shape} and mode={mode!r}, expected `y_true` of "
                f"shape {expected}; got {true_shape}."
            )


class SegmentationLoss(LossArithmetic, keras.losses.Loss):
    """Base class of the kerasseg dense losses (not used directly).

    Args:
        mode: "binary" (one sigmoid channel), "multilabel" (C independent sigmoid channels)
            or "multiclass" (C softmax channels, one class per pixel).
        from_logits: Whether `y_pred` holds logits. The default False expects probabilities
            (sigmoid or softmax outputs, as kerasseg models produce).
        ignore_index: Target value marking unlabelled pixels (e.g. 255); they change
            neither the value nor the gradient of the loss. For binary/multilabel targets it
            marks single entries; one-hot multiclass targets mark them with all-zero rows.
        class_weights: One non-negative weight per channel (multiclass/multilabel only).
            Pixel-wise losses take the weighted mean over labelled entries, weighting each
            pixel by the weight of its true class (multiclass) or each entry by its channel's
            weight (multilabel); region losses take the weighted mean of the per-class losses.
        per_image: Compute the loss of each image separately and return shape (B,) (then
            Keras' reduction averages the images, weighted by `sample_weight`), instead of
            one value for the whole batch. Per-image `sample_weight`s need `per_image=True`;
            a batch-level loss is merely scaled by their mean.
        check_values: Check the values of every batch (default True): binary/multilabel
            `y_true` in [0, 1] (soft labels allowed) or `ignore_index`, multiclass class ids
            in [0, C) or `ignore_index` (one-hot rows in [0, 1]), `y_pred` probabilities in
            [0, 1] (`from_logits=False`) or finite logits. A bad batch raises a ValueError
            eagerly and an InvalidArgumentError in a TensorFlow graph, naming the argument
            and the observed min/max; under XLA (or a JAX `jit`), where nothing can raise,
            the loss is NaN instead. Costs one fused reduction per input.
        reduction: Keras reduction over the (B,) per-image values; a batch-level scalar is
            returned unchanged by every reduction.
        name: Name of the loss.
        dtype: Keras dtype of the returned value. Computation always runs in at least
            float32, also for float16/bfloat16 (mixed precision) predictions.

    Input shapes (NHWC; more or fewer spatial axes work the same way):
        * binary: `y_pred` (B, H, W, 1) or (B, H, W); `y_true` the same, in [0, 1].
        * multilabel: `y_pred` (B, H, W, C); `y_true` (B, H, W, C) in [0, 1].
        * multiclass: `y_pred` (B, H, W, C), C >= 2; `y_true` integer class ids (B, H, W) or
          (B, H, W, 1), or one-hot (B, H, W, C).
    """

    def __init__(
        self,
        mode: str = "binary",
        *,
        from_logits: bool = False,
        ignore_index: int | None = None,
        class_weights: Sequence[float] | None = None,
        per_image: bool = False,
        check_values: bool = True,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
        dtype: Any = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.mode = check_mode(mode)
        self.from_logits = bool(from_logits)
        self.ignore_index = _check_ignore_index(ignore_index)
        self.class_weights = _check_class_weights(class_weights, self.mode)
        self.per_image = bool(per_image)
        self.check_values = bool(check_values)
        self._dtype_arg = dtype

    # ------------------------------------------------------------------ inputs
    def _standardize(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        """`(y_true, y_pred)` as tensors, `y_pred` (B, H, W, C) in the compute dtype (float32
        at least); raises on mismatched batch/spatial dimensions."""
        y_pred = ops.convert_to_tensor(y_pred)
        y_pred = ops.cast(y_pred, compute_dtype(y_pred))
        y_true = ops.convert_to_tensor(y_true)
        y_pred = standardize_prediction(y_pred, self.mode)
        _check_leading_dims(y_true, y_pred, self.mode)
        return y_true, y_pred

    def _check_inputs(self, y_true: Any, y_pred: Any) -> Any:
        """The value checks of `check_values` on standardized inputs (see the class docs).

        Returns:
            A boolean scalar tensor (True: the batch is valid) for `_finish`, or None when
            `check_values` is off.

        Raises:
            ValueError: eagerly, for values outside the expected ranges.
            tf.errors.InvalidArgumentError: the same, at run time of a TensorFlow graph.
        """
        if not self.check_values:
            return None
        return check_dense_values(
            y_true,
            y_pred,
            mode=self.mode,
            from_logits=self.from_logits,
            ignore_index=self.ignore_index,
            owner=f"{type(self).__name__} loss (mode={self.mode!r})",
        )

    @staticmethod
    def _finish(value: Any, ok: Any) -> Any:
        """The loss `value`, or NaN when the value check `ok` failed where it could not raise
        (XLA, JAX `jit`): a bad batch never gives a finite loss."""
        return nan_unless(ok, value)

    def _prepare(self, y_true: Any, y_pred: Any) -> tuple[Any, Any, Any, Any]:
        """Standardizes and checks the inputs.

        Returns:
            `(y_pred, target, valid, ok)`: `y_pred` (B, H, W, C) in the compute dtype
            (float32 at least), `target` a float one-hot/binary tensor of the same shape with
            0 at ignored places, `valid` 1.0 at labelled places ((B, H, W, 1) for multiclass,
            else like `y_pred`), and `ok` the value check for `_finish` (None when off).
        """
        y_true, y_pred = self._standardize(y_true, y_pred)
        target, valid = one_hot_targets(
            y_true, y_pred, mode=self.mode, ignore_index=self.ignore_index
        )
        self._check_num_classes(y_pred.shape[-1])
        return y_pred, target, valid, self._check_inputs(y_true, y_pred)

    def _prepare_weighted(self, y_true: Any, y_pred: Any) -> tuple[Any, Any, Any, Any, Any]:
        """`_prepare` plus the (C,) class weights in the prediction's dtype, as
        `(y_pred, target, valid, weights, ok)`: the inputs of the pixel-wise losses
        (cross-entropy, focal)."""
        y_pred, target, valid, ok = self._prepare(y_true, y_pred)
        dtype = keras.backend.standardize_dtype(y_pred.dtype)
        return y_pred, target, valid, self._class_weight_vector(y_pred.shape[-1], dtype), ok

    def _check_num_classes(self, num_classes: int | None) -> None:
        if num_classes is None:
            if self.class_weights is not None:
                raise ValueError(
                    "`class_weights` needs `y_pred` with a known number of channels; got a "
                    "prediction whose last dimension is None."
                )
            return
        if self.class_weights is not None and len(self.class_weights) != num_classes:
            raise ValueError(
                f"`class_weights` must have one entry per channel of `y_pred` ({num_classes}); "
                f"got {len(self.class_weights)}: {self.class_weights}."
            )

    def _class_weight_vector(self, num_classes: int, dtype: str) -> Any:
        """(C,) per-channel weights (ones without `class_weights`)."""
        if self.class_weights is None:
            return ops.ones((num_classes,), dtype=dtype)
        return ops.convert_to_tensor(np.asarray(self.class_weights), dtype=dtype)

    # -------------------------------------------------------------- reductions
    def _weighted_mean(self, losses: Any, weights: Any) -> Any:
        """Weighted mean of element losses over each image (per_image) or the whole batch.

        Args:
            losses: (B, H, W, K) element losses.
            weights: Non-negative weights broadcastable to `losses` (0 for ignored places).

        Returns:
            (B,) with `per_image`, else a scalar; 0 where no place has a positive weight.
        """
        weights = weights * ops.ones_like(losses)
        axes = tuple(range(1, len(losses.shape))) if self.per_image else None
        return ops.divide_no_nan(ops.sum(losses * weights, axis=axes), ops.sum(weights, axis=axes))

    def _group_sum(self, x: Any) -> Any:
        """Sums (B, H, W, C) over space, per image -> (B, C), or over the batch too -> (1, C)."""
        spatial = tuple(range(1, len(x.shape) - 1))
        if self.per_image:
            return ops.sum(x, axis=spatial)
        return ops.expand_dims(ops.sum(x, axis=(0, *spatial)), 0)

    def _flatten_groups(self, x: Any) -> Any:
        """(B, H, W, C) -> (G, C, N): G = B images (per_image) or 1 batch, N pixels per group."""
        num_channels = x.shape[-1]
        if self.per_image:
            x = ops.reshape(x, (ops.shape(x)[0], -1, num_channels))
        else:
            x = ops.reshape(x, (1, -1, num_channels))
        return ops.transpose(x, (0, 2, 1))

    def _mean_over_classes(self, per_class: Any, positives: Any, classes: Any) -> Any:
        """Weighted mean of per-class losses over the selected classes.

        Args:
            per_class: (G, C) loss of each class in each group (image or batch).
            positives: (G, C) number of labelled positives of each class in each group.
            classes: "all" / None, "present" (classes with positives in the group), or a list
                of channel ids.

        Returns:
            (B,) with `per_image`, else a scalar. A group without any selected class gives 0.
        """
        num_classes = per_class.shape[-1]
        dtype = keras.backend.standardize_dtype(per_class.dtype)
        weights = self._class_weight_vector(num_classes, dtype)
        if isinstance(classes, (list, tuple)):
            if num_classes is not None and max(classes) >= num_classes:
                raise ValueError(
                    f"`classes` must be channel ids below the number of channels of `y_pred` "
                    f"({num_classes}); got {list(classes)}."
                )
            selected = np.zeros((num_classes,), dtype="float64")
            selected[list(classes)] = 1.0
            weights = weights * ops.convert_to_tensor(selected, dtype=dtype)
        weights = ops.expand_dims(weights, 0) * ops.ones_like(per_class)
        if classes == "present":
            weights = weights * ops.cast(positives > 0, dtype)
        value = ops.divide_no_nan(ops.sum(per_class * weights, axis=-1), ops.sum(weights, axis=-1))
        return value if self.per_image else value[0]

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        return {
            "name": self.name,
            "reduction": self.reduction,
            "dtype": dtype_to_config(self._dtype_arg),
            "mode": self.mode,
            "from_logits": self.from_logits,
            "ignore_index": self.ignore_index,
            "class_weights": None if self.class_weights is None else list(self.class_weights),
            "per_image": self.per_image,
            "check_values": self.check_values,
        }

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}={v!r}" for k, v in self.get_config().items() if k not in ("name", "dtype")
        )
        return f"{type(self).__name__}({args})"
