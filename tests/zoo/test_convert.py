"""The torchvision -> Keras converter: coverage checks, errors, sources, saving, reports."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasseg import encoders
from kerasseg.zoo import convert
from tests.encoders.reference import random_torchvision_model, state_dict_numpy
from tests.support import require_module


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, np.ndarray]:
    return state_dict_numpy(random_torchvision_model("resnet18"))


@pytest.fixture(scope="module")
def resnet18_model():
    return encoders.get("resnet18")


def _weights(model) -> list[np.ndarray]:
    return [w.numpy() for w in model.weights]


@pytest.mark.parity
def test_report_counts_and_skipped_tensors(resnet18_state, resnet18_model):
    report = convert.load_torchvision_weights(resnet18_model, resnet18_state)
    batch_norms = 1 + 8 * 2 + 3  # stem, two per basic block, three downsample projections
    assert sorted(report.skipped) == sorted(
        ["fc.weight", "fc.bias"] + [n for n in resnet18_state if n.endswith("num_batches_tracked")]
    )
    assert len(report.skipped) == 2 + batch_norms
    assert report.source_tensors == len(resnet18_state)
    assert report.converted_tensors == len(resnet18_state) - len(report.skipped)
    assert report.target_weights == len(resnet18_model.weights) == report.converted_tensors
    assert report.target_layers == 20 + batch_norms  # 20 convolutions
    assert report.parameters == resnet18_model.count_params()
    assert report.input_conv == "copied"
    assert "resnet18: 100/122 source tensors" in str(report)
    # The values landed where the names say, transposed OIHW -> HWIO.
    np.testing.assert_array_equal(
        resnet18_model.get_layer("layer2_0_downsample_0").kernel,
        resnet18_state["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        resnet18_model.get_layer("layer3_1_bn2").moving_variance,
        resnet18_state["layer3.1.bn2.running_var"],
    )


def test_layer_map_names():
    vgg11 = dict(convert.torchvision_layer_map("vgg11"))
    assert vgg11["block3_conv2"] == "features.8" and len(vgg11) == 8
    vgg11_bn = dict(convert.torchvision_layer_map("vgg11_bn"))
    assert vgg11_bn["block3_conv2"] == "features.11" and vgg11_bn["block3_bn2"] == "features.12"
    resnet50 = convert.torchvision_layer_map("resnet50")
    assert resnet50[0] == ("conv1", "conv1")
    assert ("layer1_0_downsample_0", "layer1.0.downsample.0") in resnet50  # 64 -> 256 channels
    assert ("layer4_2_conv3", "layer4.2.conv3") in resnet50


@pytest.mark.parity
@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda s: s.update({"layer5.0.conv1.weight": np.zeros((1, 1, 1, 1))}),
            r"unused source tensors \(1\):\n    layer5.0.conv1.weight \(1, 1, 1, 1\)",
        ),
        (
            lambda s: s.pop("layer1.0.bn1.running_var"),
            r"source tensors missing for target weights \(1\):\n    layer1.0.bn1.running_var -> "
            r"layer1_0_bn1/moving_variance \(64,\)",
        ),
        (
            lambda s: s.update({"layer2.0.conv1.weight": np.zeros((128, 32, 3, 3))}),
            r"shape mismatches \(1\):\n    layer2.0.conv1.weight \(128, 32, 3, 3\) \(as Keras "
            r"\(3, 3, 32, 128\)\) != layer2_0_conv1/kernel \(3, 3, 64, 128\)",
        ),
        (
            lambda s: s.update({"bn1.weight": np.zeros((64, 1))}),
            r"bn1.weight \(64, 1\) \(as Keras \(64, 1\)\) != bn1/gamma \(64,\)",
        ),
    ],
    ids=["unused", "missing", "conv-shape", "bn-shape"],
)
def test_problems_are_named_and_nothing_is_written(resnet18_state, edit, expected):
    model = encoders.get("resnet18")
    before = _weights(model)
    state = dict(resnet18_state)
    edit(state)
    with pytest.raises(convert.ConversionError, match=expected):
        convert.load_torchvision_weights(model, state)
    for a, b in zip(before, _weights(model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parity
def test_wrong_architecture_lists_every_problem(resnet18_state):
    # resnet18's state dict into resnet34: resnet34's extra blocks have no source tensors.
    with pytest.raises(convert.ConversionError) as info:
        convert.convert_torchvision("resnet34", resnet18_state)
    message = str(info.value)
    assert "source tensors missing for target weights" in message
    assert "layer1.2.conv1.weight -> layer1_2_conv1/kernel (3, 3, 64, 64)" in message
    assert "... and" in message  # long lists are cut, with the count of the rest
    assert "unused source tensors" not in message


@pytest.mark.parity
def test_unset_targets_are_reported(resnet18_state):
    # A model with more than the encoder: its extra weights count as unset unless allowed.
    encoder = encoders.get("resnet18")
    pooled = keras.layers.GlobalAveragePooling2D()(encoder.outputs[-1])
    head = keras.layers.Dense(2, name="head")(pooled)
    model = keras.Model(encoder.inputs, head)
    expected = r"unset target weights \(2\):\n    head/kernel \(512, 2\)"
    with pytest.raises(convert.ConversionError, match=expected):
        convert.load_torchvision_weights(model, resnet18_state, encoder="resnet18")
    report = convert.load_torchvision_weights(
        model, resnet18_state, encoder="resnet18", require_all_weights=False
    )
    assert report.target_weights == len(model.weights) - 2
    # A model nesting the encoder as a sub-model: its layers are not found at the top.
    inputs = keras.Input((None, None, 3))
    nested = keras.Model(inputs, encoder(inputs)[-1])
    with pytest.raises(
        convert.ConversionError,
        match=r"(?s)missing target layers \(40\).*"
        r"conv1 \(for conv1\.\*\).*pass that sub-model",
    ):
        convert.load_torchvision_weights(nested, resnet18_state, encoder="resnet18")
    report = convert.load_torchvision_weights(nested.get_layer("resnet18"), resnet18_state)
    assert report.target_layers == 40


def test_input_conv_adaptation_rules():
    kernel = np.random.default_rng(0).normal(size=(8, 3, 7, 7))
    same, how = convert.adapt_input_conv(kernel, 3)
    assert same is kernel and how == "copied"
    gray, how = convert.adapt_input_conv(kernel, 1)
    np.testing.assert_allclose(gray[:, 0], kernel[:, 0] + kernel[:, 1] + kernel[:, 2])
    assert "summed" in how
    four, how = convert.adapt_input_conv(kernel, 4)
    np.testing.assert_allclose(four, np.stack([kernel[:, i % 3] * 0.75 for i in range(4)], 1))
    assert "3/4" in how
    with pytest.raises(
        convert.ConversionError,
        match=r"Cannot adapt an input convolution with 2 input channels to 1: only 3-channel \(RGB\) kernels are adapted\.",
    ):
        convert.adapt_input_conv(np.zeros((8, 2, 3, 3)), 1)


@pytest.mark.parity
def test_sources_files_and_saved_weights_agree(tmp_path, resnet18_state):
    torch = require_module("torch")
    tensors = {k: torch.from_numpy(v) for k, v in resnet18_state.items()}
    torch.save(tensors, tmp_path / "resnet18.pth")
    wrapped = {"state_dict": {f"module.{k}": v for k, v in tensors.items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "wrapped.pt")
    np.savez(tmp_path / "resnet18.npz", **resnet18_state)

    images = np.random.default_rng(0).uniform(0, 255, (1, 32, 64, 1)).astype("float32")
    reference = convert.convert_torchvision("resnet18", resnet18_state, in_channels=1)
    expected, expected_weights = reference(images), _weights(reference)
    report = convert.convert_torchvision_file(
        "resnet18", tmp_path / "resnet18.npz", tmp_path / "out" / "gray.weights.h5", in_channels=1
    )
    assert report.input_conv.startswith("summed")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gray.weights.h5"]

    # `encoders.get` reads a torchvision checkpoint and a saved .weights.h5 file.
    for source in ["resnet18.pth", "out/gray.weights.h5"]:
        model = encoders.get("resnet18", in_channels=1, weights=str(tmp_path / source))
        for a, b in zip(model(images), expected):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Other sources: a wrapped checkpoint with "module." prefixes, .npz, torch tensors.
    for source in [tmp_path / "wrapped.pt", tmp_path / "resnet18.npz", tensors]:
        for weight in model.weights:
            weight.assign(np.zeros(weight.shape))
        report = convert.load_torchvision_weights(model, source)
        assert report.converted_tensors == 100
        for a, b in zip(_weights(model), expected_weights):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parity
def test_save_and_read_errors(tmp_path, resnet18_model):
    torch = require_module("torch")
    half = convert.read_state_dict({"a": torch.full((2,), 1.5, dtype=torch.bfloat16)})
    np.testing.assert_array_equal(half["a"], np.array([1.5, 1.5], "float32"))
    with pytest.raises(ValueError, match=r"must end with '\.weights\.h5'"):
        convert.save_weights(resnet18_model, tmp_path / "x.h5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert.read_state_dict(tmp_path / "missing.pth")
    with pytest.raises(TypeError, match="mapping of tensor names"):
        convert.read_state_dict([1, 2])
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match=r"\(.pth, .pt\) or a NumPy archive"):
        convert.read_state_dict(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="Unknown encoder 'backbone' \\(from the model name\\)"):
        convert.load_torchvision_weights(encoders.get("vgg11", model_name="backbone"), {})
    wrong = encoders.get("resnet18", in_channels=1)
    path = convert.save_weights(wrong, tmp_path / "gray.weights.h5")
    with pytest.raises(ValueError, match="Could not load weights file"):
        encoders.get("resnet18", weights=path)
