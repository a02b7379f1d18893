"""Focal loss: sigmoid (binary, multilabel) and softmax (multiclass)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from kerasseg.losses._ops import (
    one_minus_exp,
    safe_pow,
    sigmoid_log_probabilities,
    softmax_log_probabilities,
)
from kerasseg.losses.base import SegmentationLoss

__all__ = ["Focal"]


@keras.saving.register_keras_serializable(package="kerasseg", name="FocalLoss")
class Focal(SegmentationLoss):
    r"""Focal loss (Lin et al. 2017) averaged over the labelled pixels.

    With $p_t$ the probability given to the true label,

    $$\ell = -\alpha_t\,(1 - p_t)^{\gamma}\,\ln p_t$$

    * binary / multilabel: sigmoid focal loss of every entry, $p_t = p$ where $t = 1$ and
      $1 - p$ where $t = 0$; $\alpha_t = \alpha$ for positives and $1 - \alpha$ for negatives
      (no balancing when `alpha=None`).
    * multiclass: SOFTMAX focal loss per pixel, $p_t = \mathrm{softmax}(z)_y$ - one term per
      pixel, the natural multi-class generalisation. (smp's `FocalLoss(mode="multiclass")`
      instead averages C one-vs-rest SIGMOID focal losses of the raw scores; for logits
      that is `Focal(mode="multilabel", from_logits=True)` on one-hot targets.) `alpha` is
      not used here; weight classes with `class_weights`.

    Args:
        mode: "binary", "multilabel" or "multiclass".
        alpha: Weight of positives in [0, 1] (binary/multilabel), or None (default) for no
            balancing. The paper's detection setting used 0.25 (which DOWN-weights the rare
            positives, because the focal term already down-weights easy negatives).
        gamma: Focusing exponent >= 0 (default 2); 0 gives the (alpha-weighted) cross-entropy.
        **kwargs: The shared arguments of `SegmentationLoss`: `from_logits` (default
            False), `ignore_index`, `class_weights`, `per_image`, `check_values`
            (default True), `reduction`, `name`, `dtype`.

    Shapes: as `CrossEntropy`. Returns (when called): a scalar loss >= 0.
    """

    def __init__(
        self,
        mode: str = "binary",
        *,
        alpha: float | None = None,
        gamma: float = 2.0,
        **kwargs: Any,
    ):
        super().__init__(mode, **kwargs)
        if alpha is not None:
            alpha = float(alpha)
            if not 0.0 <= alpha <= 1.0:
                raise ValueError(f"`alpha` must be in [0, 1] or None; got {alpha}.")
            if self.mode == "multiclass":
                raise ValueError(
                    "`alpha` balances positives against negatives of sigmoid outputs "
                    "(mode='binary' or 'multilabel'); for mode='multiclass' weight the classes "
                    f"with `class_weights`. Got alpha={alpha} with mode='multiclass'."
                )
        gamma = float(gamma)
        if not gamma >= 0:
            raise ValueError(f"`gamma` must be >= 0; got {gamma}.")
        self.alpha, self.gamma = alpha, gamma

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred, target, valid, weights, ok = self._prepare_weighted(y_true, y_pred)
        if self.mode == "multiclass":
            log_p = softmax_log_probabilities(y_pred, from_logits=self.from_logits)
            focal = safe_pow(one_minus_exp(log_p), self.gamma)
            losses = -ops.sum(target * focal * log_p, axis=-1, keepdims=True)
            pixel_weights = ops.sum(target * weights, axis=-1, keepdims=True)
            return self._finish(self._weighted_mean(losses, pixel_weights * valid), ok)
        log_p, log_not_p = sigmoid_log_probabilities(y_pred, from_logits=self.from_logits)
        log_pt = target * log_p + (1.0 - target) * log_not_p
        losses = -safe_pow(one_minus_exp(log_pt), self.gamma) * log_pt
        if self.alpha is not None:
            losses = losses * (self.alpha * target + (1.0 - self.alpha) * (1.0 - target))
        return self._finish(self._weighted_mean(losses, weights * valid), ok)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"alpha": self.alpha, "gamma": self.gamma})
        return config
