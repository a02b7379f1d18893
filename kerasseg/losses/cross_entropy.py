"""Pixel-wise cross-entropy: binary (sigmoid) and categorical (softmax)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from kerasseg.losses._ops import sigmoid_log_probabilities, softmax_log_probabilities
from kerasseg.losses.base import SegmentationLoss

__all__ = ["CrossEntropy"]


@keras.saving.register_keras_serializable(package="kerasseg", name="CrossEntropyLoss")
class CrossEntropy(SegmentationLoss):
    r"""Cross-entropy averaged over the labelled pixels: BCE or softmax CE by `mode`.

    * binary / multilabel (independent sigmoids), per entry:
      $\ell = -[t \ln p + (1 - t) \ln(1 - p)]$, averaged over pixels and channels.
    * multiclass (softmax), per pixel: $\ell = -\sum_c t_c \ln p_c = -\ln p_y$.

    With `class_weights` $w$ the mean is weighted: $\sum_i w_i \ell_i / \sum_i w_i$, where
    $w_i$ is the weight of pixel i's true class (multiclass, as `torch.nn.CrossEntropyLoss`)
    or of entry i's channel (multilabel). Ignored pixels have weight 0, so they change
    neither the value nor the normaliser.

    Args:
        mode: "binary", "multilabel" or "multiclass".
        from_logits: Whether `y_pred` holds logits (then the log-sigmoid / log-softmax is
            computed stably, ±1e4 included). With probabilities (the default) they are
            clipped to [1e-7, 1 - 1e-7] before the log.
        ignore_index: Target value of unlabelled pixels (e.g. 255).
        class_weights: Per-channel weights (multiclass/multilabel).
        per_image: Mean over each image's labelled pixels, shape (B,), instead of the mean
            over all labelled pixels of the batch (a scalar).
        check_values: Check the values of `y_true` and `y_pred` of every batch (default
            True; see `SegmentationLoss`).
        reduction: Keras reduction. name: Name of the loss. dtype: Dtype of the result.

    Shapes: `y_pred` (B, H, W, C); `y_true` as in `SegmentationLoss` (binary/multilabel
    targets may be soft, in [0, 1]; multiclass one-hot targets may be soft too).

    Returns (when called): a scalar (or (B,) with `per_image` and reduction "none"), >= 0.

    Differences to smp's `SoftBCEWithLogitsLoss` / `SoftCrossEntropyLoss`: with
    `ignore_index` they zero the ignored entries but still divide by ALL entries, so the
    loss shrinks with the fraction of ignored pixels; kerasseg divides by the labelled
    entries (as `torch.nn.CrossEntropyLoss(ignore_index=...)` does).
    """

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred, target, valid, weights, ok = self._prepare_weighted(y_true, y_pred)
        if self.mode == "multiclass":
            log_p = softmax_log_probabilities(y_pred, from_logits=self.from_logits)
            losses = -ops.sum(target * log_p, axis=-1, keepdims=True)
            # Weight of each pixel's true class; 0 for ignored pixels (all-zero target rows).
            pixel_weights = ops.sum(target * weights, axis=-1, keepdims=True)
            return self._finish(self._weighted_mean(losses, pixel_weights * valid), ok)
        log_p, log_not_p = sigmoid_log_probabilities(y_pred, from_logits=self.from_logits)
        losses = -(target * log_p + (1.0 - target) * log_not_p)
        return self._finish(self._weighted_mean(losses, weights * valid), ok)
