"""FPN (``fpn_<encoder>``): parity with segmentation_models_pytorch's FPN."""

from __future__ import annotations

import keras
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


def build(name: str = "fpn_resnet18", **kwargs) -> keras.Model:
    return kerasseg.zoo.get(name, weights=None, **kwargs)


def transfer_smp_fpn(model: keras.Model, reference, encoder: str) -> None:
    """Our layer for every smp decoder/head tensor (names written out here, not derived)."""
    load_smp_encoder(model, encoder, reference)
    state = {k: v for k, v in state_dict(reference).items() if not k.startswith("encoder.")}
    transfer = Transfer(model, state)
    # smp's p5 is the lateral conv of the stride-32 feature, p4..p2 the FPN blocks' skip convs.
    transfer.conv("fpn_lateral3", "decoder.p5")
    for index, level in ((2, "p4"), (1, "p3"), (0, "p2")):
        transfer.conv(f"fpn_lateral{index}", f"decoder.{level}.skip_conv")
    # seg_blocks[k] is the branch of P(5 - k), with 3 - k upsampling stages (at least one).
    for k, stages in enumerate((3, 2, 1, 1)):
        for j in range(stages):
            prefix = f"decoder.seg_blocks.{k}.block.{j}.block"
            transfer.conv(f"seg_p{5 - k}_{j}_conv", f"{prefix}.0")
            transfer.group_norm(f"seg_p{5 - k}_{j}_gn", f"{prefix}.1")
    transfer.conv("head_conv", "segmentation_head.0")
    transfer.check_complete()


@pytest.mark.parity
@pytest.mark.parametrize("encoder, merge", [("resnet34", "add"), ("resnet18", "concat")])
def test_equals_smp_fpn(encoder, merge):
    """Same trainable parameters as smp's FPN and, with its weights, the same outputs
    (GroupNorm, aligned-corner bilinear upsampling, merge order, x4 head upsampling)."""
    policy = {"add": "add", "concat": "cat"}[merge]
    reference = randomise(smp_model("FPN", encoder, decoder_merge_policy=policy, classes=2))
    model = build(f"fpn_{encoder}", num_classes=2, merge=merge, activation=None)
    assert trainable_parameters(model) == torch_parameters(reference)
    with keras.StatelessScope():  # the default, one class: smp's count on the meta device
        one_class = build(f"fpn_{encoder}", merge=merge)
    assert trainable_parameters(one_class) == torch_parameters(
        smp_model("FPN", encoder, meta=True, decoder_merge_policy=policy, classes=1)
    )
    transfer_smp_fpn(model, reference, encoder)
    x = images((2, 64, 96, 3))
    assert_close(model(x, training=False), torch_forward(reference, x))


@pytest.mark.parity
@pytest.mark.parametrize("encoder", encoders.list_encoders())
def test_every_encoder_has_smps_parameter_count_and_output_shape(encoder):
    with keras.StatelessScope():  # build-only: the weights are never initialised
        model = build(f"fpn_{encoder}", num_classes=3, input_shape=(64, 96, 3))
    assert model.output_shape == (None, 64, 96, 3)
    reference = smp_model("FPN", encoder, meta=True, classes=3)
    assert trainable_parameters(model) == torch_parameters(reference)


def test_zoo_get_one_class_builds_the_issue_model():
    with keras.StatelessScope():
        model = kerasseg.zoo.get("fpn_resnet34", weights=None, num_classes=1)
    assert model.name == "fpn_resnet34"
    assert model.output_shape == (None, None, None, 1)
    assert trainable_parameters(model) == 23_155_393


def test_one_and_several_classes_give_probabilities():
    # Training, other sizes and the .keras round trip: tests/test_model_contract.py.
    check_outputs(build(num_classes=3), 3)
    model = build(num_classes=1)
    check_outputs(model, 1)
    # Spatial (channel-wise) dropout before the head, as smp's Dropout2d.
    assert model.get_layer("dropout").rate == 0.2
    assert isinstance(model.get_layer("dropout"), keras.layers.SpatialDropout2D)


def test_size_errors():
    check_size_errors(build)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"segmentation_channels": 100}, "multiple of 32"),
        ({"pyramid_channels": 0}, "`pyramid_channels` must be a positive integer"),
        ({"merge": "mean"}, "`merge` must be one of"),
        ({"dropout": 1.0}, r"`dropout` must be a number in \[0, 1\)"),
        ({"interpolation": "area"}, "`interpolation` must be one of"),
        ({"num_classes": 1.5}, "`num_classes` must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)
