"""YOLOv8: sizes equal ultralytics', anchor points and DFL decoding by hand, losses on
degenerate and crowd targets, errors. Training (loss falls, parts logged, objects found)
is tested on real images in tests/integration/test_bccd_detectors.py, the predict format
and the ``.keras`` round trip by the model contract."""

import re

import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.detection.detector import check_targets
from kerasseg.detection.postprocess import DetectionDecoder
from kerasseg.detection.yolov8 import YOLOv8, anchor_points, yolov8, yolov8_n
from tests.detection.support import (
    NUM_CLASSES,
    SIZE,
    assert_finite_losses_and_gradients,
    synthetic_batch,
)


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize(
    "name, expected",
    # ultralytics' model summaries at 80 classes: "yolov8n ... 3157200 parameters",
    # "yolov8s ... 11166560 parameters" (they count DFL's fixed 16-weight 1x1 conv, which
    # is a constant here).
    [("yolov8_n", 3_157_200), ("yolov8_s", 11_166_560)],
)
def test_sizes_equal_ultralytics(name, expected):
    model = kerasseg.zoo.get(name, weights=None, num_classes=80, input_shape=(64, 64, 3))
    assert _trainable(model) + 16 == expected


def test_xs_is_keras_cv_xs_with_fpn_depth_1():
    """keras-cv's YOLOV8Detector(xs backbone, fpn_depth=1, 20 classes) has 3,436,268
    weights (Keras' count, batch-norm statistics included); the n widths with two
    bottlenecks in the bottom-up neck blocks."""
    model = kerasseg.zoo.get("yolov8_xs", weights=None, num_classes=20, input_shape=(64, 64, 3))
    assert model.count_params() == 3_436_268
    n = yolov8_n(num_classes=20, input_shape=(64, 64, 3))
    assert model.count_params() > n.count_params()


def test_anchor_points_are_cell_centres_level_by_level():
    points, strides = (
        keras.ops.convert_to_numpy(t) for t in anchor_points([(2, 3), (1, 2)], [8, 16])
    )
    np.testing.assert_array_equal(
        points,
        [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12], [8, 8], [24, 8]],
    )
    np.testing.assert_array_equal(strides, [8] * 6 + [16] * 2)


def test_boxes_decode_from_the_expected_bin_times_the_stride():
    model = yolov8_n(num_classes=1, input_shape=(SIZE, SIZE, 3))
    bins = np.full((1, 2, 4, 16), -30.0, "float32")
    sides = [[1, 2, 3, 4], [0, 5, 15, 7]]  # bins per side (l, t, r, b)
    for n, s in enumerate(sides):
        bins[0, n, np.arange(4), s] = 30.0  # all probability on one bin
    points = np.array([[20.0, 28.0], [8.0, 8.0]], "float32")
    boxes = keras.ops.convert_to_numpy(
        model.decode_boxes(bins, points, np.array([8.0, 16.0], "float32"))
    )
    np.testing.assert_allclose(
        boxes[0], [[20 - 8, 28 - 16, 20 + 24, 28 + 32], [8, 8 - 80, 8 + 240, 8 + 112]], atol=1e-3
    )


def test_builds_for_one_and_many_classes_at_any_multiple_of_32():
    for classes in (1, 5):
        model = yolov8_n(num_classes=classes)
        raw = model(np.zeros((1, 96, 64, 3), "float32"))
        assert [tuple(m.shape[1:]) for m in raw["classes"]] == [
            (12, 8, classes),
            (6, 4, classes),
            (3, 2, classes),
        ]
        assert [m.shape[-1] for m in raw["boxes"]] == [64] * 3
    out = model.predict(np.zeros((2, 96, 64, 3), "float32"), verbose=0)
    assert out["boxes"].shape == (2, 100, 4)


def test_empty_and_degenerate_targets_give_finite_losses_and_gradients():
    model = yolov8_n(num_classes=NUM_CLASSES)
    images, _ = synthetic_batch(images=2)
    parts = assert_finite_losses_and_gradients(model, images)
    # No object: nothing to regress; every point is a negative of every class.
    assert parts["box_loss"] == 0.0 and parts["dfl_loss"] == 0.0
    assert 0.0 < parts["class_loss"] < 1.0  # the class prior starts near 0


def test_points_inside_crowd_boxes_are_neither_positive_nor_negative():
    model = yolov8_n(num_classes=NUM_CLASSES)
    images, _ = synthetic_batch(images=1)
    outputs = model(images)
    boxes = np.array([[[4, 4, 30, 30], [34, 34, 60, 60]]], "float32")
    classes = np.array([[0, 1]], "int32")

    def loss(y):
        parts = model.detection_loss(images, check_targets(y, NUM_CLASSES), outputs)
        return {k: float(v) for k, v in parts.items()}

    alone = loss({"boxes": boxes[:, :1], "classes": classes[:, :1]})
    crowd = loss({"boxes": boxes, "classes": classes, "iscrowd": np.array([[0, 1]])})
    assert crowd["box_loss"] == pytest.approx(alone["box_loss"], rel=1e-5)
    assert crowd["dfl_loss"] == pytest.approx(alone["dfl_loss"], rel=1e-5)
    # The crowd box's points leave the negatives.
    assert crowd["class_loss"] < alone["class_loss"]


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=re.escape("Input height 100 is not divisible by 32")):
        yolov8_n(num_classes=2, input_shape=(100, 128, 3))
    model = yolov8_n(num_classes=2)
    with pytest.raises(ValueError, match="box_encoding='xyxy'"):
        YOLOv8(model.network, 2, decoder=DetectionDecoder(2))
    with pytest.raises(ValueError, match="`num_classes` must be a positive"):
        yolov8(0.25, 0.33, num_classes=0)
    with pytest.raises(ValueError, match=re.escape("`y['boxes']` must have shape (B, M, 4)")):
        model.compute_loss(
            np.zeros((1, 64, 64, 3)),
            {"boxes": np.zeros((1, 4)), "classes": np.zeros((1, 1))},
            model(np.zeros((1, 64, 64, 3))),
        )


def test_registered_variants():
    assert [n for n in kerasseg.zoo.list_models("yolov8_*") if "." not in n] == [
        "yolov8_n",
        "yolov8_s",
        "yolov8_xs",
    ]
    entry = kerasseg.zoo.registry.registered("yolov8_xs")
    assert entry.task == "detection" and entry.family == "yolov8" and entry.input_multiple == 32
