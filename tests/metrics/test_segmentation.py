"""Streaming segmentation metrics: hand-worked values, exact counting, arguments, Keras use."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasseg
from kerasseg.metrics import Cosine, Dice, Jaccard

# --------------------------------------------------------------------------------------------
# Hand-worked examples
# --------------------------------------------------------------------------------------------

# Binary, one image of 1 x 6 pixels:
#   y_true      1    1    1    0    0    0
#   y_pred    0.9  0.8  0.2  0.7  0.6  0.3   -> >= 0.5:  1 1 0 1 1 0
#   TP = 2 (pixels 0, 1), FN = 1 (pixel 2), FP = 2 (pixels 3, 4), TN = 1 (pixel 5)
#   Dice = 2*2 / (2*2 + 2 + 1) = 4/7;  Jaccard = 2 / (2 + 2 + 1) = 2/5
#   Cosine = 2 / sqrt((2 + 2) * (2 + 1)) = 2 / sqrt(12) = 1/sqrt(3)
BINARY_TRUE = np.array([1, 1, 1, 0, 0, 0], "uint8").reshape(1, 1, 6, 1)
BINARY_PRED = np.array([0.9, 0.8, 0.2, 0.7, 0.6, 0.3], "float32").reshape(1, 1, 6, 1)
BINARY_EXPECTED = {Dice: 4 / 7, Jaccard: 2 / 5, Cosine: 1 / math.sqrt(3)}

# Multiclass, 3 classes, two images of 1 x 3 pixels (class 2 appears nowhere):
#   image A: y_true 0 0 1, argmax(y_pred) 0 1 1
#   image B: y_true 1 1 0, argmax(y_pred) 1 0 1
#   class 0: TP = 1 (A0); FP = 1 (B1); FN = 2 (A1, B2); TN = 2 (A2, B0)
#   class 1: TP = 2 (A2, B0); FP = 2 (A1, B2); FN = 1 (B1); TN = 1 (A0)
#   class 2: TP = FP = FN = 0 (empty: score = zero_division = 1); TN = 6
#   micro (summed over classes): TP = 3, FP = 3, FN = 3
#   Dice    per class 2/5, 4/7, 1   macro (2/5 + 4/7 + 1)/3 = 23/35   micro 6/12 = 1/2
#   Jaccard per class 1/4, 2/5, 1   macro (1/4 + 2/5 + 1)/3 = 11/20   micro 3/9 = 1/3
#   Cosine  per class 1/sqrt(2*3), 2/sqrt(4*3), 1                     micro 3/sqrt(6*6) = 1/2
MULTI_TRUE = np.array([[[0, 0, 1]], [[1, 1, 0]]], "int32")  # (2, 1, 3)
MULTI_IDS = np.array([[[0, 1, 1]], [[1, 0, 1]]])
MULTI_PRED = np.where(np.eye(3, dtype=bool)[MULTI_IDS], 0.7, 0.15).astype("float32")
MULTI_PER_CLASS = {
    Dice: [2 / 5, 4 / 7, 1.0],
    Jaccard: [1 / 4, 2 / 5, 1.0],
    Cosine: [1 / math.sqrt(6), 1 / math.sqrt(3), 1.0],
}
MULTI_MICRO = {Dice: 1 / 2, Jaccard: 1 / 3, Cosine: 1 / 2}


def result(metric, *batches, **kwargs):
    metric.reset_state()
    for y_true, y_pred in batches:
        metric.update_state(y_true, y_pred, **kwargs)
    return np.asarray(metric.result())


@pytest.mark.parametrize("cls", [Dice, Jaccard, Cosine])
def test_binary_hand_worked(cls):
    metric = cls()
    assert result(metric, (BINARY_TRUE, BINARY_PRED)) == pytest.approx(BINARY_EXPECTED[cls])
    counts = [metric.true_positives, metric.false_positives, metric.false_negatives]
    assert [float(c[0]) for c in counts] == [2, 2, 1]
    assert float(metric.true_negatives[0]) == 1
    # A (B, H, W) prediction without channel axis and a (B, H, W) target give the same.
    assert result(cls(), (BINARY_TRUE[..., 0], BINARY_PRED[..., 0])) == pytest.approx(
        BINARY_EXPECTED[cls]
    )


@pytest.mark.parametrize("cls", [Dice, Jaccard, Cosine])
def test_multiclass_hand_worked(cls):
    # Streamed one image at a time: the counts add up over the batches.
    batches = [(MULTI_TRUE[:1], MULTI_PRED[:1]), (MULTI_TRUE[1:], MULTI_PRED[1:])]
    per_class = result(cls("multiclass", 3, average=None), *batches)
    np.testing.assert_allclose(per_class, MULTI_PER_CLASS[cls], rtol=1e-6)
    macro = result(cls("multiclass", 3), *batches)
    assert macro == pytest.approx(np.mean(MULTI_PER_CLASS[cls]), rel=1e-6)
    micro = result(cls("multiclass", 3, average="micro"), *batches)
    assert micro == pytest.approx(MULTI_MICRO[cls], rel=1e-6)
    # The empty class scores `zero_division`.
    zero = result(cls("multiclass", 3, average=None, zero_division=0.0), *batches)
    np.testing.assert_allclose(zero, MULTI_PER_CLASS[cls][:2] + [0.0], rtol=1e-6)
    # One-hot targets are the same targets.
    one_hot = np.eye(3, dtype="float32")[MULTI_TRUE]
    assert result(cls("multiclass", 3), (one_hot, MULTI_PRED)) == pytest.approx(macro)
    # Leaving the empty class out of the mean.
    kept = result(cls("multiclass", 3, class_ids=[0, 1]), *batches)
    assert kept == pytest.approx(np.mean(MULTI_PER_CLASS[cls][:2]), rel=1e-6)


def test_dataset_level_not_mean_of_batches():
    # Jaccard micro per image: A has TP 2, FP 1, FN 1 -> 2/4; B has TP 1, FP 2, FN 2 -> 1/5.
    # Streamed, the totals give 3/9 = 1/3, not the batch mean 0.35; per_image gives 0.35.
    batches = [(MULTI_TRUE[:1], MULTI_PRED[:1]), (MULTI_TRUE[1:], MULTI_PRED[1:])]
    assert result(Jaccard("multiclass", 3, average="micro"), *batches) == pytest.approx(1 / 3)
    imagewise = Jaccard("multiclass", 3, average="micro", per_image=True)
    assert result(imagewise, (MULTI_TRUE, MULTI_PRED)) == pytest.approx(0.35)
    # macro per image: A per class 1/2, 1/2, 1; B 0, 1/3, 1 -> class means 1/4, 5/12, 1 -> 5/9.
    imagewise = Jaccard("multiclass", 3, per_image=True)
    assert result(imagewise, *batches) == pytest.approx(5 / 9)
    per_class = Jaccard("multiclass", 3, per_image=True, average=None)
    np.testing.assert_allclose(result(per_class, *batches), [1 / 4, 5 / 12, 1.0], rtol=1e-6)


def test_cosine_one_sided_empty_is_zero_and_fully_empty_is_zero_division():
    empty_pred = np.zeros((1, 2, 2, 1), "float32")
    some_true = np.array([1, 0, 0, 0], "uint8").reshape(1, 2, 2, 1)
    # TP = 0, FP = 0, FN = 1: denominator sqrt(0 * 1) = 0 but the class is not empty -> 0.
    assert result(Cosine(), (some_true, empty_pred)) == 0.0
    # TP = FP = FN = 0 -> zero_division.
    assert result(Cosine(), (np.zeros_like(some_true), empty_pred)) == 1.0
    assert result(Cosine(zero_division=0.0), (np.zeros_like(some_true), empty_pred)) == 0.0
    # Before any update: zero_division as well.
    assert float(Dice().result()) == 1.0
    assert float(Dice(per_image=True).result()) == 1.0


def test_multilabel_channels_are_independent():
    # Channel 0: y_true 1 1 0 0, pred 1 0 0 0 -> TP 1, FN 1 -> Jaccard 1/2
    # Channel 1: y_true 0 0 1 1, pred 1 1 1 1 -> TP 2, FP 2 -> Jaccard 2/4
    # Both channels of a pixel may be positive (unlike multiclass).
    y_true = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], "float32").reshape(1, 2, 2, 2)
    y_pred = np.array([[0.9, 0.6], [0.1, 0.8], [0.2, 0.7], [0.4, 0.9]], "float32")
    y_pred = y_pred.reshape(1, 2, 2, 2)
    per_class = result(Jaccard("multilabel", 2, average=None), (y_true, y_pred))
    np.testing.assert_allclose(per_class, [1 / 2, 1 / 2])
    # micro: TP 3, FP 2, FN 1 -> 3/6.
    assert result(Jaccard("multilabel", 2, average="micro"), (y_true, y_pred)) == 0.5


# --------------------------------------------------------------------------------------------
# Threshold, logits, ignore_index
# --------------------------------------------------------------------------------------------


def test_threshold_is_inclusive_and_configurable():
    metric = Dice(threshold=0.7)
    result(metric, (BINARY_TRUE, BINARY_PRED))
    # >= 0.7: pixels 0, 1, 3 (0.7 itself counts, as in smp) -> TP 2, FP 1, FN 1.
    counts = [metric.true_positives, metric.false_positives, metric.false_negatives]
    assert [float(c[0]) for c in counts] == [2, 1, 1]
    assert float(metric.result()) == pytest.approx(4 / 6)


def test_from_logits_applies_a_sigmoid():
    logits = np.log(BINARY_PRED / (1 - BINARY_PRED))
    assert result(Cosine(from_logits=True), (BINARY_TRUE, logits)) == pytest.approx(
        BINARY_EXPECTED[Cosine], rel=1e-6
    )
    # Read as probabilities instead, logits 2.20 1.39 -1.39 0.85 0.41 -0.85 are >= 0.5 at
    # pixels 0, 1, 3 -> TP 2, FP 1, FN 1 -> Dice 4/6: a different result. The value check
    # refuses them; without it the wrong number comes back.
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*from_logits=True"):
        result(Dice(), (BINARY_TRUE, logits))
    assert result(Dice(check_values=False), (BINARY_TRUE, logits)) == pytest.approx(4 / 6)
    # Multiclass: argmax of logits == argmax of softmax.
    multi_logits = np.log(MULTI_PRED) * 3.0
    assert result(Dice("multiclass", 3, from_logits=True), (MULTI_TRUE, multi_logits)) == (
        pytest.approx(np.mean(MULTI_PER_CLASS[Dice]), rel=1e-6)
    )


@pytest.mark.parametrize("mode, ignore_index", [("multiclass", 255), ("multiclass", -1)])
def test_ignored_pixels_count_nowhere(mode, ignore_index):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, size=(2, 5, 5)).astype("int32")
    y_pred = rng.random((2, 5, 5, 3)).astype("float32")
    ignored = rng.random((2, 5, 5)) < 0.3
    y_true_ignored = np.where(ignored, ignore_index, y_true)
    kwargs = dict(average=None, ignore_index=ignore_index)
    metric = Jaccard(mode, 3, **kwargs)
    with_ignore = result(metric, (y_true_ignored, y_pred))
    # Reference: only the labelled pixels, as one (1, 1, N) image.
    labelled = Jaccard(mode, 3, **kwargs)
    reference = result(labelled, (y_true[~ignored][None, None], y_pred[~ignored][None, None]))
    np.testing.assert_allclose(with_ignore, reference, rtol=1e-7)
    totals = sum(np.asarray(v) for v in metric.variables)
    assert np.all(totals == (~ignored).sum())  # TP + FP + FN + TN per class
    # Without ignore_index the 255s are not class ids: the value check refuses them (unchecked
    # they would be pixels of no class, a different score).
    if ignore_index == 255:
        with pytest.raises(
            ValueError, match=r"class ids in \[0, 3\).*values seen: \{0, 1, 2, 255\}"
        ):
            result(Jaccard(mode, 3, average=None), (y_true_ignored, y_pred))
        unchecked = Jaccard(mode, 3, average=None, check_values=False)
        assert not np.allclose(result(unchecked, (y_true_ignored, y_pred)), reference)


def test_ignore_index_for_binary_targets():
    y_true = BINARY_TRUE.copy()
    y_true[0, 0, 3] = 255  # pixel 3 was a false positive
    metric = Dice(ignore_index=255)
    # TP 2, FP 1 (pixel 4), FN 1 -> 4/6; TN 1.
    assert result(metric, (y_true, BINARY_PRED)) == pytest.approx(4 / 6)
    assert float(metric.true_negatives[0]) == 1


@pytest.mark.parametrize("mode, channels", [("binary", 1), ("multilabel", 3)])
def test_ignored_entries_match_numpy_counts(mode, channels):
    """Binary and multilabel targets marked 255 (per pixel and channel) count nowhere: the
    four counts per channel equal NumPy's over the labelled entries only."""
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 2, size=(3, 6, 5, channels))
    y_pred = rng.random((3, 6, 5, channels)).astype("float32")
    ignored = rng.random(y_true.shape) < 0.25
    marked = np.where(ignored, 255, y_true).astype("int32")
    metric = Jaccard(
        mode, channels if mode == "multilabel" else None, average=None, ignore_index=255
    )
    scores = np.atleast_1d(result(metric, (marked, y_pred)))

    hard, positive, labelled = y_pred >= 0.5, y_true == 1, ~ignored
    axes = (0, 1, 2)
    expected = {
        "tp": (hard & positive & labelled).sum(axes),
        "fp": (hard & ~positive & labelled).sum(axes),
        "fn": (~hard & positive & labelled).sum(axes),
        "tn": (~hard & ~positive & labelled).sum(axes),
    }
    counted = {
        "tp": metric.true_positives,
        "fp": metric.false_positives,
        "fn": metric.false_negatives,
        "tn": metric.true_negatives,
    }
    for name, value in counted.items():
        np.testing.assert_array_equal(np.asarray(value), expected[name], err_msg=name)
    assert ignored.sum(axes).min() > 0  # every channel has ignored entries
    tp, fp, fn = expected["tp"], expected["fp"], expected["fn"]
    np.testing.assert_allclose(scores, tp / (tp + fp + fn), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Exact counting above 2**24
# --------------------------------------------------------------------------------------------


def test_counts_are_exact_above_2_pow_24():
    # 4097 * 4096 = 16_781_312 pixels > 2**24 = 16_777_216 in a single batch. Pixel 0 is a
    # false positive, pixel 1 a false negative, pixel 2 a true negative, the rest true
    # positives: TP = 16_781_309 is odd, so no float32 can hold it (spacing 2 above 2**24).
    y_pred = np.ones((1, 4097, 4096, 1), "float16")
    y_true = np.ones((1, 4097, 4096, 1), "uint8")
    y_true[0, 0, 0] = 0
    y_pred[0, 0, 1] = 0
    y_true[0, 0, 2] = 0
    y_pred[0, 0, 2] = 0
    metric = Jaccard()
    metric.update_state(y_true, y_pred)
    del y_pred, y_true
    tp = 4097 * 4096 - 3
    assert float(np.float32(tp)) != tp  # the test would catch float32 counters
    assert np.asarray(metric.true_positives)[0] == tp
    assert [float(metric.false_positives[0]), float(metric.false_negatives[0])] == [1, 1]
    assert float(metric.true_negatives[0]) == 1
    # Streaming: two more single true-positive pixels keep it exact (float32 would stick).
    one = np.ones((1, 1, 1, 1), "float32")
    for _ in range(2):
        metric.update_state(one, one)
    assert np.asarray(metric.true_positives)[0] == tp + 2
    assert float(metric.result()) == pytest.approx((tp + 2) / (tp + 4), abs=1e-7)


# --------------------------------------------------------------------------------------------
# Bad arguments and inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="softmax"), "`mode` must be one of"),
        (dict(mode="binary", average="weighted"), "`average` must be one of"),
        (dict(mode="binary", num_classes=2), "`num_classes` must be 1 or None"),
        (dict(mode="multiclass"), "needs `num_classes`"),
        (dict(mode="multiclass", num_classes=1), ">= 2"),
        (dict(mode="multilabel", num_classes=2.5), "needs `num_classes`"),
        (dict(mode="multiclass", num_classes=3, threshold=0.3), "`threshold` applies"),
        (dict(mode="binary", threshold=1.5), "`threshold` must be a probability"),
        (dict(mode="multiclass", num_classes=3, ignore_index=2), "must not be a valid target"),
        (dict(mode="binary", ignore_index=1), "must not be a valid target"),
        (dict(mode="multiclass", num_classes=3, class_ids=[0, 3]), "`class_ids` must be"),
        (dict(mode="multiclass", num_classes=3, class_ids=[1, 1]), "`class_ids` must be"),
        (dict(mode="binary", zero_division="warn"), "`zero_division` must be a number"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Dice(**kwargs)


def test_bad_inputs_raise():
    y_pred = np.random.default_rng(0).random((2, 4, 4, 3)).astype("float32")
    with pytest.raises(ValueError, match="num_classes=4, so `y_pred` must have 4 channel"):
        Dice("multiclass", 4).update_state(np.zeros((2, 4, 4), "int32"), y_pred)
    with pytest.raises(ValueError, match="same batch and spatial positions"):
        Dice("multiclass", 3).update_state(np.zeros((2, 4, 5), "int32"), y_pred)
    with pytest.raises(ValueError, match="same batch and spatial positions"):
        Dice("multilabel", 3).update_state(np.zeros((1, 4, 4, 3), "int32"), y_pred)
    with pytest.raises(ValueError, match="same shape as `y_pred`"):
        Dice("multilabel", 3).update_state(np.zeros((2, 4, 4, 2), "int32"), y_pred)
    with pytest.raises(ValueError, match="mode='binary' expects `y_pred` with one channel"):
        Dice().update_state(np.zeros((2, 4, 4, 3)), y_pred)
    with pytest.raises(
        ValueError,
        match=r"`sample_weight` must have shape \(B,\), \(B, H, W\), \(B, H, W, 1\) or the shape of `y_pred` \(2, 4, 4, 3\); got shape \(2, 3\)\.",
    ):
        Dice("multiclass", 3).update_state(
            np.zeros((2, 4, 4), "int32"), y_pred, sample_weight=np.ones((2, 3))
        )


# --------------------------------------------------------------------------------------------
# In Keras: compile/evaluate/fit (graph mode), mixed precision, serialization
# --------------------------------------------------------------------------------------------


def tiny_model(num_classes: int = 3) -> keras.Model:
    """A fixed 1x1 convolution + softmax: predictions are known through `predict`."""
    inputs = keras.Input((8, 8, 3))
    logits = keras.layers.Conv2D(num_classes, 1, kernel_initializer="glorot_normal")(inputs)
    outputs = keras.layers.Activation("softmax")(logits)
    return keras.Model(inputs, outputs)


def confusion_matrix_miou(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int):
    """Independent reference: per-class IoU from a NumPy confusion matrix."""
    ids = y_pred.argmax(-1).ravel()
    cm = np.bincount(y_true.ravel() * num_classes + ids, minlength=num_classes**2)
    cm = cm.reshape(num_classes, num_classes)
    inter = np.diag(cm).astype("float64")
    union = cm.sum(0) + cm.sum(1) - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def make_dataset(seed: int = 0, n: int = 10, batch: int = 4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, size=(n, 8, 8)).astype("uint8")
    return x, y, tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


@pytest.fixture
def mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    yield
    keras.config.set_dtype_policy("float32")


def _evaluate_matches_concatenated_predictions():
    keras.utils.set_random_seed(1)
    model = tiny_model()
    model.compile(
        loss="sparse_categorical_crossentropy",
        metrics=[Jaccard("multiclass", 3, name="miou"), Jaccard("multiclass", 3, average=None)],
    )
    x, y, dataset = make_dataset()  # 10 images in batches of 4, 4, 2
    logs = model.evaluate(dataset, return_dict=True, verbose=0)
    y_pred = model.predict(x, batch_size=4, verbose=0)
    # No argmax ties, so the reference's argmax is the model's.
    top2 = np.sort(y_pred.astype("float32"), -1)[..., -2:]
    assert np.all(top2[..., 0] < top2[..., 1])
    per_class = confusion_matrix_miou(y, y_pred, 3)
    np.testing.assert_allclose(logs["jaccard"], per_class, atol=1e-6)
    assert logs["miou"] == pytest.approx(per_class.mean(), abs=1e-6)
    return model, y_pred


def test_evaluate_equals_metric_on_concatenated_predictions():
    _evaluate_matches_concatenated_predictions()


def test_evaluate_with_mixed_float16_predictions(mixed_precision):
    _model, y_pred = _evaluate_matches_concatenated_predictions()
    assert y_pred.dtype == np.float16  # the metrics saw float16 predictions


def test_fit_in_graph_mode_and_save_load_round_trip(tmp_path):
    keras.utils.set_random_seed(2)
    model = tiny_model()
    metrics = [
        Dice("multiclass", 3, per_image=True, class_ids=[1, 2], zero_division=0.0),
        Cosine("multiclass", 3, average="micro", ignore_index=255, name="cos"),
    ]
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=metrics)
    _x, _y, dataset = make_dataset(seed=3)
    history = model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    assert 0.0 <= history.history["dice"][0] <= 1.0
    assert 0.0 <= history.history["cos"][0] <= 1.0
    before = model.evaluate(dataset, return_dict=True, verbose=0)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: registered by `import kerasseg`
    after = loaded.evaluate(dataset, return_dict=True, verbose=0)
    assert after["dice"] == pytest.approx(before["dice"], abs=1e-7)
    assert after["cos"] == pytest.approx(before["cos"], abs=1e-7)
    configs = {m.name: m.get_config() for m in loaded.metrics[1].metrics}
    assert configs["dice"] == metrics[0].get_config()
    assert configs["cos"]["ignore_index"] == 255


def test_update_state_compiles_with_xla():
    # On a GPU, Keras compiles train/eval steps (metric updates included) with XLA by default.
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, size=(2, 4, 4)).astype("uint8")
    y_true[0, 0] = 255
    y_pred = rng.random((2, 4, 4, 3)).astype("float16")
    weight = np.array([1.0, 2.0], "float32")
    eager = Dice("multiclass", 3, per_image=True, ignore_index=255, average=None)
    eager.update_state(y_true, y_pred, sample_weight=weight)
    compiled = Dice.from_config(eager.get_config())
    tf.function(compiled.update_state, jit_compile=True)(y_true, y_pred, weight)
    np.testing.assert_array_equal(compiled.result(), eager.result())
    for ours, reference in zip(compiled.variables, eager.variables):
        np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("cls", [Dice, Jaccard, Cosine])
def test_config_round_trip(cls):
    metric = cls(
        "multilabel",
        4,
        threshold=0.3,
        from_logits=True,
        average=None,
        per_image=True,
        ignore_index=-1,
        class_ids=[3, 0],
        zero_division=0.0,
        name="custom",
    )
    config = metric.get_config()
    assert cls.from_config(config).get_config() == config
    serialized = keras.saving.serialize_keras_object(metric)
    assert serialized["registered_name"] == f"kerasseg>{cls.__name__}"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is cls and restored.get_config() == config
    assert kerasseg.metrics.segmentation.ConfusionMetric in cls.__mro__
