"""``weights="imagenet"`` end to end: a torchvision ResNet34 checkpoint served from 127.0.0.1,
downloaded, verified, converted once, cached, loaded into a segmentation model's encoder, and
compared with torchvision's own features on a real image.

The checkpoint is a randomised torchvision ``resnet34`` (every weight and BN statistic drawn
at random: the real ImageNet file is not downloaded in tests), listed in a temporary
metafile (``KERASSEG_ZOO_INDEX``) as ``resnet34.random`` with its real SHA-256; the model's
``imagenet`` weights are then pointed at it (`_point_imagenet_at`). The model is a small test
architecture is the zoo's ``fpn_resnet34`` (its ResNet34 encoder nested as 'resnet34'). A small
VGG11 test architecture registered here (quick to train) checks that a recipe with
``init: imagenet`` trains from the converted file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import socket

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from kerasseg import encoders, zoo
from kerasseg.cli import main
from kerasseg.zoo import metafiles, recipe_training, registry, verify
from kerasseg.zoo import weights as zw
from tests.encoders.reference import (
    normalise,
    random_torchvision_model,
    scaled_error,
    torchvision_features,
)
from tests.support import require_module, require_shared_data
from tests.zoo.support import LocalServer, temporary_model, write_metafile

MODEL = "fpn_resnet34"
CHECKPOINT = "/models/resnet34-random.pth"
VGG_MODEL = "_test_encoder_head_vgg11"
VGG_CHECKPOINT = "/models/vgg11-random.pth"


def _encoder_head(encoder: str):
    """A test architecture: encoder `encoder` (nested under its name), a 1x1 head on the
    stride-32 feature and bilinear upsampling to the input size."""

    def builder(*, num_classes=1, input_shape=(None, None, 3), encoder_weights=None):
        inputs = keras.Input(input_shape, name="image")
        features = encoders.get(encoder, input_shape=input_shape, weights=encoder_weights)(inputs)
        logits = keras.layers.Conv2D(num_classes, 1, name="head")(features[-1])
        logits = keras.layers.UpSampling2D(32, interpolation="bilinear", name="upsample")(logits)
        outputs = keras.layers.Activation("sigmoid", name="probabilities")(logits)
        return keras.Model(inputs, outputs, name=f"test_encoder_head_{encoder}")  # no leading _

    builder.__name__ = builder.__qualname__ = f"_test_encoder_head_{encoder}"
    return builder


_test_encoder_head_vgg11 = _encoder_head("vgg11")  # light, for the training test


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
def vgg11_checkpoint(tmp_path_factory):
    """A randomly initialised torchvision VGG11 without its classifier (not converted)."""
    torch = require_module("torch")
    torchvision = require_module("torchvision")
    torch.manual_seed(0)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["A"])
    path = tmp_path_factory.mktemp("checkpoint") / "vgg11-random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def image():
    root = require_shared_data("bccd")
    path = sorted((root / "BCCD" / "JPEGImages").glob("*.jpg"))[0]
    with Image.open(path) as picture:
        rgb = np.asarray(picture.convert("RGB"), dtype="float32")
    return rgb[96:352, 128:448][None]  # (1, 256, 320, 3), a real blood-smear crop


def _encoder_weights_entry(server, name: str, path: str, body: bytes) -> dict:
    server.files[path] = body
    return {
        "name": name,
        "encoder": name.split(".")[0],
        "format": "torchvision",
        "file": {
            "url": server.url(path),
            "sha256": hashlib.sha256(body).hexdigest(),
            "size_bytes": len(body),
        },
        "licence": "CC0-1.0",
        "source": "tests/zoo/test_imagenet.py (random weights)",
    }


def _model_entry(name: str, **extra) -> dict:
    return {"name": name, "default_weights": "imagenet", **extra}


@pytest.fixture()
def served(checkpoint, vgg11_checkpoint, tmp_path, monkeypatch):
    """The checkpoints on a local server, a metafile naming them, and the test models."""
    with LocalServer() as server:
        metafile = write_metafile(
            tmp_path / "index",
            "testzoo",
            {
                "encoder_weights": [
                    _encoder_weights_entry(server, "resnet34.random", CHECKPOINT, checkpoint),
                    _encoder_weights_entry(
                        server, "vgg11.random", VGG_CHECKPOINT, vgg11_checkpoint
                    ),
                ],
                "models": [
                    _model_entry(VGG_MODEL, encoder_weights={"imagenet": "vgg11.random"}),
                ],
            },
        )
        monkeypatch.setenv("KERASSEG_ZOO_INDEX", str(metafile))
        with temporary_model(
            VGG_MODEL, _test_encoder_head_vgg11, family="testzoo", encoder="vgg11"
        ):
            assert verify.check_against_registry() == []
            _point_imagenet_at(MODEL, "resnet34.random", monkeypatch)
            yield server


def _point_imagenet_at(model: str, weights: str, monkeypatch) -> None:
    """Makes ``weights="imagenet"`` of `model` load the encoder weights `weights` (instead of
    the packaged torchvision checkpoint, which tests must not download)."""
    index = metafiles.load_index()
    assert registry.model_card(model).encoder_weights == {"imagenet": "resnet34.imagenet"}
    card = dataclasses.replace(index.models[model], encoder_weights={"imagenet": weights})
    patched = dataclasses.replace(index, models={**index.models, model: card})
    monkeypatch.setattr(metafiles, "load_index", lambda: patched)


def _features(model, image):
    return [np.asarray(f) for f in model.get_layer("resnet34")(image, training=False)]


@pytest.mark.parity
def test_imagenet_encoder_features_equal_torchvision(served, torch_model, image, isolated_zoo):
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
    described = zoo.info(MODEL, verify=True)["weights"]["imagenet"]
    assert described["sha256"] == hashlib.sha256(served.files[CHECKPOINT]).hexdigest()
    assert described["hash_check"] == "full SHA-256" and described["licence"] == "CC0-1.0"
    assert described["cache"]["converted"]["status"] == "ok"
    assert described["cache"]["download"]["status"] == "ok"
    assert zoo.info(MODEL)["weights"]["imagenet"]["cache"]["converted"] == {
        "path": str(converted),
        "status": "present",
        "in_channels": 3,
        "detail": f"recorded sha256 {record['sha256']}",
    }
    # Random initialisation really differs (the comparison above is not vacuous).
    fresh = zoo.get(MODEL, weights=None)
    assert scaled_error(_features(fresh, image)[-1], reference[-1]) > 1e-2


@pytest.mark.parity
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


@pytest.mark.parity
def test_offline_error_lists_places_variables_and_command(served, isolated_zoo, monkeypatch):
    monkeypatch.setenv("KERASSEG_OFFLINE", "1")
    with pytest.raises(zoo.WeightsNotAvailableError) as error:
        zoo.get(MODEL)
    message = str(error.value)
    assert served.requests == []
    for text in (
        str(isolated_zoo / "converted" / "resnet34-random.weights.h5"),
        str(isolated_zoo / "downloads" / "resnet34-random.pth"),
        "KERASSEG_HOME=",
        "KERASSEG_OFFLINE=1",
        "KERASSEG_MIRROR=",
        f"kerasseg zoo download {MODEL}",
    ):
        assert text in message, text


@pytest.mark.parity
def test_corrupt_or_missing_converted_file_is_converted_again(
    served, image, isolated_zoo, caplog, capsys
):
    assert main(["zoo", "download", MODEL, "--quiet"]) == 0
    path = isolated_zoo / "converted" / "resnet34-random.weights.h5"
    assert capsys.readouterr().out == f"{MODEL}: {path}\n"
    assert main(["zoo", "list", MODEL, "--pretrained"]) == 0
    assert capsys.readouterr().out.split()[:3] == [MODEL, "imagenet", "(cached)"]
    good = path.read_bytes()
    # A damaged converted file is detected by its recorded hash and converted again
    # from the cached checkpoint (no new request).
    path.write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING, logger="kerasseg.zoo.weights"):
        assert zoo.download(MODEL, progress=False) == [path]
    assert any("corrupt or stale" in r.getMessage() for r in caplog.records)
    assert served.requests == [CHECKPOINT]
    assert zw.check_converted(zw.find_encoder_weights("resnet34.random"), path)[0] == "ok"
    # A missing one is converted again from the cached checkpoint too (without PyTorch:
    # tests/zoo/test_torch_checkpoint.py blocks its import).
    path.unlink()
    zoo.get(MODEL, progress=False)
    assert zw.check_converted(zw.find_encoder_weights("resnet34.random"), path)[0] == "ok"
    assert served.requests == [CHECKPOINT]


@pytest.mark.parity
def test_grayscale_models_get_their_own_converted_file(served, torch_model, image, isolated_zoo):
    gray = image.mean(axis=-1, keepdims=True)
    model = zoo.get(MODEL, input_shape=(None, None, 1), progress=False)
    assert (isolated_zoo / "converted" / "resnet34-random.in1.weights.h5").is_file()
    # The 1-channel encoder equals the RGB network fed the gray image, normalised with the
    # means of the ImageNet statistics, in all three channels (kerasseg.zoo.convert).
    mean, std = (
        np.float32(np.mean([0.485, 0.456, 0.406])),
        np.float32(np.mean([0.229, 0.224, 0.225])),
    )
    x = np.repeat(normalise(gray, mean=mean, std=std), 3, axis=1)
    reference = torchvision_features(torch_model, "resnet34", x)
    errors = [scaled_error(o, r) for o, r in zip(_features(model, gray), reference)]
    assert max(errors) < 1e-4, errors


@pytest.mark.parity
def test_a_recipe_starting_from_imagenet_trains_from_the_converted_weights(
    served, isolated_zoo, tmp_path
):
    isbi = require_shared_data("isbi2012-membrane")
    recipe = tmp_path / "recipe.yml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": f"{VGG_MODEL}.isbi-tiny",
                "model": {"num_classes": 1, "init": "imagenet"},
                "data": {
                    "path": str(isbi),
                    "channels": 1,
                    "mask_values": {0: 1, 255: 0},
                    "train": [0],
                    "val": [29],
                },
                "train": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 1, "crop_size": 64},
            }
        )
    )
    record = recipe_training.train(recipe, verbose=0, progress=False)
    converted = isolated_zoo / "converted" / "vgg11-random.in1.weights.h5"
    run = json.loads((zw.trained_dir(record["name"]) / "run" / "results.json").read_text())
    assert run["config"]["model_kwargs"] == {"encoder_weights": str(converted)}
    assert served.requests == [VGG_CHECKPOINT]
    assert zoo.get(f"{VGG_MODEL}.isbi-tiny").input_shape == (None, None, None, 1)
