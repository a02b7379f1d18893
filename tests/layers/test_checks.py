import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasseg
from kerasseg.layers import DivisibleSizeCheck, nearest_valid_sizes


def test_nearest_valid_sizes():
    assert nearest_valid_sizes(250, 16) == (240, 256)
    assert nearest_valid_sizes(7, 16) == (16,)
    assert nearest_valid_sizes(33, 32) == (32, 64)


def _model(divisor: int = 8) -> keras.Model:
    inputs = keras.Input((None, None, 2))
    return keras.Model(inputs, DivisibleSizeCheck(divisor, reason="test stride")(inputs))


def test_passes_valid_sizes_through_unchanged():
    x = np.random.default_rng(0).normal(size=(2, 16, 24, 2)).astype("float32")
    np.testing.assert_array_equal(_model()(x), x)


def test_static_shape_error_names_axis_size_and_nearest_sizes():
    with pytest.raises(
        ValueError, match=r"Input width 20 is not divisible by 8 \(test stride\).*16 or 24"
    ):
        _model()(np.zeros((1, 16, 20, 2), "float32"))


def test_dynamic_shape_error_inside_a_traced_graph():
    model = _model()
    traced = tf.function(model, input_signature=[tf.TensorSpec((None, None, None, 2))])
    assert traced(tf.zeros((1, 8, 8, 2))).shape == (1, 8, 8, 2)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"Input height 12 is not divisible by 8.*8 or 16"
    ):
        traced(tf.zeros((1, 12, 8, 2)))


def test_rejects_non_positive_divisor():
    with pytest.raises(ValueError, match="`divisor` must be a positive integer"):
        DivisibleSizeCheck(0)


def test_serialization_round_trip(tmp_path):
    model = _model(divisor=4)
    path = tmp_path / "check.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    layer = loaded.layers[-1]
    assert isinstance(layer, kerasseg.layers.DivisibleSizeCheck)
    assert (layer.divisor, layer.reason) == (4, "test stride")
    with pytest.raises(ValueError, match="not divisible by 4"):
        loaded(np.zeros((1, 6, 8, 2), "float32"))
