"""The value checks of the streaming segmentation metrics (`check_values=True`).

A bad batch raises eagerly (ValueError) and in a TensorFlow graph (InvalidArgumentError);
under XLA it turns the counts into NaN, so the result is NaN until `reset_state`: a metric
never reports a finite score for NaN predictions or 0/255 masks. The "seen" cases of the
reliability issue assert the old (unchecked) value too, with `check_values=False`.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasseg.metrics import Cosine, Dice, Jaccard

METRICS = [Dice, Jaccard, Cosine]
# (kwargs) covering the streaming paths: dataset counts, per-image sums, per-class vectors.
VARIANTS = [
    {},
    {"per_image": True},
    {"average": None},
    {"average": "micro", "per_image": True},
    {"class_ids": [1, 2]},
]


def _binary_batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random((2, 8, 8, 1)) < 0.5).astype("float32")
    p = rng.random((2, 8, 8, 1)).astype("float32")
    return y, p


def _mask_0_128_255() -> np.ndarray:
    y = np.zeros((2, 8, 8, 1), "float32")
    y[:, :4] = 255
    y[:, 4:6] = 128
    return y


def _score(metric, y_true, y_pred) -> float:
    metric.reset_state()
    metric.update_state(y_true, y_pred)
    return float(metric.result())


# ------------------------------------------------------------------------------ seen cases
@pytest.mark.parametrize("cls", METRICS)
def test_seen_0_128_255_mask_raises_with_the_remedy(cls):
    y, p = _mask_0_128_255(), np.full((2, 8, 8, 1), 0.9, "float32")
    with pytest.raises(ValueError) as info:
        cls().update_state(y, p)
    message = str(info.value)
    assert "`y_true` must hold values in [0, 1]" in message
    assert "min 0, max 255; values seen: {0, 128, 255}" in message
    assert "mask_values={0: 0, 255: 1}" in message
    # Before the checks: a plausible-looking score (the issue saw 0.57 on its masks).
    assert 0 < _score(cls(check_values=False), y, p) < 1


def test_seen_multiclass_label_5_of_3_classes_raises():
    y = np.zeros((1, 4, 4), "int32")
    y[0, 1, 1] = 5
    p = np.random.default_rng(0).dirichlet(np.ones(3), size=(1, 4, 4)).astype("float32")
    for cls in METRICS:
        with pytest.raises(ValueError, match=re.escape("class ids in [0, 3)") + ".*max 5"):
            cls("multiclass", 3).update_state(y, p)
        assert np.isfinite(_score(cls("multiclass", 3, check_values=False), y, p))
    # ignore_index is exempt.
    y[0, 1, 1] = 255
    assert np.isfinite(_score(Dice("multiclass", 3, ignore_index=255), y, p))


def test_seen_nan_predictions_raise():
    y, p = _binary_batch()
    one_nan = p.copy()
    one_nan[0, 3, 3, 0] = np.nan
    all_nan = np.full_like(p, np.nan)
    with pytest.raises(ValueError, match=r"`y_pred` must hold probabilities.*got min .*1 NaN"):
        Dice().update_state(y, one_nan)
    with pytest.raises(ValueError, match=r"got 128 NaN of 128 values"):
        Dice().update_state(y, all_nan)
    # Before the checks: a finite score (the 0.569) and 0.0 for all-NaN predictions.
    assert np.isfinite(_score(Dice(check_values=False), y, one_nan))
    assert _score(Dice(check_values=False), y, all_nan) == 0.0


def test_seen_logit_passed_as_probability_raises():
    y = np.zeros((1, 4, 4, 1), "float32")
    logits = np.full((1, 4, 4, 1), 3.0, "float32")
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*pass from_logits=True"):
        Dice().update_state(y, logits)
    assert _score(Dice(check_values=False), y, logits) == 0.0  # the silent 0.0
    assert _score(Dice(from_logits=True), y, -logits) == 1.0  # logits are fine as logits
    with pytest.raises(ValueError, match="`y_pred` must hold finite logits"):
        Dice(from_logits=True).update_state(y, np.full_like(logits, -np.inf))


def test_soft_targets_half_precision_and_ignore_index_pass():
    y, p = _binary_batch()
    soft = np.clip(y * 0.8 + 0.1, 0, 1)
    assert 0 <= _score(Dice(), soft, p) <= 1
    assert 0 <= _score(Dice(), y, p.astype("float16")) <= 1
    y[0, 0, 0] = 255
    assert 0 <= _score(Dice(ignore_index=255), y, p) <= 1


# ------------------------------------------------------------------- graph, XLA, switched off
def test_tf_graph_raises_with_the_observed_min_and_max():
    metric = Jaccard()
    y, p = _binary_batch()
    p[0, 0, 0, 0] = 3.0
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        tf.function(metric.update_state)(y, p)
    message = str(info.value)
    assert "`y_pred` must hold probabilities in [0, 1]" in message
    assert "[max:] [3]" in message


@pytest.mark.parametrize("kwargs", VARIANTS, ids=str)
@pytest.mark.parametrize("cls", METRICS)
def test_xla_nan_inputs_give_a_nan_result_until_reset(cls, kwargs):
    mode_kwargs = {"mode": "multilabel", "num_classes": 3}
    rng = np.random.default_rng(1)
    y = (rng.random((2, 4, 4, 3)) < 0.5).astype("float32")
    p = rng.random((2, 4, 4, 3)).astype("float32")
    bad = p.copy()
    bad[1, 2, 2, 1] = np.nan
    metric = cls(**mode_kwargs, **kwargs)
    update = tf.function(metric.update_state, jit_compile=True)
    update(y, p)
    good = np.asarray(metric.result())
    assert np.all(np.isfinite(good))
    update(y, bad)
    assert np.all(np.isnan(np.asarray(metric.result())))
    update(y, p)  # a good batch does not hide the bad one
    assert np.all(np.isnan(np.asarray(metric.result())))
    metric.reset_state()
    update(y, p)
    np.testing.assert_array_equal(np.asarray(metric.result()), good)


@pytest.mark.parametrize("cls", METRICS)
def test_xla_bad_targets_give_nan(cls):
    metric = cls()
    tf.function(metric.update_state, jit_compile=True)(_mask_0_128_255(), _binary_batch()[1])
    assert np.isnan(float(metric.result()))
    multiclass = cls("multiclass", 3, per_image=True)
    y = np.zeros((2, 4, 4), "int32")
    y[0, 0, 0] = 5
    p = np.full((2, 4, 4, 3), 1 / 3, "float32")
    tf.function(multiclass.update_state, jit_compile=True)(y, p)
    assert np.isnan(float(multiclass.result()))


def test_check_values_false_turns_the_checks_off():
    y, p = _mask_0_128_255(), np.full((2, 8, 8, 1), 3.0, "float32")
    for cls in METRICS:
        metric = cls(check_values=False)
        metric.update_state(y, p)
        tf.function(metric.update_state)(y, p)
        tf.function(metric.update_state, jit_compile=True)(y, p)
        assert np.isfinite(float(metric.result()))


# ------------------------------------------------------------------------- Keras, saving
def _tiny_model() -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_evaluate_on_0_255_masks(jit_compile):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    y = np.where(x > 0.5, 255, 0).astype("uint8")
    model = _tiny_model()
    model.compile(loss="mse", metrics=[Dice()], jit_compile=jit_compile)
    if not jit_compile:
        with pytest.raises(tf.errors.InvalidArgumentError, match="mask_values"):
            model.evaluate(x, y, batch_size=2, verbose=0)
    else:  # XLA cannot raise: the score is NaN
        logs = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
        assert np.isnan(logs["dice"])


@pytest.mark.parametrize("cls", METRICS)
def test_check_values_round_trips(cls, tmp_path):
    metric = cls("multiclass", 3, check_values=False, name="m")
    config = metric.get_config()
    assert config["check_values"] is False
    assert cls.from_config(config).get_config() == config
    del config["check_values"]  # a config saved before the argument existed
    assert cls.from_config(config).check_values is True
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.Softmax()(inputs))
    model.compile(loss="sparse_categorical_crossentropy", metrics=[metric])
    x = np.random.default_rng(0).random((2, 4, 4, 3)).astype("float32")
    model.evaluate(x, np.zeros((2, 4, 4), "int32"), verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    loaded.evaluate(x, np.zeros((2, 4, 4), "int32"), verbose=0)  # builds the metrics
    loaded_metric = loaded.metrics[1].metrics[0]
    assert loaded_metric.check_values is False
    assert loaded_metric.get_config() == metric.get_config()
