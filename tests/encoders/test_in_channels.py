"""Encoders for other than 3 input channels, and what converted RGB weights mean for them."""

from __future__ import annotations

import numpy as np
import pytest

from kerasseg import encoders
from kerasseg.zoo import convert
from tests.encoders.reference import (
    MEAN,
    STD,
    random_torchvision_model,
    scaled_error,
    state_dict_numpy,
    torchvision_features,
)

TOLERANCE = 1e-4
GRAY_MEAN, GRAY_STD = float(MEAN.mean()), float(STD.mean())


def test_normalisation_statistics_per_channel_count():
    means, stds = encoders.channel_statistics(1, MEAN, STD)
    np.testing.assert_allclose(means, [0.449], atol=1e-7)
    np.testing.assert_allclose(stds, [0.226], atol=1e-7)
    means, stds = encoders.channel_statistics(4, MEAN, STD)
    np.testing.assert_allclose(means, [0.485, 0.456, 0.406, 0.485])
    np.testing.assert_allclose(stds, [0.229, 0.224, 0.225, 0.229])
    with pytest.raises(ValueError, match=r"`in_channels` must be a positive integer, got 0"):
        encoders.channel_statistics(0, MEAN, STD)


def test_grayscale_encoder_builds_and_normalises():
    model = encoders.get("vgg11", in_channels=1, input_shape=(64, 32, 1))
    assert model.get_layer("block1_conv1").kernel.shape == (3, 3, 1, 64)
    features = model(np.zeros((2, 64, 32, 1), "float32"))
    assert [tuple(f.shape) for f in features] == [
        (2, 64 // s, 32 // s, c)
        for s, c in zip(encoders.STRIDES, encoders.feature_channels("vgg11"))
    ]
    # The normalisation layer maps gray g to (g / 255 - 0.449) / 0.226.
    gray = np.random.default_rng(0).uniform(0, 255, (1, 64, 32, 1)).astype("float32")
    normalised = model.get_layer("normalize")(gray)
    expected = (gray / 255 - GRAY_MEAN) / GRAY_STD
    np.testing.assert_allclose(normalised, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parity
def test_converted_gray_model_equals_rgb_model_on_replicated_gray():
    """What is equal: the 1-channel model on gray g, and the RGB network fed g's 1-channel
    normalisation (g / 255 - 0.449) / 0.226 in all three channels, because the summed kernel
    applied to one channel is the RGB kernel applied to three equal channels (zero padding
    included). What is NOT equal: the RGB *model* on g replicated to RGB, whose per-channel
    normalisation gives three slightly different channels."""
    state_model = random_torchvision_model("resnet18")
    state = state_dict_numpy(state_model)
    gray_model = convert.convert_torchvision("resnet18", state, in_channels=1)
    gray = np.random.default_rng(1).uniform(0, 255, (2, 64, 96, 1)).astype("float32")
    ours = gray_model(gray, training=False)

    # Against torchvision's RGB model on the replicated, gray-normalised image.
    replicated = np.repeat((gray / 255.0 - GRAY_MEAN) / GRAY_STD, 3, axis=-1)
    reference = torchvision_features(
        state_model, "resnet18", np.ascontiguousarray(replicated.transpose(0, 3, 1, 2))
    )
    for a, b in zip(ours, reference):
        assert scaled_error(np.asarray(a), b) <= TOLERANCE

    # Within Keras: the RGB model equals it on the RGB image whose per-channel normalisation
    # gives that value, 255 * (mean_c + std_c * (g / 255 - 0.449) / 0.226) ...
    rgb_model = convert.convert_torchvision("resnet18", state)
    matched = 255.0 * (MEAN + STD * (gray / 255.0 - GRAY_MEAN) / GRAY_STD)
    for a, b in zip(ours, rgb_model(matched.astype("float32"), training=False)):
        assert scaled_error(np.asarray(a), np.asarray(b)) <= TOLERANCE
    # ... but not on the plainly replicated gray image: that is the normalisation difference.
    plain = rgb_model(np.repeat(gray, 3, axis=-1), training=False)
    assert scaled_error(np.asarray(ours[0]), np.asarray(plain[0])) > 100 * TOLERANCE


def test_six_channel_model_equals_rgb_model_on_repeated_rgb():
    """The repeat-and-rescale rule is exact when 3 divides k: an RGB image repeated k / 3
    times gives the RGB model's features (each RGB kernel slice is used k / 3 times, scaled
    by 3 / k, and the normalisation repeats with it)."""
    rng = np.random.default_rng(2)
    state = _random_vgg11_state(rng)
    rgb_model = convert.convert_torchvision("vgg11", state)
    six_model = convert.convert_torchvision("vgg11", state, in_channels=6)
    assert six_model.get_layer("block1_conv1").kernel.shape == (3, 3, 6, 64)
    images = rng.uniform(0, 255, (1, 32, 64, 3)).astype("float32")
    for a, b in zip(six_model(np.concatenate([images, images], -1)), rgb_model(images)):
        assert scaled_error(np.asarray(a), np.asarray(b)) <= TOLERANCE


def _random_vgg11_state(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A torchvision-style vgg11 state dict (feature tensors only) with random values, its
    names and shapes worked out from VGG11's channel plan (torch-free)."""
    state, index, c_in = {}, 0, 3
    for block in ((64,), (128,), (256, 256), (512, 512), (512, 512)):
        for c_out in block:
            std = np.sqrt(2.0 / (9 * c_in))
            state[f"features.{index}.weight"] = rng.normal(0, std, (c_out, c_in, 3, 3))
            state[f"features.{index}.bias"] = rng.normal(0, 0.1, (c_out,))
            index, c_in = index + 2, c_out  # conv, relu
        index += 1  # max-pool
    return state
