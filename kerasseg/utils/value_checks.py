"""Run-time checks of tensor values, shared by the losses, the metrics and the detectors.

The dense losses and metrics check every batch (unless built with ``check_values=False``):

* binary/multilabel targets: values in [0, 1] (soft labels allowed) or ``ignore_index``;
* multiclass targets: class ids in [0, C) or ``ignore_index``; one-hot rows in [0, 1];
* predictions: probabilities in [0, 1] (a tolerance of `PROBABILITY_TOLERANCE`) with
  ``from_logits=False``, finite values with ``from_logits=True``. NaN and inf fail both.

A check is one pass over a tensor: element-wise comparisons reduced by ``all`` (XLA fuses
them into a single reduction). Comparisons are used rather than a min/max because XLA's
``reduce_min``/``reduce_max`` skip NaN on CPU, while every comparison with NaN is False.

What happens to a bad batch depends on where it runs:

* eager (any backend, also Keras ``run_eagerly=True``): a `ValueError` that names the
  argument, what was expected, the observed min and max (and the distinct values when there
  are few), and a remedy where there is one;
* a TensorFlow graph (``tf.function``, Keras ``fit`` with ``jit_compile=False``): an
  assertion that raises ``tf.errors.InvalidArgumentError`` with the same text, followed by
  the observed min, max and number of non-finite values of the batch (computed only then);
* XLA (``jit_compile=True``, Keras' default on a GPU) and inside a JAX ``jit``: nothing can
  raise (XLA compiles ``tf.debugging.Assert`` to nothing; a JAX tracer has no value). The
  callers therefore pass their result through `nan_unless`, so a bad batch gives a NaN loss
  or metric, never a finite wrong number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from kerasseg.utils.dense import multiclass_labels

__all__ = [
    "PROBABILITY_TOLERANCE",
    "check_dense_values",
    "check_finite",
    "check_range",
    "nan_unless",
    "runtime_check",
]

#: Slack allowed around [0, 1] for probabilities (rounding of a sigmoid/softmax).
PROBABILITY_TOLERANCE = 1e-6

#: Distinct values listed in an eager error message at most.
_MAX_LISTED_VALUES = 8

_HALF_PRECISION = ("float16", "bfloat16")

_MASK_REMEDY = (
    "Masks stored as 0/255 must be mapped to 0/1 first: pass `mask_values={0: 0, 255: 1}` "
    "to `kerasseg.data.SegmentationFolder`, or divide the masks by 255."
)
_SWITCH_OFF = "(`check_values=False` turns this check off.)"


def runtime_check(
    condition: Any,
    message: str,
    eager_details: Callable[[], str] | None = None,
    graph_details: Callable[[], Sequence[Any]] | None = None,
) -> None:
    """Raises `message` when the boolean scalar `condition` is False at run time.

    Args:
        condition: A boolean scalar tensor (or Python bool).
        message: The error text.
        eager_details: Called only when an eager check fails; its text follows `message`.
        graph_details: Called only inside the failing branch of a TensorFlow graph; the
            strings/tensors it returns are printed after `message` by the assertion.

    Raises:
        ValueError: eagerly (any backend) when `condition` is False.
        tf.errors.InvalidArgumentError: at run time of a TensorFlow graph (not under XLA).

    Under XLA or inside a JAX ``jit`` nothing is checked: callers that must not return a
    wrong finite value combine this with `nan_unless`.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            condition = tf.convert_to_tensor(condition, dtype=tf.bool)

            def fail() -> Any:
                data = [message, *(graph_details() if graph_details else ())]
                with tf.control_dependencies([tf.debugging.Assert(condition, data)]):
                    return tf.constant(False)

            # The details (reductions) are computed in the failing branch only.
            tf.cond(condition, lambda: tf.constant(True), fail)
            return
    try:
        value = bool(ops.convert_to_numpy(condition))
    except Exception:  # a JAX tracer: no value to check
        return
    if not value:
        details = eager_details() if eager_details else ""
        raise ValueError(f"{message}{details}")


def nan_unless(ok: Any, value: Any) -> Any:
    """`value` where the scalar `ok` is True, else NaN of its shape and dtype.

    Args:
        ok: Boolean scalar from `check_range`/`check_finite`, or None (no check: `value`).
        value: A float tensor of any shape.

    Returns:
        `value`, or NaN everywhere. The gradient is `value`'s where `ok`, else 0.
    """
    if ok is None:
        return value
    value = ops.convert_to_tensor(value)
    return ops.where(ok, value, ops.full_like(value, math.nan))


def _as_float(x: Any) -> Any:
    """`x` as a float tensor of at least single precision (half precision is widened)."""
    x = ops.convert_to_tensor(x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype in _HALF_PRECISION or not dtype.startswith("float"):
        return ops.cast(x, "float32")
    return x


def _number(value: float) -> str:
    return f"{value:.6g}"


def _describe_eager(x: Any, exempt: float | None) -> tuple[str, float | None]:
    """`(text, finite max)` describing the values of `x` other than `exempt`."""
    values = np.asarray(ops.convert_to_numpy(x), dtype="float64").ravel()
    if exempt is not None:
        values = values[values != exempt]
    finite = values[np.isfinite(values)]
    parts = []
    if finite.size:
        parts.append(f"min {_number(finite.min())}, max {_number(finite.max())}")
        distinct = np.unique(finite)
        if distinct.size <= _MAX_LISTED_VALUES:
            parts.append("values seen: {" + ", ".join(_number(v) for v in distinct) + "}")
    nans, infs = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    if nans or infs:
        bad = [f"{nans} NaN"] * bool(nans) + [f"{infs} infinite"] * bool(infs)
        parts.append(f"{' and '.join(bad)} of {values.size} values")
    top = float(finite.max()) if finite.size else None
    return "; ".join(parts), top


def _graph_details(x: Any, exempt: float | None) -> list[Any]:
    """Assertion data: the observed min, max and non-finite count of `x` (not `exempt`)."""
    import tensorflow as tf

    # Static shapes only (no boolean_mask): the branch is compiled under XLA too.
    counted = tf.ones_like(x, dtype=tf.bool) if exempt is None else tf.not_equal(x, exempt)
    finite = tf.logical_and(counted, tf.math.is_finite(x))
    nonfinite = tf.logical_and(counted, tf.logical_not(finite))
    return [
        "observed min:",
        tf.reduce_min(tf.where(finite, x, tf.constant(math.inf, x.dtype))),
        "max:",
        tf.reduce_max(tf.where(finite, x, tf.constant(-math.inf, x.dtype))),
        "non-finite values (NaN, inf):",
        tf.reduce_sum(tf.cast(nonfinite, tf.int32)),
    ]


def check_range(
    x: Any,
    lower: float,
    upper: float,
    message: str,
    *,
    exempt: float | None = None,
    remedy_above: float | None = None,
    remedy: str = "",
) -> Any:
    """Checks that every value of `x` is in [`lower`, `upper`] or equal to `exempt`.

    Args:
        x: Tensor of any shape and numeric dtype (half precision is compared in float32).
        lower: Smallest allowed value.
        upper: Largest allowed value.
        message: What was expected, e.g. "`y_true` must hold values in [0, 1]".
        exempt: A value that is always allowed (an `ignore_index`), or None.
        remedy_above: When the largest (finite, non-exempt) value exceeds it, `remedy` is
            added to the eager message. The graph message always carries `remedy`.
        remedy: Advice for the user ("" for none).

    Returns:
        A boolean scalar tensor, True when every value is allowed. NaN and inf fail.

    Raises:
        ValueError / tf.errors.InvalidArgumentError: see `runtime_check`.
    """
    x = _as_float(x)
    inside = ops.logical_and(ops.greater_equal(x, lower), ops.less_equal(x, upper))
    if exempt is not None:
        inside = ops.logical_or(inside, ops.equal(x, exempt))
    ok = ops.all(inside)

    def eager_details() -> str:
        text, top = _describe_eager(x, exempt)
        above = remedy_above is not None and top is not None and top > remedy_above
        advice = remedy if remedy and above else ""
        return f"; got {text}. " + (f"{advice} " if advice else "") + _SWITCH_OFF

    def graph_details() -> list[Any]:
        tail = [remedy] if remedy else []
        return [*_graph_details(x, exempt), *tail, _SWITCH_OFF]

    runtime_check(ok, message, eager_details, graph_details)
    return ok


def check_finite(x: Any, message: str) -> Any:
    """Checks that `x` holds no NaN or inf; returns the boolean scalar (see `check_range`)."""
    x = _as_float(x)
    ok = ops.all(ops.isfinite(x))

    def eager_details() -> str:
        return f"; got {_describe_eager(x, None)[0]}. {_SWITCH_OFF}"

    def graph_details() -> list[Any]:
        return [*_graph_details(x, None), _SWITCH_OFF]

    runtime_check(ok, message, eager_details, graph_details)
    return ok


def check_dense_values(
    y_true: Any,
    y_pred: Any,
    *,
    mode: str,
    from_logits: bool,
    ignore_index: int | None,
    owner: str,
) -> Any:
    """The value checks of a dense loss or metric; returns one boolean scalar for both inputs.

    Args:
        y_true: Targets in a layout of `kerasseg.utils.dense` (shapes already checked).
        y_pred: The standardized prediction, (B, ..., C).
        mode: "binary", "multilabel" or "multiclass".
        from_logits: Whether `y_pred` holds logits (then it must be finite) rather than
            probabilities (then in [0, 1] up to `PROBABILITY_TOLERANCE`).
        ignore_index: Target value that is always allowed (unlabelled pixels), or None.
        owner: Who checks, for the messages, e.g. "Dice loss (mode='binary')".

    Returns:
        A boolean scalar tensor: True when both inputs are valid.

    Raises:
        ValueError / tf.errors.InvalidArgumentError: see `runtime_check`.
    """
    num_classes = y_pred.shape[-1]
    y_true = ops.convert_to_tensor(y_true)
    ignored = "" if ignore_index is None else f" or ignore_index={ignore_index}"
    labels = multiclass_labels(y_true, y_pred) if mode == "multiclass" else None
    if mode != "multiclass":
        ok_true = check_range(
            y_true,
            0.0,
            1.0,
            f"{owner}: `y_true` must hold values in [0, 1] (soft labels allowed){ignored}",
            exempt=ignore_index,
            remedy_above=1.0,
            remedy=_MASK_REMEDY,
        )
    elif labels is None:
        # Unlabelled pixels of one-hot targets are all-zero rows: no exempt value.
        ok_true = check_range(
            y_true,
            0.0,
            1.0,
            f"{owner}: one-hot `y_true` (B, H, W, {num_classes}) must hold values in [0, 1]",
        )
    else:
        top = math.inf if num_classes is None else num_classes - 1
        classes = "" if num_classes is None else f" [0, {num_classes})"
        ok_true = check_range(
            labels,
            0.0,
            top,
            f"{owner}: `y_true` must hold class ids in{classes} (one per channel of "
            f"`y_pred`){ignored}",
            exempt=ignore_index,
        )
    if from_logits:
        ok_pred = check_finite(
            y_pred, f"{owner}: `y_pred` must hold finite logits (from_logits=True)"
        )
    else:
        ok_pred = check_range(
            y_pred,
            -PROBABILITY_TOLERANCE,
            1.0 + PROBABILITY_TOLERANCE,
            f"{owner}: `y_pred` must hold probabilities in [0, 1] (from_logits=False); for "
            "logits pass from_logits=True",
        )
    return ops.logical_and(ok_true, ok_pred)
