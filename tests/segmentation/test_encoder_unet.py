"""U-Net on encoders (``unet_<encoder>``): parity with segmentation_models_pytorch's Unet."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kerasseg
from kerasseg import encoders
from tests.segmentation.reference import (
    Transfer,
    assert_close,
    check_outputs,
    check_size_errors,
    images,
    load_smp_encoder,
    randomise,
    smp_model,
    state_dict,
    torch_forward,
    torch_parameters,
    trainable_parameters,
)


def build(name: str = "unet_resnet18", **kwargs) -> keras.Model:
    return kerasseg.zoo.get(name, weights=None, **kwargs)


def transfer_smp_unet(model: keras.Model, reference, encoder: str, center: bool) -> None:
    """Our layer for every smp decoder/head tensor (names written out here, not derived)."""
    load_smp_encoder(model, encoder, reference)
    state = {k: v for k, v in state_dict(reference).items() if not k.startswith("encoder.")}
    transfer = Transfer(model, state)
    if center:
        for j in (1, 2):
            transfer.conv(f"decoder_center_{j}_conv", f"decoder.center.{j - 1}.0")
            transfer.batch_norm(f"decoder_center_{j}_bn", f"decoder.center.{j - 1}.1")
    for i in range(5):
        for j in (1, 2):
            transfer.conv(f"decoder_block{i}_{j}_conv", f"decoder.blocks.{i}.conv{j}.0")
            transfer.batch_norm(f"decoder_block{i}_{j}_bn", f"decoder.blocks.{i}.conv{j}.1")
    transfer.conv("head_conv", "segmentation_head.0")
    transfer.check_complete()


@pytest.mark.parity
@pytest.mark.parametrize("encoder, parameters", [("resnet34", 24_436_369), ("vgg11", 18_254_033)])
def test_equals_smp_unet(encoder, parameters):
    """Same trainable parameters as smp's Unet and, with its weights, the same outputs."""
    reference = randomise(smp_model("Unet", encoder))
    model = build(f"unet_{encoder}", activation=None)
    assert trainable_parameters(model) == torch_parameters(reference) == parameters
    # BN moving statistics: Keras weights that PyTorch keeps as buffers.
    assert model.count_params() > parameters
    transfer_smp_unet(model, reference, encoder, center=encoder.startswith("vgg"))
    x = images((2, 64, 96, 3))
    assert_close(model(x, training=False), torch_forward(reference, x))


@pytest.mark.parity
@pytest.mark.parametrize("encoder", encoders.list_encoders())
def test_every_encoder_has_smps_parameter_count_and_output_shape(encoder):
    with keras.StatelessScope():  # build-only: the weights are never initialised
        model = build(f"unet_{encoder}", num_classes=3, input_shape=(64, 96, 3))
    assert model.output_shape == (None, 64, 96, 3)
    reference = smp_model("Unet", encoder, meta=True, classes=3)
    assert trainable_parameters(model) == torch_parameters(reference)


def test_one_and_several_classes_give_probabilities():
    # Training, other sizes and the .keras round trip: tests/test_model_contract.py.
    check_outputs(build(num_classes=3), 3)
    model = build(num_classes=1)
    check_outputs(model, 1)


def test_size_errors():
    check_size_errors(build)


@pytest.mark.parity
def test_grayscale_frozen_encoder_and_logits():
    model = build(input_shape=(None, None, 1), encoder_trainable=False, activation=None)
    encoder = model.get_layer("resnet18")
    assert encoder.input_shape == (None, None, None, 1)
    assert not encoder.trainable
    # Only the decoder and head train: smp's Unet minus its encoder.
    reference = smp_model("Unet", "resnet18", meta=True)
    assert trainable_parameters(model) == torch_parameters(reference) - torch_parameters(
        reference.encoder
    )
    assert model.layers[-1].get_config()["activation"] == "linear"
    y = model.predict(images((1, 32, 64, 1)), verbose=0)
    assert y.shape == (1, 32, 64, 1) and (y.min() < 0 or y.max() > 1)


def test_stride_1_skip_on_vgg():
    with keras.StatelessScope():
        plain = build("unet_vgg11")
        skip = build("unet_vgg11", stride_1_skip=True)
    assert "decoder_block4_concat" in [layer.name for layer in skip.layers]
    # The last block's first convolution also sees VGG's 64 stride-1 channels.
    assert skip.get_layer("decoder_block4_1_conv").kernel.shape == (3, 3, 32 + 64, 16)
    assert plain.get_layer("decoder_block4_1_conv").kernel.shape == (3, 3, 32, 16)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 0}, "`num_classes` must be a positive integer"),
        ({"decoder_channels": (256, 128, 64)}, "`decoder_channels` must give 5"),
        ({"decoder_channels": (256, 128, 64, 32, 0)}, "`decoder_channels` must be a positive"),
        ({"interpolation": "cubic"}, "`interpolation` must be one of"),
        ({"activation": "relu"}, "`activation` must be one of"),
        ({"input_shape": (64, 64)}, "`input_shape` must be"),
        ({"input_shape": (64, 64, None)}, "known, positive channel count"),
        ({"stride_1_skip": True}, "`stride_1_skip=True` needs an encoder"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


def test_unknown_encoder_suggests_names():
    with pytest.raises(ValueError, match="Did you mean 'resnet34'"):
        kerasseg.segmentation.encoder_unet("resnet43")


def test_registered_for_every_encoder_with_zoo_info():
    names = kerasseg.zoo.list_models("unet_*")
    for encoder in encoders.list_encoders():
        assert f"unet_{encoder}" in names
    info = kerasseg.zoo.info("unet_resnet34")
    assert info["builder"] == "kerasseg.segmentation.encoder_unet.unet_resnet34"
    assert "resnet34" in info["description"]
    from kerasseg.segmentation.encoder_unet import UNET_MODELS, unet_resnet34

    assert sorted(UNET_MODELS) == sorted(f"unet_{e}" for e in encoders.list_encoders())
    assert kerasseg.zoo.registry._entry("unet_resnet34").builder is unet_resnet34


def test_encoder_weights_are_passed_to_the_encoder(tmp_path):
    source = encoders.get("resnet18")
    path = tmp_path / "resnet18.weights.h5"
    source.save_weights(path)
    model = build(encoder_weights=path)
    loaded = model.get_layer("resnet18").weights
    assert len(loaded) == len(source.weights)
    for ours, theirs in zip(loaded, source.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
