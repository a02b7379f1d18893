"""Region (overlap) losses: the shared part of Dice, Jaccard and Tversky.

They compare soft counts per class, where `p` is the predicted probability and `t` the
{0, 1} target of each labelled pixel:

    TP = sum(p * t),  FP = sum(p * (1 - t)),  FN = sum((1 - p) * t)

summed over the pixels of one image (`per_image=True`) or of the whole batch, and turn each
class's counts into a score in [0, 1] and a loss. The class losses are then averaged over
the selected classes (`classes`) with `class_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras import ops

from kerasseg.losses._ops import EPSILON
from kerasseg.losses.base import SegmentationLoss, check_classes
from kerasseg.utils.dense import probabilities

__all__ = ["OverlapLoss", "RegionLoss"]


class RegionLoss(SegmentationLoss):
    """Base class of the soft overlap losses (Dice, Jaccard, Tversky); not used directly.

    Args:
        mode: "binary", "multilabel" or "multiclass" (see `SegmentationLoss`).
        from_logits: Whether `y_pred` holds logits (sigmoid/softmax is applied) rather than
            probabilities.
        smooth: Added to the numerator and the denominator of each class's score (default
            1.0, about one pixel's worth). It makes an empty target with an empty prediction
            score 1 (loss 0) instead of 0/0, and it makes predicted mass on a class that is
            absent from the target a smooth penalty: Dice = s / (FP + s), a loss that grows
            with FP and keeps a useful gradient s / (FP + s)^2. With a tiny `smooth` (1e-5) any
            false-positive mass saturates the loss at ~1 and its gradient vanishes (with
            `smooth=0` an absent class scores 0 as soon as anything is predicted for it).
            An empty target with an exactly empty prediction scores 1 for every `smooth`.
            For classes with hundreds of pixels 1.0 barely changes the score.
        classes: Which classes to average over: None or "all" (every channel), "present"
            (only classes with labelled positives in the image/batch; a group without any
            gives loss 0), or a list of channel ids (multiclass/multilabel).
        ignore_index: Target value of unlabelled pixels; they count in no TP, FP or FN.
        class_weights: One weight per channel; the loss is the weighted mean of the class
            losses.
        per_image: Count TP/FP/FN per image and average the images' losses (shape (B,)
            before Keras' reduction) instead of counting over the whole batch (a scalar).
        check_values: Check the values of `y_true` and `y_pred` of every batch (default
            True; see `SegmentationLoss`).
        reduction: Keras reduction.
        name: Name of the loss.
        dtype: Keras dtype of the returned value.
    """

    def __init__(
        self,
        mode: str = "binary",
        *,
        from_logits: bool = False,
        smooth: float = 1.0,
        classes: str | Sequence[int] | None = None,
        ignore_index: int | None = None,
        class_weights: Sequence[float] | None = None,
        per_image: bool = False,
        check_values: bool = True,
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
        dtype: Any = None,
    ):
        super().__init__(
            mode,
            from_logits=from_logits,
            ignore_index=ignore_index,
            class_weights=class_weights,
            per_image=per_image,
            check_values=check_values,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        smooth = float(smooth)
        if not smooth >= 0:
            raise ValueError(f"`smooth` must be a number >= 0; got {smooth!r}.")
        self.smooth = smooth
        self.classes = check_classes(classes, self.mode)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred, target, valid, ok = self._prepare(y_true, y_pred)
        p = probabilities(y_pred, mode=self.mode, from_logits=self.from_logits) * valid
        tp = self._group_sum(p * target)
        fp = self._group_sum(p * (1.0 - target))
        fn = self._group_sum((1.0 - p) * target)
        per_class = self.class_losses(tp, fp, fn)
        classes = "all" if self.classes is None else self.classes
        return self._finish(
            self._mean_over_classes(per_class, self._group_sum(target), classes), ok
        )

    def class_losses(self, tp: Any, fp: Any, fn: Any) -> Any:
        """Loss of each class from its soft counts; subclasses define the score.

        Args:
            tp: (G, C) soft true positives of each group (image or batch) and class.
            fp: (G, C) soft false positives.
            fn: (G, C) soft false negatives.

        Returns:
            (G, C) losses.
        """
        raise NotImplementedError(f"{type(self).__name__} must define class_losses().")

    def _ratio(self, numerator: Any, denominator: Any) -> Any:
        """`(numerator + smooth) / (denominator + smooth)`; 1 where both counts are empty.

        An empty target with an empty prediction is a perfect match, also with `smooth=0`
        (where the ratio would be 0 / 0).
        """
        denominator = denominator + self.smooth
        ratio = (numerator + self.smooth) / ops.maximum(denominator, 1e-7)
        return ops.where(denominator > 0, ratio, ops.ones_like(ratio))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"smooth": self.smooth, "classes": self.classes})
        return config


class OverlapLoss(RegionLoss):
    """A `RegionLoss` of an overlap score in [0, 1]: ``1 - score``, or ``-ln score`` with
    ``log_loss=True`` (steeper for poorly predicted classes). Subclasses define `score`."""

    def __init__(self, mode: str = "binary", *, log_loss: bool = False, **kwargs: Any):
        super().__init__(mode, **kwargs)
        self.log_loss = bool(log_loss)

    def score(self, tp: Any, fp: Any, fn: Any) -> Any:
        """(G, C) overlap scores in [0, 1] from the (G, C) soft counts."""
        raise NotImplementedError(f"{type(self).__name__} must define score().")

    def class_losses(self, tp: Any, fp: Any, fn: Any) -> Any:
        score = self.score(tp, fp, fn)
        if self.log_loss:
            return -ops.log(ops.maximum(score, EPSILON))
        return 1.0 - score

    def get_config(self) -> dict:
        config = super().get_config()
        config["log_loss"] = self.log_loss
        return config
