import keras
import numpy as np
import pytest
from keras import layers

from kerasseg.segmentation.fcn_conversion import fully_convolutional

NATIVE = (14, 18)  # non-square, so a wrong Flatten order or kernel reshape shows up
STRIDE = 4  # two 2x2 poolings


def _small_cnn_sequential() -> keras.Model:
    """Valid-padded conv/pool stack (14x18 -> 2x3x16) + Flatten + Dense head."""
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((*NATIVE, 3)),
            layers.Conv2D(8, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(32, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ],
        name="small_cnn",
    )


def _small_cnn_functional(global_pooling=None) -> keras.Model:
    """Functional classifier with preprocessing, 'same' convs and BatchNorm in the head."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((*NATIVE, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(12, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    x = (global_pooling or layers.Flatten)()(x)
    x = layers.Dense(24)(x)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU(0.1)(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(5)(x)
    outputs = layers.Softmax()(x)
    model = keras.Model(inputs, outputs, name="functional_cnn")
    # Non-trivial BatchNorm statistics, so copying them is tested.
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            rng = np.random.default_rng(3)
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 2, gamma.shape),
                    rng.normal(size=beta.shape),
                    rng.normal(size=mean.shape),
                    rng.uniform(0.5, 2, var.shape),
                ]
            )
    return model


def _images(batch: int, height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(batch, height, width, 3)).astype("float32")


def _assert_windows_match(classifier, fcn, images):
    """Score map position (i, j) == classifier on the native window at (i*s, j*s)."""
    scores = np.asarray(fcn(images))
    h0, w0 = NATIVE
    expected_shape = ((images.shape[1] - h0) // STRIDE + 1, (images.shape[2] - w0) // STRIDE + 1)
    assert scores.shape[1:3] == expected_shape
    windows = [
        images[:, i * STRIDE : i * STRIDE + h0, j * STRIDE : j * STRIDE + w0]
        for i in range(scores.shape[1])
        for j in range(scores.shape[2])
    ]
    expected = np.asarray(classifier(np.concatenate(windows)))
    expected = expected.reshape(len(windows), len(images), -1).transpose(1, 0, 2)
    np.testing.assert_allclose(scores.reshape(len(images), len(windows), -1), expected, atol=1e-5)


def test_sequential_classifier_native_size_equality_and_sliding_windows():
    classifier = _small_cnn_sequential()
    fcn = fully_convolutional(classifier)
    assert fcn.name == "small_cnn_fcn"
    assert tuple(fcn.input_shape) == (None, None, None, 3)
    assert [type(layer).__name__ for layer in fcn.layers[-3:]] == ["Conv2D", "Dropout", "Conv2D"]
    assert fcn.layers[-3].kernel_size == (2, 3)

    images = _images(3, *NATIVE, seed=0)
    scores = np.asarray(fcn(images))
    assert scores.shape == (3, 1, 1, 10)
    np.testing.assert_allclose(scores[:, 0, 0], classifier(images), atol=1e-5)
    # Larger input, with leftover rows/columns that do not complete a stride step.
    larger = _images(2, 14 + 3 * STRIDE + 2, 18 + 2 * STRIDE + 3, seed=1)
    _assert_windows_match(classifier, fcn, larger)


def test_functional_classifier_with_batchnorm_softmax_head():
    classifier = _small_cnn_functional()
    fcn = fully_convolutional(classifier, name="converted")
    assert fcn.name == "converted"
    images = _images(2, *NATIVE, seed=2)
    np.testing.assert_allclose(np.asarray(fcn(images))[:, 0, 0], classifier(images), atol=1e-5)
    scores = np.asarray(fcn(_images(2, 30, 41, seed=3)))
    # "same" padding: ceil-based sizes; softmax over the channel axis at every position.
    assert scores.shape == (2, 7 - 3 + 1, 10 - 4 + 1, 5)  # features 7x10 vs native 3x4
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("pooling", [layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D])
def test_global_pooling_head_becomes_window_pooling(pooling):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((*NATIVE, 3))
    x = layers.Conv2D(6, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(8, 3)(x)
    x = layers.MaxPooling2D()(x)
    x = pooling()(x)
    x = layers.Dense(16, activation="relu")(x)
    outputs = layers.Dense(4)(x)
    classifier = keras.Model(inputs, outputs)
    fcn = fully_convolutional(classifier)
    window_pool = {
        "GlobalAveragePooling2D": "AveragePooling2D",
        "GlobalMaxPooling2D": "MaxPooling2D",
    }
    assert type(fcn.layers[-3]).__name__ == window_pool[pooling.__name__]
    images = _images(2, *NATIVE, seed=5) / 255.0
    np.testing.assert_allclose(np.asarray(fcn(images))[:, 0, 0], classifier(images), atol=1e-5)
    larger = _images(1, 14 + 2 * STRIDE, 18 + 3 * STRIDE, seed=6) / 255.0
    _assert_windows_match(classifier, fcn, larger)


def test_nested_backbone_model_is_cloned():
    keras.utils.set_random_seed(5)
    backbone = keras.Sequential(
        [keras.Input((*NATIVE, 3)), layers.Conv2D(4, 3, padding="same"), layers.MaxPooling2D()],
        name="backbone",
    )
    inputs = keras.Input((*NATIVE, 3))
    outputs = layers.Dense(3)(layers.Flatten()(backbone(inputs)))
    classifier = keras.Model(inputs, outputs)
    fcn = fully_convolutional(classifier)
    images = _images(2, *NATIVE, seed=7) / 255.0
    np.testing.assert_allclose(np.asarray(fcn(images))[:, 0, 0], classifier(images), atol=1e-5)
    assert fcn(_images(1, 20, 26, seed=8)).shape == (1, 4, 5, 3)


def test_converted_model_owns_its_weights_and_round_trips_through_keras_file(tmp_path):
    classifier = _small_cnn_functional()
    fcn = fully_convolutional(classifier)
    images = _images(2, 22, 30, seed=9)
    expected = np.asarray(fcn(images))

    path = tmp_path / "fcn.keras"
    fcn.save(path)
    loaded = keras.models.load_model(path)  # standard layers only: no custom_objects
    np.testing.assert_allclose(loaded(images), expected, atol=1e-6)

    # No shared variables: changing the converted model leaves the classifier alone.
    before = np.asarray(classifier(images[:, :14, :18]))
    for weight in fcn.trainable_weights:
        weight.assign(keras.ops.zeros_like(weight))
    np.testing.assert_array_equal(classifier(images[:, :14, :18]), before)


def test_axis_layers_on_the_flat_feature_axis_move_to_the_channel_axis():
    keras.utils.set_random_seed(6)
    inputs = keras.Input((6, 5, 2))
    x = layers.Dense(7)(layers.Flatten()(layers.Conv2D(3, 3)(inputs)))
    x = layers.LayerNormalization(axis=1, name="norm")(x)
    outputs = layers.Softmax(axis=1)(layers.Dense(4)(x))
    classifier = keras.Model(inputs, outputs)
    classifier.get_layer("norm").set_weights([np.linspace(0.5, 2, 7), np.linspace(-1, 1, 7)])
    fcn = fully_convolutional(classifier)
    assert fcn.get_layer("norm").axis == [-1] and fcn.layers[-1].axis == -1
    images = np.random.default_rng(10).normal(size=(3, 6, 5, 2)).astype("float32")
    np.testing.assert_allclose(np.asarray(fcn(images))[:, 0, 0], classifier(images), atol=1e-5)
    assert fcn(np.zeros((1, 9, 8, 2), "float32")).shape == (1, 4, 4, 4)


def test_error_without_flatten_dense_head():
    inputs = keras.Input((8, 8, 3))
    outputs = layers.Conv2D(2, 1, name="score_conv")(layers.Conv2D(4, 3, name="conv_a")(inputs))
    message = r"no Flatten .*'score_conv' \(Conv2D\) is not a head layer"
    with pytest.raises(ValueError, match=message):
        fully_convolutional(keras.Model(inputs, outputs))


def test_error_for_flatten_without_dense():
    inputs = keras.Input((8, 8, 3))
    outputs = layers.Flatten(name="flat")(layers.Conv2D(4, 3)(inputs))
    with pytest.raises(ValueError, match=r"no Dense layer follows layer 'flat' \(Flatten\)"):
        fully_convolutional(keras.Model(inputs, outputs))


def test_error_for_unsupported_layer_after_the_head():
    inputs = keras.Input((8, 8, 3))
    x = layers.Dense(6)(layers.Flatten()(layers.Conv2D(4, 3)(inputs)))
    outputs = layers.Reshape((2, 3), name="regroup")(x)
    with pytest.raises(ValueError, match=r"'regroup' \(Reshape\) lies between the Flatten"):
        fully_convolutional(keras.Model(inputs, outputs))


def test_error_for_unknown_feature_size_names_the_layer():
    inputs = keras.Input((None, None, 3))
    x = layers.GlobalAveragePooling2D(name="gap")(layers.Conv2D(4, 3)(inputs))
    outputs = layers.Dense(2)(x)
    message = r"entering layer 'gap' \(GlobalAveragePooling2D\) has unknown size"
    with pytest.raises(ValueError, match=message):
        fully_convolutional(keras.Model(inputs, outputs))


def test_error_for_softmax_on_another_axis_and_bad_model_shapes():
    inputs = keras.Input((8, 8, 3))
    x = layers.Dense(6)(layers.Flatten()(inputs))
    x = layers.Reshape((2, 3))(x)
    with pytest.raises(ValueError, match="lies between the Flatten"):
        fully_convolutional(keras.Model(inputs, layers.Softmax(axis=1)(x)))
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    two_inputs = keras.Model([a, b], layers.Dense(2)(layers.Flatten()(layers.Add()([a, b]))))
    with pytest.raises(ValueError, match="one input and one output, got 2 input"):
        fully_convolutional(two_inputs)
    with pytest.raises(TypeError, match=r"`classifier` must be a keras\.Model"):
        fully_convolutional(layers.Dense(3))
