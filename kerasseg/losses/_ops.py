"""Numerically careful building blocks shared by the losses (keras.ops only)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# Clipping bound for probabilities before a log or a logit, as in Keras' own losses
# (keras.config.epsilon()) and smp's focal loss. Losses compute in float32 at least, where
# 1 - 1e-7 is still distinguishable from 1.
EPSILON = 1e-7

_HALF_PRECISION = ("float16", "bfloat16")


def compute_dtype(x: Any) -> str:
    """The dtype to compute a loss in: the input's, promoted from half precision to float32.

    Sums over every pixel of a batch overflow float16 (max 65504) and lose digits in
    bfloat16, so mixed-precision outputs are promoted before any reduction.
    """
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype in _HALF_PRECISION or not dtype.startswith("float"):
        return "float32"
    return dtype


def dtype_to_config(dtype: Any) -> Any:
    """A JSON-friendly form of a loss's `dtype` argument (None, a name, or a policy)."""
    if dtype is None or isinstance(dtype, str):
        return dtype
    name = getattr(dtype, "name", None)
    if isinstance(name, str):
        return name
    return keras.backend.standardize_dtype(dtype)


def safe_pow(x: Any, exponent: float) -> Any:
    """`x ** exponent` for `x >= 0`, with a finite gradient at `x == 0` even for exponents < 1.

    Values `x <= 0` (which can appear as -1e-8 through rounding) give 0; `exponent == 0`
    gives 1 everywhere.
    """
    if exponent == 0:
        return ops.ones_like(x)
    if exponent == 1:
        return ops.maximum(x, 0.0)
    positive = x > 0
    # Double `where`: the pow never sees 0, so its gradient is never inf * 0 = NaN.
    base = ops.where(positive, x, ops.ones_like(x))
    return ops.where(positive, ops.power(base, exponent), ops.zeros_like(x))


def sigmoid_log_probabilities(y_pred: Any, *, from_logits: bool) -> tuple[Any, Any]:
    """`(log p, log(1 - p))` of independent sigmoid outputs.

    Args:
        y_pred: Logits (any real value, ±1e4 included) or probabilities in [0, 1].
        from_logits: Whether `y_pred` holds logits.

    Returns:
        Two tensors shaped like `y_pred`, finite everywhere: logits go through the stable
        log-sigmoid; probabilities are clipped to [EPSILON, 1 - EPSILON] first.
    """
    if from_logits:
        return ops.log_sigmoid(y_pred), ops.log_sigmoid(-y_pred)
    p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    return ops.log(p), ops.log1p(-p)


def softmax_log_probabilities(y_pred: Any, *, from_logits: bool) -> Any:
    """`log p` of softmax outputs over the last axis, finite everywhere.

    Args:
        y_pred: (..., C) logits, or probabilities that sum to 1 over the last axis.
        from_logits: Whether `y_pred` holds logits.
    """
    if from_logits:
        return ops.log_softmax(y_pred, axis=-1)
    return ops.log(ops.clip(y_pred, EPSILON, 1.0))


def probabilities_to_logits(p: Any) -> Any:
    """Inverse sigmoid of probabilities clipped to [EPSILON, 1 - EPSILON] (|logit| <= ~16)."""
    p = ops.clip(p, EPSILON, 1.0 - EPSILON)
    return ops.log(p) - ops.log1p(-p)


def one_minus_exp(log_p: Any) -> Any:
    """`1 - exp(log_p)` for `log_p <= 0`, accurate when `log_p` is close to 0."""
    return -ops.expm1(log_p)
