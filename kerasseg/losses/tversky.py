"""Tversky loss (and focal Tversky)."""

from __future__ import annotations

from typing import Any

import keras

from kerasseg.losses._ops import safe_pow
from kerasseg.losses.region import RegionLoss

__all__ = ["Tversky"]


@keras.saving.register_keras_serializable(package="kerasseg", name="TverskyLoss")
class Tversky(RegionLoss):
    r"""Tversky loss `(1 - T)^gamma` per class, averaged over classes.

    $$T = \frac{TP + s}{TP + \alpha\,FP + \beta\,FN + s}$$

    `alpha` weights the FALSE POSITIVES (over-prediction), `beta` the FALSE NEGATIVES
    (under-prediction): raise `beta` to favour recall on small structures, `alpha` to
    favour precision. `alpha = beta = 1` is the Jaccard loss; `alpha = beta = 0.5` is the
    Dice loss with smooth `2 s`. (Keras 3's `keras.losses.Tversky` applies `alpha` to the
    false negatives and `beta` to the false positives; kerasseg follows Salehi et al. and
    smp.)

    Args:
        mode: "binary", "multilabel" or "multiclass".
        alpha: Weight of the false positives (default 0.5).
        beta: Weight of the false negatives (default 0.5).
        gamma: Focal exponent applied to each class's loss, `(1 - T_c)^gamma` (default 1,
            the plain Tversky loss; Abraham & Khan's focal Tversky loss uses exponents
            1/3 ... 3/4, written 1/gamma there).
        **kwargs: The shared arguments of `RegionLoss`: `from_logits` (default False),
            `smooth` (default 1.0), `classes`, `ignore_index`, `class_weights`, `per_image`,
            `check_values` (default True), `reduction`, `name`, `dtype`.

    Shapes: as `Dice`. Returns (when called): a scalar loss in [0, 1].

    Differences to `segmentation_models_pytorch.losses.TverskyLoss`: the same `alpha`,
    `beta` and `smooth`; smp raises the class MEAN to `gamma`, `(mean_c (1 - T_c))^gamma`,
    while kerasseg raises each class's loss, `mean_c (1 - T_c)^gamma` (the focal Tversky
    loss as published; identical for one class or gamma = 1). smp also zeroes the loss of
    classes absent from the batch's target (see `Dice`).
    """

    def __init__(
        self,
        mode: str = "binary",
        *,
        alpha: float = 0.5,
        beta: float = 0.5,
        gamma: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(mode, **kwargs)
        alpha, beta, gamma = float(alpha), float(beta), float(gamma)
        if not (alpha >= 0 and beta >= 0):
            raise ValueError(f"`alpha` and `beta` must be >= 0; got alpha={alpha}, beta={beta}.")
        if not gamma > 0:
            raise ValueError(f"`gamma` must be > 0; got {gamma}.")
        self.alpha, self.beta, self.gamma = alpha, beta, gamma

    def class_losses(self, tp: Any, fp: Any, fn: Any) -> Any:
        score = self._ratio(tp, tp + self.alpha * fp + self.beta * fn)
        return safe_pow(1.0 - score, self.gamma)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma})
        return config
