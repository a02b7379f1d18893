"""Soft Jaccard (IoU) loss."""

from __future__ import annotations

from typing import Any

import keras

from kerasseg.losses.region import OverlapLoss

__all__ = ["Jaccard"]


# Registered as "kerasseg>JaccardLoss": "kerasseg>Jaccard" is the streaming metric's name.
@keras.saving.register_keras_serializable(package="kerasseg", name="JaccardLoss")
class Jaccard(OverlapLoss):
    r"""Soft Jaccard (IoU) loss, `1 - IoU` (or `-ln IoU`), averaged over classes.

    Per class, with soft counts of the image (`per_image=True`) or of the batch:

    $$\mathrm{IoU} = \frac{TP + s}{TP + FP + FN + s}
                   = \frac{\sum p\,t + s}{\sum p + \sum t - \sum p\,t + s}$$

    Args:
        mode: "binary", "multilabel" or "multiclass".
        log_loss: Use `-ln(IoU)` per class instead of `1 - IoU`.
        **kwargs: The shared arguments of `RegionLoss`: `from_logits` (default False),
            `smooth` (default 1.0), `classes`, `ignore_index`, `class_weights`, `per_image`,
            `check_values` (default True), `reduction`, `name`, `dtype`.

    Shapes: as `Dice`. Returns (when called): a scalar loss in [0, 1].

    Differences to `segmentation_models_pytorch.losses.JaccardLoss`: the same `smooth`;
    smp zeroes the loss of classes absent from the batch's target (kerasseg penalises
    false positives there, see `Dice`), and has no per-image mode.
    """

    def score(self, tp: Any, fp: Any, fn: Any) -> Any:
        return self._ratio(tp, tp + fp + fn)
