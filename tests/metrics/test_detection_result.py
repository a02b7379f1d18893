"""The result object: confusion matrix, PR curves, tables."""

from __future__ import annotations

import numpy as np
import pytest

from kerasseg.metrics.detection import evaluate
from kerasseg.metrics.detection.confusion import _greedy_one_to_one
from tests.metrics.detection_cases import make_coco_case

# One image, classes 0 and 1.
#   ground truth A class 0 [0,0,10,10], B class 1 [20,0,30,10], C class 1 [40,0,50,10],
#                D class 0 [100,100,200,200] crowd
#   a class 0 on A (score .9)              -> matched: (gt 0, pred 0)
#   b class 0 on B (score .8)              -> matched: (gt 1, pred 0), a confusion
#   c class 1 on A again (score .7)        -> A is taken: false positive (background, 1)
#   d class 1 inside the crowd D (.6)      -> on a crowd region: not counted
#   e class 0 on empty space (score .1)    -> below score_threshold .2: dropped;
#                                             with threshold 0: (background, 0)
#   C is never detected                    -> missed: (gt 1, background)
GT = {
    "boxes": np.array(
        [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [100, 100, 200, 200]], float
    ),
    "classes": np.array([0, 1, 1, 0]),
    "iscrowd": np.array([0, 0, 0, 1]),
}
DT = {
    "boxes": np.array(
        [
            [0, 0, 10, 10],
            [20, 0, 30, 10],
            [0, 0, 10, 10],
            [120, 120, 130, 130],
            [300, 300, 310, 310],
        ],
        float,
    ),
    "classes": np.array([0, 0, 1, 1, 0]),
    "scores": np.array([0.9, 0.8, 0.7, 0.6, 0.1]),
}


def test_confusion_matrix_hand_worked():
    result = evaluate([GT], [DT], protocol="coco", class_names=["cat", "dog"], progress=False)
    expected = np.array([[1, 0, 0], [1, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(result.confusion_matrix(score_threshold=0.2), expected)
    expected[2, 0] += 1  # e now counts as a false positive of class 0
    np.testing.assert_array_equal(result.confusion_matrix(score_threshold=0.0), expected)
    # A stricter IoU: b's box equals B's exactly, so nothing changes at 0.95 either.
    np.testing.assert_array_equal(result.confusion_matrix(0.95, score_threshold=0.0), expected)


def test_confusion_matrix_totals_on_a_random_set():
    ground_truth, results = make_coco_case(3, num_images=12)
    result = evaluate(ground_truth, results, progress=False)
    matrix = result.confusion_matrix(iou_threshold=0.5, score_threshold=0.3)
    k = len(result.class_ids)
    assert matrix.shape == (k + 1, k + 1)
    not_crowd = [a for a in ground_truth["annotations"] if not a["iscrowd"]]
    # Every non-crowd ground truth lands in exactly one row cell.
    np.testing.assert_array_equal(
        matrix[:k].sum(axis=1),
        [sum(a["category_id"] == c for a in not_crowd) for c in result.class_ids],
    )
    kept = [r for r in results if r["score"] >= 0.3]
    # Detections are matched, false positives, or dropped on crowds: never more than kept.
    per_class = matrix.sum(axis=0)[:k]
    assert np.all(per_class <= [sum(r["category_id"] == c for r in kept) for c in result.class_ids])
    assert matrix[k, k] == 0
    assert np.trace(matrix[:k, :k]) > 0


def test_greedy_rounds_equal_sequential_greedy():
    rng = np.random.default_rng(0)
    pair_d = rng.integers(0, 30, 400)
    pair_g = rng.integers(0, 25, 400)
    taken = set(_greedy_one_to_one(pair_d, pair_g).tolist())
    used_d, used_g, expected = set(), set(), set()
    for i, (d, g) in enumerate(zip(pair_d, pair_g)):
        if d not in used_d and g not in used_g:
            expected.add(i)
            used_d.add(d)
            used_g.add(g)
    assert taken == expected


def test_pr_curves_coco_and_voc():
    ground_truth, results = make_coco_case(2, num_images=15, quality=0.8)
    coco = evaluate(ground_truth, results, progress=False)
    recall, precision = coco.pr_curve(1, iou_threshold=0.5)
    assert recall.shape == precision.shape == (101,)
    np.testing.assert_array_equal(precision, coco.precision[0, :, 0, 0, -1])
    assert np.all(np.diff(precision) <= 0)  # interpolated: non-increasing
    empty_recall, _ = coco.pr_curve(12)  # class without ground truth
    assert empty_recall.size == 0
    assert set(coco.pr_curves()) == {1, 3, 4, 7, 10}
    with pytest.raises(
        ValueError, match=r"`iou_threshold` must be one of \[0\.5, 0\.55, .*, 0\.95\]; got 0\.52"
    ):
        coco.pr_curve(1, iou_threshold=0.52)
    with pytest.raises(
        ValueError, match=r"`class_id` 2 was not evaluated; classes are \[1, 3, 4, 7, 10, 12\]"
    ):
        coco.pr_curve(2)

    voc = evaluate(ground_truth, results, protocol="voc", progress=False)
    recall, precision = voc.pr_curve(1)
    assert recall.size == sum(r["category_id"] == 1 for r in results)
    assert np.all(np.diff(recall) >= 0)


def test_voc_table_and_summary_keys():
    ground_truth, results = make_coco_case(2, num_images=10)
    voc = evaluate(ground_truth, results, protocol="voc07", progress=False)
    text = str(voc)
    assert text.splitlines()[0] == "VOC2007 11-point AP @ IoU > 0.5"
    assert "class12" in text and "n/a" in text  # no ground truth: no AP
    assert text.splitlines()[-1].split()[-1] == f"{voc.map:6.4f}".strip()
    assert set(voc.summary) == {"map", "map50"}
    coco = evaluate(ground_truth, results, progress=False)
    assert list(coco.summary) == [
        "map",
        "map50",
        "map75",
        "map_small",
        "map_medium",
        "map_large",
        "mar1",
        "mar10",
        "mar100",
        "mar_small",
        "mar_medium",
        "mar_large",
    ]
    assert coco.map == coco.stats[0]
    assert "map=" in repr(coco)


def test_pr_curve_and_ap_hand_worked():
    # One image, class 0, ground truths G1 [0,0,10,10] and G2 [20,0,30,10].
    #   score .9 on G1 -> TP   precision 1/1, recall 1/2
    #   score .8 on empty space -> FP   precision 1/2, recall 1/2
    #   score .7 on G2 -> TP   precision 2/3, recall 2/2
    # Interpolated (max precision at recall >= r): 1 for r <= 0.5, 2/3 for r > 0.5. COCO's
    # 101 recall points 0, 0.01, ..., 1: 51 points (0..0.50) at 1 and 50 points at 2/3, so
    # AP50 = (51 * 1 + 50 * 2/3) / 101 = (51 + 33.333...) / 101 = 0.834983...
    gt = {
        "boxes": np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float),
        "classes": np.array([0, 0]),
    }
    dt = {
        "boxes": np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 0, 30, 10]], float),
        "classes": np.array([0, 0, 0]),
        "scores": np.array([0.9, 0.8, 0.7]),
    }
    result = evaluate([gt], [dt], protocol="coco", progress=False)
    class_id = result.class_ids[0]
    _, precision = result.pr_curve(class_id, iou_threshold=0.5)
    np.testing.assert_allclose(precision, [1.0] * 51 + [2 / 3] * 50, rtol=1e-12)
    assert result.per_class_ap_at(0.5)[class_id] == pytest.approx((51 + 50 * 2 / 3) / 101)
