"""VOC protocols: a hand-worked example and an independent devkit-style implementation."""

from __future__ import annotations

import numpy as np
import pytest

from kerasseg.metrics.detection import evaluate, voc_ap

TOL = 1e-9


def _image(boxes, classes, scores=None, difficult=None):
    entry = {"boxes": np.asarray(boxes, np.float64).reshape(-1, 4), "classes": np.asarray(classes)}
    if scores is not None:
        entry["scores"] = np.asarray(scores, np.float64)
    if difficult is not None:
        entry["difficult"] = np.asarray(difficult, bool)
    return entry


# Hand-worked example.
#
# Class 0 (npos = 2: g1 and g3; g2 is difficult):
#   image 0 ground truth g1 = [0,0,10,10], g2 = [20,20,30,30] (difficult)
#   image 1 ground truth g3 = [0,0,10,10]
#   detections by score:
#     d1 0.9 image 0 [0,0,10,10]  IoU(g1) = 1                   -> TP
#     d2 0.8 image 0 [0,0,10,9]   IoU(g1) = 90/100 = 0.9, taken -> FP (duplicate)
#     d3 0.7 image 0 [20,20,30,30] best is difficult g2         -> ignored
#     d4 0.6 image 1 [5,0,15,10]  IoU(g3) = 50/150 = 1/3        -> FP
#     d5 0.5 image 1 [0,0,10,11]  IoU(g3) = 100/110             -> TP
#   cumulative tp 1 1 1 1 2, fp 0 1 1 2 2 -> recall .5 .5 .5 .5 1, precision 1 .5 .5 1/3 .5
#   all-point: envelope 1 up to recall .5, .5 up to recall 1 -> AP = .5*1 + .5*.5 = 0.75
#   VOC07: recall >= t for t in 0, .1, ..., .5 -> max precision 1 (6 points);
#          t in .6, ..., 1.0 -> 0.5 (5 points)            -> AP = (6 + 2.5) / 11 = 8.5/11
# Class 1 (npos = 1): image 0 ground truth h1 = [0,0,2,2], detection e1 0.3 [0,0,2,1]
#   continuous: inter 2, union 4 + 2 - 2 = 4, IoU = 0.5, not > 0.5 -> FP  -> AP 0
#   +1 pixels:  inter 3*2 = 6, union 9 + 6 - 6 = 9, IoU = 2/3     -> TP  -> AP 1
# Class 2: only a difficult ground truth (npos = 0) -> no AP, left out of the mAP.
# Class 3: detections but no ground truth -> no AP, left out of the mAP.
HAND_GT = [
    _image(
        [[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 2, 2], [50, 50, 60, 60]],
        [0, 0, 1, 2],
        difficult=[False, True, False, True],
    ),
    _image([[0, 0, 10, 10]], [0], difficult=[False]),
]
HAND_DT = [
    _image(
        [
            [0, 0, 10, 10],
            [0, 0, 10, 9],
            [20, 20, 30, 30],
            [0, 0, 2, 1],
            [50, 50, 60, 60],
            [100, 100, 120, 120],
        ],
        [0, 0, 0, 1, 2, 3],
        [0.9, 0.8, 0.7, 0.3, 0.95, 0.99],
    ),
    _image([[5, 0, 15, 10], [0, 0, 10, 11]], [0, 0], [0.6, 0.5]),
]


def test_hand_worked_voc_all_point():
    result = evaluate(HAND_GT, HAND_DT, protocol="voc", progress=False)
    assert result.class_ids.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(result.ap[:2], [0.75, 0.0], rtol=0, atol=1e-12)
    assert np.isnan(result.ap[2]) and np.isnan(result.ap[3])
    assert result.map == pytest.approx(0.375, abs=1e-12)
    recall, precision = result.pr_curve(0)
    np.testing.assert_allclose(recall, [0.5, 0.5, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(precision, [1, 0.5, 0.5, 1 / 3, 0.5])
    assert result.num_ground_truth.tolist() == [2, 1, 0, 0]


def test_hand_worked_voc07_and_pixel_convention():
    voc07 = evaluate(HAND_GT, HAND_DT, protocol="voc07", progress=False)
    np.testing.assert_allclose(voc07.ap[:2], [8.5 / 11, 0.0], rtol=0, atol=1e-12)
    inclusive = evaluate(HAND_GT, HAND_DT, protocol="voc", pixel_inclusive=True, progress=False)
    np.testing.assert_allclose(inclusive.ap[:2], [0.75, 1.0], rtol=0, atol=1e-12)
    assert inclusive.map == pytest.approx(0.875, abs=1e-12)


def test_voc_ap_formula_examples():
    # Perfect detector: AP 1 in both conventions.
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0]), use_07_metric=False) == 1.0
    perfect_07 = voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0]), use_07_metric=True)
    assert perfect_07 == pytest.approx(1.0)
    # Half the objects found at precision 1, never the rest: 0.5 vs 6/11 (t = 0 ... 0.5).
    assert voc_ap(np.array([0.5]), np.array([1.0]), use_07_metric=False) == 0.5
    assert voc_ap(np.array([0.5]), np.array([1.0]), use_07_metric=True) == pytest.approx(6 / 11)
    assert voc_ap(np.zeros(0), np.zeros(0), use_07_metric=True) == 0.0


# An independent implementation following the devkit's voc_eval, one class at a time.


def _reference_ap(rec, prec, use_07_metric):
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def _reference_voc_eval(gt_images, dt_images, class_id, use_07_metric, plus_one):
    one = 1.0 if plus_one else 0.0
    records, npos = {}, 0
    for image, gt in enumerate(gt_images):
        keep = gt["classes"] == class_id
        difficult = gt["difficult"][keep]
        npos += int(np.sum(~difficult))
        records[image] = {
            "bbox": gt["boxes"][keep],
            "difficult": difficult,
            "det": [False] * int(keep.sum()),
        }
    image_ids, confidence, boxes = [], [], []
    for image, dt in enumerate(dt_images):
        for j in np.flatnonzero(dt["classes"] == class_id):
            image_ids.append(image)
            confidence.append(dt["scores"][j])
            boxes.append(dt["boxes"][j])
    order = np.argsort(-np.array(confidence), kind="mergesort")  # stable, like MATLAB's sort
    nd = len(order)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        record = records[image_ids[order[d]]]
        bb = boxes[order[d]]
        ovmax, jmax = -np.inf, -1
        gt_boxes = record["bbox"]
        if gt_boxes.size > 0:
            ixmin = np.maximum(gt_boxes[:, 0], bb[0])
            iymin = np.maximum(gt_boxes[:, 1], bb[1])
            ixmax = np.minimum(gt_boxes[:, 2], bb[2])
            iymax = np.minimum(gt_boxes[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + one, 0.0)
            ih = np.maximum(iymax - iymin + one, 0.0)
            inters = iw * ih
            gt_w = gt_boxes[:, 2] - gt_boxes[:, 0] + one
            gt_area = gt_w * (gt_boxes[:, 3] - gt_boxes[:, 1] + one)
            uni = (bb[2] - bb[0] + one) * (bb[3] - bb[1] + one) + gt_area - inters
            overlaps = inters / uni
            ovmax, jmax = np.max(overlaps), int(np.argmax(overlaps))
        if ovmax > 0.5:
            if not record["difficult"][jmax]:
                if not record["det"][jmax]:
                    tp[d] = 1.0
                    record["det"][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    if npos == 0:
        return np.nan, None, None
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return _reference_ap(rec, prec, use_07_metric), rec, prec


def _random_voc_set(seed, num_images=25, num_classes=5):
    rng = np.random.default_rng(seed)
    gt_images, dt_images = [], []
    for _ in range(num_images):
        n = int(rng.choice([0, 1, 3, 6]))
        xy = np.round(rng.uniform(0, 200, (n, 2)))
        wh = np.round(rng.uniform(2, 80, (n, 2)))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        if n > 1 and rng.random() < 0.3:
            boxes[1] = boxes[0]  # duplicate ground truth: argmax ties
        classes = rng.integers(0, num_classes - 1, n)  # the last class never has ground truth
        difficult = rng.random(n) < 0.2
        gt_images.append({"boxes": boxes, "classes": classes, "difficult": difficult})
        dets, det_classes = [], []
        for j in range(n):
            for _ in range(int(rng.integers(0, 4))):
                jitter = np.round(rng.normal(0, 0.12, 4) * np.tile(wh[j], 2))
                dets.append(boxes[j] + jitter)
                wrong = rng.random() < 0.15
                det_classes.append(rng.integers(0, num_classes) if wrong else classes[j])
        for _ in range(int(rng.integers(0, 6))):
            xy0 = np.round(rng.uniform(0, 200, 2))
            dets.append(np.concatenate([xy0, xy0 + np.round(rng.uniform(2, 80, 2))]))
            det_classes.append(rng.integers(0, num_classes))
        dets = np.array(dets, np.float64).reshape(-1, 4)
        dets[:, 2:] = np.maximum(dets[:, 2:], dets[:, :2])  # keep x2 >= x1
        scores = np.round(rng.random(len(dets)), 1)  # coarse: many ties
        dt_images.append(
            {"boxes": dets, "classes": np.array(det_classes, np.int64), "scores": scores}
        )
    return gt_images, dt_images


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("protocol", ["voc07", "voc"])
@pytest.mark.parametrize("plus_one", [False, True])
def test_matches_independent_devkit_implementation(seed, protocol, plus_one):
    gt_images, dt_images = _random_voc_set(seed)
    result = evaluate(
        gt_images,
        dt_images,
        protocol=protocol,
        num_classes=5,
        pixel_inclusive=plus_one,
        progress=False,
    )
    expected_aps = []
    for class_id in range(5):
        ap, rec, prec = _reference_voc_eval(
            gt_images, dt_images, class_id, protocol == "voc07", plus_one
        )
        expected_aps.append(ap)
        if rec is not None:
            ours_rec, ours_prec = result.pr_curve(class_id)
            np.testing.assert_allclose(ours_rec, rec, rtol=0, atol=TOL)
            np.testing.assert_allclose(ours_prec, prec, rtol=0, atol=TOL)
    np.testing.assert_allclose(result.ap, expected_aps, rtol=0, atol=TOL)
    assert result.map == pytest.approx(np.nanmean(expected_aps), abs=TOL)
    assert np.isnan(result.ap[4])
    assert 0.05 < result.map < 0.95


def test_padded_batches_equal_per_image_lists():
    gt_images, dt_images = _random_voc_set(7, num_images=8)

    def pad(entries, keys):
        width = max(1, max(len(e["classes"]) for e in entries))
        out = {}
        for key in keys:
            shape = (len(entries), width, 4) if key == "boxes" else (len(entries), width)
            array = np.full(shape, -1 if key == "classes" else 0, dtype=np.float64)
            for i, e in enumerate(entries):
                array[i, : len(e["classes"])] = e[key]
            out[key] = array
        return out

    per_image = evaluate(gt_images, dt_images, protocol="voc", num_classes=5, progress=False)
    batch = evaluate(
        pad(gt_images, ("boxes", "classes", "difficult")),
        pad(dt_images, ("boxes", "classes", "scores")),
        protocol="voc",
        num_classes=5,
        progress=False,
    )
    np.testing.assert_array_equal(batch.ap, per_image.ap)


@pytest.mark.parametrize("protocol", ["voc07", "voc", "coco"])
def test_empty_and_ground_truth_free_sets(protocol):
    empty_gt = {"boxes": np.zeros((0, 4)), "classes": np.zeros(0)}
    empty_dt = dict(empty_gt, scores=np.zeros(0))
    nothing = evaluate([], [], protocol=protocol, num_classes=2, progress=False)
    assert nothing.num_images == 0 and nothing.class_ids.tolist() == [0, 1]
    detected = _image([[0, 0, 10, 10]], [1], [0.5])
    only_false = evaluate(
        [empty_gt, empty_gt], [detected, empty_dt], protocol=protocol, num_classes=2, progress=False
    )
    undefined = -1.0 if protocol == "coco" else None
    if undefined is None:
        assert np.isnan(only_false.map) and np.all(np.isnan(only_false.ap))
    else:
        assert only_false.map == undefined
    np.testing.assert_array_equal(only_false.confusion_matrix(), [[0, 0, 0], [0, 0, 0], [0, 1, 0]])
