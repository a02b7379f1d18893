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
    assert {"unet"} <= set(index.models)
    assert verify.check_against_registry(index) == []


def test_every_registered_model_has_a_metafile_entry():
    index = metafiles.load_index()
    registered = [n for n in registry.list_registered() if not n.startswith("_test")]
    missing = [n for n in registered if n not in index.models]
    assert missing == [], (
        f"registered models without a metafile entry: {missing}; draft them with "
        f"`python -m kerasseg.zoo.verify PATTERN`"
    )


def test_recorded_parameter_counts_match_the_built_models():
    index = metafiles.load_index()
    cards = [card for card in index.models.values() if card.params is not None]
    assert cards
    # StatelessScope: build the graphs without initialising ~2.5 billion weights.
    with keras.StatelessScope():
        for card in cards:
            entry = registry.registered(card.name)
            model = entry.builder(
                num_classes=card.default_num_classes, input_shape=card.default_input_shape
            )
            assert model.count_params() == card.params, card.name


def test_every_weights_entry_has_a_licence_and_a_well_formed_hash():
    index = metafiles.load_index()
    files = [(w.name, w.licence, w.file) for w in index.encoder_weights.values()]
    for card in index.models.values():
        files += [(w.name, w.licence, w.file) for w in card.weights.values()]
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
            assert recipes.load_recipe(weights.recipe).name == weights.name
            for metric in weights.metrics:
                assert metric["source"].startswith(f"kerasseg zoo train {weights.name}")
                assert metric["recipe"] == f"recipes/{weights.name}.yml"
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
                    "builder": "tests.m1",
                    "task": "segmentation",
                    "colour": "red",
                    "defaults": {"num_classes": 1, "input_shape": [None, None, 3]},
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
        "unknown keys ['colour']",
        "tag 'Bad Tag' must match",
        "weights.voc: missing required keys ['licence']",
    ):
        assert expected in message, (expected, message)


def test_cross_file_errors(tmp_path):
    message = _problems(
        tmp_path,
        {
            "models": [
                {
                    "name": "m2",
                    "builder": "x.m2",
                    "task": "segmentation",
                    "encoder": "resnet18",
                    "encoder_weights": {"imagenet": "resnet34.imagenet", "ssl": "resnet18.ssl"},
                    "defaults": {"num_classes": 1, "input_shape": [None, None, 3]},
                    "default_weights": "isbi",
                },
            ],
        },
        family="other",
        with_packaged=True,
    )
    assert "encoder_weights.ssl names 'resnet18.ssl', which no metafile defines" in message
    assert (
        "encoder_weights.imagenet ('resnet34.imagenet') is for encoder 'resnet34', not "
        "'resnet18'" in message
    )
    assert "default_weights 'isbi' is none of its weights" in message
    # Against the packaged index: the name 'unet' is taken.
    extra = write_metafile(
        tmp_path / "dup",
        "dup",
        {
            "models": [
                {
                    "name": "unet",
                    "builder": "x.unet",
                    "task": "segmentation",
                    "defaults": {"num_classes": 1, "input_shape": [None, None, 3]},
                    "default_weights": None,
                }
            ]
        },
    )
    with pytest.raises(MetafileError, match="model 'unet' is already defined in"):
        metafiles.read_index([ZOO, extra])
    wrong_family = write_metafile(tmp_path / "fam", "fam", {})
    wrong_family.write_text("family: notfam\n")
    with pytest.raises(MetafileError, match="`family` must be the file's stem 'fam'"):
        metafiles.read_index([wrong_family])


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
                    "builder": "tests.zoo.elsewhere._tiny",
                    "task": "detection",
                    "defaults": {"num_classes": 2, "input_shape": [None, None, 3]},
                    "default_weights": None,
                },
                {
                    "name": "_test_unregistered",
                    "builder": "tests.zoo.x.y",
                    "task": "segmentation",
                    "defaults": {"num_classes": 1, "input_shape": [None, None, 3]},
                    "default_weights": None,
                },
            ]
        },
    )
    monkeypatch.setenv("KERASSEG_ZOO_INDEX", str(extra))
    with temporary_model("_test_cross", _tiny):
        problems = "\n".join(verify.check_against_registry())
    assert (
        "`builder` is 'tests.zoo.elsewhere._tiny' but the registered builder is "
        "'tests.zoo.test_metafiles.test_registry_cross_check_names_disagreements.<locals>._tiny'"
        in problems
    )
    assert "task 'detection' != registered 'segmentation'" in problems
    assert "defaults (num_classes=2" in problems
    assert "'_test_unregistered': no model of that name is registered" in problems


def test_draft_entries_for_unlisted_models():
    def _test_draft_resnet18(*, num_classes=1, input_shape=(None, None, 3)):
        """A draft test model."""
        import keras

        inputs = keras.Input(input_shape)
        return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1)(inputs))

    with temporary_model("_test_draft_resnet18", _test_draft_resnet18):
        text = verify.draft_entries("_test_draft_*")
    (entry,) = yaml.safe_load(text)["models"]
    assert entry["encoder"] == "resnet18" and entry["default_weights"] == "imagenet"
    assert entry["params"] == 3 * 1 + 1
    assert entry["builder"].endswith(
        "test_draft_entries_for_unlisted_models.<locals>._test_draft_resnet18"
    )
