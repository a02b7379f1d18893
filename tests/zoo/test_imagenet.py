"""``weights="imagenet"`` end to end: a torchvision ResNet34 checkpoint served from 127.0.0.1,
downloaded, verified, converted once, cached, loaded into a segmentation model's encoder, and
compared with torchvision's own features on a real image.

The checkpoint is a randomised torchvision ``resnet34`` (every weight and BN statistic drawn
at random: the real ImageNet file is not downloaded in tests), listed in a temporary
metafile with its real SHA-256. The model is a small test architecture registered here (a
ResNet34 encoder and a 1x1 head, following the builder convention: it takes
``encoder_weights``); once ``fpn_resnet34`` is merged it takes its place.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import socket

import keras
import numpy as np
import pytest
from PIL import Image

from kerasseg import encoders, zoo
from kerasseg.cli import main
from kerasseg.zoo import metafiles
from kerasseg.zoo import weights as zw
from tests.encoders.reference import (
    normalise,
    random_torchvision_model,
    scaled_error,
    torchvision_features,
)
from tests.support import require_module, require_shared_data
from tests.zoo.support import LocalServer, temporary_model, write_metafile

MODEL = "_test_encoder_head_resnet34"
CHECKPOINT = "/models/resnet34-random.pth"


def _test_encoder_head_resnet34(
    *, num_classes=1, input_shape=(None, None, 3), encoder_weights=None
) -> keras.Model:
    """Test model: a ResNet34 encoder (nested, named 'resnet34') and a 1x1 head."""
    inputs = keras.Input(input_shape, name="image")
    encoder = encoders.get("resnet34", input_shape=input_shape, weights=encoder_weights)
    features = encoder(inputs)
    outputs = keras.layers.Conv2D(num_classes, 1, name="head")(features[-1])
    return keras.Model(inputs, outputs, name="test_encoder_head_resnet34")  # TF: no leading _


@pytest.fixture(scope="module")
def torch_model():
    require_module("torch")
    return random_torchvision_model("resnet34", seed=3)


@pytest.fixture(scope="module")
def checkpoint(torch_model, tmp_path_factory):
    torch = require_module("torch")
    path = tmp_path_factory.mktemp("checkpoint") / "resnet34-random.pth"
    torch.save(torch_model.state_dict(), path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def image():
    root = require_shared_data("bccd")
    path = sorted((root / "BCCD" / "JPEGImages").glob("*.jpg"))[0]
    with Image.open(path) as picture:
        rgb = np.asarray(picture.convert("RGB"), dtype="float32")
    return rgb[96:352, 128:448][None]  # (1, 256, 320, 3), a real blood-smear crop


@pytest.fixture()
def served(checkpoint, tmp_path, monkeypatch):
    """The checkpoint on a local server, a metafile naming it, and the test model."""
    with LocalServer() as server:
        server.files[CHECKPOINT] = checkpoint
        metafile = write_metafile(tmp_path / "index", "testzoo", {
            "encoder_weights": [{
                "name": "resnet34.random",
                "encoder": "resnet34",
                "format": "torchvision",
                "file": {"url": server.url(CHECKPOINT),
                         "sha256": hashlib.sha256(checkpoint).hexdigest(),
                         "size_bytes": len(checkpoint)},
                "licence": "CC0-1.0",
                "source": "tests/zoo/test_imagenet.py (random weights)",
            }],
            "models": [{
                "name": MODEL,
                "builder": f"{__name__}._test_encoder_head_resnet34",
                "task": "segmentation",
                "encoder": "resnet34",
                "encoder_weights": {"imagenet": "resnet34.random"},
                "defaults": {"num_classes": 1, "input_shape": [None, None, 3]},
                "input": {"divisible_by": 32},
                "default_weights": "imagenet",
            }],
        })
        monkeypatch.setenv("KERASSEG_ZOO_INDEX", str(metafile))
        with temporary_model(MODEL, _test_encoder_head_resnet34):
            yield server


def _features(model, image):
    return [np.asarray(f) for f in model.get_layer("resnet34")(image, training=False)]


def test_imagenet_encoder_features_equal_torchvision(served, torch_model, image, isolated_zoo):
    assert metafiles.check_against_registry() == []
    assert MODEL in zoo.list_models(pretrained=True)
    model = zoo.get(MODEL, weights="imagenet", progress=False)
    reference = torchvision_features(torch_model, "resnet34", normalise(image))
    ours = _features(model, image)
    assert [f.shape for f in ours] == [r.shape for r in reference]
    errors = [scaled_error(o, r) for o, r in zip(ours, reference)]
    assert max(errors) < 1e-4, errors
    assert np.abs(reference[-1]).max() > 1.0  # a non-trivial comparison
    # Downloaded once, converted once, cached with the converted file's own hash.
    converted = isolated_zoo / "converted" / "resnet34-random.weights.h5"
    assert converted.is_file() and served.requests == [CHECKPOINT]
    record = zw.read_json(converted.with_name(converted.name + ".record.json"))
    assert record["sha256"] == hashlib.sha256(converted.read_bytes()).hexdigest()
    assert record["source_url"] == served.url(CHECKPOINT)
    # "default" means the ImageNet encoder here; a second model reuses the cache.
    again = zoo.get(MODEL, progress=False)
    np.testing.assert_array_equal(_features(again, image)[-1], ours[-1])
    assert served.requests == [CHECKPOINT]
    # info reports the source, hash, licence and cache state.
    described = zoo.info(MODEL)["weights"]["imagenet"]
    assert described["sha256"] == hashlib.sha256(served.files[CHECKPOINT]).hexdigest()
    assert described["hash_check"] == "full SHA-256" and described["licence"] == "CC0-1.0"
    assert described["cache"]["converted"]["status"] == "ok"
    # Random initialisation really differs (the comparison above is not vacuous).
    fresh = zoo.get(MODEL, weights=None)
    assert scaled_error(_features(fresh, image)[-1], reference[-1]) > 1e-2


def test_saved_model_reloads_offline_without_downloading(served, image, tmp_path, monkeypatch):
    model = zoo.get(MODEL, progress=False)
    expected = model.predict(image, verbose=0)
    path = tmp_path / "finetuned.keras"
    model.save(path)
    empty = tmp_path / "empty-home"
    empty.mkdir()
    monkeypatch.setenv("KERASSEG_HOME", str(empty))
    monkeypatch.setenv("KERASSEG_OFFLINE", "1")
    requests_before = list(served.requests)

    def no_network(*args, **kwargs):
        raise AssertionError("loading a saved model tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(image, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert served.requests == requests_before and list(empty.iterdir()) == []


def test_offline_error_lists_places_variables_and_command(served, isolated_zoo, monkeypatch):
    monkeypatch.setenv("KERASSEG_OFFLINE", "1")
    with pytest.raises(zoo.WeightsNotAvailableError) as error:
        zoo.get(MODEL)
    message = str(error.value)
    assert served.requests == []
    for text in (str(isolated_zoo / "converted" / "resnet34-random.weights.h5"),
                 str(isolated_zoo / "downloads" / "resnet34-random.pth"),
                 "KERASSEG_HOME=", "KERASSEG_OFFLINE=1", "KERASSEG_MIRROR=",
                 f"kerasseg zoo download {MODEL}"):
        assert text in message, text


def test_corrupt_converted_file_is_replaced_and_torch_is_needed_only_once(
    served, image, isolated_zoo, monkeypatch, caplog, capsys
):
    assert main(["zoo", "download", MODEL, "--quiet"]) == 0
    path = isolated_zoo / "converted" / "resnet34-random.weights.h5"
    assert capsys.readouterr().out == f"{MODEL}: {path}\n"
    assert main(["zoo", "list", "_test_*", "--pretrained"]) == 0
    assert capsys.readouterr().out.startswith(f"{MODEL}  imagenet (cached) ")
    good = path.read_bytes()
    # A damaged converted file is detected by its recorded hash and converted again
    # from the cached checkpoint (no new request).
    path.write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING, logger="kerasseg.zoo.weights"):
        assert zoo.download(MODEL, progress=False) == [path]
    assert any("corrupt or stale" in r.getMessage() for r in caplog.records)
    assert served.requests == [CHECKPOINT]
    assert zw.check_converted(zw.find_encoder_weights("resnet34.random"), path)[0] == "ok"
    # Without PyTorch the cached conversion still works ...
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    zoo.get(MODEL, progress=False)
    # ... and a missing one says how to get PyTorch.
    path.unlink()
    with pytest.raises(ImportError, match=r"needs PyTorch, once: `pip install torch`"):
        zoo.get(MODEL, progress=False)


def test_grayscale_models_get_their_own_converted_file(served, torch_model, image, isolated_zoo):
    gray = image.mean(axis=-1, keepdims=True)
    model = zoo.get(MODEL, input_shape=(None, None, 1), progress=False)
    assert (isolated_zoo / "converted" / "resnet34-random.in1.weights.h5").is_file()
    # The 1-channel encoder equals the RGB network fed the gray image, normalised with the
    # means of the ImageNet statistics, in all three channels (kerasseg.zoo.convert).
    mean, std = np.float32(np.mean([0.485, 0.456, 0.406])), np.float32(np.mean([0.229, 0.224,
                                                                                 0.225]))
    x = np.repeat(normalise(gray, mean=mean, std=std), 3, axis=1)
    reference = torchvision_features(torch_model, "resnet34", x)
    errors = [scaled_error(o, r) for o, r in zip(_features(model, gray), reference)]
    assert max(errors) < 1e-4, errors
