"""TernausNet (``unet11``, ``unet16``): parameter counts and a PyTorch reference."""

from __future__ import annotations

import keras
import pytest

import kerasseg
from tests.segmentation.reference import (
    Transfer,
    assert_close,
    check_outputs,
    check_size_errors,
    images,
    randomise,
    state_dict,
    torch_forward,
    torch_parameters,
    trainable_parameters,
)
from tests.support import require_module


def build(name: str = "unet11", **kwargs) -> keras.Model:
    return kerasseg.zoo.get(name, weights=None, **kwargs)


def _conv(c_in: int, c_out: int, k: int) -> int:
    return k * k * c_in * c_out + c_out


def ternausnet_parameters(vgg_blocks, num_classes: int = 1, f: int = 32) -> tuple[int, int]:
    """(total, encoder) parameters worked out from the paper's description.

    Encoder: VGG's 3x3 convolutions with bias. Decoder: centre DecoderBlock(512, 16f, 8f)
    on pool5, then dec5(8f + 512, 16f, 8f), dec4(8f + 512, 16f, 4f), dec3(4f + 256, 8f, 2f),
    dec2(2f + 128, 4f, f), each conv3x3 + ConvTranspose 3x3; dec1 conv3x3(f + 64, f); a 1x1
    output convolution.
    """
    encoder, c_in = 0, 3
    for block in vgg_blocks:
        for c_out in block:
            encoder += _conv(c_in, c_out, 3)
            c_in = c_out
    blocks = [
        (512, 16 * f, 8 * f),
        (8 * f + 512, 16 * f, 8 * f),
        (8 * f + 512, 16 * f, 4 * f),
        (4 * f + 256, 8 * f, 2 * f),
        (2 * f + 128, 4 * f, f),
    ]
    decoder = sum(_conv(i, m, 3) + _conv(m, o, 3) for i, m, o in blocks)
    decoder += _conv(f + 64, f, 3) + _conv(f, num_classes, 1)
    return encoder + decoder, encoder


VGG11 = ((64,), (128,), (256, 256), (512, 512), (512, 512))
VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


@pytest.mark.parity
@pytest.mark.parametrize("name, vgg", [("unet11", VGG11), ("unet16", VGG16)])
def test_parameter_count(name, vgg):
    """The model has the parameters worked out from the paper's description, and its
    encoder those of torchvision's VGG convolutions (counted on the meta device)."""
    torch = require_module("torch")
    torchvision = require_module("torchvision")
    total, encoder = ternausnet_parameters(vgg)
    with keras.StatelessScope():  # build-only
        model = build(name)
    assert model.count_params() == trainable_parameters(model) == total  # no batch norm
    assert model.get_layer(f"vgg{name[4:]}").count_params() == encoder
    with torch.device("meta"):
        reference = getattr(torchvision.models, f"vgg{name[4:]}")(weights=None).features
    assert encoder == torch_parameters(reference)


def torch_unet11(num_filters: int = 32, num_classes: int = 1):
    """TernausNet-11 in PyTorch, written from the paper's description (torchvision VGG11
    features; decoder blocks conv3x3-ReLU, ConvTranspose2d(3, stride 2, padding 1,
    output_padding 1), ReLU)."""
    torch = require_module("torch")
    torchvision = require_module("torchvision")
    nn = torch.nn
    f = num_filters

    def decoder_block(c_in, middle, c_out):
        return nn.Sequential(
            nn.Conv2d(c_in, middle, 3, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(middle, c_out, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
        )

    class UNet11(nn.Module):
        def __init__(self):
            super().__init__()
            with torch.device("meta"):
                self.features = torchvision.models.vgg11(weights=None).features
            self.features = self.features.to_empty(device="cpu")
            self.center = decoder_block(512, 16 * f, 8 * f)
            self.dec5 = decoder_block(8 * f + 512, 16 * f, 8 * f)
            self.dec4 = decoder_block(8 * f + 512, 16 * f, 4 * f)
            self.dec3 = decoder_block(4 * f + 256, 8 * f, 2 * f)
            self.dec2 = decoder_block(2 * f + 128, 4 * f, f)
            self.dec1 = nn.Sequential(nn.Conv2d(f + 64, f, 3, padding=1), nn.ReLU())
            self.final = nn.Conv2d(f, num_classes, 1)

        def forward(self, x):
            skips = []  # the output before each max-pool: conv1 .. conv5
            for module in self.features:
                if isinstance(module, nn.MaxPool2d):
                    skips.append(x)
                x = module(x)
            x = self.center(x)
            for block, skip in zip((self.dec5, self.dec4, self.dec3, self.dec2), skips[:0:-1]):
                x = block(torch.cat([x, skip], 1))
            return self.final(self.dec1(torch.cat([x, skips[0]], 1)))

    return UNet11()


@pytest.mark.parity
def test_equals_pytorch_ternausnet():
    """With the same weights, unet11 gives the PyTorch model's outputs: in particular our
    transposed convolutions are aligned like PyTorch's ConvTranspose2d."""
    from kerasseg.zoo import convert

    reference = randomise(torch_unet11(num_classes=2))
    model = build(num_classes=2, activation=None)
    state = state_dict(reference)
    # torchvision's VGG11 names ("features.<i>.weight"), converted by the library's converter;
    # the decoder is mapped here.
    encoder = {k: v for k, v in state.items() if k.startswith("features.")}
    convert.load_torchvision_weights(model.get_layer("vgg11"), encoder, encoder="vgg11")
    decoder = {k: v for k, v in state.items() if k not in encoder}
    transfer = Transfer(model, decoder)
    for block in ("center", "dec5", "dec4", "dec3", "dec2"):
        transfer.conv(f"{block}_conv", f"{block}.0")
        transfer.conv(f"{block}_deconv", f"{block}.2")
    transfer.conv("dec1_conv", "dec1.0")
    transfer.conv("final_conv", "final")
    transfer.check_complete()
    x = images((1, 64, 96, 3))
    assert_close(model(x, training=False), torch_forward(reference, x))


def test_one_and_several_classes_give_probabilities():
    # Training, other sizes and the .keras round trip: tests/test_model_contract.py.
    check_outputs(build(num_classes=3), 3)
    model = build(num_classes=1)
    assert model.name == "unet11"
    check_outputs(model, 1)


def test_size_errors():
    check_size_errors(build)


def test_naming_and_registry():
    assert {"unet11", "unet16", "unet_vgg11", "unet_vgg16"} <= set(kerasseg.zoo.list_models())
    with keras.StatelessScope():
        ternaus, generic = build("unet11"), build("unet_vgg11")
    # unet11 is TernausNet (transposed convolutions, no batch norm); unet_vgg11 is smp's U-Net.
    layer_types = {type(layer).__name__ for layer in ternaus.layers}
    assert "Conv2DTranspose" in layer_types and "BatchNormalization" not in layer_types
    assert not any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in generic.layers)
    assert kerasseg.zoo.info("unet11")["builder"] == "kerasseg.segmentation.ternausnet.unet11"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_filters": 0}, "`num_filters` must be a positive integer"),
        ({"activation": "tanh"}, "`activation` must be one of"),
        ({"input_shape": (None, None)}, "`input_shape` must be"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


def test_needs_a_vgg_encoder():
    with pytest.raises(ValueError, match=r"TernausNet needs a VGG encoder.*unet_resnet34"):
        kerasseg.segmentation.ternausnet("resnet34")
