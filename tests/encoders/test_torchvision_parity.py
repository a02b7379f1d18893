"""Acceptance: every encoder, with converted torchvision weights, reproduces torchvision.

For each encoder, torchvision's model is built with random weights and BN statistics
(`tests.encoders.reference`), its state dict is converted with `kerasseg.zoo.convert`, and
our features at every stride are compared with torchvision's intermediate outputs on random
0..255 images of two even sizes. Our model gets the raw images (so its normalisation layer
is tested too); torchvision gets them normalised by hand.

Tolerance: max |ours - torchvision| <= 1e-4 * max(1, max |torchvision|) per feature map.
"""

from __future__ import annotations

import numpy as np
import pytest

from kerasseg import encoders
from kerasseg.zoo import convert
from tests.encoders.reference import (
    normalise,
    random_torchvision_model,
    scaled_error,
    state_dict_numpy,
    torchvision_features,
)

pytestmark = pytest.mark.parity

ENCODERS = [
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
]
SIZES = [(64, 96), (96, 64)]
TOLERANCE = 1e-4


def test_every_encoder_is_covered():
    assert sorted(ENCODERS) == encoders.list_encoders()


@pytest.mark.parametrize("name", ENCODERS)
def test_converted_encoder_matches_torchvision(name):
    torch_model = random_torchvision_model(name)
    state = state_dict_numpy(torch_model)
    vgg = name.startswith("vgg")
    model = convert.convert_torchvision(name, state, include_stride_1=vgg)

    # Parameter counts: our trainable weights are torchvision's parameters without the
    # classifier head; our non-trainable ones its BN running statistics.
    head = ("classifier.",) if vgg else ("fc.",)
    torch_params = sum(
        p.numel() for n, p in torch_model.named_parameters() if not n.startswith(head)
    )
    torch_stats = sum(
        b.numel() for n, b in torch_model.named_buffers() if not n.endswith("num_batches_tracked")
    )
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == torch_params
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == torch_stats

    rng = np.random.default_rng(100 + ENCODERS.index(name))
    strides = encoders.feature_strides(name, include_stride_1=vgg)
    channels = encoders.feature_channels(name, include_stride_1=vgg)
    for height, width in SIZES:
        images = rng.uniform(0, 255, (2, height, width, 3)).astype("float32")
        ours = [np.asarray(f) for f in model(images, training=False)]
        reference = torchvision_features(torch_model, name, normalise(images))
        assert len(ours) == len(reference) == len(strides)
        for stride, c, a, b in zip(strides, channels, ours, reference):
            assert a.shape == b.shape == (2, height // stride, width // stride, c)
            error = scaled_error(a, b)
            assert error <= TOLERANCE, f"{name} stride {stride} at {height}x{width}: {error:.2e}"
