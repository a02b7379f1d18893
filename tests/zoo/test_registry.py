import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.zoo import registry


def test_unet_is_registered_and_listed():
    assert "unet" in kerasseg.zoo.list_models()
    assert kerasseg.zoo.list_models("unet") == ["unet"]
    # Names with their task-weight tags (fpn_resnet34.isbi2012 is made by its recipe).
    assert kerasseg.zoo.list_models("fpn_resnet3*") == ["fpn_resnet34", "fpn_resnet34.isbi2012"]
    assert kerasseg.zoo.list_models("nothing_*") == []
    assert "unet" in kerasseg.zoo.list_models(task="segmentation")
    assert "unet" not in kerasseg.zoo.list_models(task="detection")
    assert "unet" in kerasseg.zoo.list_models(pretrained=False)


def test_info_describes_without_building():
    info = kerasseg.zoo.info("unet")
    assert info["task"] == "segmentation"
    assert info["builder"] == "kerasseg.segmentation.unet.unet"
    assert info["description"].startswith("The original U-Net")


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"Unknown model name 'unte'\. Did you mean 'unet'"):
        kerasseg.zoo.get("unte")
    with pytest.raises(ValueError, match="Unknown model name 'zzz'"):
        kerasseg.zoo.info("zzz")


def test_unknown_weight_tag_is_an_error():
    with pytest.raises(ValueError, match="has no weights tagged 'isbi2012'"):
        kerasseg.zoo.get("unet.isbi2012")


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="'unet' is already registered"):
        registry.register_model("unet")(lambda **kw: None)


def test_register_rejects_unknown_task():
    with pytest.raises(ValueError, match="`task` must be one of"):
        registry.register_model("x", task="classification")


def test_get_builds_with_overrides_and_loads_a_weights_file(tmp_path):
    model = kerasseg.zoo.get(
        "unet", weights=None, num_classes=3, input_shape=(32, 32, 1), filters=4, depth=2
    )
    assert model.output_shape == (None, 32, 32, 3)
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    again = kerasseg.zoo.get(
        "unet", weights=path, num_classes=3, input_shape=(32, 32, 1), filters=4, depth=2
    )
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 1)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))


def test_weights_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        kerasseg.zoo.get("unet", weights=str(tmp_path / "missing.weights.h5"), filters=4, depth=2)
    other = kerasseg.zoo.get("unet", weights=None, filters=8, depth=2)
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(ValueError, match="Could not load weights file"):
        kerasseg.zoo.get("unet", weights=path, filters=4, depth=2)
    # The refusal is about the shape mismatch, not a broken file: the matching model loads it.
    same = kerasseg.zoo.get("unet", weights=path, filters=8, depth=2)
    x = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(same.predict(x, verbose=0), other.predict(x, verbose=0))


def test_names_with_a_dot_are_refused():
    with pytest.raises(ValueError, match=r"must not contain '\.'"):
        registry.register_model("unet.v2")(lambda **kw: None)


def test_imagenet_needs_an_encoder_entry():
    with pytest.raises(
        ValueError,
        match=r"Model 'unet' has no 'imagenet' encoder weights: it nests no encoder. Its "
        r"encoder weights: none\.",
    ):
        kerasseg.zoo.get("unet", weights="imagenet")
    with pytest.raises(TypeError, match="`weights` must be 'default', None, 'imagenet'"):
        kerasseg.zoo.get("unet", weights=3)


def test_info_reports_metafile_data_and_counts_params_on_request():
    described = kerasseg.zoo.info("unet")
    assert described["params"] == 31_049_409
    assert described["params_source"].startswith("params.yml")
    assert described["input"]["divisible_by"] == 16 and described["default_weights"] is None
    assert described["metafile"].endswith("unet.yml") and "arxiv.org" in described["paper"]["url"]

    def _test_small(*, num_classes=1, input_shape=(None, None, 3)):
        """A model without a metafile entry."""
        inputs = keras.Input(input_shape)
        return keras.Model(inputs, keras.layers.Conv2D(num_classes, 3)(inputs))

    registry.register_model("_test_small")(_test_small)
    try:
        assert kerasseg.zoo.info("_test_small")["params"] is None
        counted = kerasseg.zoo.info("_test_small", count_params=True)
        assert counted["params"] == 3 * 3 * 3 + 1 and counted["params_source"].startswith("counted")
        assert kerasseg.zoo.download("_test_small") == []  # nothing pretrained to fetch
    finally:
        registry._REGISTRY.pop("_test_small")
