"""RetinaNet: the detector contract on tiny synthetic data, and its loss against torchvision's."""

import re
import types

import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.detection.detector import check_targets
from kerasseg.detection.retinanet import RetinaNet, retinanet, retinanet_anchors
from tests.detection.support import (
    NUM_CLASSES,
    SIZE,
    assert_finite_losses_and_gradients,
    synthetic_batch,
)
from tests.support import require_module

#: A small but complete RetinaNet: ResNet-18, 16-channel pyramid, one conv per head.
TINY = {"channels": 16, "head_convs": 1}


@pytest.fixture(scope="module")
def trained():
    """A tiny RetinaNet after a few steps of fit, with its history."""
    keras.utils.set_random_seed(0)
    model = kerasseg.zoo.get("retinanet_resnet18", weights=None, num_classes=NUM_CLASSES, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images, targets = synthetic_batch()
    history = model.fit(images, targets, epochs=6, batch_size=4, verbose=0)
    return model, images, targets, history.history


def test_fit_on_raw_padded_boxes_reduces_the_loss_and_logs_its_parts(trained):
    model, _, _, history = trained
    assert isinstance(model, RetinaNet) and model.jit_compile is False
    assert set(history) == {"loss", "class_loss", "box_loss"}
    assert history["loss"][-1] < 0.8 * history["loss"][0], history["loss"]
    # The logged parts are the parts of the loss.
    np.testing.assert_allclose(
        np.add(history["class_loss"], history["box_loss"]), history["loss"], rtol=1e-5
    )


def test_predict_returns_the_padded_detections_dict(trained):
    model, images, _, _ = trained
    model.score_threshold = 0.05
    out = model.predict(images, verbose=0)
    assert set(out) == {"boxes", "classes", "scores", "num_detections"}
    assert out["boxes"].shape == (4, 100, 4) and out["boxes"].dtype == np.float32
    assert out["classes"].shape == out["scores"].shape == (4, 100)
    assert out["classes"].dtype == np.int32 and out["num_detections"].dtype == np.int32
    for b in range(4):
        n = out["num_detections"][b]
        assert np.all(out["classes"][b, :n] >= 0) and np.all(out["classes"][b, :n] < NUM_CLASSES)
        assert np.all(out["scores"][b, :n] > 0.05) and np.all(np.diff(out["scores"][b, :n]) <= 0)
        np.testing.assert_array_equal(out["classes"][b, n:], -1)
        np.testing.assert_array_equal(out["scores"][b, n:], -1.0)
        boxes = out["boxes"][b, :n]
        assert np.all(boxes >= 0) and np.all(boxes <= SIZE)  # clipped to the image
    assert out["num_detections"].sum() > 0


def test_thresholds_change_on_a_loaded_model_without_rebuilding(trained, tmp_path):
    model, images, _, _ = trained
    model.score_threshold = 0.05
    before = model.predict(images, verbose=0)
    path = tmp_path / "retinanet.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is RetinaNet and loaded.score_threshold == 0.05
    after = loaded.predict(images, verbose=0)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    loaded.score_threshold = 0.999
    assert loaded.predict(images, verbose=0)["num_detections"].sum() == 0
    loaded.max_detections = 7
    assert loaded.predict(images, verbose=0)["boxes"].shape == (4, 7, 4)
    with pytest.raises(
        ValueError, match=re.escape("`score_threshold` must be a number in [0, 1], got 2.")
    ):
        loaded.score_threshold = 2


def test_builds_for_one_and_many_classes_at_any_multiple_of_32():
    for classes in (1, 5):
        model = retinanet("resnet18", num_classes=classes, **TINY)
        raw = model(np.zeros((1, 96, 64, 3), "float32"))
        sizes = [tuple(m.shape[1:3]) for m in raw["classes"]]
        assert sizes == [(12, 8), (6, 4), (3, 2), (2, 1), (1, 1)]
        assert [m.shape[-1] for m in raw["classes"]] == [9 * classes] * 5
        assert [m.shape[-1] for m in raw["boxes"]] == [36] * 5
        # The class head starts at the prior probability 0.01 everywhere.
        probability = keras.ops.sigmoid(raw["classes"][0])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(probability).mean(), 0.01, rtol=0.05)
    out = model.predict(np.zeros((2, 96, 64, 3), "float32"), verbose=0)
    assert out["boxes"].shape == (2, 100, 4)


def test_registered_variants():
    names = [n for n in kerasseg.zoo.list_models("retinanet_*") if "." not in n]
    assert names == ["retinanet_resnet18", "retinanet_resnet34", "retinanet_resnet50"]
    entry = kerasseg.zoo.registry.registered("retinanet_resnet50")
    assert entry.task == "detection" and entry.encoder == "resnet50" and entry.input_multiple == 32


@pytest.mark.parity
def test_anchors_are_torchvisions():
    detection = require_module("torchvision.models.detection")
    torch = require_module("torch")
    generator = detection.anchor_utils.AnchorGenerator(
        tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in (32, 64, 128, 256, 512)),
        ((0.5, 1.0, 2.0),) * 5,
    )
    image_list = detection.image_list.ImageList(torch.zeros(1, 3, 256, 384), [(256, 384)])
    maps = [torch.zeros(1, 1, 256 // s, 384 // s) for s in (8, 16, 32, 64, 128)]
    expected = generator(image_list, maps)[0].numpy()
    ours = retinanet_anchors().numpy((256, 384), [m.shape[-2:] for m in maps])
    np.testing.assert_allclose(ours, expected, atol=1e-4)


@pytest.mark.parity
def test_loss_equals_torchvisions_retinanet_loss():
    """Same raw outputs, anchors and targets -> torchvision's classification and box losses."""
    torch = require_module("torch")
    detection = require_module("torchvision.models.detection")
    rng = np.random.default_rng(3)
    model = retinanet("resnet18", num_classes=NUM_CLASSES, **TINY)
    images = np.zeros((3, SIZE, SIZE, 3), "float32")
    raw = model(images)
    # Random raw outputs (larger than the initial ones, so that the focal loss varies).
    outputs = {
        key: [rng.normal(0, 1.5, m.shape).astype("float32") for m in maps]
        for key, maps in raw.items()
    }
    counts = (0, 2, 5)  # an image without objects, and padding in the others
    boxes = np.zeros((3, 5, 4), "float32")
    classes = np.full((3, 5), -1, "int32")
    for b, n in enumerate(counts):
        xy = rng.uniform(0, 48, (n, 2))
        wh = rng.uniform(6, 40, (n, 2))
        boxes[b, :n] = np.concatenate([xy, np.minimum(xy + wh, SIZE)], axis=1)
        classes[b, :n] = rng.integers(NUM_CLASSES, size=n)
    parts = model.detection_loss(
        images, check_targets({"boxes": boxes, "classes": classes}, NUM_CLASSES), outputs
    )

    _, class_out, anchors = model.flat_outputs(images, outputs)
    box_out = model.flat_outputs(images, outputs)[0]
    anchors = torch.from_numpy(keras.ops.convert_to_numpy(anchors))
    head = detection.retinanet.RetinaNetHead(8, 9, NUM_CLASSES)
    reference = types.SimpleNamespace(
        proposal_matcher=detection._utils.Matcher(0.5, 0.4, allow_low_quality_matches=True),
        head=head,
    )
    targets = [
        {"boxes": torch.from_numpy(boxes[b, :n]), "labels": torch.from_numpy(classes[b, :n]).long()}
        for b, n in enumerate(counts)
    ]
    head_outputs = {
        "cls_logits": torch.from_numpy(keras.ops.convert_to_numpy(class_out)),
        "bbox_regression": torch.from_numpy(keras.ops.convert_to_numpy(box_out)),
    }
    expected = detection.RetinaNet.compute_loss(reference, targets, head_outputs, [anchors] * 3)
    np.testing.assert_allclose(
        float(parts["class_loss"]), float(expected["classification"]), rtol=1e-5
    )
    np.testing.assert_allclose(
        float(parts["box_loss"]), float(expected["bbox_regression"]), rtol=1e-5
    )


def test_empty_and_degenerate_targets_give_finite_losses_and_gradients():
    model = retinanet("resnet18", num_classes=NUM_CLASSES, **TINY)
    images, _ = synthetic_batch(images=2)
    parts = assert_finite_losses_and_gradients(model, images)
    # No object: nothing to regress, and no positive to normalise by (divided by 1).
    assert parts["box_loss"] == 0.0 and parts["class_loss"] > 0.0


def test_bad_targets_are_named():
    images, targets = synthetic_batch()
    with pytest.raises(ValueError, match=re.escape("got ['boxes']")):
        check_targets({"boxes": targets["boxes"]}, NUM_CLASSES)
    with pytest.raises(ValueError, match=re.escape("`y['boxes']` must have shape (B, M, 4)")):
        check_targets({**targets, "boxes": targets["boxes"][..., :3]}, NUM_CLASSES)
    with pytest.raises(ValueError, match=re.escape("`y['classes']` has 3")):
        check_targets({**targets, "classes": targets["classes"][:, :3]}, NUM_CLASSES)
    boxes = targets["boxes"].copy()
    boxes[1, 0, 2] = np.nan
    with pytest.raises(Exception, match="must be finite for every labelled box"):
        check_targets({**targets, "boxes": boxes}, NUM_CLASSES)
    # Inside fit's traced step the value checks are assertions that stop training.
    model = retinanet("resnet18", num_classes=NUM_CLASSES, **TINY)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="Detectors take no `sample_weight`"):
        model.compute_loss(images, targets, model(images), sample_weight=np.ones(4))
    too_big = {**targets, "classes": np.where(targets["classes"] >= 0, NUM_CLASSES, -1)}
    with pytest.raises(Exception, match=re.escape("must hold class ids in [0, 3)")):
        model.fit(images, too_big, epochs=1, verbose=0)
    # A first trace that stopped at bad targets leaves the model trainable.
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=re.escape("got ['boxes']")):
        model.fit(images, {"boxes": targets["boxes"]}, epochs=1, verbose=0)
    assert np.isfinite(model.fit(images, targets, epochs=1, verbose=0).history["loss"][0])


def test_bad_builder_arguments_are_named():
    with pytest.raises(ValueError, match=re.escape("Input height 100 is not divisible by 32")):
        retinanet("resnet18", input_shape=(100, 128, 3), **TINY)
    with pytest.raises(ValueError, match=re.escape("`box_loss` must be one of")):
        retinanet("resnet18", box_loss="l2", **TINY)
    with pytest.raises(ValueError, match="resnet19"):
        retinanet("resnet19", **TINY)
    model = retinanet("resnet18", **TINY)
    with pytest.raises(ValueError, match="height 100 is not divisible by 32"):
        model.predict(np.zeros((1, 100, 96, 3), "float32"), verbose=0)


@pytest.mark.parity
def test_retinanet_resnet50_has_torchvisions_layout_and_parameters():
    """Layer for layer torchvision's retinanet_resnet50_fpn (91 COCO ids): the same
    parameter count, once torchvision's batch-norm statistics are counted as Keras counts
    its batch-norm weights (without torch's per-layer step counter)."""
    torch = require_module("torch")
    detection = require_module("torchvision.models.detection")
    with torch.device("meta"):
        reference = detection.retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=91
        )
    expected = sum(p.numel() for p in reference.parameters())
    expected += sum(
        b.numel() for n, b in reference.named_buffers() if not n.endswith("num_batches_tracked")
    )
    with keras.StatelessScope():
        model = kerasseg.zoo.get("retinanet_resnet50", weights=None, num_classes=91)
        assert model.count_params() == expected
        head = reference.head.classification_head
        assert model.network.get_layer("class_head_predictor").kernel.shape == tuple(
            head.cls_logits.weight.shape[i] for i in (2, 3, 1, 0)
        )


def test_the_backbone_takes_encoder_weights_as_the_zoo_passes_them(tmp_path):
    encoder = kerasseg.encoders.get("resnet18")
    path = tmp_path / "resnet18.weights.h5"
    encoder.save_weights(path)
    model = kerasseg.zoo.get("retinanet_resnet18", weights=None, encoder_weights=str(path), **TINY)
    nested = model.network.get_layer("resnet18")
    for a, b in zip(nested.get_weights(), encoder.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_map_in_fit_logs_from_a_compiled_metric_and_from_the_callback(trained):
    """The compiled metric sees decoded detections in validation; it agrees with the
    callback, which predicts the same images with the same weights after the epoch."""
    model, images, targets, _ = trained
    model.score_threshold = 0.05
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        metrics=[kerasseg.metrics.MeanAveragePrecision(num_classes=NUM_CLASSES)],
    )
    callback = kerasseg.callbacks.MeanAveragePrecisionCallback(
        (images, targets), prefix="callback_", num_classes=NUM_CLASSES, batch_size=2
    )
    history = model.fit(
        images,
        targets,
        validation_data=(images, targets),
        epochs=1,
        callbacks=[callback],
        verbose=0,
    ).history
    assert "map" not in history  # training batches are not decoded
    assert 0.0 <= history["val_map"][0] <= 1.0
    assert history["val_map"][0] == pytest.approx(history["callback_map"][0], abs=1e-6)
    assert history["val_map"][0] > 0  # the few training steps found some objects
