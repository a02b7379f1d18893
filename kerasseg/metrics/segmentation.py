r"""Streaming segmentation metrics: Dice, Jaccard (IoU) and the cosine (Ochiai) coefficient.

Each metric accumulates, over the whole evaluation, the per-class counts of true positives (TP),
false positives (FP), false negatives (FN) and true negatives (TN), and computes its score from
the totals. The result is therefore a data-set-level number — the same value as computing the
score on all predictions concatenated — not a mean of per-batch scores.

Scores, for one class (or, with `average="micro"`, for the counts summed over classes):

$$
\text{Dice} = \frac{2\,TP}{2\,TP + FP + FN}, \qquad
\text{Jaccard} = \frac{TP}{TP + FP + FN}, \qquad
\text{Cosine} = \frac{TP}{\sqrt{(TP + FP)(TP + FN)}}.
$$

Averaging (the same names as `segmentation_models_pytorch.metrics`):

| arguments | smp `reduction` | result |
|---|---|---|
| `average="micro"` | `"micro"` | score of the counts summed over images, classes |
| `average="macro"` | `"macro"` | class mean of class scores (counts summed over images) |
| `average=None` | — | the class scores of `"macro"`, shape (C,) |
| `average="micro", per_image=True` | `"micro-imagewise"` | mean over images of their micro score |
| `average="macro", per_image=True` | `"macro-imagewise"` | mean over images, then classes |
| `average=None, per_image=True` | `None`, mean over images | per class: mean over images, (C,) |

**Empty classes.** When a class is absent from both the target and the prediction
(TP + FP + FN = 0) its score is 0/0; it is then `zero_division` (default 1.0, the default of
smp's `iou_score`/`f1_score`: predicting nothing where there is nothing is right). Unlike smp,
the same rule also applies to `average="micro"` (smp returns NaN there). For the cosine score a
zero denominator with TP + FP + FN > 0 (one of the two sets is empty, the other is not) gives 0.

Counting is exact: per-batch counts are integer sums and the state is float64, exact to
$2^{53}$ pixels (float32 counters would stop counting single pixels after $2^{24}$ ≈ 16.7 M).

**Value checks** (`check_values=True`, the default): every batch must have binary/multilabel
targets in [0, 1] or `ignore_index`, multiclass class ids in [0, C) or `ignore_index`, and
probabilities in [0, 1] (`from_logits=False`) or finite logits. A bad batch raises a ValueError
eagerly and an InvalidArgumentError in a TensorFlow graph; under XLA (or a JAX `jit`), where
nothing can raise, it makes the counts NaN, and the result stays NaN until `reset_state`: a
metric never reports a finite score for NaN predictions or 0/255 masks.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from kerasseg.metrics import _confusion
from kerasseg.utils import dense

AVERAGES = ("micro", "macro", None)

__all__ = ["ConfusionMetric", "Cosine", "Dice", "Jaccard"]


def _safe_ratio(numerator: Any, denominator: Any, empty: Any, zero_division: float) -> Any:
    """numerator / denominator; `zero_division` where `empty`, 0 for other zero denominators."""
    positive = ops.greater(denominator, 0.0)
    ratio = numerator / ops.where(positive, denominator, ops.ones_like(denominator))
    ratio = ops.where(positive, ratio, ops.zeros_like(ratio))
    ratio = ops.where(empty, ops.cast(zero_division, ratio.dtype), ratio)
    # NaN counts (a batch that failed a value check under XLA) give NaN, not 0.
    unknown = ops.logical_or(ops.isnan(numerator), ops.isnan(denominator))
    return ops.where(unknown, ops.full_like(ratio, float("nan")), ratio)


class ConfusionMetric(keras.metrics.Metric):
    """Base class: accumulates per-class TP/FP/FN/TN and scores them with `score_from_counts`.

    Subclasses implement `ratio(tp, fp, fn, tn) -> (numerator, denominator)` on float64
    tensors of any (equal) shape; this class handles streaming, averaging and 0/0.

    Args:
        mode: "binary" (one sigmoid channel), "multiclass" (softmax over C channels; the
            prediction is the argmax) or "multilabel" (C independent sigmoid channels). Target
            layouts are those of `kerasseg.utils.dense`: binary/multilabel targets have the
            prediction's shape with values in {0, 1} (soft values in [0, 1] are positive above
            0.5); multiclass targets are class ids (B, H, W) / (B, H, W, 1) or one-hot
            (B, H, W, C). Any integer or float dtype.
        num_classes: C, the number of prediction channels. Must be 1 (or None) for binary;
            required for multiclass (>= 2) and multilabel (>= 1), because the state is per class.
        threshold: Binary/multilabel only: a pixel is predicted positive where its probability
            is >= `threshold`. Defaults to 0.5. Not accepted for multiclass (argmax).
        from_logits: Whether `y_pred` holds logits (a sigmoid is applied before thresholding).
            kerasseg models output probabilities, hence the default False.
        average: "micro", "macro" or None (per-class vector). See the module docstring.
        per_image: Score each image separately and average the image scores (smp's
            "...-imagewise" reductions).
        ignore_index: Target value that marks unlabelled pixels (multilabel: entries); they count
            as neither positive nor negative, for any class. Must not be a valid label (not in
            0..C-1 for multiclass, not 0 or 1 for binary/multilabel), e.g. 255 or -1.
        class_ids: Optional subset (and order) of the classes to report and average over, e.g.
            `class_ids=[1, 2]` to leave background class 0 out of the mean. Pixels of the other
            classes still count (as false positives/negatives of the kept classes).
        zero_division: Score of a class absent from target and prediction (0/0). Default 1.0.
        check_values: Check the values of every batch (default True): targets as above (soft
            binary/multilabel targets in [0, 1] are allowed and thresholded at 0.5), class ids
            in [0, C) or `ignore_index`, `y_pred` probabilities in [0, 1] (`from_logits=False`)
            or finite logits. A bad batch raises a ValueError eagerly and an
            InvalidArgumentError in a TensorFlow graph (naming the argument and the observed
            min/max); under XLA or a JAX `jit` it turns the result into NaN instead.
        name: Metric name.
        dtype: Dtype of the result (the counts are always float64).

    `update_state(y_true, y_pred, sample_weight=None)` accepts `sample_weight` of shape (B,)
    (per image), (B, H, W) or (B, H, W, 1) (per pixel), or the shape of `y_pred`; counts are
    then weighted sums (an integer weight k counts a pixel k times). With `per_image=True` each
    image's score is weighted by the mean of its weights (a (B,) weight is the image's weight).
    """

    def __init__(
        self,
        mode: str = "binary",
        num_classes: int | None = None,
        *,
        threshold: float | None = None,
        from_logits: bool = False,
        average: str | None = "macro",
        per_image: bool = False,
        ignore_index: int | None = None,
        class_ids: Sequence[int] | None = None,
        zero_division: float = 1.0,
        check_values: bool = True,
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        self.mode = dense.check_mode(mode)
        self.num_classes = self._check_num_classes(mode, num_classes)
        if threshold is not None and mode == "multiclass":
            raise ValueError(
                "`threshold` applies to mode='binary' and mode='multilabel' only; "
                f"mode='multiclass' takes the argmax over classes. Got threshold={threshold!r}."
            )
        if threshold is not None and (
            not isinstance(threshold, numbers.Real) or not 0.0 <= float(threshold) <= 1.0
        ):
            raise ValueError(f"`threshold` must be a probability in [0, 1]; got {threshold!r}.")
        self.threshold = None if threshold is None else float(threshold)
        self.from_logits = bool(from_logits)
        if average not in AVERAGES:
            raise ValueError(f"`average` must be one of {AVERAGES}; got {average!r}.")
        self.average = average
        self.per_image = bool(per_image)
        self.ignore_index = self._check_ignore_index(mode, self.num_classes, ignore_index)
        self.class_ids = self._check_class_ids(self.num_classes, class_ids)
        if isinstance(zero_division, bool) or not isinstance(zero_division, numbers.Real):
            raise ValueError(
                "`zero_division` must be a number (the score of a class that is absent from both "
                f"target and prediction), e.g. 1.0 or 0.0; got {zero_division!r}. (smp's 'warn' "
                "is zero_division=0.0 without the warning.)"
            )
        self.zero_division = float(zero_division)
        self.check_values = bool(check_values)

        size = self.num_classes if self.class_ids is None else len(self.class_ids)
        self.true_positives = self._counter((size,), "true_positives")
        self.false_positives = self._counter((size,), "false_positives")
        self.false_negatives = self._counter((size,), "false_negatives")
        self.true_negatives = self._counter((size,), "true_negatives")
        if self.per_image:
            score_shape = () if self.average == "micro" else (size,)
            self.image_score_sum = self._counter(score_shape, "image_score_sum")
            self.image_count = self._counter((), "image_count")

    def _counter(self, shape: tuple, name: str) -> Any:
        return self.add_variable(shape=shape, initializer="zeros", dtype="float64", name=name)

    @staticmethod
    def _check_num_classes(mode: str, num_classes: int | None) -> int:
        if mode == "binary":
            if num_classes not in (None, 1):
                raise ValueError(
                    "mode='binary' has one channel, so `num_classes` must be 1 or None; got "
                    f"num_classes={num_classes!r}. For several channels use mode='multilabel' or "
                    "mode='multiclass'."
                )
            return 1
        minimum = 2 if mode == "multiclass" else 1
        if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
            raise ValueError(
                f"mode={mode!r} needs `num_classes` (the number of prediction channels, an int "
                f">= {minimum}); got num_classes={num_classes!r}."
            )
        if num_classes < minimum:
            raise ValueError(
                f"mode={mode!r} needs `num_classes` >= {minimum}; got num_classes={num_classes}."
            )
        return int(num_classes)

    @staticmethod
    def _check_ignore_index(mode: str, num_classes: int, ignore_index: int | None) -> int | None:
        if ignore_index is None:
            return None
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise ValueError(f"`ignore_index` must be an int or None; got {ignore_index!r}.")
        labels = range(num_classes) if mode == "multiclass" else range(2)
        if ignore_index in labels:
            raise ValueError(
                f"`ignore_index` must not be a valid target value (0..{labels[-1]} for "
                f"mode={mode!r}); got ignore_index={ignore_index}. Use a value outside the labels, "
                "such as 255 or -1 (to leave a class out of the average use `class_ids`)."
            )
        return int(ignore_index)

    @staticmethod
    def _check_class_ids(num_classes: int, class_ids: Sequence[int] | None) -> list[int] | None:
        if class_ids is None:
            return None
        ids = list(class_ids)
        if (
            not ids
            or any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in ids)
            or any(not 0 <= i < num_classes for i in ids)
            or len(set(ids)) != len(ids)
        ):
            raise ValueError(
                "`class_ids` must be a non-empty list of distinct class ids in "
                f"0..{num_classes - 1}; got {class_ids!r}."
            )
        return [int(i) for i in ids]

    def ratio(self, tp: Any, fp: Any, fn: Any, tn: Any) -> tuple[Any, Any]:
        """The score as `(numerator, denominator)` of float64 counts (abstract)."""
        raise NotImplementedError(f"{type(self).__name__} must implement `ratio`.")

    def score_from_counts(self, tp: Any, fp: Any, fn: Any, tn: Any) -> Any:
        """The score of float64 counts of any (equal) shape, with the 0/0 convention applied:
        `zero_division` where TP + FP + FN = 0, and 0 for any other zero denominator."""
        numerator, denominator = self.ratio(tp, fp, fn, tn)
        empty = ops.equal(tp + fp + fn, 0.0)
        return _safe_ratio(numerator, denominator, empty, self.zero_division)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Adds one batch to the counts.

        Args:
            y_true: Targets (see the class docstring), any integer or float dtype.
            y_pred: Probabilities (or logits with `from_logits=True`), (B, H, W, C); (B, H, W)
                is accepted for binary. float16 (mixed precision) is fine.
            sample_weight: Optional weights, (B,), (B, H, W), (B, H, W, 1) or `y_pred`'s shape.
        """
        tp, fp, fn, tn, image_weight = _confusion.confusion_counts(
            y_true,
            y_pred,
            mode=self.mode,
            num_classes=self.num_classes,
            threshold=0.5 if self.threshold is None else self.threshold,
            from_logits=self.from_logits,
            ignore_index=self.ignore_index,
            sample_weight=sample_weight,
            check_values=self.check_values,
            owner=f"{type(self).__name__} metric {self.name!r} (mode={self.mode!r})",
        )
        if self.class_ids is not None:
            tp, fp, fn, tn = (ops.take(x, self.class_ids, axis=-1) for x in (tp, fp, fn, tn))
        self.true_positives.assign_add(ops.sum(tp, axis=0))
        self.false_positives.assign_add(ops.sum(fp, axis=0))
        self.false_negatives.assign_add(ops.sum(fn, axis=0))
        self.true_negatives.assign_add(ops.sum(tn, axis=0))
        if self.per_image:
            if self.average == "micro":
                tp, fp, fn, tn = (ops.sum(x, axis=-1, keepdims=True) for x in (tp, fp, fn, tn))
            scores = self.score_from_counts(tp, fp, fn, tn) * ops.expand_dims(image_weight, -1)
            if self.average == "micro":
                scores = scores[:, 0]
            self.image_score_sum.assign_add(ops.sum(scores, axis=0))
            self.image_count.assign_add(ops.sum(image_weight))

    def result(self) -> Any:
        """The score: a scalar, or (C,) per class (or per `class_ids`) for `average=None`."""
        if self.per_image:
            count = self.image_count
            mean = self.image_score_sum / ops.where(count > 0, count, ops.ones_like(count))
            scores = ops.where(count > 0, mean, ops.cast(self.zero_division, "float64"))
            if self.average == "macro":
                scores = ops.mean(scores)
        else:
            counts = (
                self.true_positives,
                self.false_positives,
                self.false_negatives,
                self.true_negatives,
            )
            if self.average == "micro":
                counts = tuple(ops.sum(x) for x in counts)
            scores = self.score_from_counts(*counts)
            if self.average == "macro":
                scores = ops.mean(scores)
        return ops.cast(scores, self.dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            mode=self.mode,
            num_classes=self.num_classes,
            threshold=self.threshold,
            from_logits=self.from_logits,
            average=self.average,
            per_image=self.per_image,
            ignore_index=self.ignore_index,
            class_ids=self.class_ids,
            zero_division=self.zero_division,
            check_values=self.check_values,
        )
        return config


@keras.saving.register_keras_serializable(package="kerasseg")
class Dice(ConfusionMetric):
    r"""Streaming Dice coefficient (F1 score): $2\,TP / (2\,TP + FP + FN)$, in [0, 1].

    Same arguments as `ConfusionMetric`. Equals smp's `f1_score` with the corresponding
    reduction (see the module docstring).

    Example:
        ```python
        model.compile(
            optimizer="adam",
            loss="sparse_categorical_crossentropy",
            metrics=[kerasseg.metrics.Dice("multiclass", num_classes=3, ignore_index=255)],
        )
        ```
    """

    def __init__(self, mode: str = "binary", num_classes: int | None = None, **kwargs: Any):
        kwargs.setdefault("name", "dice")
        super().__init__(mode, num_classes, **kwargs)

    def ratio(self, tp: Any, fp: Any, fn: Any, tn: Any) -> tuple[Any, Any]:
        return 2.0 * tp, 2.0 * tp + fp + fn


@keras.saving.register_keras_serializable(package="kerasseg")
class Jaccard(ConfusionMetric):
    r"""Streaming Jaccard index (intersection over union): $TP / (TP + FP + FN)$, in [0, 1].

    Same arguments as `ConfusionMetric`. Equals smp's `iou_score` with the corresponding
    reduction; `Jaccard("multiclass", num_classes=C)` (macro) is the usual mean IoU.
    """

    def __init__(self, mode: str = "binary", num_classes: int | None = None, **kwargs: Any):
        kwargs.setdefault("name", "jaccard")
        super().__init__(mode, num_classes, **kwargs)

    def ratio(self, tp: Any, fp: Any, fn: Any, tn: Any) -> tuple[Any, Any]:
        return tp, tp + fp + fn


@keras.saving.register_keras_serializable(package="kerasseg")
class Cosine(ConfusionMetric):
    r"""Streaming cosine (Ochiai) coefficient: $TP / \sqrt{(TP + FP)(TP + FN)}$, in [0, 1].

    The cosine of the angle between the binary prediction and target vectors, i.e. the
    geometric mean of precision and recall. Same arguments as `ConfusionMetric`. A class that
    is absent from both scores `zero_division`; one absent from only one of the two scores 0.
    """

    def __init__(self, mode: str = "binary", num_classes: int | None = None, **kwargs: Any):
        kwargs.setdefault("name", "cosine")
        super().__init__(mode, num_classes, **kwargs)

    def ratio(self, tp: Any, fp: Any, fn: Any, tn: Any) -> tuple[Any, Any]:
        return tp, ops.sqrt((tp + fp) * (tp + fn))
