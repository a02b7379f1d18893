"""YOLOv2's k-means anchors: a loop-by-loop NumPy reference of the 1 - IoU k-means, known
clusters, the Avg IOU by hand, box extraction and rescaling, BCCD, errors."""

import re

import numpy as np
import pytest

from kerasseg.detection.anchor_fitting import (
    AnchorFit,
    average_iou,
    box_shapes,
    fit_anchors,
    kmeans_anchors,
    shape_iou,
)
from tests.support import require_shared_data

#: Four shape clusters (width, height) in pixels.
CENTRES = np.array([[10.0, 20.0], [40.0, 40.0], [90.0, 30.0], [150.0, 160.0]])


def clustered_shapes(seed=0, per_cluster=50, spread=0.05):
    rng = np.random.default_rng(seed)
    shapes = [c * rng.uniform(1 - spread, 1 + spread, (per_cluster, 2)) for c in CENTRES]
    return rng.permutation(np.concatenate(shapes))


def reference_kmeans(boxes, centres, iterations):
    """Lloyd's k-means with d = 1 - IoU of centred boxes, one box and one centre at a time."""
    centres = [list(c) for c in centres]
    assignment = None
    for _ in range(iterations):
        new = []
        for w, h in boxes:
            best, best_iou = 0, -1.0
            for c, (cw, ch) in enumerate(centres):
                inter = min(w, cw) * min(h, ch)
                iou = inter / (w * h + cw * ch - inter)
                if iou > best_iou:
                    best, best_iou = c, iou
            new.append(best)
        if new == assignment:
            break
        assignment = new
        for c in range(len(centres)):
            members = [boxes[i] for i in range(len(boxes)) if assignment[i] == c]
            centres[c] = [sum(m[0] for m in members) / len(members)]
            centres[c].append(sum(m[1] for m in members) / len(members))
    return np.array(sorted(centres, key=lambda c: (c[0] * c[1], c[0])))


def test_kmeans_matches_a_loop_reference_from_the_same_start():
    rng = np.random.default_rng(3)
    boxes = np.exp(rng.normal([3.0, 3.2], [0.6, 0.5], (120, 2)))  # log-normal shapes
    start = boxes[:5]
    got = kmeans_anchors(boxes, 5, init=start, iterations=50)
    np.testing.assert_allclose(got, reference_kmeans(boxes, start, 50), rtol=1e-5)
    assert got.dtype == np.float32 and got.shape == (5, 2)


def test_kmeans_plus_plus_finds_known_clusters():
    boxes = clustered_shapes()
    for seed in (0, 1, 2):
        anchors = kmeans_anchors(boxes, 4, seed=seed)
        assert np.all(np.diff(anchors.prod(axis=1)) > 0)  # sorted by area
        np.testing.assert_allclose(anchors, CENTRES, rtol=0.03)
    assert average_iou(boxes, anchors) > 0.9


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_kmeans_is_deterministic_and_stops_at_a_fixed_point(init):
    boxes = clustered_shapes(seed=1, spread=0.3)
    anchors = kmeans_anchors(boxes, 5, seed=7, init=init)
    np.testing.assert_array_equal(anchors, kmeans_anchors(boxes, 5, seed=7, init=init))
    # Every anchor is the mean shape of the boxes it is the best anchor of.
    best = shape_iou(boxes, anchors).argmax(axis=1)
    means = np.array([boxes[best == c].mean(axis=0) for c in range(5)])
    np.testing.assert_allclose(anchors, means, rtol=1e-5)


def test_average_iou_hand_worked():
    # (4, 8) against (8, 4): intersection 4 x 4 = 16, union 32 + 32 - 16 = 48.
    np.testing.assert_allclose(shape_iou([[4, 8]], [[8, 4], [4, 8]]), [[1 / 3, 1.0]])
    boxes = np.array([[4.0, 8.0], [8.0, 4.0], [10.0, 10.0]])
    # With (8, 4) only: 1/3, 1, and for (10, 10) 32 / (100 + 32 - 32) = 0.32; with both
    # anchors (4, 8) finds its own shape.
    assert average_iou(boxes, [[8.0, 4.0]]) == pytest.approx((1 / 3 + 1 + 0.32) / 3)
    assert average_iou(boxes, [[8.0, 4.0], [4.0, 8.0]]) == pytest.approx((1 + 1 + 0.32) / 3)


def test_an_empty_cluster_takes_the_farthest_box():
    boxes = np.array([[10.0, 10.0], [11.0, 11.0], [100.0, 100.0]])
    # Both starting centres are small: the second one gets no box and moves to (100, 100).
    anchors = kmeans_anchors(boxes, 2, init=[[10.0, 10.0], [10.0, 10.0]])
    np.testing.assert_allclose(anchors, [[10.5, 10.5], [100.0, 100.0]])


def test_box_shapes_from_arrays_skip_rows_without_area():
    padded = np.zeros((2, 3, 4), "float32")
    padded[0, 0] = [0, 0, 10, 20]
    padded[1, 1] = [5, 5, 5, 30]  # degenerate
    padded[1, 2] = [1, 2, 31, 12]
    np.testing.assert_allclose(box_shapes(padded), [[10, 20], [30, 10]])
    np.testing.assert_allclose(box_shapes([padded[0], padded[1]]), [[10, 20], [30, 10]])


def test_box_shapes_rescale_records_as_the_dataset_resizes_images():
    from kerasseg.data import DetectionAnnotations, DetectionRecord, LoadReport

    record = DetectionRecord(
        "a.jpg", 200, 100, np.array([[0, 0, 10, 20]], "float32"), np.zeros(1, "int32"), {}, 0, "a"
    )
    annotations = DetectionAnnotations([record], ["x"], LoadReport("test"))
    np.testing.assert_allclose(box_shapes(annotations), [[10, 20]])
    # Resized to 400 x 400: x4 horizontally, x2 vertically.
    np.testing.assert_allclose(box_shapes(annotations, image_size=(400, 400)), [[40, 40]])
    # Letterboxed: one scale, min(400 / 200, 400 / 100) = 2.
    np.testing.assert_allclose(
        box_shapes(annotations, image_size=(400, 400), letterbox=True), [[20, 40]]
    )


def test_fit_anchors_on_bccd_beats_a_single_anchor():
    from kerasseg.data import load_voc

    train = load_voc(require_shared_data("bccd") / "BCCD", "train")
    single = fit_anchors(train, 1, image_size=(416, 416))
    fit = fit_anchors(train, 5, image_size=(416, 416))
    assert isinstance(fit, AnchorFit) and fit.anchors.shape == (5, 2)
    assert fit.num_boxes == train.report.num_boxes and fit.image_size == (416, 416)
    assert np.all(np.diff(fit.anchors.prod(axis=1)) > 0)
    assert fit.average_iou > single.average_iou + 0.05, (fit.average_iou, single.average_iou)
    wh = box_shapes(train, image_size=(416, 416))
    assert fit.average_iou == pytest.approx(average_iou(wh, fit.anchors))
    # One anchor: the mean shape of all boxes, which is where k-means with k = 1 stops.
    np.testing.assert_allclose(single.anchors[0], wh.mean(axis=0), rtol=1e-5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: kmeans_anchors([[10, 10], [10, 10], [20, 5]], 3),
            "`k`=3 anchors need at least 3 distinct box shapes; `boxes_wh` has 2 (3 boxes)",
        ),
        (lambda: kmeans_anchors([[10, 10]], 0), "`k` must be a positive int, got 0"),
        (lambda: kmeans_anchors([10, 10], 1), "`boxes_wh` must have shape (N, 2)"),
        (lambda: kmeans_anchors([[10, 0], [5, 5]], 1), "1 of 2 rows do not (first: [10.0, 0.0])"),
        (lambda: kmeans_anchors([[1, 2]], 1, init="grid"), "`init` must be one of"),
        (
            lambda: kmeans_anchors([[1, 2], [3, 4]], 2, init=[[1, 2]]),
            "`init` given as centres must have shape (k, 2) = (2, 2), got (1, 2)",
        ),
        (lambda: kmeans_anchors([[1, 2]], 1, iterations=0), "`iterations` must be a positive"),
        (
            lambda: fit_anchors(np.zeros((3, 4)), 1, image_size=(416, 416)),
            "`image_size` needs annotations",
        ),
        (lambda: fit_anchors(np.zeros((3, 4)), 1), "`source` has no box with an area"),
        (lambda: box_shapes(np.zeros((3, 5))), "xyxy arrays of shape (..., 4), got shape (3, 5)"),
        (lambda: box_shapes(np.zeros((3, 4)), letterbox=True), "`letterbox=True` needs"),
    ],
)
def test_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
