"""COCO protocol: exact parity with pycocotools, run live on adversarial sets."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from kerasseg.metrics.detection import evaluate, iou_matrix
from tests.metrics.detection_cases import (
    NO_DETECTIONS_CATEGORY,
    NO_GROUND_TRUTH_CATEGORY,
    coco_to_arrays,
    make_coco_case,
    run_pycocotools,
)
from tests.support import require_module

pytestmark = pytest.mark.parity
TOL = 1e-9


@pytest.fixture(scope="module")
def pycocotools():
    return require_module("pycocotools")


def _assert_same_as_reference(result, reference):
    np.testing.assert_allclose(result.stats, np.asarray(reference.stats), rtol=0, atol=TOL)
    assert result.precision.shape == reference.eval["precision"].shape
    np.testing.assert_allclose(result.precision, reference.eval["precision"], rtol=0, atol=TOL)
    np.testing.assert_allclose(result.recall, reference.eval["recall"], rtol=0, atol=TOL)
    # Per-class AP, derived from pycocotools' own precision array.
    precision = reference.eval["precision"][:, :, :, 0, -1]
    for k, class_id in enumerate(reference.params.catIds):
        values = precision[:, :, k]
        expected = np.mean(values) if np.all(values > -1) else np.nan
        np.testing.assert_allclose(result.per_class_ap[class_id], expected, rtol=0, atol=TOL)


def _case_features(ground_truth, results):
    """What the case exercises, so that the test fails if the generator stops doing it."""
    areas = [a["area"] for a in ground_truth["annotations"]]
    box_areas = [a["bbox"][2] * a["bbox"][3] for a in ground_truth["annotations"]]
    per_image_class = {}
    for r in results:
        key = (r["image_id"], r["category_id"])
        per_image_class[key] = per_image_class.get(key, 0) + 1
    scores = [r["score"] for r in results]
    return {
        "crowd": any(a["iscrowd"] for a in ground_truth["annotations"]),
        "area_on_32": 1024.0 in areas or 1024.0 in box_areas,
        "area_on_96": 9216.0 in areas or 9216.0 in box_areas,
        "over_100": max(per_image_class.values()) > 100,
        "tied_scores": len(set(scores)) < len(scores),
        "empty_images": len({a["image_id"] for a in ground_truth["annotations"]})
        < len(ground_truth["images"]),
    }


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("grid", [True, False], ids=["grid", "float"])
def test_coco_json_matches_pycocotools(pycocotools, seed, grid):
    ground_truth, results = make_coco_case(seed, grid=grid, quality=0.35 + 0.15 * seed)
    assert all(_case_features(ground_truth, results).values())
    reference = run_pycocotools(pycocotools, ground_truth, results)
    result = evaluate(ground_truth, results, protocol="coco", progress=False)
    _assert_same_as_reference(result, reference)
    # The case really has the categories it claims to have.
    k_none = list(result.class_ids).index(NO_GROUND_TRUTH_CATEGORY)
    assert np.all(result.precision[:, :, k_none] == -1)
    assert np.isnan(result.per_class_ap[NO_GROUND_TRUTH_CATEGORY])
    assert result.per_class_ap[NO_DETECTIONS_CATEGORY] == 0.0
    assert 0.02 < result.stats[0] < 0.9 and result.stats[8] > 0.1  # AP and AR@100


@pytest.mark.parametrize("seed", [10, 11])
def test_array_inputs_match_pycocotools(pycocotools, seed):
    """Per-image arrays and padded batches give pycocotools' numbers too."""
    ground_truth, results = make_coco_case(seed, grid=True, quality=0.6)
    reference = run_pycocotools(pycocotools, ground_truth, results)
    gt_images, dt_images, _ = coco_to_arrays(ground_truth, results)

    per_image = evaluate(gt_images, dt_images, protocol="coco", progress=False)
    _assert_same_as_reference(per_image, reference)

    # The same images as padded batches of 4 (class -1 padding), evaluated batch by batch.
    def pad(entries, keys):
        width = max(1, max(len(e["classes"]) for e in entries))
        out = {}
        for key in keys:
            shape = (len(entries), width, 4) if key == "boxes" else (len(entries), width)
            fill = -1 if key == "classes" else 0
            array = np.full(shape, fill, dtype=np.float64)
            for i, e in enumerate(entries):
                array[i, : len(e["classes"])] = e[key]
            out[key] = array
        return out

    gt_batches = [
        pad(gt_images[i : i + 4], ("boxes", "classes", "iscrowd", "area"))
        for i in range(0, len(gt_images), 4)
    ]
    dt_batches = [
        pad(dt_images[i : i + 4], ("boxes", "classes", "scores"))
        for i in range(0, len(dt_images), 4)
    ]
    batched = evaluate(gt_batches, dt_batches, protocol="coco", progress=False)
    _assert_same_as_reference(batched, reference)


def test_max_detections_boundary(pycocotools):
    """One image, one class, 150 detections: maxDets 1/10/100 cut the ranked list."""
    rng = np.random.default_rng(5)
    annotations = []
    for i in range(60):
        x, y = rng.uniform(0, 500, 2)
        annotations.append(
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [x, y, 40, 30],
                "area": 1200.0,
                "iscrowd": 0,
            }
        )
    results = []
    for i in range(150):
        a = annotations[i % 60]
        x, y, w, h = a["bbox"]
        results.append(
            {
                "image_id": 1,
                "category_id": 1,
                "score": float(rng.random()),
                "bbox": [x + rng.normal(), y + rng.normal(), w, h],
            }
        )
    ground_truth = {
        "images": [{"id": 1}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "a"}],
    }
    reference = run_pycocotools(pycocotools, ground_truth, results)
    result = evaluate(ground_truth, results, progress=False)
    _assert_same_as_reference(result, reference)
    assert result.stats[6] < result.stats[7] < result.stats[8]  # AR@1 < AR@10 < AR@100


def test_degenerate_sets(pycocotools):
    ground_truth, results = make_coco_case(3, num_images=6)
    # No detections at all: every AP is 0 (pycocotools cannot load an empty results list).
    empty = evaluate(ground_truth, [], progress=False)
    assert np.all(empty.stats[[0, 1, 2, 6, 7, 8]] == 0)
    # No ground truth at all: everything undefined (-1), as in pycocotools.
    no_gt = dict(ground_truth, annotations=[])
    reference = run_pycocotools(pycocotools, no_gt, results)
    result = evaluate(no_gt, results, progress=False)
    np.testing.assert_array_equal(result.stats, np.asarray(reference.stats))
    assert np.all(result.stats == -1)


def test_summary_table_matches_pycocotools_printout(pycocotools):
    ground_truth, results = make_coco_case(1)
    coco_module = __import__("pycocotools.coco", fromlist=["COCO"])
    eval_module = __import__("pycocotools.cocoeval", fromlist=["COCOeval"])
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_module.COCO()
        coco_gt.dataset = ground_truth
        coco_gt.createIndex()
        evaluator = eval_module.COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        evaluator.summarize()
    ours = str(evaluate(ground_truth, make_coco_case(1)[1], progress=False))
    assert ours.splitlines() == printed.getvalue().splitlines()
    assert len(ours.splitlines()) == 12


def test_iou_matrix_matches_pycocotools_mask_iou(pycocotools):
    mask = require_module("pycocotools.mask")
    rng = np.random.default_rng(0)
    xywh_d = np.column_stack([rng.uniform(0, 50, (40, 2)), rng.uniform(0, 30, (40, 2))])
    xywh_g = np.column_stack([rng.uniform(0, 50, (25, 2)), rng.uniform(0, 30, (25, 2))])
    xywh_g[3] = xywh_d[7]  # identical boxes: IoU exactly 1
    crowd = rng.random(25) < 0.3
    expected = mask.iou(xywh_d.tolist(), xywh_g.tolist(), crowd.astype(np.uint8).tolist())
    to_xyxy = lambda b: np.column_stack([b[:, :2], b[:, :2] + b[:, 2:]])  # noqa: E731
    ours = iou_matrix(to_xyxy(xywh_d), to_xyxy(xywh_g), crowd=crowd)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    assert ours[7, 3] == 1.0
    assert (ours > 0).mean() > 0.1


def test_num_classes_adds_absent_classes_without_changing_the_summary():
    ground_truth, results = make_coco_case(2, num_images=10)
    gt_images, dt_images, _ = coco_to_arrays(ground_truth, results)
    base = evaluate(gt_images, dt_images, progress=False)
    wide = evaluate(gt_images, dt_images, num_classes=20, progress=False)
    assert wide.precision.shape[2] == 20
    np.testing.assert_allclose(wide.stats, base.stats, rtol=0, atol=1e-12)
    assert np.isnan(wide.per_class_ap[0])
