"""The contract every registered model keeps, checked on each one as `kerasseg.zoo.get`
builds it by default (random init, its default classes, the dynamic input shape):

* it takes any size that is a multiple of its registered ``input_multiple``;
* one training step runs and changes the weights, with a finite loss;
* one traced graph with dynamic height and width predicts at two sizes (the shape-related
  bugs hide there: eager calls see static shapes), agreeing with eager calls;
* the outputs are float32 probabilities of the right shape;
* ``model.save("x.keras")`` reloads with ``load_model(safe_mode=True)`` and no
  ``custom_objects``, to bit-identical predictions at both sizes.

Architecture-specific behaviour (parity with smp/torchvision, size errors, arguments) is
tested per architecture in tests/segmentation/.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.zoo import registry

MODELS = registry.list_registered()


def _traced_predict(model: keras.Model):
    """Inference through one traced graph whose batch, height and width are unknown."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        spec = tf.TensorSpec([None, None, None, model.input_shape[-1]], "float32")
        graph = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        return lambda x: np.asarray(graph(x))
    return lambda x: model.predict(x, verbose=0)  # JAX/torch trace per input shape


def _images(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (1, height, width, channels)).astype("float32")


def test_every_model_is_covered():
    # The contract runs on the registry as collected: a family that registers no builder
    # (an import that silently failed) would make it vacuous.
    families = {registry.registered(name).family for name in MODELS}
    assert {"unet", "ternausnet", "fpn", "unet_fpn", "fcn", "segnet"} <= families
    assert len(MODELS) >= 58


@pytest.mark.parametrize("name", MODELS)
def test_model_contract(name, tmp_path):
    entry = registry.registered(name)
    keras.utils.set_random_seed(0)
    model = kerasseg.zoo.get(name, weights=None)
    classes, channels = entry.default_num_classes, entry.default_input_shape[-1]
    assert model.input_shape == (None, *entry.default_input_shape) == (None, None, None, channels)

    step = entry.input_multiple or 1
    first = _images(step, 2 * step, channels, seed=1)
    second = _images(2 * step, step, channels, seed=2)

    # One step, eagerly: tracing the train step of a deep encoder costs far more than it.
    rng = np.random.default_rng(3)
    if classes == 1:
        loss, target = "binary_crossentropy", rng.integers(0, 2, (*first.shape[:3], 1))
    else:
        loss, target = "sparse_categorical_crossentropy", rng.integers(0, classes, first.shape[:3])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, run_eagerly=True)
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(first, target.astype("float32"), epochs=1, batch_size=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [
        not np.array_equal(b, np.asarray(w)) for b, w in zip(before, model.trainable_weights)
    ]
    # Not all: FCN's zero-initialised score layers give the layers below no gradient yet.
    assert changed[-1] and any(changed[:-1]), f"{sum(changed)} of {len(changed)} weights trained"

    predict = _traced_predict(model)
    outputs = []
    for x in (first, second):
        y = predict(x)
        assert y.shape == (*x.shape[:3], classes) and y.dtype == np.float32
        assert np.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
        if classes > 1:
            np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
        eager = np.asarray(model(x, training=False))
        np.testing.assert_allclose(y, eager, atol=1e-5)
        outputs.append(eager)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    for x, expected in zip((first, second), outputs):
        np.testing.assert_array_equal(np.asarray(loaded(x, training=False)), expected)
