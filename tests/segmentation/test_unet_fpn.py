"""U-Net + FPN (``unet_fpn_<encoder>``): structure, parameter count by hand, behaviour."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kerasseg
from tests.segmentation.reference import (
    check_outputs,
    check_size_errors,
    images,
    trainable_parameters,
)

DECODER = (256, 128, 64, 32, 16)


def build(name: str = "unet_fpn_resnet18", **kwargs) -> keras.Model:
    return kerasseg.zoo.get(name, weights=None, **kwargs)


def head_parameters(num_classes: int, head: int = 32, merge: str = "add") -> int:
    """The multi-scale head, worked out by hand: per decoder level a bias-free 3x3 conv to
    `head` channels + BN (gamma, beta); after the merge a bias-free 3x3 conv + BN; a 1x1
    convolution with bias to the classes."""
    levels = sum(9 * c * head + 2 * head for c in DECODER)
    merged = head * (len(DECODER) if merge == "concat" else 1)
    return levels + 9 * merged * head + 2 * head + head * num_classes + num_classes


@pytest.mark.parametrize("encoder, merge", [("vgg11_bn", "add"), ("resnet18", "concat")])
def test_is_the_unet_decoder_plus_the_multiscale_head(encoder, merge):
    """Same encoder and U-Net decoder as unet_<encoder> (which equals smp's Unet), plus the
    head; its smp-style 3x3 output convolution (16 -> classes) is replaced."""
    with keras.StatelessScope():  # build-only
        model = build(f"unet_fpn_{encoder}", num_classes=2, merge=merge, input_shape=(64, 96, 3))
        unet = build(f"unet_{encoder}", num_classes=2)
    assert model.output_shape == (None, 64, 96, 2)
    shapes = {w.path: w.shape for w in unet.weights if w.path.startswith(("decoder", encoder))}
    ours = {w.path: w.shape for w in model.weights}
    assert shapes and all(ours.get(path) == shape for path, shape in shapes.items())
    unet_head = 9 * 16 * 2 + 2
    expected = trainable_parameters(unet) - unet_head + head_parameters(2, merge=merge)
    assert trainable_parameters(model) == expected


def test_issue_parameter_count():
    with keras.StatelessScope():
        model = build("unet_fpn_resnet34")
    assert trainable_parameters(model) == 24_436_369 - (9 * 16 + 1) + head_parameters(1)
    assert trainable_parameters(model) == 24_588_705


def test_every_decoder_level_reaches_the_output():
    """Zeroing one level's head convolution changes the prediction: every level feeds it."""
    keras.utils.set_random_seed(1)
    model = build(activation=None, dropout=0.0)
    x = images((1, 32, 32, 3))
    base = np.asarray(model(x, training=False))
    for level in range(5):
        layer = model.get_layer(f"fusion_level{level}_conv")
        kernel = layer.kernel.numpy()
        layer.kernel.assign(np.zeros_like(kernel))
        changed = np.asarray(model(x, training=False))
        layer.kernel.assign(kernel)
        assert np.abs(changed - base).max() > 1e-4, level


def test_one_and_several_classes_give_probabilities():
    # Training, other sizes and the .keras round trip: tests/test_model_contract.py.
    check_outputs(build(num_classes=3), 3)
    model = build(num_classes=1)
    check_outputs(model, 1)


def test_size_errors():
    check_size_errors(build)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"head_channels": 0}, "`head_channels` must be a positive integer"),
        ({"merge": "max"}, "`merge` must be one of"),
        ({"dropout": -0.1}, r"`dropout` must be a number in \[0, 1\)"),
        ({"decoder_channels": (1, 2, 3, 4)}, "`decoder_channels` must give 5"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)
