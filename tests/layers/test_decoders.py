"""Decoder blocks: PyTorch-aligned transposed convolution, shapes, argument checks."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasseg.layers import decoders
from tests.support import require_module


def _torch_conv_transpose(x_nhwc, kernel, bias, **kwargs) -> np.ndarray:
    torch = require_module("torch")
    y = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2)),
        torch.from_numpy(kernel),
        torch.from_numpy(bias),
        **kwargs,
    )
    return y.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parity
@pytest.mark.parametrize(
    "kernel_size, padding, output_padding",
    [(3, 1, 1), (4, 1, 0), (2, 0, 0)],  # TernausNet; TernausNetV2/AlbuNet; U-Net's up-conv
)
def test_torch_conv_transpose_equals_pytorch(kernel_size, padding, output_padding):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 7, 3)).astype("float32")
    kernel = rng.normal(size=(3, 4, kernel_size, kernel_size)).astype("float32")  # (in, out, k, k)
    bias = rng.normal(size=4).astype("float32")
    inputs = keras.Input((None, None, 3))
    outputs = decoders.torch_conv_transpose(
        inputs, 4, kernel_size, padding=padding, output_padding=output_padding, name="up"
    )
    model = keras.Model(inputs, outputs)
    model.get_layer("up").set_weights([kernel.transpose(2, 3, 1, 0), bias])
    reference = _torch_conv_transpose(
        x, kernel, bias, stride=2, padding=padding, output_padding=output_padding
    )
    ours = np.asarray(model(x))
    assert ours.shape == reference.shape == (2, 10, 14, 4)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.mark.parity
def test_keras_same_padding_is_not_pytorch_alignment():
    """Why `torch_conv_transpose` exists: Keras' "same" output is shifted by one pixel."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 4, 4, 2)).astype("float32")
    kernel = rng.normal(size=(2, 3, 3, 3)).astype("float32")
    bias = np.zeros(3, "float32")
    layer = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same")
    layer.build((None, None, None, 2))
    layer.set_weights([kernel.transpose(2, 3, 1, 0), bias])
    reference = _torch_conv_transpose(x, kernel, bias, stride=2, padding=1, output_padding=1)
    same = np.asarray(layer(x))
    assert same.shape == reference.shape
    assert np.abs(same - reference).max() > 0.1


def test_output_padding_check():
    with pytest.raises(ValueError, match="`output_padding` must be in"):
        decoders.torch_conv_transpose(
            keras.Input((8, 8, 1)), 2, 3, padding=0, output_padding=1, name="t"
        )


def test_unet_decoder_shapes_and_skips():
    features = [keras.Input((64 // s, 64 // s, c)) for s, c in ((2, 8), (4, 16), (8, 32))]
    outputs = decoders.unet_decoder(features, (12, 6, 3), name="d")
    assert [tuple(o.shape) for o in outputs] == [
        (None, 16, 16, 12),
        (None, 32, 32, 6),
        (None, 64, 64, 3),
    ]
    model = keras.Model(features, outputs)
    # Block 0 concatenates the stride-4 feature (16 channels) to the upsampled 32 channels;
    # block 2 has no skip left.
    assert model.get_layer("d_block0_1_conv").kernel.shape == (3, 3, 32 + 16, 12)
    assert model.get_layer("d_block1_1_conv").kernel.shape == (3, 3, 12 + 8, 6)
    assert model.get_layer("d_block2_1_conv").kernel.shape == (3, 3, 6, 3)
    with pytest.raises(ValueError, match="`interpolation` must be one of"):
        decoders.unet_decoder_block(features[0], None, 4, interpolation="cubic", name="x")


def test_fpn_pieces_shapes():
    features = [keras.Input((32 // s, 32 // s, 8 * s)) for s in (1, 2, 4, 8)]
    pyramid = decoders.fpn_top_down(features, 16, name="p")
    assert [tuple(p.shape) for p in pyramid] == [(None, 32 // s, 32 // s, 16) for s in (1, 2, 4, 8)]
    branch = decoders.fpn_segmentation_block(pyramid[3], 32, 3, name="s")
    assert tuple(branch.shape) == (None, 32, 32, 32)
    assert tuple(decoders.fpn_segmentation_block(pyramid[0], 32, 0, name="t").shape) == (
        None,
        32,
        32,
        32,
    )


def test_multiscale_fusion():
    levels = [keras.Input((4, 4, 8)), keras.Input((16, 16, 4))]
    assert tuple(decoders.multiscale_fusion(levels, (4, 1), 6, name="a").shape) == (None, 16, 16, 6)
    fused = decoders.multiscale_fusion(levels, (4, 1), 6, merge="concat", name="c")
    assert tuple(fused.shape) == (None, 16, 16, 12)
    with pytest.raises(ValueError, match="`merge` must be one of"):
        decoders.multiscale_fusion(levels, (4, 1), 6, merge="max", name="m")
    with pytest.raises(
        ValueError, match=r"`levels` and `scales` must have the same length, got 2 and 1\."
    ):
        decoders.multiscale_fusion(levels, (4,), 6, name="n")
