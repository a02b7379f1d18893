"""Weighted sums of losses: `loss_a + loss_b`, `0.5 * loss_a`, `loss_a + 0.3 * loss_b`.

Arithmetic on kerasseg losses builds a `CombinedLoss`, a flat list of `(weight, loss)`
pairs (nested sums are flattened and the weights multiplied through). It is an ordinary
registered Keras loss whose config holds its parts, so a model compiled with it saves to
`.keras` and loads back with `keras.models.load_model` after `import kerasseg`.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from kerasseg.losses._ops import dtype_to_config

__all__ = ["CombinedLoss", "LossArithmetic"]


def _is_weight(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _parts(loss: keras.losses.Loss) -> list[tuple[float, keras.losses.Loss]]:
    """The `(weight, loss)` terms of a loss: its own parts for a `CombinedLoss`, else itself."""
    if isinstance(loss, CombinedLoss):
        return list(zip(loss.weights, loss.losses))
    return [(1.0, loss)]


class LossArithmetic:
    """Mixin that gives Keras losses `+`, `*` and `/` with numbers, producing `CombinedLoss`.

    `sum([loss_a, loss_b])` works too (`0 + loss` is the loss itself, as a one-term sum).
    A plain `keras.losses.Loss` on the left (`keras.losses.MeanSquaredError() + Dice()`) is
    handled by the right-hand operand's `__radd__`.
    """

    def __add__(self, other: Any) -> CombinedLoss:
        if isinstance(other, keras.losses.Loss):
            return CombinedLoss.from_parts(_parts(self) + _parts(other))
        return NotImplemented

    def __radd__(self, other: Any) -> CombinedLoss:
        if isinstance(other, keras.losses.Loss):
            return CombinedLoss.from_parts(_parts(other) + _parts(self))
        if _is_weight(other) and other == 0:  # the start value of sum()
            return CombinedLoss.from_parts(_parts(self))
        return NotImplemented

    def __mul__(self, other: Any) -> CombinedLoss:
        if _is_weight(other):
            return CombinedLoss.from_parts([(float(other) * w, loss) for w, loss in _parts(self)])
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> CombinedLoss:
        if _is_weight(other):
            if other == 0:
                raise ZeroDivisionError("a loss cannot be divided by 0")
            return self * (1.0 / float(other))
        return NotImplemented


@keras.saving.register_keras_serializable(package="kerasseg", name="CombinedLoss")
class CombinedLoss(LossArithmetic, keras.losses.Loss):
    """A weighted sum of losses, `sum_i weights[i] * losses[i](y_true, y_pred)`.

    Usually built with arithmetic (`Dice() + 0.5 * Focal()`), but can be constructed
    directly. Each part applies its own `reduction` (and `sample_weight`), so parts may mix
    per-image and batch-level losses, and Keras' built-in losses can be parts too.

    Args:
        losses: The parts, `keras.losses.Loss` instances (kerasseg or Keras losses).
        weights: One number per part; defaults to 1 for every part.
        name: Name of the loss.
        dtype: Dtype of the returned value (defaults to `keras.backend.floatx()`).

    Returns (when called):
        A scalar: the weighted sum of the parts' reduced values.
    """

    def __init__(
        self,
        losses: Sequence[keras.losses.Loss],
        weights: Sequence[float] | None = None,
        name: str | None = None,
        dtype: Any = None,
    ):
        super().__init__(name=name, reduction="sum_over_batch_size", dtype=dtype)
        losses = list(losses)
        if not losses:
            raise ValueError(
                "`losses` must hold at least one keras.losses.Loss; got an empty list."
            )
        for index, loss in enumerate(losses):
            if not isinstance(loss, keras.losses.Loss):
                raise TypeError(
                    f"`losses[{index}]` must be a keras.losses.Loss instance; got {loss!r} "
                    f"of type {type(loss).__name__}."
                )
        if weights is None:
            weights = [1.0] * len(losses)
        weights = [float(w) for w in weights]
        if len(weights) != len(losses):
            raise ValueError(
                f"`weights` must have one entry per loss ({len(losses)}); got {len(weights)}."
            )
        self.losses = losses
        self.weights = weights
        self._dtype_arg = dtype

    @classmethod
    def from_parts(cls, parts: Sequence[tuple[float, keras.losses.Loss]]) -> CombinedLoss:
        """Builds the sum of `(weight, loss)` pairs (already flat)."""
        return cls([loss for _, loss in parts], [weight for weight, _ in parts])

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        with keras.name_scope(self.name):
            return self._weighted_sum(y_true, y_pred, sample_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self._weighted_sum(y_true, y_pred, None)

    def _weighted_sum(self, y_true: Any, y_pred: Any, sample_weight: Any) -> Any:
        total = None
        for weight, loss in zip(self.weights, self.losses):
            value = ops.cast(loss(y_true, y_pred, sample_weight=sample_weight), self.dtype)
            term = value * ops.cast(weight, self.dtype)
            total = term if total is None else total + term
        return total

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "dtype": dtype_to_config(self._dtype_arg),
            "losses": [keras.saving.serialize_keras_object(loss) for loss in self.losses],
            "weights": list(self.weights),
        }

    @classmethod
    def from_config(cls, config: dict) -> CombinedLoss:
        config = dict(config)
        config.pop("reduction", None)
        config["losses"] = [
            keras.saving.deserialize_keras_object(loss) for loss in config["losses"]
        ]
        return cls(**config)

    def __repr__(self) -> str:
        terms = " + ".join(
            f"{w:g} * {type(loss).__name__}" for w, loss in zip(self.weights, self.losses)
        )
        return f"CombinedLoss({terms})"
