"""The value checks of the losses (`check_values=True`): bad targets and predictions raise
eagerly and in TensorFlow graphs, and give a NaN loss under XLA, never a finite number.

The "seen" cases are those of the reliability issue; each asserts the old (unchecked) value
too, with `check_values=False`, which is what the code returned before the checks.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasseg import losses
from tests.losses.test_common import FACTORIES

BINARY_MODES = ("binary", "multilabel")


def _mask_0_128_255() -> np.ndarray:
    """(2, 8, 8, 1) mask with rows of 255 (half), 128 (a quarter) and 0 (a quarter)."""
    y = np.zeros((2, 8, 8, 1), "float32")
    y[:, :4] = 255
    y[:, 4:6] = 128
    return y


P_09 = np.full((2, 8, 8, 1), 0.9, "float32")


# ------------------------------------------------------------------------------ seen cases
def test_seen_0_128_255_mask_raises_with_the_values_and_the_remedy():
    y = _mask_0_128_255()
    for loss in (losses.BceDice(), losses.Dice()):
        with pytest.raises(ValueError) as info:
            loss(y, P_09)
        message = str(info.value)
        assert "`y_true` must hold values in [0, 1] (soft labels allowed)" in message
        assert "min 0, max 255; values seen: {0, 128, 255}" in message
        assert "mask_values={0: 0, 255: 1}" in message
        assert "kerasseg.data.SegmentationFolder" in message and "divide" in message
        assert "check_values=False" in message
    # Before the checks: no error and meaningless values (Dice loss -0.79 as in the issue).
    assert float(losses.Dice(check_values=False)(y, P_09)) == pytest.approx(-0.7899, abs=1e-4)
    assert float(losses.BceDice(check_values=False)(y, P_09)) < 0


def test_seen_bce_dice_of_255_and_0_9_raises():
    y, p = np.full((1, 4, 4, 1), 255.0, "float32"), np.full((1, 4, 4, 1), 0.9, "float32")
    with pytest.raises(ValueError, match=r"got min 255, max 255; values seen: \{255\}"):
        losses.BceDice()(y, p)
    # The issue's -558.6, reproduced without the checks.
    assert float(losses.BceDice(check_values=False)(y, p)) == pytest.approx(-558.57, abs=0.01)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_seen_multiclass_label_out_of_range_raises(name):
    y = np.zeros((1, 4, 4), "int32")
    y[0, 0, 0] = 5
    p = np.full((1, 4, 4, 3), 1 / 3, "float32")
    with pytest.raises(ValueError, match=re.escape("class ids in [0, 3)") + ".*max 5"):
        FACTORIES[name]("multiclass")(y, p)
    assert np.isfinite(float(FACTORIES[name]("multiclass", check_values=False)(y, p)))


def test_multiclass_ignore_index_is_exempt_and_named():
    y = np.array([[[0, 1, 2, 255]]], "uint8")
    p = np.full((1, 1, 4, 3), 1 / 3, "float32")
    assert np.isfinite(float(losses.CrossEntropy("multiclass", ignore_index=255)(y, p)))
    y[0, 0, 0] = 3
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\).* or ignore_index=255; got min 1"):
        losses.CrossEntropy("multiclass", ignore_index=255)(y, p)
    # Without ignore_index, 255 itself is out of range.
    with pytest.raises(ValueError, match=r"values seen: \{0, 1, 2, 255\}"):
        losses.Dice("multiclass")(np.array([[[0, 1, 2, 255]]]), p)


def test_one_hot_multiclass_targets_in_0_1():
    p = np.full((1, 2, 2, 3), 1 / 3, "float32")
    one_hot = np.eye(3, dtype="float32")[np.array([[[0, 1], [2, 0]]])]
    assert np.isfinite(float(losses.Dice("multiclass")(one_hot, p)))
    with pytest.raises(ValueError, match=r"one-hot `y_true` \(B, H, W, 3\) must hold values"):
        losses.Dice("multiclass")(255 * one_hot, p)


@pytest.mark.parametrize("mode", BINARY_MODES)
def test_soft_labels_and_ignore_index_stay_allowed(mode):
    rng = np.random.default_rng(0)
    channels = 1 if mode == "binary" else 3
    y = rng.random((2, 4, 4, channels)).astype("float32")  # soft labels in [0, 1)
    y[0, 0, 0] = 1.0
    y[1, 0, 0] = 255  # ignored
    p = rng.random((2, 4, 4, channels)).astype("float32")
    for name in sorted(FACTORIES):
        assert np.isfinite(float(FACTORIES[name](mode, ignore_index=255)(y, p))), name
    with pytest.raises(ValueError, match="mask_values"):
        losses.Focal(mode)(y, p)  # 255 without ignore_index


# ------------------------------------------------------------------------------ predictions
@pytest.mark.parametrize("bad", [np.nan, np.inf, 3.0, -0.5])
def test_predictions_outside_0_1_or_non_finite_raise(bad):
    y = (np.arange(32).reshape(2, 4, 4, 1) % 2).astype("float32")
    p = np.full((2, 4, 4, 1), 0.25, "float32")
    p[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match=r"`y_pred` must hold probabilities in \[0, 1\]"):
        losses.BceDice()(y, p)
    if np.isfinite(bad):  # a logit, fine with from_logits=True
        assert np.isfinite(float(losses.BceDice(from_logits=True)(y, p)))
    else:
        with pytest.raises(ValueError, match="`y_pred` must hold finite logits"):
            losses.BceDice(from_logits=True)(y, p)


def test_nan_prediction_message_counts_the_nans():
    p = np.full((1, 2, 2, 3), np.nan, "float32")
    with pytest.raises(ValueError, match="got 12 NaN of 12 values"):
        losses.Dice("multiclass")(np.zeros((1, 2, 2), "int32"), p)


def test_probability_tolerance_and_half_precision():
    y = np.ones((1, 2, 2, 1), "float32")
    p = np.full((1, 2, 2, 1), 1.0 + 1e-7, "float32")  # rounding above 1
    assert np.isfinite(float(losses.Dice()(y, p)))
    for dtype in ("float16", "bfloat16"):
        p_half = tf.constant(np.ones((1, 2, 2, 1)), dtype=dtype)
        assert np.isfinite(float(losses.BceDice().call(y, p_half))), dtype


# ------------------------------------------------------------------- graph, XLA, switched off
def test_tf_graph_raises_with_the_observed_min_and_max():
    loss = losses.BceDice()
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        tf.function(loss)(_mask_0_128_255(), P_09)
    message = str(info.value)
    assert "`y_true` must hold values in [0, 1]" in message
    assert "[observed min:] [0] [max:] [255]" in message
    assert "mask_values={0: 0, 255: 1}" in message
    nan_pred = P_09.copy()
    nan_pred[1, 2, 3, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        tf.function(loss)((_mask_0_128_255() > 0) * 1.0, nan_pred)
    message = str(info.value)
    assert "`y_pred` must hold probabilities in [0, 1] (from_logits=False)" in message
    assert "[observed min:] [0.9] [max:] [0.9] [non-finite values (NaN, inf):] [1]" in message


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_xla_gives_nan_not_a_finite_loss(name):
    y, p = _mask_0_128_255(), P_09
    value = tf.function(FACTORIES[name]("binary"), jit_compile=True)(y, p)
    assert np.isnan(float(value))
    nan_pred = P_09.copy()
    nan_pred[0, 0, 0, 0] = np.nan
    value = tf.function(FACTORIES[name]("binary"), jit_compile=True)((y > 0) * 1.0, nan_pred)
    assert np.isnan(float(value))
    # Good inputs compile to the same value as eagerly.
    good = (y > 0).astype("float32")
    compiled = tf.function(FACTORIES[name]("binary"), jit_compile=True)(good, P_09)
    assert float(compiled) == pytest.approx(float(FACTORIES[name]("binary")(good, P_09)), rel=1e-5)


def test_xla_per_image_loss_is_nan_for_every_image():
    y = np.zeros((2, 4, 4), "int32")
    y[1, 0, 0] = 7
    p = np.full((2, 4, 4, 3), 1 / 3, "float32")
    loss = losses.Dice("multiclass", per_image=True, reduction=None)
    assert np.all(np.isnan(tf.function(loss, jit_compile=True)(y, p).numpy()))


def test_check_values_false_turns_every_check_off():
    y = _mask_0_128_255()
    for name in sorted(FACTORIES):
        loss = FACTORIES[name]("binary", check_values=False)
        assert np.isfinite(float(loss(y, P_09))), name
        assert np.isfinite(float(tf.function(loss)(y, P_09))), name
        assert np.isfinite(float(tf.function(loss, jit_compile=True)(y, P_09))), name


def test_combined_losses_check_through_their_parts():
    with pytest.raises(ValueError, match="mask_values"):
        (losses.Dice() + 0.5 * losses.Focal())(_mask_0_128_255(), P_09)
    combined = losses.Dice(check_values=False) + 0.5 * losses.Focal(check_values=False)
    assert np.isfinite(float(combined(_mask_0_128_255(), P_09)))


# ------------------------------------------------------------------------------- Keras fit
def _tiny_binary_model() -> keras.Model:
    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "jit_compile,run_eagerly,error",
    [
        (False, True, ValueError),
        (False, False, tf.errors.InvalidArgumentError),
        (True, False, None),
    ],
)
def test_fit_on_0_255_masks(jit_compile, run_eagerly, error):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    y = np.where(x > 0.5, 255, 0).astype("uint8")
    model = _tiny_binary_model()
    model.compile(
        optimizer="sgd", loss=losses.BceDice(), jit_compile=jit_compile, run_eagerly=run_eagerly
    )
    if error is not None:
        with pytest.raises(error, match=re.escape("`y_true` must hold values in [0, 1]")):
            model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    else:  # XLA cannot raise: the loss is NaN, and the weights stay finite
        history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
        assert np.isnan(history.history["loss"][0])
        assert all(np.all(np.isfinite(w)) for w in model.get_weights())


# --------------------------------------------------------------------------- serialization
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_check_values_in_config(name):
    loss = FACTORIES[name]("binary", check_values=False)
    config = loss.get_config()
    assert config["check_values"] is False
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.check_values is False
    assert np.isfinite(float(restored(_mask_0_128_255(), P_09)))
    # A config saved before the argument existed loads with the checks on.
    del config["check_values"]
    assert type(loss).from_config(config).check_values is True


def test_saved_model_keeps_check_values(tmp_path):
    model = _tiny_binary_model()
    model.compile(
        optimizer="sgd",
        loss=losses.BceDice(check_values=False) + losses.Lovasz(),
        jit_compile=False,
    )
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    parts = loaded.loss.losses
    assert [part.check_values for part in parts] == [False, True]
    assert parts[0]._cross_entropy.check_values is False  # checked once, by BceDice itself
