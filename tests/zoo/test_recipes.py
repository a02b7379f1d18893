"""Recipes and ``kerasseg zoo train``: a tiny recipe trained on the real ISBI data, its
weights found by ``zoo.get`` under the recipe's name, the metrics shown by ``info``, and the
cache verified."""

from __future__ import annotations

import copy
import json

import keras
import numpy as np
import pytest
import yaml

from kerasseg import zoo
from kerasseg.cli import main
from kerasseg.zoo import recipes, verify
from kerasseg.zoo import weights as zw
from tests.support import require_shared_data
from tests.zoo.support import LocalServer, sha256_bytes, temporary_model, write_metafile

TINY = {
    "name": "unet.mine",
    "description": "A tiny U-Net, for the tests.",
    "model": {"num_classes": 1, "init": None, "kwargs": {"filters": 4, "depth": 2}},
    "data": {
        "dataset": "ISBI 2012 membranes",
        "path": "isbi2012-membrane",
        "channels": 1,
        "mask_values": {0: 1, 255: 0},
        "classes": ["membrane"],
        "train": "0-3",
        "val": [29],
    },
    "train": {
        "epochs": 1,
        "steps_per_epoch": 2,
        "batch_size": 2,
        "crop_size": 64,
        "learning_rate": 0.001,
        "seed": 0,
    },
}


def _write(path, recipe):
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_train_a_recipe_file_then_get_info_verify(tmp_path, isolated_zoo, capsys):
    isbi = require_shared_data("isbi2012-membrane")
    recipe = _write(tmp_path / "mine.yml", {**TINY, "data": {**TINY["data"], "path": str(isbi)}})
    assert main(["zoo", "train", str(recipe), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "unet.mine: validation: indices 29 of" in out and "dice" in out

    folder = zw.trained_dir("unet.mine")
    record = json.loads((folder / "record.json").read_text())
    assert (folder / "recipe.yml").read_text() == recipe.read_text()
    assert record["recipe_sha256"] == recipes.load_recipe(recipe).sha256
    measured = record["metrics"][0]["values"]
    assert set(measured) == {"dice", "jaccard", "cosine"} and 0 <= measured["dice"] <= 1

    # zoo.get finds the weights under the recipe's name, with the recipe's configuration.
    assert "unet.mine" in zoo.list_models("unet*") and "unet.mine" in zoo.list_models(
        pretrained=True
    )
    model = zoo.get("unet.mine")
    assert model.input_shape == (None, None, None, 1)
    trained = keras.models.load_model(folder / "run" / "model.keras")
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 1)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), trained.predict(x, verbose=0))
    fresh = zoo.get("unet.mine", weights=None)
    assert not np.allclose(fresh.predict(x, verbose=0), trained.predict(x, verbose=0))
    with pytest.raises(ValueError, match="trained with num_classes=1 and 1 input channels"):
        zoo.get("unet.mine", num_classes=2)

    # info shows the measured metrics and where they come from.
    described = zoo.info("unet.mine")
    assert described["default_input_shape"] == [None, None, 1]
    assert described["weights"]["mine"]["trained"]["status"] == "present"
    assert zoo.info("unet.mine", verify=True)["weights"]["mine"]["trained"]["status"] == "ok"
    (metric,) = described["metrics"]
    assert metric["weights"] == "unet.mine" and metric["values"] == measured
    assert metric["source"] == "kerasseg zoo train (this machine)"

    # verify: OK, then CORRUPT (exit status 1) once the file is damaged; get refuses it.
    assert main(["zoo", "verify", "unet.mine"]) == 0
    assert capsys.readouterr().out.startswith("OK       trained    unet.mine")
    weights_file = folder / "model.weights.h5"
    weights_file.write_bytes(weights_file.read_bytes()[:-100])
    assert main(["zoo", "verify"]) == 1
    assert "CORRUPT  trained    unet.mine" in capsys.readouterr().out
    with pytest.raises(
        zoo.WeightsNotAvailableError, match=r"(?s)corrupt.*kerasseg zoo train unet\.mine"
    ):
        zoo.get("unet.mine")


def _test_tiny_unet(*, num_classes=1, input_shape=(None, None, 3), **kwargs):
    """A small U-Net registered by the test below."""
    from kerasseg.zoo import registry

    unet = registry.registered("unet").builder
    return unet(num_classes=num_classes, input_shape=input_shape, filters=4, depth=2, **kwargs)


def test_listed_but_untrained_tag_says_how_to_train_it(tmp_path, monkeypatch):
    root = tmp_path / "index"
    (root / "recipes").mkdir(parents=True)
    _write(
        root / "recipes" / "_test_tiny_unet.demo.yml",
        {**TINY, "name": "_test_tiny_unet.demo", "model": {"num_classes": 1}},
    )
    metafile = write_metafile(
        root,
        "tiny",
        {
            "models": [
                {
                    "name": "_test_tiny_unet",
                    "default_weights": None,
                    "weights": {
                        "demo": {
                            "recipe": "recipes/_test_tiny_unet.demo.yml",
                            "licence": "MIT",
                            "classes": ["membrane"],
                            "metrics": [],
                        }
                    },
                }
            ]
        },
    )
    monkeypatch.setenv("KERASSEG_ZOO_INDEX", str(metafile))
    with temporary_model("_test_tiny_unet", _test_tiny_unet):
        assert zoo.list_models("_test_tiny*") == ["_test_tiny_unet", "_test_tiny_unet.demo"]
        assert zoo.list_models("_test_tiny*", pretrained=False) == ["_test_tiny_unet"]
        assert recipes.load_recipe("_test_tiny_unet.demo").path == (
            root / "recipes" / "_test_tiny_unet.demo.yml"
        )
        with pytest.raises(zoo.WeightsNotAvailableError) as error:
            zoo.get("_test_tiny_unet.demo")
        message = str(error.value)
        assert "not hosted" in message and "kerasseg zoo train _test_tiny_unet.demo" in message
        assert str(zw.trained_dir("_test_tiny_unet.demo") / "model.weights.h5") in message
        described = zoo.info("_test_tiny_unet.demo")["weights"]["demo"]
        assert described["how_to_get"] == "kerasseg zoo train _test_tiny_unet.demo"
        assert described["hosted"] is False and described["licence"] == "MIT"
        # The model itself (random init) and weights=None on the tag still build.
        assert zoo.get("_test_tiny_unet.demo", weights=None).input_shape == (None, None, None, 1)
        with pytest.raises(ValueError, match=r"has no weights tagged 'demo2'.*\['demo'\]"):
            zoo.get("_test_tiny_unet.demo2")


def test_recipe_errors_are_named(tmp_path):
    def check(edit, pattern):
        recipe = copy.deepcopy(TINY)
        edit(recipe)
        with pytest.raises(ValueError, match=pattern):
            recipes.load_recipe(_write(tmp_path / "r.yml", recipe))

    check(lambda r: r.update(name="unet"), r"`name` must be '<model>.<tag>'")
    check(lambda r: r["data"].update(val="2-5"), r"data.train and data.val overlap: \[2, 3\]")
    check(lambda r: r["train"].update(optimizer="sgd"), r"unknown keys \['optimizer'\]")
    check(lambda r: r["model"].update(init="coco"), r"model.init must be 'imagenet' or null")
    check(lambda r: r["model"]["kwargs"].update(encoder_weights="x"), "encoder weights go in")
    check(lambda r: r["data"].update(train="a-b"), "data.train must be indices like")
    with pytest.raises(
        ValueError, match=r"No recipe named 'unet11\.isbi2013'\. Did you mean 'unet11\.isbi2012'"
    ):
        recipes.load_recipe("unet11.isbi2013")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        recipes.load_recipe(tmp_path / "missing.yml")


def test_data_is_looked_up_under_the_data_roots(tmp_path, monkeypatch):
    recipe = recipes.load_recipe(_write(tmp_path / "r.yml", TINY))
    for root in ("env-root", "arg-root"):
        (tmp_path / root / "isbi2012-membrane" / "images").mkdir(parents=True)
        (tmp_path / root / "isbi2012-membrane" / "masks").mkdir()
    monkeypatch.setenv("KERASSEG_DATA", str(tmp_path / "env-root"))
    assert recipes.resolve_data(recipe) == tmp_path / "env-root" / "isbi2012-membrane"
    assert recipes.resolve_data(recipe, tmp_path / "arg-root") == (
        tmp_path / "arg-root" / "isbi2012-membrane"
    )
    absent = recipes.load_recipe(
        _write(tmp_path / "r2.yml", {**TINY, "data": {**TINY["data"], "path": "no-such-set"}})
    )
    with pytest.raises(FileNotFoundError) as error:
        recipes.resolve_data(absent, tmp_path / "arg-root")
    message = str(error.value)
    assert (
        f"Looked in:\n  {tmp_path / 'arg-root' / 'no-such-set'}\n  "
        f"{tmp_path / 'env-root' / 'no-such-set'}" in message
    )
    assert "Pass --data-root DIR (the folder holding 'no-such-set') or set KERASSEG_DATA" in message


def test_hosted_task_weights_are_downloaded_verified_and_loaded(tmp_path, monkeypatch):
    source = _test_tiny_unet(input_shape=(None, None, 1))
    source.save_weights(tmp_path / "tiny-hosted.weights.h5")
    body = (tmp_path / "tiny-hosted.weights.h5").read_bytes()
    root = tmp_path / "index"
    (root / "recipes").mkdir(parents=True)
    _write(
        root / "recipes" / "_test_tiny_unet.hosted.yml",
        {**TINY, "name": "_test_tiny_unet.hosted", "model": {"num_classes": 1}},
    )
    with LocalServer() as server, temporary_model("_test_tiny_unet", _test_tiny_unet):
        server.files["/w/tiny-hosted.weights.h5"] = body
        metafile = write_metafile(
            root,
            "tiny",
            {
                "models": [
                    {
                        "name": "_test_tiny_unet",
                        "default_weights": "hosted",
                        "weights": {
                            "hosted": {
                                "recipe": "recipes/_test_tiny_unet.hosted.yml",
                                "licence": "MIT",
                                "file": {
                                    "url": server.url("/w/tiny-hosted.weights.h5"),
                                    "sha256": sha256_bytes(body),
                                    "size_bytes": len(body),
                                },
                            }
                        },
                    }
                ]
            },
        )
        monkeypatch.setenv("KERASSEG_ZOO_INDEX", str(metafile))
        monkeypatch.setenv("KERASSEG_OFFLINE", "1")
        with pytest.raises(
            zoo.WeightsNotAvailableError, match=r"kerasseg zoo download _test_tiny_unet\.hosted"
        ):
            zoo.get("_test_tiny_unet.hosted")
        monkeypatch.delenv("KERASSEG_OFFLINE")
        # The default weights of the model are the tag's; the configuration is the recipe's.
        model = zoo.get("_test_tiny_unet", progress=False)
        x = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 1)).astype("float32")
        np.testing.assert_array_equal(model.predict(x, verbose=0), source.predict(x, verbose=0))
        assert server.requests == ["/w/tiny-hosted.weights.h5"]
        described = zoo.info("_test_tiny_unet.hosted", verify=True)["weights"]["hosted"]
        assert described["hosted"] is True and described["sha256"] == sha256_bytes(body)
        assert "how_to_get" not in described
        (entry,) = [
            e for e in verify.verify_cache(["_test_tiny_unet.hosted"]) if e.kind == "download"
        ]
        assert entry.status == "ok"
