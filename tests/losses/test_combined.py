"""Loss arithmetic, CombinedLoss serialization, .keras round trips and training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasseg import losses
from tests.losses import reference as ref
from tests.support import run_in_fresh_process


def _value(loss, y_true, y_pred) -> float:
    return float(loss(y_true, y_pred))


def test_arithmetic_builds_flat_weighted_sums():
    dice, focal, ce = losses.Dice(), losses.Focal(), losses.CrossEntropy()
    combo = dice + 0.3 * focal
    assert isinstance(combo, losses.CombinedLoss)
    assert combo.losses == [dice, focal] and combo.weights == [1.0, 0.3]
    nested = 0.5 * (combo + ce) * 2 + dice / 4
    assert nested.losses == [dice, focal, ce, dice]
    assert nested.weights == pytest.approx([1.0, 0.3, 1.0, 0.25])
    assert (focal * 2).weights == [2.0]
    assert sum([dice, focal]).losses == [dice, focal]  # sum() starts from 0
    mse = keras.losses.MeanSquaredError()
    assert (mse + dice).losses == [mse, dice]  # a Keras loss on the left
    assert (dice + mse).losses == [dice, mse]
    with pytest.raises(
        TypeError, match=r"unsupported operand type\(s\) for \+: 'Dice' and 'float'"
    ):
        dice + 1.0
    with pytest.raises(TypeError, match=r"unsupported operand type\(s\) for \*: 'Dice' and 'Dice'"):
        dice * dice


def test_combined_value_is_weighted_sum_of_parts():
    case = ref.make_case("multiclass", 3, seed=90, ignore=True)
    kw = {"ignore_index": ref.IGNORE}
    parts = [
        losses.Dice("multiclass", **kw),
        losses.Lovasz("multiclass", per_image=True, **kw),
        losses.CrossEntropy("multiclass", **kw),
    ]
    combo = parts[0] + 0.3 * parts[1] + 2 * parts[2]
    expected = sum(w * _value(p, case.y_true, case.probs) for w, p in zip([1, 0.3, 2], parts))
    assert _value(combo, case.y_true, case.probs) == pytest.approx(expected, rel=1e-6)


def test_combined_config_round_trip():
    combo = losses.BceDice(per_image=True) + 0.25 * losses.Tversky(alpha=0.7, beta=0.3, gamma=0.75)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(combo))
    assert isinstance(restored, losses.CombinedLoss)
    assert [type(p) for p in restored.losses] == [losses.BceDice, losses.Tversky]
    assert restored.get_config()["weights"] == [1.0, 0.25]
    assert [p.get_config() for p in restored.losses] == [p.get_config() for p in combo.losses]
    case = ref.make_case("binary", 1, seed=91)
    assert _value(restored, case.y_true, case.probs) == pytest.approx(
        _value(combo, case.y_true, case.probs), rel=1e-6
    )


def _binary_data(seed=0, n=8):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(n, 16, 16, 3)).astype("float32")
    y = (x[..., :1] > 127).astype("float32")  # learnable from the first channel
    return x, y


def _tiny_model(num_classes=1, activation="sigmoid", input_shape=(16, 16, 3)):
    inputs = keras.Input(input_shape)
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    outputs = keras.layers.Conv2D(num_classes, 1, activation=activation, dtype="float32")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "make_loss",
    [
        lambda: losses.BceDice(),
        lambda: losses.BceDice(log_dice=False) + 0.5 * losses.Lovasz(per_image=True),
    ],
    ids=["BceDice", "combined"],
)
def test_compiled_model_saves_and_reloads(tmp_path, make_loss):
    keras.utils.set_random_seed(0)
    x, y = _binary_data()
    model = _tiny_model()
    loss = make_loss()
    # jit_compile=False: compiling with XLA costs seconds on CPU (XLA: see test_lovasz.py).
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss, jit_compile=False)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=8, batch_size=8, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < before
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode=True
    assert type(loaded.loss) is type(loss)
    serialize = keras.saving.serialize_keras_object
    assert serialize(loaded.loss) == serialize(loss)
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(after, rel=1e-6)
    pred = loaded.predict(x, verbose=0)
    assert _value(loaded.loss, y, pred) == pytest.approx(_value(loss, y, pred), rel=1e-6)
    if isinstance(loss, losses.CombinedLoss):  # holds BceDice too: one fresh process for both
        # The registration must come from `import kerasseg` alone, with no custom_objects: a
        # new interpreter that imports only keras and kerasseg loads the file and evaluates.
        fresh, modules = run_in_fresh_process(
            "import keras, kerasseg\n"
            f"model = keras.models.load_model({str(path)!r})\n"
            "outputs['pred'] = model.predict(inputs['x'], verbose=0)\n"
            "outputs['loss'] = np.array(model.evaluate(inputs['x'], inputs['y'], verbose=0))\n"
            "outputs['loss_class'] = np.array(type(model.loss).__name__)\n",
            tmp_path,
            x=x,
            y=y,
        )
        assert "tests" not in modules and "pytest" not in modules
        np.testing.assert_allclose(fresh["pred"], pred, rtol=1e-6, atol=1e-7)
        assert float(fresh["loss"]) == pytest.approx(after, rel=1e-6)
        assert str(fresh["loss_class"]) == type(loss).__name__


def test_multiclass_fit_with_integer_labels():
    keras.utils.set_random_seed(1)
    x, _ = _binary_data(seed=1)
    labels = np.digitize(x[..., 0], [85, 170]).astype("int32")  # 3 classes, (B, H, W)
    model = _tiny_model(3, activation="softmax", input_shape=(None, None, 3))  # unknown H, W
    loss = (
        losses.CrossEntropy("multiclass") + losses.Lovasz("multiclass") + losses.Dice("multiclass")
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss, jit_compile=False)
    before = model.evaluate(x, labels, verbose=0)
    model.fit(x, labels, epochs=8, batch_size=8, verbose=0)
    after = model.evaluate(x, labels, verbose=0)
    assert np.isfinite(after) and after < before


def test_registered_names_do_not_collide_with_metrics():
    for cls in (
        losses.BceDice,
        losses.CombinedLoss,
        losses.CrossEntropy,
        losses.Dice,
        losses.Focal,
        losses.Jaccard,
        losses.Lovasz,
        losses.Tversky,
    ):
        name = keras.saving.get_registered_name(cls)
        assert name == f"kerasseg>{cls.__name__}Loss" or name == "kerasseg>CombinedLoss"
        assert keras.saving.get_registered_object(name) is cls
