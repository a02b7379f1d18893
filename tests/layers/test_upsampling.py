"""BilinearUpsampling2D: PyTorch's interpolate(bilinear) in both alignments."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.layers import BilinearUpsampling2D
from tests.support import require_module


def _torch_upsample(x_nhwc: np.ndarray, size: int, align_corners: bool) -> np.ndarray:
    torch = require_module("torch")
    y = torch.nn.functional.interpolate(
        torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2)),
        scale_factor=size,
        mode="bilinear",
        align_corners=align_corners,
    )
    return y.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parity
@pytest.mark.parametrize("size", [1, 2, 4])
@pytest.mark.parametrize("align_corners", [True, False])
def test_equals_pytorch(size, align_corners):
    x = np.random.default_rng(size).normal(size=(2, 3, 5, 4)).astype("float32")
    ours = np.asarray(BilinearUpsampling2D(size, align_corners=align_corners)(x))
    reference = _torch_upsample(x, size, align_corners)
    assert ours.shape == reference.shape == (2, 3 * size, 5 * size, 4)
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_half_pixel_mode_equals_keras_upsampling():
    x = np.random.default_rng(0).normal(size=(1, 4, 6, 2)).astype("float32")
    keras_bilinear = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    np.testing.assert_allclose(
        np.asarray(BilinearUpsampling2D(2, align_corners=False)(x)), keras_bilinear, atol=1e-6
    )


@pytest.mark.parity
def test_unknown_sizes_and_serialization(tmp_path):
    inputs = keras.Input((None, None, 3))
    layer = BilinearUpsampling2D(4, name="up")
    model = keras.Model(inputs, layer(inputs))
    assert model.output_shape == (None, None, None, 3)
    x = np.random.default_rng(1).normal(size=(1, 2, 3, 3)).astype("float32")
    expected = _torch_upsample(x, 4, True)
    path = tmp_path / "up.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("up").get_config()["size"] == 4
    assert kerasseg.layers.BilinearUpsampling2D is type(loaded.get_layer("up"))
    # predict traces a graph with unknown height and width.
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)


def test_keeps_the_input_dtype():
    x = np.random.default_rng(2).normal(size=(1, 2, 2, 1)).astype("float16")
    layer = BilinearUpsampling2D(2, dtype="mixed_float16")
    assert keras.backend.standardize_dtype(layer(x).dtype) == "float16"


@pytest.mark.parametrize("size", [0, 1.5, True])
def test_bad_size(size):
    with pytest.raises(ValueError, match="`size` must be a positive integer"):
        BilinearUpsampling2D(size)
