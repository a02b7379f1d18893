"""Validation of the zoo's metafiles: schema, agreement with the code, published values."""

from __future__ import annotations

import re

import keras
import pytest
import yaml

from kerasseg import encoders
from kerasseg.zoo import metafiles, recipes, registry, verify
from kerasseg.zoo.metafiles import MetafileError
from tests.support import REPO_ROOT, require_module
from tests.zoo.support import temporary_model, write_metafile

ZOO = REPO_ROOT / "zoo"


def test_packaged_index_is_the_source_tree_and_agrees_with_the_code():
    assert metafiles.packaged_root() == ZOO
    index = metafiles.load_index()
    assert {"unet11", "fpn_resnet34"} <= set(index.models)
    assert verify.check_against_registry(index) == []


def test_metafiles_hold_only_what_code_cannot_know():
    """Every entry carries weights; every registered family has its metafile; the model's
    builder, task, encoder, defaults and input multiple appear only in the code."""
    index = metafiles.load_index()
    assert all(
        card.weights or card.encoder_weights or card.converted_weights
        for card in index.models.values()
    )
    registered = [registry.registered(n) for n in registry.list_registered()]
    families = {e.family for e in registered if not e.name.startswith("_test")}
    assert families - set(index.families) == set()
    for path in sorted((ZOO / "metafiles").glob("*.yml")):
        for entry in yaml.safe_load(path.read_text()).get("models") or []:
            allowed = {"name", "encoder_weights", "default_weights", "weights", "converted_weights"}
            assert set(entry) <= allowed, path


def test_generated_parameter_counts_cover_the_registered_models():
    """zoo/params.yml lists every registered model (tests/test_model_contract.py checks each
    count against the built model)."""
    index = metafiles.load_index()
    registered = [n for n in registry.list_registered() if not n.startswith("_test")]
    assert sorted(index.params) == registered, (
        f"zoo/params.yml is stale: run `{verify.PARAMS_COMMAND}`"
    )


def test_params_file_is_what_the_command_writes(tmp_path):
    index = metafiles.load_index()
    assert (ZOO / metafiles.PARAMS_FILE).read_text() == verify.params_yaml(dict(index.params))

    def _test_counted(*, num_classes=2, input_shape=(None, None, 3)):
        inputs = keras.Input(input_shape)
        return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1)(inputs))

    with temporary_model("_test_counted", _test_counted):
        written = verify.write_params(tmp_path / "params.yml", pattern="_test_*")
    assert written.read_text().splitlines()[2:] == ["_test_counted: 8"]  # 3 * 2 + 2


def test_every_weights_entry_has_a_licence_and_a_well_formed_hash():
    index = metafiles.load_index()
    files = [(w.name, w.licence, w.file) for w in index.encoder_weights.values()]
    for card in index.models.values():
        files += [(w.name, w.licence, w.file) for w in card.weights.values()]
        files += [(w.name, w.licence, w.file) for w in card.converted_weights.values()]
    assert len(files) >= 12
    for name, licence, file in files:
        assert licence.strip(), name
        if file is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", file.sha256 or "") or re.fullmatch(
                r"[0-9a-f]{8,63}", file.sha256_prefix or ""
            ), name


@pytest.mark.parity
def test_imagenet_entries_are_torchvisions_published_checkpoints():
    torchvision = require_module("torchvision")
    index = metafiles.load_index()
    assert sorted(w.encoder for w in index.encoder_weights.values()) == encoders.list_encoders()
    enums = {
        e.lower().replace("_weights", ""): getattr(torchvision.models, e)
        for e in dir(torchvision.models)
        if e.endswith("_Weights")
    }
    for name in encoders.list_encoders():
        weights = index.imagenet_for(name)
        published = enums[name].IMAGENET1K_V1
        assert weights.file.url == published.url == encoders.spec(name).torchvision_url
        # torchvision's file names carry the first 8 hex digits of the SHA-256.
        assert f"-{weights.file.sha256_prefix}.pth" in published.url
        assert weights.file.sha256 is None and len(weights.file.sha256_prefix) == 8
        assert weights.file.size_mb == published.meta["_file_size"]
        metrics = published.meta["_metrics"]["ImageNet-1K"]
        assert weights.metrics[0]["values"] == {
            "acc@1": metrics["acc@1"],
            "acc@5": metrics["acc@5"],
        }
        assert weights.licence == "BSD-3-Clause" and "ImageNet" in weights.licence_note


def test_recipes_parse_and_are_named_after_their_file():
    paths = sorted((ZOO / "recipes").glob("*.yml"))
    assert {p.stem for p in paths} >= {"unet11.isbi2012", "fpn_resnet34.isbi2012"}
    for path in paths:
        recipe = recipes.load_recipe(path)
        assert recipe.name == path.stem
        config = recipe.train_config()
        assert config.model == recipe.model and config.num_classes == recipe.num_classes


def test_every_metafile_is_indexed_and_task_weights_claim_only_real_runs():
    """No forgotten metafile; task weights are not hosted (file: null) and every metric they
    list names the recipe and the run that produced it."""
    index_text = yaml.safe_load((ZOO / "model-index.yml").read_text())
    on_disk = sorted(f"metafiles/{p.name}" for p in (ZOO / "metafiles").glob("*.yml"))
    assert sorted(index_text["metafiles"]) == on_disk
    index = metafiles.read_index([ZOO / "model-index.yml"])
    tagged = 0
    for card in index.models.values():
        for weights in card.weights.values():
            tagged += 1
            assert weights.file is None
            recipe = recipes.load_recipe(weights.recipe)
            assert recipe.name == weights.name
            for metric in weights.metrics:
                assert metric["source"].startswith(f"kerasseg zoo train {weights.name}")
                assert metric["recipe"] == f"recipes/{weights.name}.yml"
                if recipe.task == "detection":  # what recipe_training records, per class too
                    per_class = {
                        f"{kind}/{name}"
                        for kind in ("voc07_ap", "coco_ap")
                        for name in recipe.data.classes
                    }
                    assert (
                        set(metric["values"]) == {"coco_ap", "coco_ap50", "voc07_map"} | per_class
                    )
                else:
                    assert set(metric["values"]) == {"dice", "jaccard", "cosine"}
    assert tagged >= 2


def _problems(tmp_path, content, family="broken", with_packaged=False):
    path = write_metafile(tmp_path / "extra", family, content)
    with pytest.raises(MetafileError) as error:
        metafiles.read_index([ZOO, path] if with_packaged else [path])
    return str(error.value)


def test_schema_errors_are_all_listed(tmp_path):
    message = _problems(
        tmp_path,
        {
            "encoder_weights": [
                {
                    "name": "resnet18.imagenet",
                    "encoder": "resnet18",
                    "format": "torchvision",
                    "file": {"url": "https://x.invalid/r.pth", "sha256_prefix": 19584684},
                },
                {
                    "name": "resnet18.other",
                    "encoder": "resnet18",
                    "format": "torchvision",
                    "file": {"url": "ftp://x.invalid/r.pth", "sha256": "abc"},
                    "licence": "MIT",
                },
            ],
            "models": [
                {
                    "name": "m1",
                    "colour": "red",
                    "default_weights": "pascal",
                    "weights": {"Bad Tag": {}, "voc": {"recipe": "recipes/none.yml"}},
                },
            ],
        },
    )
    for expected in (
        "missing required keys ['licence']",
        "`sha256_prefix` must be a quoted string of hex digits, got 19584684 (int; quote it",
        "`url` must be an http(s) URL, got 'ftp://x.invalid/r.pth'",
        "unknown keys ['colour'] (allowed: ['converted_weights', 'default_weights', "
        "'encoder_weights', 'name', 'weights'])",
        "default_weights 'pascal' is none of its weights (['imagenet'])",  # voc is invalid
        "tag 'Bad Tag' must match",
        "weights.voc: missing required keys ['licence']",
    ):
        assert expected in message, (expected, message)


def test_converted_weights_errors_are_all_listed(tmp_path):
    good = {
        "format": "torchvision",
        "file": {"url": "https://x.invalid/d.pth", "sha256_prefix": "0123abcd"},
        "num_classes": 2,
        "licence": "MIT",
    }
    message = _problems(
        tmp_path,
        {
            "models": [
                {
                    "name": "m3",
                    "default_weights": "voc",
                    "weights": {"coco": {"recipe": "recipes/none.yml", "licence": "MIT"}},
                    "converted_weights": {
                        "coco": good,
                        "voc": {**good, "format": "caffe", "num_classes": 0},
                        "imagenet": good,
                        "named": {**good, "classes": ["a"]},
                        "bare": {"format": "torchvision"},
                    },
                },
            ],
        },
    )
    for expected in (
        "converted_weights.voc: `format` must be one of ['torchvision'], got 'caffe'",
        "converted_weights.voc: `num_classes` must be a positive integer, got 0",
        "converted_weights.named: `classes` must name the 2 classes (num_classes), got 1 names",
        "converted_weights.bare: missing required keys ['file', 'licence', 'num_classes']",
        "the tag 'imagenet' is reserved",
        "'coco' names both converted weights and task or encoder weights",
        "default_weights 'voc' is none of its weights",  # voc is invalid
    ):
        assert expected in message, (expected, message)


def test_cross_file_errors(tmp_path):
    message = _problems(
        tmp_path,
        {
            "models": [
                {
                    "name": "m2",
                    "encoder_weights": {"imagenet": "resnet34.imagenet", "ssl": "resnet18.ssl"},
                    "default_weights": "isbi",
                },
            ],
        },
        family="other",
        with_packaged=True,
    )
    assert "encoder_weights.ssl names 'resnet18.ssl', which no metafile defines" in message
    assert "default_weights 'isbi' is none of its weights" in message
    # Against the packaged index: the name 'unet' is taken.
    extra = write_metafile(
        tmp_path / "dup",
        "dup",
        {"models": [{"name": "unet11", "default_weights": None}]},
    )
    with pytest.raises(MetafileError, match="ModelCard 'unet11' is already defined in"):
        metafiles.read_index([ZOO, extra])
    wrong_family = write_metafile(tmp_path / "fam", "fam", {})
    wrong_family.write_text("family: notfam\n")
    with pytest.raises(MetafileError, match="`family` must be the file's stem 'fam'"):
        metafiles.read_index([wrong_family])
    old_schema = tmp_path / "old" / "model-index.yml"
    old_schema.parent.mkdir()
    old_schema.write_text("schema: 1\nmetafiles: []\n")
    with pytest.raises(MetafileError, match="`schema` must be 2, got 1 \\(schema 1 metafiles"):
        metafiles.read_index([old_schema])


def test_registry_cross_check_names_disagreements(tmp_path, monkeypatch):
    def _tiny(*, num_classes=1, input_shape=(None, None, 3)):
        raise AssertionError("not built")

    extra = write_metafile(
        tmp_path / "x",
        "x",
        {
            "models": [
                {
                    "name": "_test_cross",
                    "encoder_weights": {"imagenet": "resnet34.imagenet"},
                    "default_weights": None,
                },
                {"name": "_test_no_imagenet", "default_weights": "imagenet"},
                {"name": "_test_unregistered", "default_weights": None},
            ]
        },
    )
    monkeypatch.setenv("KERASSEG_ZOO_INDEX", str(extra))
    with (
        temporary_model("_test_cross", _tiny, family="x", encoder="resnet18"),
        temporary_model("_test_no_imagenet", _tiny, family="elsewhere"),
    ):
        problems = verify.check_against_registry()
    where = f"{extra}: model"
    assert problems == [
        f"{where} '_test_cross': encoder_weights.imagenet ('resnet34.imagenet') is for "
        f"encoder 'resnet34', but the model's encoder is 'resnet18'",
        f"{where} '_test_no_imagenet': the model is registered in family 'elsewhere', so its "
        f"entry belongs in metafiles/elsewhere.yml",
        f"{where} '_test_no_imagenet': default_weights 'imagenet', but no metafile lists "
        f"ImageNet weights for its encoder None",
        f"{where} '_test_unregistered': no model of that name is registered",
    ]
