"""Lovász losses (Berman et al. 2018): the Lovász hinge and the Lovász-softmax.

Both optimise a convex surrogate of the Jaccard (IoU) loss. For each class, pixel errors
are sorted in decreasing order; the loss is the dot product of the sorted errors with the
gradient of the Lovász extension of the Jaccard loss, which for a sorted order is the
increase of the Jaccard loss as each successive pixel is counted as wrong.

Everything is vectorised: one sort per (group, class) along the pixel axis, cumulative
sums for the Jaccard terms, no Python loop over pixels or classes.

Ignored pixels get the error -1. The errors of labelled pixels are >= 0 (softmax) or
only enter through relu(error) (hinge), so ignored pixels sort after every pixel with a
positive contribution; the Jaccard terms count labelled pixels only (the running union
adds `valid - fg`, 0 for ignored pixels), and relu(-1) = 0 gives them no contribution.
Hence the loss equals the loss computed on the labelled pixels alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from kerasseg.losses._ops import probabilities_to_logits
from kerasseg.losses.base import SegmentationLoss, check_classes
from kerasseg.utils.dense import probabilities

__all__ = ["Lovasz", "lovasz_from_errors"]

_IGNORED_ERROR = -1.0


def lovasz_from_errors(errors: Any, foreground: Any, valid: Any) -> Any:
    """The Lovász extension of the Jaccard loss applied to per-pixel errors.

    Args:
        errors: (..., N) errors; ignored pixels must hold a value <= 0 that sorts after
            every positive error (e.g. -1).
        foreground: (..., N) 1.0 where the pixel belongs to the class, else 0.0 (0 for
            ignored pixels).
        valid: (..., N) 1.0 for labelled pixels, 0.0 for ignored ones.

    Returns:
        (...) the loss `sum_i relu(e_(i)) * g_i`, where `e_(i)` are the errors sorted in
        decreasing order and `g_i = J_i - J_(i-1)` with `J_i` the Jaccard loss of predicting
        the first i sorted pixels wrong.
    """
    order = ops.argsort(-errors, axis=-1)
    errors_sorted = ops.take_along_axis(errors, order, axis=-1)
    fg_sorted = ops.take_along_axis(foreground, order, axis=-1)
    valid_sorted = ops.take_along_axis(valid, order, axis=-1)
    positives = ops.sum(foreground, axis=-1, keepdims=True)
    intersection = positives - ops.cumsum(fg_sorted, axis=-1)
    union = positives + ops.cumsum(valid_sorted - fg_sorted, axis=-1)
    jaccard = 1.0 - ops.divide_no_nan(intersection, union)
    gradient = ops.concatenate([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1)
    return ops.sum(ops.relu(errors_sorted) * ops.stop_gradient(gradient), axis=-1)


@keras.saving.register_keras_serializable(package="kerasseg", name="LovaszLoss")
class Lovasz(SegmentationLoss):
    r"""Lovász hinge (binary, multilabel) and Lovász-softmax (multiclass) losses.

    * binary / multilabel: the Lovász hinge on the margins $m = z \cdot (2t - 1)$ of the
      logits $z$, errors $1 - m$, per channel. With `from_logits=False` probabilities are
      turned into logits after clipping to [1e-7, 1 - 1e-7] (|z| <= ~16).
    * multiclass: the Lovász-softmax on the errors $|t_c - p_c|$ of the softmax
      probabilities, per class.

    Each class's errors (of an image with `per_image=True`, else of the whole batch) are
    sorted in decreasing order and weighted by the gradient of the Lovász extension of the
    Jaccard loss; the class losses are averaged over `classes`.

    Args:
        mode: "binary", "multilabel" or "multiclass".
        classes: Which classes to average: "present" (classes with labelled pixels in the
            image/batch, Berman et al.'s default for the softmax), "all", or a list of channel
            ids. None (default) means "present" for multiclass and "all" for binary and
            multilabel (the hinge is well defined on an empty mask and penalises false
            positives there).
        **kwargs: The shared arguments of `SegmentationLoss`: `from_logits` (default
            False), `ignore_index`, `class_weights`, `per_image`, `check_values`
            (default True), `reduction`, `name`, `dtype`.

    Shapes: as `SegmentationLoss`. Returns (when called): a scalar loss >= 0.

    Use it to fine-tune a model already trained with cross-entropy or Dice: it optimises
    the IoU directly but its gradients are sparse early in training.

    Differences to `segmentation_models_pytorch.losses.LovaszLoss` (a port of Berman's
    code): in multilabel mode smp flattens all channels into ONE binary hinge problem;
    kerasseg computes one hinge per channel and averages them. smp always reads binary
    inputs as logits and multiclass inputs as logits (softmax); kerasseg follows
    `from_logits`.
    """

    def __init__(
        self,
        mode: str = "binary",
        *,
        classes: str | Sequence[int] | None = None,
        **kwargs: Any,
    ):
        super().__init__(mode, **kwargs)
        self.classes = check_classes(classes, self.mode)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred, target, valid, ok = self._prepare(y_true, y_pred)
        valid = valid * ops.ones_like(y_pred)
        if self.mode == "multiclass":
            p = probabilities(y_pred, mode=self.mode, from_logits=self.from_logits)
            errors = ops.abs(target - p)
        else:
            logits = y_pred if self.from_logits else probabilities_to_logits(y_pred)
            errors = 1.0 - logits * (2.0 * target - 1.0)
        errors = ops.where(valid > 0, errors, _IGNORED_ERROR)
        per_class = lovasz_from_errors(
            self._flatten_groups(errors),
            self._flatten_groups(target),
            self._flatten_groups(valid),
        )
        classes = self.classes
        if classes is None:
            classes = "present" if self.mode == "multiclass" else "all"
        return self._finish(
            self._mean_over_classes(per_class, self._group_sum(target), classes), ok
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config["classes"] = self.classes
        return config
