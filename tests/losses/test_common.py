"""Behaviour shared by every loss: argument and shape errors, numerical safety, mixed
precision, output shapes and config round trips."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasseg import losses
from tests.losses import reference as ref

MODES = [("binary", 1), ("multilabel", 3), ("multiclass", 3)]

# Every loss, with arguments that reach the delicate code paths (exponents < 1, log forms).
FACTORIES = {
    "CrossEntropy": lambda mode, **kw: losses.CrossEntropy(mode, **kw),
    "Dice": lambda mode, **kw: losses.Dice(mode, **kw),
    "DiceLog": lambda mode, **kw: losses.Dice(mode, log_loss=True, smooth=0.0, **kw),
    "Jaccard": lambda mode, **kw: losses.Jaccard(mode, **kw),
    "Tversky": lambda mode, **kw: losses.Tversky(mode, alpha=0.7, beta=0.3, gamma=0.5, **kw),
    "Focal": lambda mode, **kw: losses.Focal(mode, gamma=0.5, **kw),
    "Lovasz": lambda mode, **kw: losses.Lovasz(mode, **kw),
    "BceDice": lambda mode, **kw: losses.BceDice(mode, **kw),
    "BceDiceLinear": lambda mode, **kw: losses.BceDice(mode, log_dice=False, **kw),
}


def _targets(mode, num_classes, rng, kind, batch=2):
    shape = (batch, 8, 8)
    if mode == "multiclass":
        y = rng.integers(0, num_classes, size=shape).astype("int32")
        if kind == "empty":
            y[:] = 0  # every pixel background: the other classes are absent
    else:
        y = (rng.random(shape + (num_classes,)) < 0.4).astype("float32")
        if kind == "empty":
            y[:] = 0
    if kind == "ignored":
        y[:] = ref.IGNORE
    return y


def _loss_and_gradient(loss, y_true, y_pred):
    var = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        value = loss(y_true, var)
    return value.numpy(), tape.gradient(value, var).numpy()


@pytest.mark.parametrize("mode,num_classes", MODES)
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_finite_on_extreme_inputs(name, mode, num_classes):
    rng = np.random.default_rng(0)
    signs = np.where(rng.random((2, 8, 8, num_classes)) < 0.5, 1.0, -1.0).astype("float32")
    for kind in ("random", "empty", "ignored"):
        y_true = _targets(mode, num_classes, rng, kind)
        for per_image in (False, True):
            extremes = ((True, 1e4 * signs), (False, (signs > 0).astype("float32")))
            for from_logits, y_pred in extremes:
                loss = FACTORIES[name](
                    mode, from_logits=from_logits, per_image=per_image, ignore_index=ref.IGNORE
                )
                value, grad = _loss_and_gradient(loss, y_true, y_pred)
                context = (kind, per_image, from_logits)
                assert np.isfinite(value) and value >= 0, context
                assert np.all(np.isfinite(grad)), context
                if kind == "ignored":  # nothing labelled: nothing to learn from
                    assert value == 0.0 and np.all(grad == 0.0), context


@pytest.fixture
def mixed_precision():
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("mode,num_classes", MODES)
def test_mixed_float16_training(mixed_precision, mode, num_classes):
    """float16 model outputs (sigmoid/softmax in float16, so exact 0s and 1s): finite."""
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 255, size=(4, 8, 8, 3)).astype("float32")
    y = _targets(mode, num_classes, rng, "random", batch=4)
    inputs = keras.Input((8, 8, 3))
    logits = keras.layers.Conv2D(num_classes, 3, padding="same")(inputs)  # unscaled: large
    outputs = keras.layers.Activation("softmax" if mode == "multiclass" else "sigmoid")(logits)
    model = keras.Model(inputs, outputs)
    assert model.output.dtype == "float16"
    loss = (
        losses.BceDice(mode)
        + losses.Lovasz(mode, per_image=True)
        + losses.Focal(mode)
        + losses.Tversky(mode, gamma=0.75)
        + losses.Jaccard(mode)
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss, jit_compile=False)
    for _ in range(2):
        value = model.train_on_batch(x, y)
        assert np.isfinite(value)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    # `call` on a float16 prediction (bypassing Keras' cast in `__call__`) computes in float32.
    pred16 = model.predict(x, verbose=0)
    assert pred16.dtype == np.float16
    for part in loss.losses:
        value16 = part.call(y, tf.constant(pred16))
        assert value16.dtype == tf.float32
        value32 = part.call(y, pred16.astype("float32"))
        np.testing.assert_allclose(value16.numpy(), value32.numpy(), rtol=1e-6)


def test_half_precision_dtype_sums_do_not_overflow():
    """A loss with dtype float16 still sums in float32: 131072 pixels > float16 max 65504."""
    y_true = np.zeros((2, 256, 256, 1), "float32")
    y_true[:, :128] = 1
    y_pred = np.full((2, 256, 256, 1), 0.75, "float32")
    # soft counts: TP = 65536 * 0.75, sum(p) = 131072 * 0.75, sum(t) = 65536
    expected = 1 - (2 * 49152 + 1) / (98304 + 65536 + 1)
    for dtype in ("float16", "mixed_float16"):
        value = losses.Dice(dtype=dtype)(y_true, y_pred)
        assert float(value) == pytest.approx(expected, rel=1e-3), dtype


def test_output_shapes_and_sample_weight():
    case = ref.make_case("binary", 1, seed=3)
    for name, factory in FACTORIES.items():
        per_image = factory("binary", per_image=True, reduction="none")
        batch = factory("binary", reduction="none")
        values = per_image(case.y_true, case.probs)
        assert tuple(values.shape) == (2,), name
        assert tuple(batch(case.y_true, case.probs).shape) == (), name
        # per_image + reduction "sum" + sample weights: the weighted sum of image losses.
        weighted = factory("binary", per_image=True, reduction="sum")
        got = float(weighted(case.y_true, case.probs, sample_weight=np.array([1.0, 0.0])))
        assert got == pytest.approx(float(values[0]), rel=1e-6), name


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_config_round_trip(name):
    loss = FACTORIES[name](
        "multiclass",
        from_logits=True,
        ignore_index=255,
        class_weights=[1.0, 2.0, 0.5],
        per_image=True,
        name="my_loss",
        reduction="sum",
    )
    config = loss.get_config()
    restored = type(loss).from_config(config)
    assert restored.get_config() == config
    serialized = keras.saving.serialize_keras_object(loss)
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config
    case = ref.make_case("multiclass", 3, seed=4, ignore=True)
    assert float(restored(case.y_true, case.logits)) == pytest.approx(
        float(loss(case.y_true, case.logits)), rel=1e-6
    )


@pytest.mark.parametrize(
    "mode,y_true_shape,y_pred_shape,match",
    [
        ("multiclass", (2, 8, 8), (2, 16, 16, 3), r"y_true.*\(2, 16, 16\).*got \(2, 8, 8\)"),
        ("multiclass", (2, 16, 16, 2), (2, 16, 16, 3), r"y_true.*\(2, 16, 16, 2\)"),
        ("multiclass", (2, 16, 16), (2, 16, 16, 1), r"C >= 2"),
        ("binary", (2, 16, 16, 1), (2, 16, 16, 3), r"mode='binary'.*one channel.*\(2, 16, 16, 3\)"),
        ("binary", (2, 16, 8, 1), (2, 16, 16, 1), r"y_true.*got \(2, 16, 8, 1\)"),
        ("multilabel", (2, 16, 16, 2), (2, 16, 16, 3), r"y_true.*\(2, 16, 16, 2\)"),
        (
            "multilabel",
            (2, 16),
            (2, 16, 16, 3),
            r"mode='multilabel' expects `y_true` of the same shape as `y_pred` \(2, 16, 16, 3\); "
            r"got shape \(2, 16\)",
        ),
    ],
)
def test_wrong_shapes_raise_clear_errors(mode, y_true_shape, y_pred_shape, match):
    for _name, factory in FACTORIES.items():
        with pytest.raises(ValueError, match=match):
            factory(mode)(np.zeros(y_true_shape, "float32"), np.zeros(y_pred_shape, "float32"))


def test_call_time_argument_errors():
    y_true = np.zeros((1, 4, 4), "int32")
    y_pred = np.full((1, 4, 4, 3), 1 / 3, "float32")
    with pytest.raises(ValueError, match=r"class_weights.*\(3\).*got 2"):
        losses.Dice("multiclass", class_weights=[1, 2])(y_true, y_pred)
    with pytest.raises(ValueError, match=r"class_weights.*\(3\).*got 2"):
        losses.CrossEntropy("multiclass", class_weights=[1, 2])(y_true, y_pred)
    with pytest.raises(ValueError, match=r"classes.*\(3\).*\[0, 5\]"):
        losses.Lovasz("multiclass", classes=[0, 5])(y_true, y_pred)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: losses.Dice("softmax"), r"`mode` must be one of"),
        (lambda: losses.Dice(smooth=-1), r"`smooth` must be a number >= 0; got -1"),
        (lambda: losses.Dice(class_weights=[1.0]), r"class_weights.*mode='binary'"),
        (lambda: losses.CrossEntropy("multiclass", class_weights=[1, -1]), r"class_weights.*>= 0"),
        (lambda: losses.Jaccard("multiclass", classes="some"), r"`classes` must be.*'some'"),
        (lambda: losses.Lovasz("binary", classes=[0]), r"classes.*mode='binary'"),
        (lambda: losses.Focal(ignore_index=1.5), r"`ignore_index` must be an integer.*1.5"),
        (lambda: losses.Focal(alpha=2), r"`alpha` must be in \[0, 1\]"),
        (lambda: losses.Tversky(alpha=-1), r"`alpha` and `beta` must be >= 0"),
        (lambda: losses.BceDice(dice_weight=-1), r"dice_weight=-1"),
        (lambda: losses.CombinedLoss([]), r"`losses` must hold at least one"),
        (lambda: losses.CombinedLoss([losses.Dice()], weights=[1, 2]), r"one entry per loss"),
    ],
)
def test_constructor_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_combined_loss_rejects_non_losses():
    with pytest.raises(TypeError, match=r"losses\[1\].*keras.losses.Loss"):
        losses.CombinedLoss([losses.Dice(), "dice"])
