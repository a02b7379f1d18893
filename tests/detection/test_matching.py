"""Anchor matching: torchvision parity (Matcher, SSDMatcher, SSD hard negative mining),
hand-worked targets, padding and empty ground truth, tracing with unknown dims."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from kerasseg.detection.boxes import pairwise_iou
from kerasseg.detection.matching import (
    BELOW_LOW_THRESHOLD,
    BETWEEN_THRESHOLDS,
    IoUMatcher,
    SSDMatcher,
    assign_targets,
    gather_matched,
    match_anchors,
    topk_hard_negatives,
)
from tests.support import require_module


def to_np(x):
    return keras.ops.convert_to_numpy(x)


def grid_boxes(rng, n, extent=24):
    """Boxes with integer corners on a small grid: exact IoU arithmetic, many ties and 0s."""
    xy = rng.integers(0, extent, (n, 2))
    wh = rng.integers(1, 9, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def random_batch(rng, batch=4, max_gt=6, num_anchors=40, num_rows=None):
    """Anchors (N, 4), gt boxes (B, M, 4) and valid (B, M) with every awkward case.

    Valid rows sit at random positions among the padding rows; the padding rows hold
    copies of anchors (IoU 1), so they would win every match if they were not masked.
    Some images have no valid gt, some duplicate gt boxes (ties along the gt axis), some a
    gt far from every anchor (IoU 0 throughout), many gts near an anchor (high IoU); the
    last anchors duplicate the first.
    """
    anchors = grid_boxes(rng, num_anchors)
    anchors[-3:] = anchors[:3]
    rows = max_gt + int(rng.integers(0, 3)) if num_rows is None else num_rows
    boxes = anchors[rng.integers(0, num_anchors, (batch, rows))].copy()
    valid = np.zeros((batch, rows), bool)
    for b in range(batch):
        k = min(rows, int(rng.integers(0, max_gt + 1)))
        if k == 0:
            continue
        gt = grid_boxes(rng, k)
        near = rng.random(k) < 0.4  # jittered anchors: IoU up to 1
        jitter = rng.integers(-1, 2, (int(near.sum()), 4))
        gt[near] = anchors[rng.integers(0, num_anchors, int(near.sum()))] + jitter
        gt[:, 2:] = np.maximum(gt[:, 2:], gt[:, :2] + 1)
        if k >= 2 and rng.random() < 0.5:
            gt[1] = gt[0]
        if rng.random() < 0.3:
            gt[-1] = [100, 100, 105, 105]
        at = rng.choice(rows, k, replace=False)
        boxes[b, at], valid[b, at] = gt, True
    return anchors, boxes, valid


def iou_of(boxes, anchors):
    return to_np(pairwise_iou(boxes, anchors))


def torchvision_matches(reference, iou, valid):
    """torchvision's matcher on the valid rows of each image, as indices into all rows.

    torchvision refuses an image without gt; its detectors then use all background.
    """
    torch = require_module("torch")
    out = np.full((iou.shape[0], iou.shape[2]), BELOW_LOW_THRESHOLD, np.int64)
    for b in range(iou.shape[0]):
        rows = np.flatnonzero(valid[b])
        if rows.size:
            m = reference(torch.from_numpy(np.ascontiguousarray(iou[b, rows]))).numpy()
            out[b] = np.where(m >= 0, rows[np.maximum(m, 0)], m)
    return out


# ------------------------------------------------------------------ torchvision parity


@pytest.mark.parity
@pytest.mark.parametrize(
    ("high", "low", "low_quality"),
    [(0.5, 0.4, False), (0.5, 0.4, True), (0.7, 0.3, False), (0.7, 0.3, True)],
)
def test_iou_matcher_matches_torchvision(high, low, low_quality):
    det_utils = require_module("torchvision.models.detection._utils")
    reference = det_utils.Matcher(high, low, allow_low_quality_matches=low_quality)
    plain = det_utils.Matcher(high, low)
    matcher = IoUMatcher(high, low, allow_low_quality_matches=low_quality)
    rng = np.random.default_rng(int(high * 10 + low * 100 + low_quality))
    seen = {"empty": 0, "ties": 0, "low_quality": 0, "between": 0, "positive": 0}
    for case in range(3):  # 2 batches of 40 images, then one with M = 0
        anchors, boxes, valid = random_batch(rng, batch=40, num_rows=0 if case == 2 else None)
        iou = iou_of(boxes, anchors)
        expected = torchvision_matches(reference, iou, valid)
        np.testing.assert_array_equal(to_np(matcher(iou, valid)), expected, err_msg=f"case {case}")
        seen["empty"] += int((~valid).all(axis=1).sum())
        masked = np.where(valid[..., None], iou, -1.0)
        best = masked.max(axis=1, keepdims=True, initial=-1.0)
        seen["ties"] += int(((((masked == best) & (best > 0)).sum(axis=1)) > 1).sum())
        seen["low_quality"] += int((torchvision_matches(plain, iou, valid) != expected).sum())
        seen["between"] += int((expected == BETWEEN_THRESHOLDS).sum())
        seen["positive"] += int((expected >= 0).sum())
    # The cases do exercise what they are meant to.
    assert seen["empty"] and seen["ties"] and seen["positive"], seen
    assert bool(seen["between"]) == (low < high), seen
    assert bool(seen["low_quality"]) == low_quality, seen


@pytest.mark.parity
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_ssd_matcher_matches_torchvision(threshold):
    det_utils = require_module("torchvision.models.detection._utils")
    reference = det_utils.SSDMatcher(threshold)
    matcher = SSDMatcher(threshold)
    rng = np.random.default_rng(int(threshold * 10))
    conflicts = forced_at_zero = 0
    for case in range(3):
        anchors, boxes, valid = random_batch(
            rng, batch=40, num_anchors=25, num_rows=0 if case == 2 else None
        )
        iou = iou_of(boxes, anchors)
        expected = torchvision_matches(reference, iou, valid)
        np.testing.assert_array_equal(to_np(matcher(iou, valid)), expected, err_msg=f"case {case}")
        for b in range(iou.shape[0]):
            rows = np.flatnonzero(valid[b])
            best = iou[b, rows].argmax(axis=1)
            conflicts += len(best) - len(np.unique(best))
            forced_at_zero += int((iou[b, rows].max(axis=1, initial=0) == 0).sum())
    assert conflicts > 0 and forced_at_zero > 0


@pytest.mark.parity
def test_match_anchors_end_to_end_against_torchvision_box_iou():
    torch = require_module("torch")
    torchvision = require_module("torchvision")
    det_utils = require_module("torchvision.models.detection._utils")
    rng = np.random.default_rng(3)
    anchors, boxes, valid = random_batch(rng, batch=3)
    for matcher, reference in [
        (IoUMatcher(0.5, 0.4, True), det_utils.Matcher(0.5, 0.4, True)),
        (SSDMatcher(0.5), det_utils.SSDMatcher(0.5)),
    ]:
        expected = np.full((3, len(anchors)), -1)
        for b in range(3):
            rows = np.flatnonzero(valid[b])
            if rows.size:
                iou = torchvision.ops.box_iou(
                    torch.from_numpy(boxes[b, rows]), torch.from_numpy(anchors)
                )
                m = reference(iou).numpy()
                expected[b] = np.where(m >= 0, rows[np.maximum(m, 0)], m)
        got = to_np(match_anchors(matcher, anchors, boxes, valid))
        np.testing.assert_array_equal(got, expected)
        # Per-image anchors (B, N, 4) give the same.
        per_image = np.broadcast_to(anchors, (3, *anchors.shape))
        np.testing.assert_array_equal(to_np(match_anchors(matcher, per_image, boxes, valid)), got)


def torchvision_hard_negatives(loss, positive, ratio):
    """The selection lines of torchvision's ``SSD.compute_loss``, run on torch."""
    torch = require_module("torch")
    cls_loss = torch.from_numpy(loss)
    foreground_idxs = torch.from_numpy(positive)
    num_negative = ratio * foreground_idxs.sum(1, keepdim=True)
    negative_loss = cls_loss.clone()
    negative_loss[foreground_idxs] = -float("inf")
    _values, idx = negative_loss.sort(1, descending=True)
    background_idxs = idx.sort(1)[1] < num_negative
    return background_idxs.numpy()


@pytest.mark.parity
@pytest.mark.parametrize("ratio", [3.0, 2.5])
def test_hard_negatives_match_torchvision_ssd(ratio):
    rng = np.random.default_rng(int(ratio * 2))
    batch, n = 6, 50
    loss = rng.exponential(1.0, (batch, n)).astype(np.float32)  # distinct: no ties
    positive = np.zeros((batch, n), bool)
    for b, k in enumerate([0, 1, 3, 7, 20, 49]):  # 20, 49: more negatives wanted than exist
        positive[b, rng.choice(n, k, replace=False)] = True
    expected = torchvision_hard_negatives(loss, positive, ratio)
    got = to_np(topk_hard_negatives(loss, positive, ~positive, ratio=ratio))
    # torchvision's mask spills onto positives once ratio * num_pos exceeds the negatives;
    # on the negatives the selections agree.
    assert expected[4:][positive[4:]].any() and not expected[:4][positive[:4]].any()
    np.testing.assert_array_equal(got, expected & ~positive)
    counts = got.sum(axis=1)
    np.testing.assert_array_equal(
        counts, np.minimum(np.ceil(ratio * positive.sum(axis=1)), (~positive).sum(axis=1))
    )
    assert counts[0] == 0  # no positives: no negatives, as torchvision


# ------------------------------------------------------------------ without references


def numpy_hard_negatives(loss, positive, negative, ratio):
    """Candidates = negative & ~positive, ranked by decreasing loss, ties by index."""
    out = np.zeros(loss.shape, bool)
    for b in range(loss.shape[0]):
        candidates = np.flatnonzero(negative[b] & ~positive[b])
        order = candidates[np.argsort(-loss[b, candidates], kind="stable")]
        out[b, order[np.arange(len(order)) < ratio * positive[b].sum()]] = True
    return out


def test_hard_negatives_ties_and_ignored_anchors():
    # Image 0: 2 positives, ratio 1.5 -> rank < 3; equal losses rank by index (1 before 3);
    # anchor 5 (highest loss) is ignored (neither positive nor negative), never kept.
    loss = np.array([[0.9, 0.5, 0.1, 0.5, 0.2, 5.0, 0.5]], np.float32)
    positive = np.array([[1, 0, 0, 0, 0, 0, 1]], bool)
    negative = np.array([[0, 1, 1, 1, 1, 0, 0]], bool)
    got = to_np(topk_hard_negatives(loss, positive, negative, ratio=1.5))
    np.testing.assert_array_equal(got, [[0, 1, 0, 1, 1, 0, 0]])

    rng = np.random.default_rng(0)
    loss = rng.integers(0, 4, (5, 60)).astype(np.float32)  # many ties
    state = rng.integers(0, 3, (5, 60))  # 0 positive, 1 negative, 2 ignored
    positive, negative = state == 0, state == 1
    for ratio in (0.0, 1.0, 3.0):
        np.testing.assert_array_equal(
            to_np(topk_hard_negatives(loss, positive, negative, ratio=ratio)),
            numpy_hard_negatives(loss, positive, negative, ratio),
        )


def test_hand_worked_ties_padding_and_conflicts():
    # Rows 0 and 2 are identical gts, row 1 is padding with IoU 1 everywhere.
    iou = np.array([[[0.6, 0.1, 0.0], [1.0, 1.0, 1.0], [0.6, 0.1, 0.0]]], np.float32)
    valid = np.array([[True, False, True]])
    # Anchor 0: best 0.6 at rows 0 and 2 -> the lowest, 0; anchor 1: 0.1 < 0.4 -> -1;
    # anchor 2: 0 -> -1. Low quality: both gts' best is anchor 0, already matched.
    for low_quality in (False, True):
        got = to_np(IoUMatcher(0.5, 0.4, low_quality)(iou, valid))
        np.testing.assert_array_equal(got, [[0, -1, -1]])
    # SSD: both gts force anchor 0, the later (row 2) wins.
    np.testing.assert_array_equal(to_np(SSDMatcher(0.5)(iou, valid)), [[2, -1, -1]])
    # torchvision's low-quality quirk: gt 1 overlaps nothing, so every anchor with IoU 0
    # to it (all three) is matched to its own best gt: anchor 2 to gt 0 at IoU 0.
    iou = np.array([[[0.0, 0.45, 0.0], [0.0, 0.0, 0.0]]], np.float32)
    got = to_np(IoUMatcher(0.5, 0.4, True)(iou, np.ones((1, 2), bool)))
    np.testing.assert_array_equal(got, [[0, 0, 0]])
    np.testing.assert_array_equal(
        to_np(IoUMatcher(0.5, 0.4)(iou, np.ones((1, 2), bool))), [[-1, -2, -1]]
    )


def test_no_valid_ground_truth_is_all_background():
    anchors = grid_boxes(np.random.default_rng(1), 10)
    classes_all_padding = -np.ones((2, 3), np.int32)
    for boxes, classes in [
        (np.zeros((2, 0, 4), np.float32), np.zeros((2, 0), np.int32)),
        (np.tile(anchors[:3], (2, 1, 1)), classes_all_padding),  # padding rows = anchors
    ]:
        for matcher in (IoUMatcher(0.5, 0.4, True), SSDMatcher(0.5), IoUMatcher(0.0, 0.0)):
            out = {k: to_np(v) for k, v in assign_targets(matcher, anchors, boxes, classes).items()}
            assert (out["matches"] == -1).all() and (out["classes"] == -1).all()
            assert out["negative"].all() and not out["positive"].any()
            np.testing.assert_array_equal(out["boxes"], np.zeros((2, 10, 4)))
            np.testing.assert_array_equal(out["num_positives"], [0.0, 0.0])
            assert out["boxes"].dtype == np.float32 and out["num_positives"].dtype == np.float32
            assert out["matches"].dtype == np.int32 and out["classes"].dtype == np.int32


def test_assign_targets_hand_worked():
    # Anchors A0 = [0, 0, 10, 10], A1 = [20, 0, 30, 10] (areas 100).
    # Image 0: g0 = [0, 0, 10, 5] class 3: IoU(g0, A0) = 50 / 100 = 0.5, IoU(g0, A1) = 0;
    #          g1 = [22, 0, 30, 10] class 7: IoU(g1, A1) = 80 / 100 = 0.8, IoU(g1, A0) = 0.
    #   IoUMatcher(0.6, 0.4): A0 best 0.5 in [0.4, 0.6) -> -2 (ignored); A1 -> g1 (0.8).
    #   With low-quality matches A0 is g0's best anchor -> matched to g0.
    # Image 1: g0 the same but flagged ignore (class 4); g1 = [20, 0, 30, 10] is padding
    #   (class -1) although IoU(g1, A1) = 1.
    #   Low quality: A0 -> g0 (ignored, -> -2); A1 overlaps no valid gt -> -1.
    anchors = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    boxes = np.array(
        [[[0, 0, 10, 5], [22, 0, 30, 10]], [[0, 0, 10, 5], [20, 0, 30, 10]]], np.float32
    )
    classes = np.array([[3, 7], [4, -1]], np.int32)
    ignore = np.array([[False, False], [True, False]])
    out = assign_targets(IoUMatcher(0.6, 0.4), anchors, boxes, classes, ignore)
    out = {k: to_np(v) for k, v in out.items()}
    np.testing.assert_array_equal(out["matches"][0], [BETWEEN_THRESHOLDS, 1])
    np.testing.assert_array_equal(out["boxes"][0], [[0, 0, 0, 0], [22, 0, 30, 10]])
    np.testing.assert_array_equal(out["classes"][0], [-2, 7])
    np.testing.assert_array_equal(out["positive"][0], [False, True])
    np.testing.assert_array_equal(out["negative"][0], [False, False])

    out = assign_targets(IoUMatcher(0.6, 0.4, True), anchors, boxes, classes, ignore)
    out = {k: to_np(v) for k, v in out.items()}
    np.testing.assert_array_equal(out["matches"], [[0, 1], [BETWEEN_THRESHOLDS, -1]])
    np.testing.assert_array_equal(out["boxes"][0], boxes[0])
    np.testing.assert_array_equal(out["boxes"][1], np.zeros((2, 4)))
    np.testing.assert_array_equal(out["classes"], [[3, 7], [-2, -1]])
    np.testing.assert_array_equal(out["positive"], [[True, True], [False, False]])
    np.testing.assert_array_equal(out["negative"], [[False, False], [False, True]])
    np.testing.assert_array_equal(out["num_positives"], [2.0, 0.0])
    # Without the ignore flag image 1's A0 is a positive of class 4.
    plain = assign_targets(IoUMatcher(0.6, 0.4, True), anchors, boxes, classes)
    np.testing.assert_array_equal(to_np(plain["classes"]), [[3, 7], [4, -1]])


def test_gather_matched_shapes_and_fill():
    values = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    matches = np.array([[2, -1, 0, -2], [1, 1, -1, 2]], np.int32)
    got = to_np(gather_matched(values, matches, fill=-5.0))
    assert got.shape == (2, 4, 2, 2)
    for b in range(2):
        for n in range(4):
            m = matches[b, n]
            np.testing.assert_array_equal(got[b, n], values[b, m] if m >= 0 else -5.0)
    ints = to_np(gather_matched(np.array([[4, 9]], np.int32), np.array([[1, -1, 0]]), fill=-1))
    np.testing.assert_array_equal(ints, [[9, -1, 4]])
    assert ints.dtype == np.int32


def test_traced_with_unknown_batch_anchors_and_gt():
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.function tracing needs the TensorFlow backend")
    matchers = [IoUMatcher(0.5, 0.4, True), SSDMatcher(0.5)]

    def step(anchors, boxes, classes, ignore, loss):
        outs = []
        for matcher in matchers:
            out = assign_targets(matcher, anchors, boxes, classes, ignore)
            out["hard"] = topk_hard_negatives(loss, out["positive"], out["negative"])
            outs.append(out)
        return outs

    # autograph=False: stricter (Python control flow on a tensor would fail) and faster.
    traced = tf.function(
        step,
        autograph=False,
        input_signature=[
            tf.TensorSpec([None, 4], tf.float32),
            tf.TensorSpec([None, None, 4], tf.float32),
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None, None], tf.bool),
            tf.TensorSpec([None, None], tf.float32),
        ],
    )
    graph_outputs = traced.get_concrete_function().structured_outputs
    assert graph_outputs[0]["matches"].shape.as_list() == [None, None]
    assert graph_outputs[0]["boxes"].shape.as_list() == [None, None, 4]
    rng = np.random.default_rng(5)
    for rows in (None, 0):
        anchors, boxes, valid = random_batch(rng, batch=3, num_anchors=30, num_rows=rows)
        classes = np.where(valid, rng.integers(0, 5, valid.shape), -1).astype(np.int32)
        ignore = rng.random(valid.shape) < 0.3
        loss = rng.exponential(1.0, (3, 30)).astype(np.float32)
        eager = step(anchors, boxes, classes, ignore, loss)
        graph = traced(anchors, boxes, classes, ignore, loss)
        for e, g in zip(eager, graph):
            for key in e:
                np.testing.assert_array_equal(to_np(g[key]), to_np(e[key]), err_msg=key)
            assert np.isfinite(to_np(g["boxes"])).all()
        if rows == 0:
            assert (to_np(graph[0]["matches"]) == -1).all()
        else:
            assert to_np(graph[0]["positive"]).any() and to_np(graph[1]["hard"]).any()


def test_config_round_trip():
    for matcher in (IoUMatcher(0.7, 0.3, True), SSDMatcher(0.45)):
        restored = type(matcher).from_config(matcher.get_config())
        assert restored.get_config() == matcher.get_config()
        assert type(restored) is type(matcher)
    assert SSDMatcher(0.45).get_config() == {"threshold": 0.45}
    assert IoUMatcher(0.7, 0.3).get_config() == {
        "high_threshold": 0.7,
        "low_threshold": 0.3,
        "allow_low_quality_matches": False,
    }
    assert repr(SSDMatcher(0.45)) == "SSDMatcher(threshold=0.45)"


def test_errors_name_the_argument():
    def message(text):
        return "^" + re.escape(text) + "$"

    with pytest.raises(
        ValueError,
        match=message(
            "`low_threshold` and `high_threshold` must satisfy 0 <= low_threshold <= "
            "high_threshold <= 1; got low_threshold=0.7, high_threshold=0.3."
        ),
    ):
        IoUMatcher(0.3, 0.7)
    with pytest.raises(
        ValueError,
        match=message(
            "`low_threshold` and `high_threshold` must satisfy 0 <= low_threshold <= "
            "high_threshold <= 1; got low_threshold=0.5, high_threshold=1.5."
        ),
    ):
        IoUMatcher(1.5, 0.5)
    with pytest.raises(ValueError, match=message("`threshold` must be in [0, 1]; got -0.1.")):
        SSDMatcher(-0.1)
    matcher = IoUMatcher(0.5, 0.4)
    with pytest.raises(
        ValueError, match=message("`iou` must have shape (B, M, N), got shape (3, 4).")
    ):
        matcher(np.zeros((3, 4), np.float32), np.ones((1, 3), bool))
    with pytest.raises(
        ValueError,
        match=message(
            "`valid` must have shape (B, M) matching `iou` (B, M, N); got M = 2 for `valid` and "
            "3 for `iou` (shapes (1, 2) and (1, 3, 4))."
        ),
    ):
        matcher(np.zeros((1, 3, 4), np.float32), np.ones((1, 2), bool))
    with pytest.raises(
        ValueError, match=message("`anchors` must have shape (N, 4) or (B, N, 4), got shape (4,).")
    ):
        match_anchors(matcher, np.zeros(4, np.float32), np.zeros((1, 2, 4), np.float32), None)
    with pytest.raises(
        ValueError, match=message("`gt_classes` must have shape (B, M), got shape (2,).")
    ):
        assign_targets(matcher, np.zeros((3, 4)), np.zeros((1, 2, 4)), np.zeros(2, np.int32))
    with pytest.raises(
        ValueError, match=message("`matches` must have shape (B, N), got shape (5,).")
    ):
        gather_matched(np.zeros((1, 2)), np.zeros(5, np.int32))
    with pytest.raises(
        ValueError, match=message("`ratio` must be a finite number >= 0; got -1.0.")
    ):
        topk_hard_negatives(np.zeros((1, 2)), np.zeros((1, 2), bool), np.ones((1, 2), bool), -1.0)
