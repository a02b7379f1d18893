"""Task-aligned assignment (TOOD / YOLOv8): a loop-by-loop NumPy reference on random
multi-level grids, hand-worked cases, empty and tiny inputs, tracing with unknown dims."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from kerasseg.detection.assigners import task_aligned_assign

EPS = 1e-9
KEYS = ("positive", "gt_index", "classes", "boxes", "scores")


def to_np(x):
    return keras.ops.convert_to_numpy(x)


def assign_np(*args, **kwargs):
    return {k: to_np(v) for k, v in task_aligned_assign(*args, **kwargs).items()}


# ------------------------------------------------------------------ NumPy reference


def ciou_ref(a, b):
    """CIoU of two xyxy boxes from the definition (Zheng et al., 2020), in float64."""
    aw, ah = max(a[2] - a[0], 0.0), max(a[3] - a[1], 0.0)
    bw, bh = max(b[2] - b[0], 0.0), max(b[3] - b[1], 0.0)
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    iou = inter / union if union > 0 else 0.0
    cw = max(a[2], b[2]) - min(a[0], b[0])
    ch = max(a[3], b[3]) - min(a[1], b[1])
    diag = cw * cw + ch * ch
    rho = ((a[0] + a[2] - b[0] - b[2]) / 2) ** 2 + ((a[1] + a[3] - b[1] - b[3]) / 2) ** 2
    diou = iou - (rho / diag if diag > 0 else 0.0)

    def angle(w, h):
        return math.atan2(w, h) if (w > 0 or h > 0) else 0.0

    v = 4 / math.pi**2 * (angle(aw, ah) - angle(bw, bh)) ** 2
    trade = v / (1 - iou + v) if v > 0 else 0.0
    return diou - trade * v


def reference_assign(
    scores, pred, points, gt_boxes, gt_classes, gt_valid=None, top_k=10, alpha=0.5, beta=6.0
):
    """TOOD / ultralytics-v8 assignment written out per image, per gt and per anchor."""
    batch, num_anchors, num_classes = scores.shape
    num_gt = gt_boxes.shape[1]
    out = {
        "positive": np.zeros((batch, num_anchors), bool),
        "gt_index": np.zeros((batch, num_anchors), np.int32),
        "classes": np.full((batch, num_anchors), -1, np.int32),
        "boxes": np.zeros((batch, num_anchors, 4)),
        "scores": np.zeros((batch, num_anchors, num_classes)),
    }
    stats = {"multi": 0, "moved": 0, "short": 0}
    for b in range(batch):
        valid = [
            gt_classes[b, m] >= 0 and (gt_valid is None or gt_valid[b, m]) for m in range(num_gt)
        ]
        inside = np.zeros((num_gt, num_anchors), bool)
        overlap = np.zeros((num_gt, num_anchors))
        metric = np.zeros((num_gt, num_anchors))
        for m in range(num_gt):
            if not valid[m]:
                continue
            x1, y1, x2, y2 = (float(v) for v in gt_boxes[b, m])
            for n in range(num_anchors):
                px, py = float(points[n, 0]), float(points[n, 1])
                if min(px - x1, py - y1, x2 - px, y2 - py) > EPS:
                    inside[m, n] = True
                    overlap[m, n] = max(ciou_ref(gt_boxes[b, m], pred[b, n]), 0.0)
                    score = float(scores[b, n, gt_classes[b, m]])
                    metric[m, n] = score**alpha * overlap[m, n] ** beta
        chosen = np.zeros((num_gt, num_anchors), bool)
        for m in range(num_gt):
            if not valid[m]:
                continue
            ranking = sorted(range(num_anchors), key=lambda n: (-metric[m, n], n))
            for n in ranking[: min(top_k, num_anchors)]:
                chosen[m, n] = inside[m, n]
            stats["short"] += int(chosen[m].sum() < top_k and inside[m].sum() >= top_k)
        for n in range(num_anchors):
            claimed = [m for m in range(num_gt) if chosen[m, n]]
            if len(claimed) > 1:
                stats["multi"] += 1
                best = None
                for m in range(num_gt):
                    if inside[m, n] and (best is None or overlap[m, n] > overlap[best, n]):
                        best = m
                stats["moved"] += int(best not in claimed)
                chosen[:, n] = False
                chosen[best, n] = True
        best_metric = [max([metric[m, n] for n in range(num_anchors) if chosen[m, n]] or [0.0])
                       for m in range(num_gt)]  # fmt: skip
        best_overlap = [max([overlap[m, n] for n in range(num_anchors) if chosen[m, n]] or [0.0])
                        for m in range(num_gt)]  # fmt: skip
        for n in range(num_anchors):
            for m in range(num_gt):
                if chosen[m, n]:
                    out["positive"][b, n] = True
                    out["gt_index"][b, n] = m
                    out["classes"][b, n] = gt_classes[b, m]
                    out["boxes"][b, n] = gt_boxes[b, m]
                    target = metric[m, n] * best_overlap[m] / (best_metric[m] + EPS)
                    out["scores"][b, n, gt_classes[b, m]] = target
    return out, stats


def grid_points(size=128, strides=(8, 16, 32)):
    """Anchor centres of a multi-level feature pyramid, as YOLOv8's make_anchors."""
    points = []
    for stride in strides:
        cells = (np.arange(size // stride) + 0.5) * stride
        xs, ys = np.meshgrid(cells, cells)
        points.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
    return np.concatenate(points).astype(np.float32)


def random_problem(rng, batch=4, rows=24, num_classes=6, size=128):
    """Several images of ~20 gts among padding rows, with predictions near the gts.

    The padding rows hold real-looking boxes, so they would take anchors if they were not
    masked; one image has no gt, some gts are degenerate or too small to hold an anchor
    centre, some duplicate another (a tie on the gt axis), many overlap (shared anchors).
    """
    points = grid_points(size)
    num_anchors = len(points)
    centre = rng.uniform(0, size, (batch, rows, 2))
    half = rng.uniform(2, 40, (batch, rows, 2))
    gt_boxes = np.concatenate([centre - half, centre + half], -1).clip(0, size)
    gt_classes = rng.integers(0, num_classes, (batch, rows))
    for b in range(batch):
        count = 0 if b == 1 else int(rng.integers(15, 21))
        gt_classes[b, rng.choice(rows, rows - count, replace=False)] = -1
    gt_boxes[0, 3, 2] = gt_boxes[0, 3, 0]  # zero width
    gt_boxes[0, 5] = gt_boxes[0, 6]
    gt_classes[0, 5:7] = [1, 1]
    # Predictions: a box around each anchor, half of them pulled towards a random gt.
    wh = rng.uniform(4, 60, (batch, num_anchors, 2))
    pred = np.concatenate([points - wh / 2, points + wh / 2], -1)
    target = gt_boxes[np.arange(batch)[:, None], rng.integers(0, rows, (batch, num_anchors))]
    pull = rng.random((batch, num_anchors, 1)) < 0.5
    pred = np.where(pull, target + rng.normal(0, 3, target.shape), pred)
    pred[..., 2:] = np.maximum(pred[..., 2:], pred[..., :2] + 0.5)
    scores = rng.random((batch, num_anchors, num_classes))
    scores[0, :5] = 0.0  # zero scores: metric 0 although inside a gt
    return (
        scores.astype(np.float32),
        pred.astype(np.float32),
        points,
        gt_boxes.astype(np.float32),
        gt_classes.astype(np.int32),
    )


def assert_same(got, expected):
    for key in ("positive", "gt_index", "classes"):
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    np.testing.assert_allclose(got["boxes"], expected["boxes"], atol=1e-6, err_msg="boxes")
    np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-5, err_msg="scores")


# ------------------------------------------------------------------ against the reference


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_on_random_pyramids(seed):
    rng = np.random.default_rng(seed)
    args = random_problem(rng)
    got = assign_np(*args)
    expected, stats = reference_assign(*args)
    assert_same(got, expected)
    assert got["gt_index"].dtype == np.int32 and got["classes"].dtype == np.int32
    assert got["boxes"].dtype == np.float32 and got["scores"].dtype == np.float32
    # The problem exercises what it should: shared anchors, gts with fewer than top_k
    # positives despite enough anchors inside (zero metrics), an empty image; the scores
    # are a proper normalisation.
    assert stats["multi"] and stats["short"], stats
    assert not got["positive"][1].any()
    per_gt = [np.sum(got["positive"][b] & (got["gt_index"][b] == m)) for b in (0, 2, 3)
              for m in range(24)]  # fmt: skip
    assert max(per_gt) >= 10
    assert 0.5 < got["scores"].max() <= 1.0


def test_matches_reference_with_gt_valid_and_other_parameters():
    rng = np.random.default_rng(0)
    scores, pred, points, gt_boxes, gt_classes = random_problem(rng, batch=2)
    gt_valid = rng.random(gt_classes.shape) < 0.7
    kwargs = {"top_k": 3, "alpha": 1.0, "beta": 2.0}
    got = assign_np(scores, pred, points, gt_boxes, gt_classes, gt_valid, **kwargs)
    expected, stats = reference_assign(
        scores, pred, points, gt_boxes, gt_classes, gt_valid, **kwargs
    )
    assert_same(got, expected)
    # Some shared anchors go to a gt that did not select them (its overlap is the highest).
    assert stats["moved"], stats
    # Rows switched off by gt_valid are never assigned.
    off = np.flatnonzero(~gt_valid[0])
    assert not np.isin(got["gt_index"][0][got["positive"][0]], off).any()


# ------------------------------------------------------------------ hand-worked cases


def one_image(scores, pred, points, gt_boxes, gt_classes, **kwargs):
    out = assign_np(
        np.asarray(scores, np.float32)[None],
        np.asarray(pred, np.float32)[None],
        np.asarray(points, np.float32),
        np.asarray(gt_boxes, np.float32)[None],
        np.asarray(gt_classes, np.int32)[None],
        **kwargs,
    )
    return {k: v[0] for k, v in out.items()}


def test_anchor_inside_two_gts_goes_to_the_higher_overlap():
    gts = [[0, 0, 20, 20], [10, 0, 30, 20]]
    points = [[15, 10], [5, 10], [25, 10]]  # in both, in gt 0 only, in gt 1 only
    for best in (0, 1):
        pred = [gts[best], gts[0], gts[1]]
        out = one_image(np.full((3, 2), 0.5), pred, points, gts, [0, 1])
        np.testing.assert_array_equal(out["positive"], [True, True, True])
        np.testing.assert_array_equal(out["gt_index"], [best, 0, 1])
        np.testing.assert_array_equal(out["classes"], [best, 0, 1])
        np.testing.assert_array_equal(out["boxes"], np.asarray([gts[best], gts[0], gts[1]]))
        # Each gt has a positive of overlap 1: that one's target is 1, the shared anchor
        # too when it stays with the gt it fits exactly.
        assert out["scores"][0, best] == pytest.approx(1.0, abs=1e-6)
        assert out["scores"][0, 1 - best] == 0.0


def test_shared_anchor_moves_to_a_gt_that_did_not_select_it():
    # Anchor 0 lies in gts A, B and C; A and B select it (top_k = 1), C selects anchor 1.
    # Its prediction fits C best, so it goes to C, as ultralytics' argmax over all gts.
    a, b, c = [0, 0, 20, 20], [1, 1, 30, 30], [2, 2, 18, 18]
    pred = [[2, 2, 18, 19], c]
    scores = [[0.8, 0.04], [0.0, 1.0]]  # class 0 for A and B, class 1 for C
    out = one_image(scores, pred, [[10, 10], [12, 10]], [a, b, c], [0, 0, 1], top_k=1)
    np.testing.assert_array_equal(out["positive"], [True, True])
    np.testing.assert_array_equal(out["gt_index"], [2, 2])
    np.testing.assert_array_equal(out["classes"], [1, 1])
    overlap = ciou_ref(c, pred[0])
    assert overlap > max(ciou_ref(a, pred[0]), ciou_ref(b, pred[0]))
    # C's best positive (anchor 1) has metric 1 and overlap 1: targets are the metrics.
    np.testing.assert_allclose(
        out["scores"], [[0.0, math.sqrt(0.04) * overlap**6], [0.0, 1.0]], atol=1e-6
    )


def test_top_k_limits_the_positives_of_a_gt():
    # 64 anchor centres inside one gt, predictions all exact: the metric is sqrt(score),
    # so the positives are the 5 best-scored anchors (and 2 anchors outside never count).
    cells = np.arange(8) * 4 + 2.0
    points = np.stack(np.meshgrid(cells, cells), -1).reshape(-1, 2)
    points = np.concatenate([points, [[50, 50], [60, 2]]])
    gt = [0, 0, 32, 32]
    scores = np.random.default_rng(3).permutation(66)[:, None] / 66.0
    pred = np.tile([gt], (66, 1))
    out = one_image(scores, pred, points, [gt], [0], top_k=5)
    best = np.argsort(-scores[:64, 0])[:5]
    np.testing.assert_array_equal(np.flatnonzero(out["positive"]), np.sort(best))
    expected = np.sqrt(scores[best, 0]) / np.sqrt(scores[best, 0]).max()
    np.testing.assert_allclose(out["scores"][best, 0], expected, rtol=1e-6)


def test_fewer_anchors_than_top_k():
    gt = [0, 0, 10, 10]
    points = [[2, 2], [5, 5], [20, 20]]
    pred = [[1, 1, 9, 9], gt, gt]
    out = one_image(np.full((3, 1), 0.25), pred, points, [gt], [0], top_k=10)
    np.testing.assert_array_equal(out["positive"], [True, True, False])
    np.testing.assert_array_equal(out["classes"], [0, 0, -1])
    # Anchor 1 is the best (overlap 1): target 1; anchor 0 gets its metric ratio.
    ratio = ciou_ref(gt, pred[0]) ** 6
    np.testing.assert_allclose(out["scores"][:, 0], [ratio, 1.0, 0.0], atol=1e-6)


def test_centre_must_be_strictly_inside_and_degenerate_gts_get_nothing():
    gts = [[0, 0, 10, 10], [20, 0, 20, 10], [30, 0, 40, 0]]  # a box, zero width, zero height
    points = [[10, 5], [0, 5], [5, 10], [20, 5], [35, 0], [5, 5]]  # on edges; last inside
    pred = np.tile([[0, 0, 10, 10]], (6, 1))
    out = one_image(np.ones((6, 1)), pred, points, gts, [0, 0, 0])
    np.testing.assert_array_equal(out["positive"], [False] * 5 + [True])


def test_zero_metric_ties_never_select_anchors_outside_the_gt():
    # Every prediction misses the gt (CIoU < 0, metric 0): all N anchors tie at 0. The
    # lowest indices are outside the gt; only the tied anchors inside can be positives,
    # with target score 0.
    points = [[50, 50], [60, 60], [70, 70], [5, 5], [6, 6], [7, 7]]
    pred = np.tile([[80, 80, 90, 90]], (6, 1))
    gt = [0, 0, 10, 10]
    out = one_image(np.full((6, 2), 0.9), pred, points, [gt], [1], top_k=4)
    np.testing.assert_array_equal(out["positive"], [False, False, False, True, False, False])
    assert np.all(out["scores"] == 0.0)
    out = one_image(np.full((6, 2), 0.9), pred, points, [gt], [1], top_k=6)
    np.testing.assert_array_equal(out["positive"], [False] * 3 + [True] * 3)
    np.testing.assert_array_equal(out["classes"], [-1] * 3 + [1] * 3)


@pytest.mark.parametrize("rows", [0, 3])
def test_images_without_gt_are_all_negative(rows):
    rng = np.random.default_rng(1)
    points = grid_points(64)
    n = len(points)
    pred = np.concatenate([points - 4, points + 4], -1)[None].repeat(2, 0)
    gt_boxes = np.tile(np.float32([[0, 0, 64, 64]]), (2, rows, 1))  # padding covering all
    out = assign_np(
        rng.random((2, n, 3)).astype(np.float32),
        pred,
        points,
        gt_boxes,
        np.full((2, rows), -1, np.int32),
    )
    assert out["positive"].shape == (2, n) and not out["positive"].any()
    np.testing.assert_array_equal(out["gt_index"], 0)
    np.testing.assert_array_equal(out["classes"], -1)
    assert out["boxes"].shape == (2, n, 4) and out["scores"].shape == (2, n, 3)
    assert np.all(out["boxes"] == 0) and np.all(out["scores"] == 0)


def test_rejects_bad_arguments():
    args = (np.zeros((1, 2, 3)), np.zeros((1, 2, 4)), np.zeros((2, 2)), np.zeros((1, 1, 4)))
    with pytest.raises(ValueError, match="top_k"):
        task_aligned_assign(*args, np.zeros((1, 1)), top_k=0)
    with pytest.raises(ValueError, match="beta"):
        task_aligned_assign(*args, np.zeros((1, 1)), beta=float("nan"))
    with pytest.raises(ValueError, match="gt_classes"):
        task_aligned_assign(*args, np.zeros((1,)))


def test_no_gradient_flows_into_the_targets():
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        pytest.skip("GradientTape needs the TensorFlow backend")
    scores = tf.Variable(np.full((1, 2, 1), 0.5, np.float32))
    pred = tf.Variable(np.float32([[[0, 0, 10, 10], [1, 1, 9, 9]]]))
    with tf.GradientTape() as tape:
        out = task_aligned_assign(
            scores, pred, np.float32([[5, 5], [4, 4]]), np.float32([[[0, 0, 10, 10]]]), [[0]]
        )
        total = tf.reduce_sum(out["scores"]) + tf.reduce_sum(out["boxes"])
    assert all(g is None for g in tape.gradient(total, [scores, pred]))


# ------------------------------------------------------------------ tracing


def test_traced_with_unknown_batch_anchors_and_gt():
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.function tracing needs the TensorFlow backend")
    traced = tf.function(
        task_aligned_assign,
        autograph=False,
        input_signature=[
            tf.TensorSpec([None, None, 6], tf.float32),
            tf.TensorSpec([None, None, 4], tf.float32),
            tf.TensorSpec([None, 2], tf.float32),
            tf.TensorSpec([None, None, 4], tf.float32),
            tf.TensorSpec([None, None], tf.int32),
        ],
    )
    graph_outputs = traced.get_concrete_function().structured_outputs
    assert graph_outputs["positive"].shape.as_list() == [None, None]
    assert graph_outputs["scores"].shape.as_list() == [None, None, 6]
    assert graph_outputs["boxes"].shape.as_list() == [None, None, 4]
    rng = np.random.default_rng(11)
    scores, pred, points, gt_boxes, gt_classes = random_problem(rng, batch=2)
    for rows, anchors in ((24, None), (0, None), (24, 7)):  # full, M = 0, N < top_k
        args = (scores[:, :anchors], pred[:, :anchors], points[:anchors])
        gts = (gt_boxes[:, :rows], gt_classes[:, :rows])
        got = {k: v.numpy() for k, v in traced(*args, *gts).items()}
        assert_same(got, assign_np(*args, *gts))
        if rows:
            assert_same(got, reference_assign(*args, *gts)[0])
