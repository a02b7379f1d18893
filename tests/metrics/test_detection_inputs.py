"""Input formats and the errors bad input gets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kerasseg.metrics.detection import DetectionEvaluator, evaluate
from tests.metrics.detection_cases import coco_to_arrays, make_coco_case


def _gt(boxes, classes, **extra):
    return {"boxes": np.asarray(boxes, np.float64), "classes": np.asarray(classes), **extra}


def _dt(boxes, classes, scores):
    return {
        "boxes": np.asarray(boxes, np.float64),
        "classes": np.asarray(classes),
        "scores": np.asarray(scores, np.float64),
    }


def test_json_files_equal_in_memory_dicts(tmp_path):
    ground_truth, results = make_coco_case(4, num_images=8)
    gt_path, res_path = tmp_path / "gt.json", tmp_path / "res.json"
    gt_path.write_text(json.dumps(ground_truth))
    res_path.write_text(json.dumps(results))
    from_files = evaluate(str(gt_path), res_path, progress=False)
    in_memory = evaluate(ground_truth, results, progress=False)
    np.testing.assert_array_equal(from_files.stats, in_memory.stats)
    assert from_files.class_names[3] == "class3"
    assert set(from_files.per_class_ap_by_name) == {f"class{c}" for c in (1, 3, 4, 7, 10, 12)}


def test_accumulating_batches_equals_one_call():
    ground_truth, results = make_coco_case(6, num_images=12)
    gt_images, dt_images, _ = coco_to_arrays(ground_truth, results)
    evaluator = DetectionEvaluator("coco")
    for start in range(0, 12, 5):
        evaluator.update(gt_images[start : start + 5], dt_images[start : start + 5])
    assert evaluator.num_images == 12
    once = evaluate(gt_images, dt_images, progress=False)
    np.testing.assert_array_equal(evaluator.result().precision, once.precision)
    evaluator.reset()
    assert evaluator.num_images == 0


def test_padding_rows_are_dropped():
    gt = _gt([[[0, 0, 10, 10], [0, 0, 0, 0]]], [[0, -1]])
    dt = _dt([[[0, 0, 10, 10], [5, 5, 1, 1]]], [[0, -1]], [[0.9, np.nan]])  # padding may hold junk
    result = evaluate(gt, dt, protocol="voc", progress=False)
    assert result.map == 1.0
    assert result.class_ids.tolist() == [0]


def test_classes_with_a_trailing_axis_and_float_dtype_are_accepted():
    gt = _gt([[0, 0, 10, 10]], np.array([[2.0]]))
    dt = _dt([[0, 0, 10, 10]], [[2]], [[0.5]])
    assert evaluate(gt, dt, protocol="voc", progress=False).map == 1.0


@pytest.mark.parametrize(
    ("gt", "dt", "message"),
    [
        (
            _gt([[0, 0, 10]], [0]),
            _dt([[0, 0, 1, 1]], [0], [1.0]),
            r"ground_truth\['boxes'\].*\(N, 4\)",
        ),
        (
            _gt([[0, 0, 10, 10]], [0, 1]),
            _dt([[0, 0, 1, 1]], [0], [1.0]),
            r"`ground_truth\['classes'\]` must have shape \(1,\) to match `boxes` \(1, 4\); got \(2,\)",
        ),
        (_gt([[10, 0, 0, 10]], [0]), _dt([[0, 0, 1, 1]], [0], [1.0]), "negative width"),
        (
            _gt([[0, 0, 10, 10]], [0]),
            _dt([[0, 0, 1, 1]], [0], [np.nan]),
            r"`detections\['scores'\]` must be finite; found nan at index \(0,\)",
        ),
        (
            _gt([[0, 0, 10, 10]], [0]),
            _dt([[0, 0, np.inf, 1]], [0], [1.0]),
            r"`detections\['boxes'\]` must be finite; found inf at index \(0, 2\)",
        ),
        (
            _gt([[0, 0, 10, 10]], [0]),
            _dt([[0, 0, 1, 1]], [0], [1.0, 0.5]),
            r"`detections\['scores'\]` must have shape \(1,\) to match `classes`; got \(2,\)",
        ),
        (_gt([[0, 0, 10, 10]], [0.5]), _dt([[0, 0, 1, 1]], [0], [1.0]), "integer class ids"),
        (
            _gt([[0, 0, 10, 10]], [0]),
            {"boxes": np.zeros((1, 4)), "classes": np.zeros(1)},
            r"`detections` must have a 'scores' entry; got keys \['boxes', 'classes'\]",
        ),
    ],
)
def test_bad_arrays_raise_clear_errors(gt, dt, message):
    with pytest.raises(ValueError, match=message):
        evaluate(gt, dt, progress=False)


def test_mismatched_batches_and_classes():
    gt = _gt(np.zeros((2, 1, 4)), np.zeros((2, 1)))
    dt = _dt(np.zeros((3, 1, 4)), np.zeros((3, 1)), np.ones((3, 1)))
    with pytest.raises(ValueError, match="holds 2 images but `detections` holds 3"):
        evaluate(gt, dt, progress=False)
    with pytest.raises(ValueError, match="has 2 images but `detections` has 1"):
        DetectionEvaluator().update([_gt([[0, 0, 1, 1]], [0])] * 2, [_dt([[0, 0, 1, 1]], [0], [1])])
    with pytest.raises(ValueError, match=r"class 5, outside 0..2"):
        evaluate(_gt([[0, 0, 1, 1]], [5]), _dt([[0, 0, 1, 1]], [0], [1.0]), num_classes=3)
    with pytest.raises(TypeError, match="both be dicts"):
        evaluate(_gt([[0, 0, 1, 1]], [0]), [_dt([[0, 0, 1, 1]], [0], [1.0])])


def test_bad_coco_json_raises_clear_errors():
    ground_truth, results = make_coco_case(0, num_images=4)
    unknown_image = [dict(results[0], image_id=999_999)]
    with pytest.raises(ValueError, match="image id 999999"):
        evaluate(ground_truth, unknown_image)
    unknown_category = [dict(results[0], category_id=2)]
    with pytest.raises(ValueError, match="category id 2"):
        evaluate(ground_truth, unknown_category)
    negative = [dict(results[0], bbox=[0, 0, -3, 4])]
    with pytest.raises(ValueError, match="width and height >= 0"):
        evaluate(ground_truth, negative)
    no_score = [{k: v for k, v in results[0].items() if k != "score"}]
    with pytest.raises(ValueError, match=r"every entry of `detections` needs a 'score'"):
        evaluate(ground_truth, no_score)
    nan_score = [dict(results[0], score=float("nan"))]
    with pytest.raises(
        ValueError, match=r"`detections score` must be finite; found nan at index \(0,\)"
    ):
        evaluate(ground_truth, nan_score)
    with pytest.raises(ValueError, match="'images' and 'annotations'"):
        evaluate({"images": []}, results)


def test_bad_options():
    with pytest.raises(ValueError, match="`protocol` must be one of"):
        DetectionEvaluator("voc2012")
    with pytest.raises(
        ValueError,
        match=r"`max_detections` must be three ascending positive integers .*got \(10, 1, 100\)",
    ):
        DetectionEvaluator(max_detections=(10, 1, 100))
    with pytest.raises(
        ValueError, match=r"`num_classes` must be a positive integer or None; got 0"
    ):
        DetectionEvaluator(num_classes=0)


def test_progress_bar_can_be_forced_and_disabled(capsys):
    ground_truth, results = make_coco_case(0, num_images=4)
    evaluate(ground_truth, results, progress=True)
    assert "mAP (coco)" in capsys.readouterr().err
    evaluate(ground_truth, results, progress=False)
    assert capsys.readouterr().err == ""
