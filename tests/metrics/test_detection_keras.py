"""MeanAveragePrecision: the evaluator as a Keras metric in compiled fit/evaluate."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasseg.metrics import MeanAveragePrecision, pack_detections, pack_ground_truth
from kerasseg.metrics.detection import evaluate
from tests import detection_models as dm
from tests.support import run_in_fresh_process

pytestmark = pytest.mark.filterwarnings("ignore:The model does not have any trainable weights")

NUM_IMAGES = 7
WIDTH = 8


def _data(quality=1):
    gt = dm.ground_truth(NUM_IMAGES, width=WIDTH, seed=4)
    gt["iscrowd"] = np.zeros_like(gt["classes"])
    gt["iscrowd"][0, 0] = 1  # one crowd region travels in the 6th packed column
    packed = dm.detections(gt, quality, width=WIDTH, seed=8)
    expected = evaluate(gt, dm.unpack(packed), num_classes=dm.NUM_CLASSES, progress=False)
    return gt, packed, expected


def _model(packed, metric):
    model = dm.packed_model(NUM_IMAGES, width=WIDTH)
    dm.set_detections(model, packed)
    # y_true and y_pred have the same (B, 8, 6) shape, so "mse" is a (meaningless) loss
    # that lets compile/fit run.
    model.compile(optimizer="sgd", loss="mse", metrics=[metric], jit_compile=False)
    return model


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_compiled_evaluate_matches_the_evaluator(run_eagerly):
    gt, packed, expected = _data()
    metric = MeanAveragePrecision(num_classes=dm.NUM_CLASSES)
    model = _model(packed, metric)
    model.run_eagerly = run_eagerly
    y = np.asarray(pack_ground_truth(gt))
    assert y.shape == (NUM_IMAGES, WIDTH, 6)
    x = np.arange(NUM_IMAGES, dtype=np.int32)[:, None]
    logs = model.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)
    assert logs["map"] == pytest.approx(expected.map, abs=1e-7)  # float32 in the logs
    assert 0.2 < expected.map < 0.95
    # The metric's own full result equals the evaluator's exactly.
    assert metric.evaluation_result().num_images == NUM_IMAGES
    np.testing.assert_array_equal(metric.evaluation_result().stats, expected.stats)


def test_fit_logs_the_validation_map():
    gt, packed, expected = _data(quality=2)
    metric = MeanAveragePrecision(num_classes=dm.NUM_CLASSES, summary="map50", name="ap50")
    model = _model(packed, metric)
    x = np.arange(NUM_IMAGES, dtype=np.int32)[:, None]
    y = np.asarray(pack_ground_truth(gt))
    # shuffle=False: with tied scores the image order breaks ties (pycocotools: image-id
    # order), so the training pass must see the images in the evaluator's order.
    history = model.fit(
        x, y, validation_data=(x, y), epochs=2, batch_size=4, verbose=0, shuffle=False
    )
    np.testing.assert_allclose(history.history["val_ap50"], [expected.stats[1]] * 2, atol=1e-7)
    np.testing.assert_allclose(history.history["ap50"], [expected.stats[1]] * 2, atol=1e-7)


def test_save_and_load_without_custom_objects(tmp_path):
    gt, packed, _expected = _data()
    metric = MeanAveragePrecision(
        protocol="voc", num_classes=dm.NUM_CLASSES, class_names={0: "a", 1: "b", 2: "c"}
    )
    model = _model(packed, metric)
    x = np.arange(NUM_IMAGES, dtype=np.int32)[:, None]
    voc_gt = {"boxes": gt["boxes"], "classes": gt["classes"], "difficult": gt["iscrowd"]}
    y = np.asarray(pack_ground_truth(voc_gt))
    before = model.evaluate(x, y, verbose=0, return_dict=True)["map"]
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    after = loaded.evaluate(x, y, verbose=0, return_dict=True)["map"]
    assert after == before
    # No custom_objects: a new interpreter that imports only keras and kerasseg (not this
    # module, which has the metric class imported) loads the file and gets the same mAP.
    fresh, modules = run_in_fresh_process(
        "import keras, kerasseg\n"
        f"model = keras.models.load_model({path!r})\n"
        "result = model.evaluate(inputs['x'], inputs['y'], verbose=0, return_dict=True)\n"
        "outputs['map'] = np.array(result['map'])\n",
        tmp_path,
        x=x,
        y=y,
    )
    assert "tests" not in modules
    assert float(fresh["map"]) == before
    voc = evaluate(
        voc_gt, dm.unpack(packed), protocol="voc", num_classes=dm.NUM_CLASSES, progress=False
    )
    assert before == pytest.approx(voc.map, abs=1e-7)
    clone = MeanAveragePrecision.from_config(metric.get_config())
    assert clone.get_config() == metric.get_config()
    assert clone.class_names == {0: "a", 1: "b", 2: "c"}


def test_direct_use_with_dicts_and_reset():
    gt, packed, expected = _data()
    metric = MeanAveragePrecision(num_classes=dm.NUM_CLASSES)
    assert float(metric.result()) == 0.0
    for start in range(0, NUM_IMAGES, 4):
        part = slice(start, start + 4)
        metric.update_state({k: v[part] for k, v in gt.items()}, dm.unpack(packed[part]))
    assert float(metric.result()) == pytest.approx(expected.map, abs=1e-7)
    np.testing.assert_array_equal(metric.evaluation_result().precision, expected.precision)
    np.testing.assert_array_equal(np.asarray(pack_detections(dm.unpack(packed))), packed)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_errors():
    with pytest.raises(
        ValueError,
        match=r"`summary` must be one of \(.map., .map50.\) for protocol .voc.; got .map75.",
    ):
        MeanAveragePrecision(protocol="voc", summary="map75")
    metric = MeanAveragePrecision()
    with pytest.raises(
        ValueError, match=r"`MeanAveragePrecision` does not support `sample_weight`"
    ):
        metric.update_state(np.zeros((1, 1, 5)), np.zeros((1, 1, 6)), sample_weight=np.ones(1))
    with pytest.raises(ValueError, match=r"packed \(B, N, 6\)"):
        metric.update_state(np.zeros((1, 1, 5)), np.zeros((1, 1, 4)))
    _, packed, _ = _data()
    model = dm.packed_model(NUM_IMAGES, width=WIDTH)
    dm.set_detections(model, packed)
    model.compile(loss="mse", metrics=[MeanAveragePrecision()], jit_compile=True)
    with pytest.raises(
        RuntimeError,
        match=r"`MeanAveragePrecision` runs Python code and cannot run under XLA; compile the model with `jit_compile=False`",
    ):
        model.evaluate(np.zeros((2, 1), np.int32), np.zeros((2, WIDTH, 6)), verbose=0)
