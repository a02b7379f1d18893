"""Cross-entropy combined with Dice: BCE - ln(Dice) (default) or a weighted linear sum."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from kerasseg.losses.base import SegmentationLoss
from kerasseg.losses.cross_entropy import CrossEntropy
from kerasseg.losses.dice import Dice

__all__ = ["BceDice"]


@keras.saving.register_keras_serializable(package="kerasseg", name="BceDiceLoss")
class BceDice(SegmentationLoss):
    r"""Cross-entropy plus a Dice term, the usual loss for binary segmentation.

    * default (`log_dice=True`): $L = w_{ce}\,\mathrm{CE} - w_{dice}\,\ln \mathrm{Dice}$
      (BCE - ln Dice with the default weights 1, as in Iglovikov et al.'s TernausNet
      recipe, there with Jaccard).
    * linear (`log_dice=False`): $L = w_{ce}\,\mathrm{CE} + w_{dice}\,(1 - \mathrm{Dice})$.

    CE is the binary cross-entropy for "binary"/"multilabel" and the softmax cross-entropy
    for "multiclass" (`CrossEntropy`); Dice is the soft Dice of `Dice`. With several classes
    the Dice term is the (weighted) mean over classes of `-ln Dice_c` or `1 - Dice_c`.

    Args:
        mode: "binary", "multilabel" or "multiclass".
        bce_weight: $w_{ce}$, weight of the cross-entropy term (default 1).
        dice_weight: $w_{dice}$, weight of the Dice term (default 1).
        log_dice: Use `-ln Dice` (default) or `1 - Dice`.
        from_logits: Whether `y_pred` holds logits rather than probabilities (default False).
        smooth: Dice smoothing term (default 1.0, see `Dice`).
        ignore_index: Target value of unlabelled pixels, ignored by both terms.
        class_weights: Per-channel weights, used by both terms (multiclass/multilabel).
        per_image: Both terms per image, averaged over images.
        check_values: Check the values of `y_true` and `y_pred` of every batch (default
            True; see `SegmentationLoss`); done once for both terms.
        reduction: Keras reduction. name: Name of the loss. dtype: Dtype of the result.

    Shapes: as `SegmentationLoss`. Returns (when called): a scalar loss >= 0.

    Example:
        >>> model.compile(optimizer="adam", loss=kerasseg.losses.BceDice())
        >>> linear = kerasseg.losses.BceDice(bce_weight=0.5, dice_weight=0.5, log_dice=False)
    """

    def __init__(
        self,
        mode: str = "binary",
        *,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        log_dice: bool = True,
        from_logits: bool = False,
        smooth: float = 1.0,
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
        self.bce_weight, self.dice_weight = float(bce_weight), float(dice_weight)
        if not (self.bce_weight >= 0 and self.dice_weight >= 0):
            raise ValueError(
                "`bce_weight` and `dice_weight` must be >= 0; got "
                f"bce_weight={bce_weight}, dice_weight={dice_weight}."
            )
        self.log_dice = bool(log_dice)
        shared = {
            "from_logits": from_logits,
            "ignore_index": ignore_index,
            "class_weights": class_weights,
            "per_image": per_image,
            "check_values": False,  # checked once, by this loss
        }
        self._cross_entropy = CrossEntropy(mode, **shared)
        self._dice = Dice(mode, smooth=smooth, log_loss=self.log_dice, **shared)

    @property
    def smooth(self) -> float:
        return self._dice.smooth

    def call(self, y_true: Any, y_pred: Any) -> Any:
        # The parts' `call` (not `__call__`): per-image (B,) or batch () values, reduced once
        # by this loss's own reduction. They raise the shape errors; the values are checked
        # here, once.
        value = self.bce_weight * self._cross_entropy.call(
            y_true, y_pred
        ) + self.dice_weight * self._dice.call(y_true, y_pred)
        return self._finish(value, self._check_inputs(*self._standardize(y_true, y_pred)))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "bce_weight": self.bce_weight,
                "dice_weight": self.dice_weight,
                "log_dice": self.log_dice,
                "smooth": self.smooth,
            }
        )
        return config
