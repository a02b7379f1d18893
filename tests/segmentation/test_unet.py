import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.data.synthetic import synthetic_shapes


def _conv(c_in: int, c_out: int, k: int = 3) -> int:
    return k * k * c_in * c_out + c_out


def paper_unet_parameters(
    in_channels: int, num_classes: int, filters: int = 64, depth: int = 4
) -> int:
    """Parameter count of Ronneberger et al.'s U-Net (no batch norm), worked out layer by layer."""
    total, c_in = 0, in_channels
    for level in range(depth + 1):  # contracting path and bottom: two 3x3 convs per level
        c_out = filters * 2**level
        total += _conv(c_in, c_out) + _conv(c_out, c_out)
        c_in = c_out
    for level in reversed(range(depth)):  # up-conv 2x2 halving channels, concat, two 3x3 convs
        c_out = filters * 2**level
        total += _conv(c_in, c_out, k=2) + _conv(2 * c_out, c_out) + _conv(c_out, c_out)
        c_in = c_out
    return total + _conv(c_in, num_classes, k=1)


def test_paper_configuration_has_the_papers_channel_plan():
    model = kerasseg.zoo.get(
        "unet", weights=None, num_classes=2, input_shape=(None, None, 1), batch_norm=False
    )
    assert model.count_params() == paper_unet_parameters(1, 2) == 31_030_658


@pytest.mark.parametrize("num_classes, activation", [(1, "sigmoid"), (3, "softmax")])
def test_builds_for_one_and_several_classes(num_classes, activation):
    keras.utils.set_random_seed(0)  # unseeded, some initialisations saturate to exactly 1.0
    model = kerasseg.zoo.get("unet", weights=None, num_classes=num_classes, filters=4, depth=2)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 48, 3)).astype("float32")
    y = model.predict(x, verbose=0)
    assert y.shape == (2, 32, 48, num_classes)
    assert y.dtype == np.float32
    assert model.layers[-1].get_config()["activation"] == activation
    if num_classes > 1:
        np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    else:
        assert ((y > 0) & (y < 1)).all()


def test_runs_at_two_input_sizes_and_logits_option():
    model = kerasseg.zoo.get("unet", weights=None, filters=4, depth=3, activation=None)
    for size in ((32, 32), (64, 40)):
        x = np.zeros((1, *size, 3), "float32")
        assert model.predict(x, verbose=0).shape == (1, *size, 1)
    assert model.layers[-1].get_config()["activation"] == "linear"


@pytest.mark.parametrize("upsampling", ["transpose", "bilinear", "nearest"])
def test_upsampling_modes(upsampling):
    model = kerasseg.zoo.get(
        "unet", weights=None, filters=4, depth=2, upsampling=upsampling, input_shape=(16, 16, 1)
    )
    assert model.output_shape == (None, 16, 16, 1)


def test_input_size_not_divisible_gives_nearest_sizes():
    with pytest.raises(ValueError, match=r"Input height 250 is not divisible by 16 .* 240 or 256"):
        kerasseg.zoo.get("unet", weights=None, input_shape=(250, 256, 3))
    model = kerasseg.zoo.get("unet", weights=None, filters=4, depth=3)
    with pytest.raises(ValueError, match=r"Input width 36 is not divisible by 8 .* 32 or 40"):
        model(np.zeros((1, 32, 36, 3), "float32"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 0}, "`num_classes` must be a positive integer"),
        ({"depth": 0}, "`depth` must be a positive integer"),
        ({"filters": -1}, "`filters` must be a positive integer"),
        ({"upsampling": "cubic"}, "`upsampling` must be one of"),
        ({"dropout": 1.0}, r"`dropout` must be in \[0, 1\)"),
        ({"activation": "relu"}, "`activation` must be one of"),
        ({"input_shape": (32, 32)}, "`input_shape` must be"),
        ({"input_shape": (32, 32, None)}, "known, positive channel count"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kerasseg.zoo.get("unet", weights=None, **kwargs)


def test_fit_reduces_loss():
    # The .keras round trip of `unet` is the model contract's (tests/test_model_contract.py).
    images, masks = synthetic_shapes(8, (32, 32), seed=1)
    keras.utils.set_random_seed(0)
    model = kerasseg.zoo.get("unet", weights=None, filters=8, depth=2, dropout=0.1)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    history = model.fit(images, masks.astype("float32"), epochs=5, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
