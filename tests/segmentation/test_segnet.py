import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.data.synthetic import synthetic_shapes
from kerasseg.segmentation.segnet import copy_encoder_weights, segnet

#: SegNet's encoder (VGG16's 13 conv layers) and decoder, as (in, out) channels, from the paper.
PAPER_ENCODER = [
    (3, 64),
    (64, 64),
    (64, 128),
    (128, 128),
    (128, 256),
    (256, 256),
    (256, 256),
    (256, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
]
PAPER_DECODER = [
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 256),
    (256, 256),
    (256, 256),
    (256, 128),
    (128, 128),
    (128, 64),
    (64, 64),
]


def paper_segnet_parameters(num_classes: int) -> int:
    """3x3 convs with bias, each followed by batch norm (gamma, beta, moving mean and variance),
    and the final 3x3 conv to class scores without batch norm."""
    conv_bn = sum(9 * a * b + b + 4 * b for a, b in PAPER_ENCODER + PAPER_DECODER)
    return conv_bn + 9 * 64 * num_classes + num_classes


def test_segnet_vgg16_is_the_papers_model():
    model = kerasseg.zoo.get("segnet_vgg16", weights=None)  # 11 classes: CamVid
    assert model.count_params() == paper_segnet_parameters(11) == 29_465_227
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    channels = [(layer.kernel.shape[2], layer.kernel.shape[3]) for layer in convs]
    assert channels == PAPER_ENCODER + PAPER_DECODER + [(64, 11)]
    assert not any(isinstance(layer, keras.layers.Dense) for layer in model.layers)
    pools = [
        layer for layer in model.layers if isinstance(layer, kerasseg.layers.MaxPoolingWithArgmax2D)
    ]
    unpools = [layer for layer in model.layers if isinstance(layer, kerasseg.layers.MaxUnpooling2D)]
    assert len(pools) == len(unpools) == 5


def _window_argmax_unpool(before: np.ndarray, values: np.ndarray) -> np.ndarray:
    """NumPy: put `values` at each 2x2 window's first maximum of `before` (row-major), else 0."""
    b, h, w, c = before.shape
    windows = (
        before.reshape(b, h // 2, 2, w // 2, 2, c)
        .transpose(0, 1, 3, 5, 2, 4)
        .reshape(b, h // 2, w // 2, c, 4)
    )
    first = windows.argmax(-1)  # numpy's argmax returns the first maximum
    out = np.zeros_like(before)
    bi, yi, xi, ci = np.indices(first.shape)
    out[bi, 2 * yi + first // 2, 2 * xi + first % 2, ci] = values
    return out


def test_unpooling_puts_values_at_the_encoders_argmax_positions():
    keras.utils.set_random_seed(1)
    model = segnet("vgg16_bn", num_classes=3, width=0.125)
    probe = keras.Model(
        model.input,
        [
            model.get_layer("block5_relu3").output,
            *model.get_layer("block5_pool").output,
            model.get_layer("dec5_unpool").output,
            model.get_layer("block1_relu2").output,
            model.get_layer("dec2_relu1").output,
            model.get_layer("dec1_unpool").output,
        ],
    )
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 96, 3)).astype("float32")
    before5, pooled5, indices5, unpooled5, before1, decoded2, unpooled1 = (
        keras.ops.convert_to_numpy(t) for t in probe(x)
    )
    # First unpooling: the pooled maxima go back exactly where the encoder found them.
    assert unpooled5.shape == before5.shape == (2, 4, 6, 64)
    np.testing.assert_array_equal(pooled5, before5.reshape(2, 2, 2, 3, 2, 64).max(axis=(2, 4)))
    np.testing.assert_array_equal(unpooled5, _window_argmax_unpool(before5, pooled5))
    positive = unpooled5 > 0
    assert positive.sum() > 0.3 * unpooled5.size / 4  # non-trivial: most windows have a max > 0
    # The recorded flat indices (y W + x) C + c point at the same positions.
    flat = np.zeros((2, 4 * 6 * 64), "float32")
    np.put_along_axis(flat, indices5.reshape(2, -1), pooled5.reshape(2, -1), axis=1)
    np.testing.assert_array_equal(flat.reshape(unpooled5.shape), unpooled5)
    # Last unpooling: decoded values (not the encoder's) at block 1's argmax positions.
    assert unpooled1.shape == before1.shape == (2, 64, 96, 8)
    np.testing.assert_array_equal(unpooled1, _window_argmax_unpool(before1, decoded2))
    assert (np.count_nonzero(unpooled1.reshape(2, 32, 2, 48, 2, 8), axis=(2, 4)) <= 1).all()


def test_imagenet_style_vgg16_bn_weights_load_into_the_encoder_by_name(tmp_path):
    keras.utils.set_random_seed(2)
    encoder = kerasseg.encoders.get("vgg16_bn", input_shape=(None, None, 3))
    rng = np.random.default_rng(2)
    for layer in encoder.layers:  # non-trivial batch-norm statistics, as in trained weights
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, w.shape).astype("float32")
                    if i in (0, 3)
                    else rng.normal(0, 0.1, w.shape).astype("float32")
                    for i, w in enumerate(layer.get_weights())
                ]
            )
    path = tmp_path / "vgg16_bn.weights.h5"
    encoder.save_weights(path)

    model = kerasseg.zoo.get("segnet_vgg16", weights=None, num_classes=2, encoder_weights=str(path))
    names = ["block2_relu2", "block3_relu3", "block4_relu3", "block5_relu3"]
    features = keras.Model(
        model.input,
        [model.get_layer(n).output for n in names] + [model.get_layer("block5_pool").output[0]],
    )
    x = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = encoder(x)  # strides 2, 4, 8, 16, 32
    for got, want in zip(features(x), expected):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(got), keras.ops.convert_to_numpy(want), rtol=1e-5, atol=1e-4
        )
    # The same by hand, into a fresh model: 13 convolutions and 13 batch norms.
    fresh = segnet("vgg16_bn", num_classes=2)
    assert len(copy_encoder_weights(encoder, fresh)) == 26
    np.testing.assert_array_equal(
        fresh.get_layer("block3_bn2").get_weights()[3],
        encoder.get_layer("block3_bn2").get_weights()[3],
    )
    with pytest.raises(ValueError, match=r"layer 'block1_conv1' has weights of shapes"):
        copy_encoder_weights(encoder, segnet("vgg16_bn", num_classes=2, width=0.125))


@pytest.mark.parametrize("name, num_classes", [("segnet_vgg16", 1), ("segnet_vgg11", 4)])
def test_one_and_several_classes_at_two_sizes(name, num_classes):
    model = kerasseg.zoo.get(name, weights=None, num_classes=num_classes, width=0.125)
    rng = np.random.default_rng(0)
    for size in ((32, 32), (64, 96)):
        y = model.predict(rng.uniform(0, 255, (2, *size, 3)).astype("float32"), verbose=0)
        assert y.shape == (2, *size, num_classes) and y.dtype == np.float32
        if num_classes > 1:
            np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
        else:
            assert ((y > 0) & (y < 1)).all()


def test_ops_pooling_gives_the_same_model_output():
    keras.utils.set_random_seed(4)
    tf_model = segnet(
        "vgg11_bn", num_classes=2, width=0.125, activation=None, input_shape=(None, None, 1)
    )
    ops_model = segnet(
        "vgg11_bn",
        num_classes=2,
        width=0.125,
        activation=None,
        input_shape=(None, None, 1),
        pooling_implementation="ops",
    )
    ops_model.set_weights(tf_model.get_weights())
    x = np.random.default_rng(4).uniform(0, 255, (1, 64, 32, 1)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ops_model(x)),
        keras.ops.convert_to_numpy(tf_model(x)),
        rtol=1e-5,
        atol=1e-5,
    )
    assert tf_model.layers[-1].name == "head_logits"


def test_input_size_not_divisible_gives_nearest_sizes():
    with pytest.raises(ValueError, match=r"Input width 100 is not divisible by 32 .* 96 or 128"):
        kerasseg.zoo.get("segnet_vgg16", weights=None, input_shape=(64, 100, 3))
    model = kerasseg.zoo.get("segnet_vgg11", weights=None, width=0.125)
    with pytest.raises(ValueError, match=r"Input height 48 is not divisible by 32 .* 32 or 64"):
        model(np.zeros((1, 48, 32, 3), "float32"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"encoder": "resnet34"}, "`encoder` must be a VGG encoder"),
        ({"num_classes": 0}, "`num_classes` must be a positive integer"),
        ({"width": 0}, "`width` must be a positive number"),
        ({"width": 0.5, "encoder_weights": "x.pth"}, r"needs the encoder's own channel counts"),
        ({"pooling_implementation": "cuda"}, "`pooling_implementation` must be one of"),
        ({"activation": "relu"}, "`activation` must be one of"),
        ({"input_shape": (32, 32, None)}, "known, positive channel count"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        segnet(**kwargs)


def test_fit_reduces_loss():
    # Graph-mode training (the max-unpooling indices through Grappler); the .keras round
    # trip of segnet_vgg11 is the model contract's (tests/test_model_contract.py).
    images, masks = synthetic_shapes(8, (32, 32), num_classes=2, seed=3)
    keras.utils.set_random_seed(0)
    model = kerasseg.zoo.get("segnet_vgg11", weights=None, num_classes=3, width=0.25)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    history = model.fit(images, masks, epochs=4, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
