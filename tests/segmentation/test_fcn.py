import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.data.synthetic import synthetic_shapes
from kerasseg.layers import BilinearKernel
from kerasseg.segmentation.fcn import fcn
from tests.support import require_module


def fcn_reference_filter(size: int) -> np.ndarray:
    """The 2-D bilinear filter of the FCN reference code (``upsample_filt``), worked in NumPy."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


def torch_upsample(torch, x_nhwc: np.ndarray, factor: int) -> np.ndarray:
    """PyTorch's ConvTranspose2d(k=2f, s=f, p=f/2) with the classic bilinear kernel on the diagonal."""
    channels = x_nhwc.shape[-1]
    weight = np.zeros((channels, channels, 2 * factor, 2 * factor), "float32")
    for c in range(channels):
        weight[c, c] = fcn_reference_filter(2 * factor)
    out = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy()),
        torch.from_numpy(weight),
        stride=factor,
        padding=factor // 2,
    )
    return out.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parity
@pytest.mark.parametrize("factor", [2, 8, 32])
def test_bilinear_transposed_conv_matches_torch_and_interpolation(factor):
    torch = require_module("torch")
    x = np.random.default_rng(factor).normal(size=(2, 3, 4, 3)).astype("float32")
    layer = keras.layers.Conv2DTranspose(
        3,
        2 * factor,
        strides=factor,
        padding="same",
        use_bias=False,
        kernel_initializer=BilinearKernel(),
    )
    y = keras.ops.convert_to_numpy(layer(x))
    assert y.shape == (2, 3 * factor, 4 * factor, 3)
    # The whole output equals PyTorch's transposed convolution with the FCN reference kernel.
    np.testing.assert_allclose(y, torch_upsample(torch, x, factor), rtol=1e-5, atol=1e-5)
    # Away from f/2 border pixels it is bilinear interpolation (half-pixel centres).
    bilinear = keras.ops.convert_to_numpy(
        keras.layers.UpSampling2D(factor, interpolation="bilinear")(x)
    )
    inner = slice(factor // 2, -(factor // 2))
    np.testing.assert_allclose(y[:, inner, inner], bilinear[:, inner, inner], rtol=1e-5, atol=1e-5)
    assert not np.allclose(y[:, 0], bilinear[:, 0])  # the border differs (zeros outside)


def test_bilinear_initializer_rejects_unequal_channels():
    with pytest.raises(ValueError, match=r"same input and output channels"):
        BilinearKernel()((4, 4, 3, 2))


def _conv(c_in: int, c_out: int, k: int = 1, bias: bool = True) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def paper_fcn8s_vgg16_parameters(num_classes: int) -> int:
    """FCN-8s of Long et al. (Caffe voc-fcn8s), layer by layer."""
    vgg16 = [
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
    total = sum(_conv(a, b, 3) for a, b in vgg16)
    total += _conv(512, 4096, 7) + _conv(4096, 4096)  # fc6, fc7
    total += _conv(4096, num_classes)  # score_fr
    total += _conv(512, num_classes) + _conv(256, num_classes)  # score_pool4, score_pool3
    up = 2 * _conv(num_classes, num_classes, 4, bias=False)  # upscore2, upscore_pool4
    return total + up + _conv(num_classes, num_classes, 16, bias=False)  # upscore8


def test_fcn8s_vgg16_is_the_papers_model():
    model = kerasseg.zoo.get("fcn8s_vgg16", weights=None)  # 21 classes: PASCAL VOC
    assert model.output_shape == (None, None, None, 21)
    assert model.count_params() == paper_fcn8s_vgg16_parameters(21) == 134_489_759
    # pool4 (512 channels) and pool3 (256) feed the score layers, which start at zero.
    assert model.get_layer("score16").kernel.shape == (1, 1, 512, 21)
    assert model.get_layer("score8").kernel.shape == (1, 1, 256, 21)
    for layer in ("score32", "score16", "score8"):
        assert not np.any(keras.ops.convert_to_numpy(model.get_layer(layer).kernel))
    # Fusion upsamplings are learned, the final one is fixed (section 4.2 of the paper).
    assert model.get_layer("up32to16").trainable and model.get_layer("up16to8").trainable
    assert not model.get_layer("upscore").trainable
    assert model.get_layer("fc6").kernel.shape == (7, 7, 512, 4096)


@pytest.mark.parity
def test_fusion_graph_matches_an_independent_torch_computation():
    """FCN-8s = up8(up2(up2(s32) + s16) + s8), with s* read from the model and up* in torch."""
    torch = require_module("torch")
    keras.utils.set_random_seed(3)
    model = fcn("resnet18", variant="8s", num_classes=3, fc_channels=8, dropout=0.0)
    rng = np.random.default_rng(3)
    for layer in ("score32", "score16", "score8"):  # non-zero scores, so every path counts
        kernel, bias = model.get_layer(layer).get_weights()
        model.get_layer(layer).set_weights(
            [
                rng.normal(size=kernel.shape).astype("float32"),
                rng.normal(size=bias.shape).astype("float32"),
            ]
        )
    scores = keras.Model(
        model.input, [model.get_layer(n).output for n in ("score32", "score16", "score8")]
    )
    x = rng.uniform(0, 255, (2, 64, 96, 3)).astype("float32")
    s32, s16, s8 = (keras.ops.convert_to_numpy(s) for s in scores(x))
    assert s32.shape == (2, 2, 3, 3) and s16.shape == (2, 4, 6, 3) and s8.shape == (2, 8, 12, 3)
    fused = torch_upsample(torch, torch_upsample(torch, s32, 2) + s16, 2) + s8
    logits = torch_upsample(torch, fused, 8)
    expected = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "name, num_classes, skip_layers",
    [
        ("fcn32s_vgg16", 3, ()),
        ("fcn16s_resnet18", 1, ("score16",)),
        ("fcn8s_resnet34", 4, ("score16", "score8")),
    ],
)
def test_variants_one_and_several_classes_at_two_sizes(name, num_classes, skip_layers):
    model = kerasseg.zoo.get(name, weights=None, num_classes=num_classes, fc_channels=8)
    names = {layer.name for layer in model.layers}
    assert {"score16", "score8"} & names == set(skip_layers)
    rng = np.random.default_rng(0)
    for size in ((32, 32), (64, 96)):
        y = model.predict(rng.uniform(0, 255, (2, *size, 3)).astype("float32"), verbose=0)
        assert y.shape == (2, *size, num_classes) and y.dtype == np.float32
        if num_classes > 1:
            np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
        else:
            assert ((y > 0) & (y < 1)).all()


def test_head_options_logits_and_grayscale():
    model = fcn(
        "resnet18",
        variant="32s",
        num_classes=2,
        fc_channels=0,
        activation=None,
        input_shape=(64, 64, 1),
        learn_final_upsampling=True,
    )
    names = {layer.name for layer in model.layers}
    assert not names & {"fc6", "fc7"}  # scores straight from the 512-channel stride-32 features
    assert model.get_layer("score32").kernel.shape == (1, 1, 512, 2)
    assert model.get_layer("upscore").trainable and model.get_layer("upscore").kernel.shape == (
        64,
        64,
        2,
        2,
    )
    assert model.layers[-1].name == "head_logits" and model.output_shape == (None, 64, 64, 2)
    resnet_head = fcn("resnet18", variant="32s", num_classes=2)
    assert resnet_head.get_layer("fc6").kernel.shape == (3, 3, 512, 512)
    assert resnet_head.get_layer("fc6_dropout").rate == 0.1 and "fc7_bn" in {
        layer.name for layer in resnet_head.layers
    }


def test_input_size_not_divisible_gives_nearest_sizes():
    with pytest.raises(ValueError, match=r"Input height 250 is not divisible by 32 .* 224 or 256"):
        kerasseg.zoo.get("fcn8s_resnet18", weights=None, input_shape=(250, 256, 3))
    model = kerasseg.zoo.get("fcn16s_resnet18", weights=None, fc_channels=4)
    with pytest.raises(ValueError, match=r"Input width 48 is not divisible by 32 .* 32 or 64"):
        model(np.zeros((1, 32, 48, 3), "float32"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "4s"}, "`variant` must be one of"),
        ({"num_classes": 0}, "`num_classes` must be a positive integer"),
        ({"fc_channels": -1}, "`fc_channels` must be an integer >= 0"),
        ({"fc_kernel_size": 0}, "`fc_kernel_size` must be a positive integer, got 0"),
        ({"dropout": 1.0}, r"`dropout` must be in \[0, 1\)"),
        ({"activation": "relu"}, "`activation` must be one of"),
        ({"input_shape": (32, 32)}, "`input_shape` must be"),
        ({"encoder": "resnet19"}, "Unknown encoder 'resnet19'. Did you mean"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fcn(**kwargs)


def test_fit_reduces_loss_save_load_and_encoder_weights(tmp_path):
    images, masks = synthetic_shapes(8, (32, 32), seed=2)
    keras.utils.set_random_seed(0)
    model = kerasseg.zoo.get("fcn8s_resnet18", weights=None, num_classes=1, fc_channels=16)
    # Eager steps: tracing a ResNet train step costs more than these few steps.
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy", run_eagerly=True
    )
    history = model.fit(images, masks.astype("float32"), epochs=4, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    # The fixed final upsampling stayed bilinear while everything else trained.
    kernel = keras.ops.convert_to_numpy(model.get_layer("upscore").kernel)
    np.testing.assert_array_equal(
        kernel, keras.ops.convert_to_numpy(BilinearKernel()(kernel.shape))
    )

    path = tmp_path / "fcn.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(model(images), loaded(images))
    assert isinstance(loaded.get_layer("upscore").kernel_initializer, BilinearKernel)

    # The nested encoder takes weights the way kerasseg.encoders.get does.
    weights = tmp_path / "resnet18.weights.h5"
    model.get_layer("encoder").save_weights(weights)
    rebuilt = kerasseg.zoo.get(
        "fcn8s_resnet18", weights=None, num_classes=1, fc_channels=16, encoder_weights=str(weights)
    )
    for a, b in zip(
        rebuilt.get_layer("encoder").get_weights(), model.get_layer("encoder").get_weights()
    ):
        np.testing.assert_array_equal(a, b)
