"""Soft Dice loss."""

from __future__ import annotations

from typing import Any

import keras

from kerasseg.losses.region import OverlapLoss

__all__ = ["Dice"]


# Registered as "kerasseg>DiceLoss": "kerasseg>Dice" is the streaming metric's name.
@keras.saving.register_keras_serializable(package="kerasseg", name="DiceLoss")
class Dice(OverlapLoss):
    r"""Soft Dice loss, `1 - Dice` (or `-ln Dice` with `log_loss=True`), averaged over classes.

    Per class, with soft counts TP, FP, FN of the image (`per_image=True`) or of the batch:

    $$\mathrm{Dice} = \frac{2\,TP + s}{2\,TP + FP + FN + s}
                    = \frac{2\sum p\,t + s}{\sum p + \sum t + s}$$

    Args:
        mode: "binary", "multilabel" or "multiclass".
        log_loss: Use `-ln(Dice)` per class instead of `1 - Dice` (steeper for poor classes).
        **kwargs: The shared arguments of `RegionLoss`: `from_logits` (default False),
            `smooth` (default 1.0), `classes`, `ignore_index`, `class_weights`, `per_image`,
            `check_values` (default True), `reduction`, `name`, `dtype`.

    Shapes: `y_pred` (B, H, W, C) probabilities (or logits); `y_true` (B, H, W, C) in [0, 1]
    (binary/multilabel) or class ids (B, H, W) / (B, H, W, 1) / one-hot (multiclass).

    Returns (when called): a scalar loss in [0, 1] (`log_loss`: [0, ~16]).

    Differences to `segmentation_models_pytorch.losses.DiceLoss`:
        * smp writes Dice as (TP + s') / (TP + (FP + FN) / 2 + s'), so its `smooth` s' is
          half of ours: `Dice(smooth=s)` == smp `DiceLoss(smooth=s / 2)`.
        * smp sets the loss of a class with no target pixels in the batch to 0, however much
          is predicted for it, yet still divides by the number of classes. kerasseg keeps
          the class: its loss FP / (FP + s) punishes false positives on absent classes, and
          an empty prediction there gives 0. `classes="present"` drops absent classes from
          the average altogether.
        * smp has no per-image mode; `per_image=True` equals the mean of smp's loss over
          the images.

    Example:
        >>> loss = kerasseg.losses.Dice(mode="multiclass", ignore_index=255)
        >>> model.compile(optimizer="adam", loss=loss)
    """

    def score(self, tp: Any, fp: Any, fn: Any) -> Any:
        return self._ratio(2.0 * tp, 2.0 * tp + fp + fn)
