"""Our feature definitions and input-channel adaptation equal segmentation_models_pytorch's.

smp's encoders are an independent reference for (a) which layer gives the feature at each
stride (smp's VGG encoder returns the stride-1 block output first; its ResNet encoder returns
the input first, which we drop), and (b) the first-convolution rule for in_channels != 3
(``set_in_channels`` / ``patch_first_conv``: sum for 1 channel, repeat and scale by 3/k
otherwise). Tolerance as in test_torchvision_parity.
"""

from __future__ import annotations

import numpy as np
import pytest

from kerasseg.zoo import convert
from tests.encoders.reference import (
    MEAN,
    STD,
    normalise,
    random_torchvision_model,
    scaled_error,
    state_dict_numpy,
)
from tests.support import require_module

pytestmark = pytest.mark.parity
TOLERANCE = 1e-4


def smp_encoder(name: str, state: dict, in_channels: int = 3):
    torch = require_module("torch")
    smp = require_module("segmentation_models_pytorch")
    with torch.device("meta"):
        encoder = smp.encoders.get_encoder(name, weights=None)
    encoder = encoder.to_empty(device="cpu")
    encoder.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    if in_channels != 3:
        encoder.set_in_channels(in_channels, pretrained=True)  # smp's adaptation rule
    return encoder.eval()


def smp_features(encoder, x_nchw: np.ndarray) -> list[np.ndarray]:
    torch = require_module("torch")
    with torch.no_grad():
        features = encoder(torch.from_numpy(x_nchw))
    return [f.permute(0, 2, 3, 1).numpy() for f in features]


@pytest.mark.parametrize("name", ["vgg11_bn", "resnet18"])
def test_features_are_smp_features(name):
    state = state_dict_numpy(random_torchvision_model(name))
    vgg = name.startswith("vgg")
    model = convert.convert_torchvision(name, state, include_stride_1=vgg)
    reference = smp_features(smp_encoder(name, state), normalise(_images((1, 64, 96, 3))))
    if not vgg:
        reference = reference[1:]  # smp's ResNet encoder returns its input first
    ours = model(_images((1, 64, 96, 3)), training=False)
    assert len(ours) == len(reference) == (6 if vgg else 5)
    for a, b in zip(ours, reference):
        assert a.shape == b.shape
        assert scaled_error(np.asarray(a), b) <= TOLERANCE


@pytest.mark.parametrize("name, in_channels", [("resnet18", 1), ("vgg11", 4)])
def test_input_channel_adaptation_is_smps(name, in_channels):
    state = state_dict_numpy(random_torchvision_model(name))
    model = convert.convert_torchvision(name, state, in_channels=in_channels)
    images = _images((1, 64, 64, in_channels))
    # Our documented normalisation for k channels, written out independently.
    if in_channels == 1:
        mean, std = MEAN.mean(keepdims=True), STD.mean(keepdims=True)
    else:
        mean, std = MEAN[np.arange(in_channels) % 3], STD[np.arange(in_channels) % 3]
    reference = smp_features(smp_encoder(name, state, in_channels), normalise(images, mean, std))
    # smp's first output: the input (ResNet) or the stride-1 feature (VGG), not requested here.
    reference = reference[1:]
    ours = model(images, training=False)
    for a, b in zip(ours, reference):
        assert a.shape == b.shape
        assert scaled_error(np.asarray(a), b) <= TOLERANCE


def _images(shape):
    return np.random.default_rng(sum(shape)).uniform(0, 255, shape).astype("float32")
