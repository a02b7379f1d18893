"""Acceptance: U-Net + BceDice + kerasseg metrics trains, saves and reloads identically."""

import keras
import numpy as np

import kerasseg
from kerasseg.data.synthetic import synthetic_shapes


def test_unet_with_bce_dice_and_metrics_round_trips_through_keras_file(tmp_path):
    keras.utils.set_random_seed(0)
    images, masks = synthetic_shapes(12, (32, 32), seed=2)
    model = kerasseg.zoo.get("unet", weights=None, filters=8, depth=2)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=kerasseg.losses.BceDice(),
        metrics=[kerasseg.metrics.Dice(), kerasseg.metrics.Jaccard(), kerasseg.metrics.Cosine()],
    )
    history = model.fit(
        images[:8],
        masks[:8],
        validation_data=(images[8:], masks[8:]),
        epochs=4,
        batch_size=4,
        verbose=0,
    )
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert {"val_dice", "val_jaccard", "val_cosine"} <= set(history.history)

    path = tmp_path / "m.keras"
    model.save(path)
    # Plain Keras, safe mode, no custom_objects: `import kerasseg` registered everything.
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(
        model.predict(images, verbose=0), loaded.predict(images, verbose=0)
    )
    assert type(loaded.loss) is kerasseg.losses.BceDice
    before = model.evaluate(images[8:], masks[8:], batch_size=2, return_dict=True, verbose=0)
    after = loaded.evaluate(images[8:], masks[8:], batch_size=2, return_dict=True, verbose=0)
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_allclose(before[key], after[key], rtol=1e-6, err_msg=key)
    # Training continues from the restored optimizer state.
    loaded.fit(images[:8], masks[:8], epochs=1, batch_size=4, verbose=0)
