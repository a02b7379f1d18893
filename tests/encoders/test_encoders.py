"""The encoder interface: specs, shapes, options, errors, freezing and serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasseg import encoders
from tests.support import run_in_fresh_process

EXPECTED_CHANNELS = {
    # Worked out from the papers' tables: VGG's blocks end with 64, 128, 256, 512, 512
    # channels; ResNet's stages with 64, 128, 256, 512 (x4 for bottlenecks).
    "vgg": (128, 256, 512, 512, 512),
    "basic": (64, 64, 128, 256, 512),
    "bottleneck": (64, 256, 512, 1024, 2048),
}


def test_list_and_specs():
    names = encoders.list_encoders()
    assert names == sorted(
        [f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")]
        + [f"resnet{d}" for d in (18, 34, 50, 101)]
    )
    assert encoders.list_encoders("resnet*") == ["resnet101", "resnet18", "resnet34", "resnet50"]
    for name in names:
        spec = encoders.spec(name)
        if name.startswith("vgg"):
            kind = "vgg"
        else:
            kind = "basic" if name in ("resnet18", "resnet34") else "bottleneck"
        assert encoders.feature_channels(name) == spec.channels == EXPECTED_CHANNELS[kind]
        assert encoders.feature_strides(name) == (2, 4, 8, 16, 32)
        assert spec.torchvision_url.startswith("https://download.pytorch.org/models/" + name)
        assert spec.has_stride_1 == (kind == "vgg")
    assert encoders.feature_channels("vgg13", True) == (64, 128, 256, 512, 512, 512)
    assert encoders.feature_strides("vgg13", include_stride_1=True) == (1, 2, 4, 8, 16, 32)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"Did you mean .*'resnet34'"):
        encoders.spec("resnet35")  # close to several names
    with pytest.raises(ValueError, match="Unknown encoder 'alexnet'"):
        encoders.get("alexnet")


def test_resnet_has_no_stride_1_feature():
    with pytest.raises(ValueError, match="'resnet18' has no stride-1 feature"):
        encoders.feature_channels("resnet18", include_stride_1=True)
    with pytest.raises(ValueError, match="no stride-1 feature"):
        encoders.get("resnet18", include_stride_1=True)


@pytest.mark.parametrize("name", ["vgg11", "resnet18"])
def test_feature_shapes_for_sizes_divisible_by_32(name):
    vgg = name.startswith("vgg")
    model = encoders.get(name, include_stride_1=vgg)
    strides = encoders.feature_strides(name, include_stride_1=vgg)
    channels = encoders.feature_channels(name, include_stride_1=vgg)
    assert [tuple(s) for s in model.output_shape] == [(None, None, None, c) for c in channels]
    for height, width in [(32, 32), (32, 160), (96, 64)]:
        features = model(np.zeros((1, height, width, 3), "float32"))
        assert [tuple(f.shape) for f in features] == [
            (1, height // s, width // s, c) for s, c in zip(strides, channels)
        ]


def test_static_input_shape():
    model = encoders.get("resnet18", input_shape=(64, 96, 3))
    assert [tuple(s) for s in model.output_shape] == [
        (None, 64 // s, 96 // s, c) for s, c in zip((2, 4, 8, 16, 32), (64, 64, 128, 256, 512))
    ]
    assert model.name == "resnet18"
    assert encoders.get("vgg11", model_name="backbone").name == "backbone"


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"multiple of 32.*height 100"):
        encoders.get("vgg11", input_shape=(100, 64, 3))
    with pytest.raises(ValueError, match="`in_channels`=1 disagrees"):
        encoders.get("vgg11", input_shape=(None, None, 3), in_channels=1)
    with pytest.raises(ValueError, match="`in_channels` must be a positive integer"):
        encoders.get("vgg11", in_channels=0)
    with pytest.raises(ValueError, match="`input_shape` must be"):
        encoders.get("vgg11", input_shape=(64, 64))


def test_imagenet_weights_point_to_the_zoo(tmp_path):
    with pytest.raises(ValueError, match=r"model zoo.*vgg11-8a719046\.pth"):
        encoders.get("vgg11", weights="imagenet")
    with pytest.raises(ValueError, match="does not exist"):
        encoders.get("vgg11", weights=str(tmp_path / "missing.pth"))
    other = tmp_path / "weights.bin"
    other.write_bytes(b"")
    with pytest.raises(
        ValueError,
        match=r"`weights` file '.*weights\.bin' has an unknown type: expected a Keras '\.weights\.h5' file or a torchvision state dict \(\.pth, \.pt, \.npz\)\.",
    ):
        encoders.get("vgg11", weights=other)
    with pytest.raises(TypeError, match="`weights` must be None or a file path"):
        encoders.get("vgg11", weights=3)


def test_frozen_encoder():
    model = encoders.get("vgg11_bn", trainable=False)
    assert not model.trainable and not model.trainable_weights
    assert len(model.non_trainable_weights) == 8 * 2 + 8 * 4  # conv kernel+bias, BN x4
    # Randomise the BN statistics so that batch and moving statistics differ.
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 1, layer.moving_mean.shape))
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    # Keras runs frozen batch norm in inference mode even when called with training=True.
    for a, b in zip(model(images, training=True), model(images, training=False)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    trainable = encoders.get("vgg11_bn")
    assert len(trainable.trainable_weights) == 8 * 4  # conv kernel+bias, BN gamma+beta


@pytest.mark.parametrize(
    "name, options",
    [
        ("resnet18", {"trainable": False}),
        ("vgg11_bn", {"in_channels": 1, "include_stride_1": True}),
    ],
)
def test_encoder_inside_a_model_round_trips_through_keras_file(tmp_path, name, options):
    encoder = encoders.get(name, **options)
    channels = encoder.input_shape[-1]
    inputs = keras.Input((None, None, channels))
    features = encoder(inputs)
    pooled = [keras.layers.GlobalAveragePooling2D()(f) for f in features]
    outputs = keras.layers.Dense(3)(keras.layers.Concatenate()(pooled))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for layer in encoder.layers:  # non-trivial BN statistics must survive the round trip
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape))
    images = rng.uniform(0, 255, (2, 64, 32, channels)).astype("float32")
    expected = model.predict(images, verbose=0)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: only built-in layers
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert loaded.get_layer(name).trainable == options.get("trainable", True)
    # Only built-in layers: a new interpreter that imports keras and not kerasseg loads it.
    fresh, modules = run_in_fresh_process(
        "import keras\n"
        f"model = keras.models.load_model({str(path)!r})\n"
        "outputs['pred'] = model.predict(inputs['images'], verbose=0)\n"
        f"outputs['trainable'] = np.array(model.get_layer({name!r}).trainable)\n",
        tmp_path,
        images=images,
    )
    assert "kerasseg" not in modules and "tests" not in modules
    np.testing.assert_allclose(fresh["pred"], expected, rtol=1e-5, atol=1e-5)
    assert bool(fresh["trainable"]) == options.get("trainable", True)


def test_encoders_and_converter_import_without_torch():
    import json
    import subprocess
    import sys

    code = (
        "import sys, json; import kerasseg.encoders, kerasseg.zoo.convert; "
        "print(json.dumps([m for m in ('torch', 'torchvision') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
