"""fold_batch_norm: the folded model computes what the original computes in inference mode."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers

import kerasseg
from kerasseg.layers import fold_batch_norm


def _randomise_batch_norms(model: keras.Model, seed: int = 0) -> None:
    """Non-trivial statistics and affine parameters, so that folding has work to do."""
    rng = np.random.default_rng(seed)
    pending = list(model.layers)
    while pending:
        layer = pending.pop()
        if isinstance(layer, keras.Model):
            pending.extend(layer.layers)
        elif isinstance(layer, layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0.0, 0.5, n))
            layer.moving_variance.assign(rng.uniform(0.3, 3.0, n))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            if layer.center:
                layer.beta.assign(rng.normal(0.0, 0.5, n))


def _count(model: keras.Model, cls: type) -> int:
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += _count(layer, cls)
        total += isinstance(layer, cls)
    return total


def _assert_same_function(original, folded, x, *, rtol=1e-5, atol=1e-5):
    expected = np.asarray(original(x, training=False))
    got = np.asarray(folded(x, training=False))
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol * scale)


def _single_pair_model(layer, input_shape, *, bn_axis=-1, center=True, scale=True):
    inputs = keras.Input(input_shape)
    x = layer(inputs)
    x = layers.BatchNormalization(axis=bn_axis, center=center, scale=scale, epsilon=1e-3)(x)
    outputs = layers.ReLU()(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (lambda: layers.Conv2D(6, 3, padding="same", use_bias=False), (9, 7, 3)),
        (lambda: layers.Conv2D(6, 3, strides=2, use_bias=True), (9, 7, 3)),
        (lambda: layers.Conv2D(6, 3, groups=3, padding="same"), (9, 7, 3)),
        (lambda: layers.Conv1D(5, 3, padding="same"), (11, 4)),
        (lambda: layers.Conv3D(4, 2), (5, 6, 4, 2)),
        (lambda: layers.Conv2DTranspose(5, 3, strides=2, padding="same"), (4, 5, 3)),
        (lambda: layers.Conv1DTranspose(5, 3, strides=2), (6, 3)),
        (lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"), (8, 8, 3)),
        (lambda: layers.DepthwiseConv1D(3, depth_multiplier=3), (8, 2)),
        (lambda: layers.Dense(7), (5,)),
        (lambda: layers.Dense(7, use_bias=False), (3, 5)),
    ],
    ids=[
        "conv2d",
        "conv2d_bias_stride",
        "conv2d_groups",
        "conv1d",
        "conv3d",
        "conv2d_transpose",
        "conv1d_transpose",
        "depthwise2d",
        "depthwise1d",
        "dense",
        "dense_rank3",
    ],
)
def test_every_foldable_layer_type_folds_exactly(layer, input_shape):
    model = _single_pair_model(layer(), input_shape)
    _randomise_batch_norms(model)
    folded = fold_batch_norm(model)
    assert _count(folded, layers.BatchNormalization) == 0
    linear = folded.layers[1]
    assert linear.use_bias
    x = np.random.default_rng(1).normal(size=(3, *input_shape)).astype("float32")
    _assert_same_function(model, folded, x)


@pytest.mark.parametrize("center, scale", [(False, True), (True, False), (False, False)])
def test_batch_norm_without_center_or_scale(center, scale):
    model = _single_pair_model(layers.Conv2D(4, 3), (6, 6, 2), center=center, scale=scale)
    _randomise_batch_norms(model)
    folded = fold_batch_norm(model)
    assert _count(folded, layers.BatchNormalization) == 0
    _assert_same_function(model, folded, np.random.default_rng(2).normal(size=(2, 6, 6, 2)))


def test_channels_first_convolution():
    """BN over axis 1 after a channels-first convolution folds into its output channels.
    TensorFlow cannot run NCHW convolutions on the CPU, so the folded weights are checked
    against the folding formula, worked in NumPy: W' = W * g / sqrt(v + eps) per output
    channel, b' = (b - m) * g / sqrt(v + eps) + beta."""
    conv = layers.Conv2D(4, 3, data_format="channels_first", padding="same")
    model = _single_pair_model(conv, (3, 6, 5), bn_axis=1)
    _randomise_batch_norms(model)
    bn = next(layer for layer in model.layers if isinstance(layer, layers.BatchNormalization))
    kernel, bias = (np.asarray(w) for w in conv.weights)
    gamma, beta, mean, variance = (np.asarray(w) for w in bn.weights)
    factor = gamma / np.sqrt(variance + bn.epsilon)
    folded = fold_batch_norm(model)
    assert _count(folded, layers.BatchNormalization) == 0
    (folded_conv,) = [layer for layer in folded.layers if isinstance(layer, layers.Conv2D)]
    assert folded_conv.data_format == "channels_first"
    new_kernel, new_bias = (np.asarray(w) for w in folded_conv.weights)
    np.testing.assert_allclose(new_kernel, kernel * factor, rtol=1e-6)
    np.testing.assert_allclose(new_bias, (bias - mean) * factor + beta, rtol=1e-6, atol=1e-7)
    assert not np.allclose(factor, 1.0)  # the statistics were not trivial


def _unfoldable_models():
    inputs = keras.Input((6, 6, 3))
    # 1. Activation inside the convolution: BN(relu(conv)) is not linear in the kernel.
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    a = layers.BatchNormalization()(a)
    # 2. The convolution's output also feeds another branch.
    conv = layers.Conv2D(4, 3, padding="same")(inputs)
    b = layers.Add()([layers.BatchNormalization()(conv), conv])
    # 3. Normalising an axis that is not the channel axis.
    c = layers.Conv2D(6, 3, padding="same")(inputs)
    c = layers.BatchNormalization(axis=2)(c)
    # 4. After a non-linear layer (an Add).
    d = layers.BatchNormalization()(layers.Add()([a, b]))
    # 5. The convolution is shared (called twice): its kernel cannot serve both calls.
    shared = layers.Conv2D(4, 1)
    e = layers.BatchNormalization()(shared(d))
    e2 = shared(b)
    outputs = layers.Concatenate()([a, b, c, d, e, e2])
    return keras.Model(inputs, outputs)


def test_batch_norms_that_cannot_be_folded_are_kept():
    model = _unfoldable_models()
    _randomise_batch_norms(model)
    folded = fold_batch_norm(model)
    assert (
        _count(folded, layers.BatchNormalization) == _count(model, layers.BatchNormalization) == 5
    )
    _assert_same_function(model, folded, np.random.default_rng(4).normal(size=(2, 6, 6, 3)))


def test_batch_norm_whose_output_is_the_models_output():
    model = _single_pair_model(layers.Conv2D(3, 3), (5, 5, 2))
    inner = keras.Model(model.input, model.layers[2].output)  # ends with the batch norm
    _randomise_batch_norms(inner)
    folded = fold_batch_norm(inner)
    assert _count(folded, layers.BatchNormalization) == 0
    _assert_same_function(inner, folded, np.random.default_rng(5).normal(size=(2, 5, 5, 2)))


def test_original_model_is_unchanged_and_independent():
    model = _single_pair_model(layers.Conv2D(3, 3), (5, 5, 2))
    _randomise_batch_norms(model)
    before = [w.copy() for w in model.get_weights()]
    folded = fold_batch_norm(model)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert _count(model, layers.BatchNormalization) == 1
    assert not {id(v) for v in folded.weights} & {id(v) for v in model.weights}


def test_segmentation_model_with_nested_encoder(tmp_path):
    model = kerasseg.zoo.get("unet_resnet34", weights=None, num_classes=2)
    _randomise_batch_norms(model)
    batch_norms = _count(model, layers.BatchNormalization)
    assert batch_norms == 46
    folded = fold_batch_norm(model)
    assert _count(folded, layers.BatchNormalization) == 0
    assert [layer.name for layer in folded.layers] == [
        layer.name for layer in model.layers if not isinstance(layer, layers.BatchNormalization)
    ]
    # Two input sizes: the folded model keeps the dynamic input shape.
    for height, width in [(64, 64), (32, 96)]:
        x = np.random.default_rng(height).uniform(0, 255, (2, height, width, 3)).astype("float32")
        _assert_same_function(model, folded, x, atol=5e-5)
    path = tmp_path / "folded.keras"
    folded.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(folded(x)))
    # Its size check survives: the wrong size still gets the model's clear error.
    with pytest.raises(ValueError, match="divisible by 32"):
        folded(np.zeros((1, 40, 64, 3), "float32"))


def test_sequential_model():
    model = keras.Sequential(
        [
            layers.Conv2D(4, 3, use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.BatchNormalization(),  # after an activation: kept
            layers.Flatten(),
            layers.Dense(5),
            layers.BatchNormalization(),
        ]
    )
    model.build((None, 8, 8, 3))
    _randomise_batch_norms(model)
    folded = fold_batch_norm(model)
    assert isinstance(folded, keras.Sequential)
    assert [type(layer).__name__ for layer in folded.layers] == [
        "Conv2D",
        "ReLU",
        "BatchNormalization",
        "Flatten",
        "Dense",
    ]
    _assert_same_function(model, folded, np.random.default_rng(6).normal(size=(3, 8, 8, 3)))


def _conv_bn_model(policy):
    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2D(4, 3, dtype=policy)(inputs)
    x = layers.BatchNormalization(dtype=policy)(x)
    outputs = layers.Activation("linear", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def test_mixed_precision_model_keeps_its_policy():
    model = _conv_bn_model(keras.DTypePolicy("mixed_bfloat16"))
    _randomise_batch_norms(model)
    # The same weights under float32: mixed_bfloat16 keeps its variables in float32, so the
    # fold (done on the variables) must give bit-identical kernels and biases.
    reference = _conv_bn_model("float32")
    reference.set_weights(model.get_weights())
    folded = fold_batch_norm(model)
    folded32 = fold_batch_norm(reference)
    conv, conv32 = folded.layers[1], folded32.layers[1]
    assert [type(layer).__name__ for layer in folded.layers] == [
        "InputLayer",
        "Conv2D",
        "Activation",
    ]
    for weight, weight32 in zip(conv.weights, conv32.weights, strict=True):
        assert weight.dtype == "float32"
        np.testing.assert_array_equal(np.asarray(weight), np.asarray(weight32))
    assert conv.dtype_policy.name == "mixed_bfloat16" and conv32.dtype_policy.name == "float32"
    assert folded.layers[2].dtype_policy.name == "float32"
    # The folded layer computes in bfloat16: its output equals a bfloat16 conv with the
    # float32-fold weights, exactly; and the float32 fold reproduces the unfolded model.
    x = np.random.default_rng(7).normal(size=(2, 6, 6, 3)).astype("float32")
    assert keras.backend.standardize_dtype(conv(x).dtype) == "bfloat16"
    bf16_conv = layers.Conv2D(4, 3, dtype="mixed_bfloat16")
    bf16_conv.build((None, 6, 6, 3))
    bf16_conv.set_weights(conv32.get_weights())
    np.testing.assert_array_equal(
        np.asarray(folded(x)), np.asarray(keras.ops.cast(bf16_conv(x), "float32"))
    )
    _assert_same_function(reference, folded32, x)


def test_unbuilt_sequential_model_is_rejected():
    with pytest.raises(ValueError, match="has not been built"):
        fold_batch_norm(keras.Sequential([layers.Dense(2), layers.BatchNormalization()]))


def test_subclassed_model_is_rejected():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(TypeError, match="subclassed type Subclassed"):
        fold_batch_norm(model)
