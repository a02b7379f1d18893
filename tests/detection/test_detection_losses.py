"""Detection losses and DIoU/CIoU: torchvision/torch parity (live), NumPy and hand-worked
values, finiteness (values and gradients) on degenerate boxes and extreme logits, errors."""

from __future__ import annotations

import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasseg.detection import boxes as kboxes
from kerasseg.detection import losses as dl
from tests.support import require_module


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _box_pairs(rng, n=60, degenerate=True, points=True):
    """``(true, pred)`` float32 (n, 4) xyxy: overlapping, disjoint, nested, identical, degenerate.

    Sizes are log-uniform over 0.05..80 pixels. Zero-width and zero-height boxes come with
    `degenerate`; zero-size boxes (points), where torchvision's CIoU is NaN, with `points`.
    """
    corner = rng.uniform(0, 100, (n, 2))
    size = np.exp(rng.uniform(np.log(0.05), np.log(80.0), (n, 2)))
    true = np.concatenate([corner, corner + size], axis=-1)
    kind = np.arange(n) % 6
    jitter = true + rng.normal(0, 1, (n, 4)) * np.tile(size, 2) * 0.3  # mostly overlapping
    jitter = np.concatenate(
        [np.minimum(jitter[:, :2], jitter[:, 2:]), np.maximum(jitter[:, :2], jitter[:, 2:])], -1
    )
    other = rng.uniform(0, 100, (n, 2))
    other = np.concatenate([other, other + rng.uniform(0.5, 30, (n, 2))], -1)  # mostly disjoint
    centre, half = (true[:, :2] + true[:, 2:]) / 2, size / 2 * rng.uniform(1.2, 3, (n, 1))
    nested = np.concatenate([centre - half, centre + half], -1)
    pred = np.where((kind < 2)[:, None], jitter, np.where((kind < 4)[:, None], other, nested))
    pred[kind == 5] = true[kind == 5]  # identical
    if degenerate:
        pred[3::12, 2] = pred[3::12, 0]  # zero width
        pred[9::12, 3] = pred[9::12, 1]  # zero height
        true[1::12, 3] = true[1::12, 1]  # zero-height target
        pred[11::12, 2] = pred[11::12, 0]  # zero-width copy of a zero-width target
        true[11::12] = pred[11::12]
    if points:
        pred[7::12, 2:] = pred[7::12, :2]  # a point
        true[10::24] = [[5.0, 5.0, 5.0, 5.0]]  # point vs point / the same point
        pred[10::48] = [[5.0, 5.0, 5.0, 5.0]]
    return true.astype(np.float32), pred.astype(np.float32)


# Degenerate and extreme pairs (true, pred) for the finiteness tests.
DEGENERATE = np.array(
    [
        [[10, 10, 20, 30], [10, 10, 20, 30]],  # identical
        [[10, 10, 10, 30], [10, 10, 10, 30]],  # identical, zero width
        [[10, 10, 20, 10], [10, 10, 20, 10]],  # identical, zero height
        [[5, 5, 5, 5], [5, 5, 5, 5]],  # the same point
        [[5, 5, 5, 5], [9, 7, 9, 7]],  # two points
        [[0, 0, 0, 0], [0, 0, 0, 0]],  # all zeros
        [[10, 10, 20, 30], [20, 30, 10, 10]],  # inverted copy
        [[20, 30, 10, 10], [18, 25, 12, 11]],  # both inverted
        [[10, 10, 20, 30], [15, 15, 15, 40]],  # zero-width prediction inside
        [[10, 10, 20, 30], [50, 60, 50, 60]],  # point far away
        [[0, 0, 1e-4, 1e-4], [0, 0, 1e4, 1e4]],  # tiny against huge
        [[10, 10, 20, 30], [20, 10, 30, 30]],  # touching edges
    ],
    dtype=np.float32,
)
EXTREME_LOGITS = np.array([-1e4, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 1e4], np.float32)


def _gradients(fn, *inputs):
    variables = [tf.Variable(x) for x in inputs]
    with tf.GradientTape() as tape:
        value = fn(*variables)
        total = tf.reduce_sum(value)
    return value.numpy(), [g.numpy() for g in tape.gradient(total, variables)]


# ------------------------------------------------------------------ sigmoid focal loss


@pytest.mark.parity
@pytest.mark.parametrize(
    "alpha,gamma,tv_alpha",
    [(0.25, 2.0, 0.25), (None, 2.0, -1), (-1.0, 1.5, -1), (0.6, 0.5, 0.6), (0.25, 0.0, 0.25)],
)
def test_sigmoid_focal_loss_matches_torchvision(alpha, gamma, tv_alpha):
    torch = require_module("torch")
    tv_ops = require_module("torchvision.ops")
    rng = np.random.default_rng(10)
    logits = (rng.normal(0, 6, (4, 50, 3)) * rng.choice([0.1, 1, 3], (4, 50, 3))).astype(np.float32)
    logits[0, :9, 0] = EXTREME_LOGITS[1:-1].tolist() + [-100.0, 100.0]
    labels = (rng.uniform(size=logits.shape) < 0.2).astype(np.float32)
    labels[1] = rng.uniform(size=labels[1].shape)  # soft labels
    labels[0, :9, 0] = [0, 1, 0, 1, 0.5, 1, 0, 1, 0]

    got, (grad,) = _gradients(
        lambda z: dl.sigmoid_focal_loss(labels, z, alpha=alpha, gamma=gamma), logits
    )
    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    expected = tv_ops.sigmoid_focal_loss(
        z, torch.tensor(labels, dtype=torch.float64), alpha=tv_alpha, gamma=gamma
    )
    expected.sum().backward()
    assert got.shape == logits.shape
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-5, atol=1e-7)
    # torchvision's gradient is NaN where 1 - p_t rounds to 0 and gamma < 1 (0 ** -0.5 * 0);
    # ours is finite everywhere (and 0 there).
    reference_grad = z.grad.numpy()
    finite = np.isfinite(reference_grad)
    assert np.isfinite(grad).all()
    assert finite.all() == (gamma >= 1 or gamma == 0)
    np.testing.assert_allclose(grad[finite], reference_grad[finite], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(grad[~finite], 0.0, atol=1e-7)


def test_sigmoid_focal_loss_extreme_logits_are_finite_with_known_values():
    logits = np.tile(EXTREME_LOGITS, 3)
    labels = np.repeat(np.array([0.0, 1.0, 0.5], np.float32), EXTREME_LOGITS.size)
    for gamma in (0.0, 0.5, 2.0):
        value, (grad_logits, grad_labels) = _gradients(
            lambda y, z, g=gamma: dl.sigmoid_focal_loss(y, z, alpha=0.25, gamma=g),
            labels,
            logits,
        )
        assert np.isfinite(value).all() and (value >= 0).all()
        assert np.isfinite(grad_logits).all() and np.isfinite(grad_labels).all()
        # A confident miss costs alpha_t * |z| (1 - p_t = 1); a confident hit costs ~0.
        n = EXTREME_LOGITS.size
        assert value[n + 1] == pytest.approx(0.25 * 100.0, rel=1e-6)  # y = 1, z = -100
        assert value[7] == pytest.approx(0.75 * 100.0, rel=1e-6)  # y = 0, z = 100
        assert value[n + 7] < 1e-30 and value[1] < 1e-30


# ------------------------------------------------------------------ smooth L1 / L1


@pytest.mark.parity
@pytest.mark.parametrize("beta", [1.0 / 9.0, 0.5, 1.0, 0.0])
def test_smooth_l1_matches_torch(beta):
    torch = require_module("torch")
    rng = np.random.default_rng(11)
    targets = rng.normal(0, 1, (3, 40, 4)).astype(np.float32)
    predictions = (
        targets + rng.normal(0, 1, targets.shape) * rng.choice([0.01, 0.3, 3], targets.shape)
    ).astype(np.float32)
    predictions[0, 0] = targets[0, 0]  # zero error (the kink of L1)
    got, (grad,) = _gradients(lambda p: dl.smooth_l1_loss(targets, p, beta=beta), predictions)
    p = torch.tensor(predictions, dtype=torch.float64, requires_grad=True)
    expected = torch.nn.functional.smooth_l1_loss(
        p, torch.tensor(targets, dtype=torch.float64), reduction="none", beta=beta
    )
    expected.sum().backward()
    np.testing.assert_allclose(got, expected.detach().numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grad, p.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert np.isfinite(grad).all()
    if beta == 0:
        np.testing.assert_array_equal(got, _np(dl.l1_loss(targets, predictions)))


@pytest.mark.parity
def test_l1_loss_matches_torch():
    torch = require_module("torch")
    rng = np.random.default_rng(12)
    targets = rng.normal(0, 5, (2, 30, 4)).astype(np.float32)
    predictions = rng.normal(0, 5, (2, 30, 4)).astype(np.float32)
    expected = torch.nn.functional.l1_loss(
        torch.tensor(predictions), torch.tensor(targets), reduction="none"
    )
    np.testing.assert_allclose(_np(dl.l1_loss(targets, predictions)), expected.numpy(), rtol=1e-6)


def test_smooth_l1_hand_worked():
    # beta = 0.5: |d| = 0.2 < beta -> 0.5 * 0.04 / 0.5 = 0.04; |d| = 2 -> 2 - 0.25 = 1.75;
    # |d| = 0.5 (at beta) -> 0.5 - 0.25 = 0.25, where both branches meet.
    got = _np(dl.smooth_l1_loss([1.0, 1.0, 1.0], [1.2, -1.0, 0.5], beta=0.5))
    np.testing.assert_allclose(got, [0.04, 1.75, 0.25], rtol=1e-6)


# ------------------------------------------------------------------ GIoU / CIoU losses


@pytest.mark.parity
@pytest.mark.parametrize("scale", [1.0, 1e-3], ids=["pixels", "tiny"])
def test_giou_loss_matches_torchvision(scale):
    """In pixels, and scaled down so far that torchvision's eps = 1e-7 in the
    denominators changes the losses (areas down to 2.5e-9)."""
    torch = require_module("torch")
    tv_ops = require_module("torchvision.ops")
    true, pred = (b * np.float32(scale) for b in _box_pairs(np.random.default_rng(13), n=120))
    true, pred = true.reshape(2, 60, 4), pred.reshape(2, 60, 4)
    got = _np(dl.giou_loss(true, pred))
    expected = tv_ops.generalized_box_iou_loss(
        torch.tensor(pred, dtype=torch.float64), torch.tensor(true, dtype=torch.float64)
    ).numpy()
    assert got.shape == (2, 60)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert (got >= 0).all() and (got <= 2).all()


@pytest.mark.parity
@pytest.mark.parametrize("scale", [1.0, 1e-3], ids=["pixels", "tiny"])
def test_ciou_loss_matches_torchvision(scale):
    """In pixels, and scaled down so far that torchvision's eps = 1e-7 in the
    denominators changes the losses (areas down to 2.5e-9)."""
    torch = require_module("torch")
    tv_ops = require_module("torchvision.ops")
    true, pred = (
        b * np.float32(scale) for b in _box_pairs(np.random.default_rng(14), n=120, points=False)
    )
    true, pred = true.reshape(2, 60, 4), pred.reshape(2, 60, 4)
    got = _np(dl.ciou_loss(true, pred))
    expected = tv_ops.complete_box_iou_loss(
        torch.tensor(pred, dtype=torch.float64), torch.tensor(true, dtype=torch.float64), eps=1e-7
    ).numpy()
    assert np.isfinite(expected).all()  # the sample avoids torchvision's NaN (points)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert (got >= 0).all() and (got <= 3).all()


@pytest.mark.parity
@pytest.mark.parametrize("name", ["giou", "ciou"])
def test_box_loss_gradients_match_torchvision(name):
    """Gradients too (CIoU's alpha held constant, as torchvision's no_grad), on generic
    boxes: at exact ties (identical boxes) min/max split gradients differently."""
    torch = require_module("torch")
    tv_ops = require_module("torchvision.ops")
    true, pred = _box_pairs(np.random.default_rng(15), n=40, degenerate=False, points=False)
    generic = np.arange(40) % 6 != 5
    true, pred = true[generic], pred[generic]
    ours = {"giou": dl.giou_loss, "ciou": dl.ciou_loss}[name]
    reference = {"giou": tv_ops.generalized_box_iou_loss, "ciou": tv_ops.complete_box_iou_loss}
    _, (grad_true, grad_pred) = _gradients(ours, true, pred)
    t = torch.tensor(true, dtype=torch.float64, requires_grad=True)
    p = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    reference[name](p, t).sum().backward()
    np.testing.assert_allclose(grad_pred, p.grad.numpy(), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(grad_true, t.grad.numpy(), rtol=1e-3, atol=1e-5)


@pytest.mark.parity
def test_degenerate_boxes_where_torchvision_differs():
    """torchvision uses signed sizes and atan(w / h); we clamp sizes at 0 and use a safe
    atan2. Where torchvision is NaN (zero-size boxes in CIoU) we are finite, and an inverted
    copy of a box is no match (torchvision: a perfect match, loss 0)."""
    torch = require_module("torch")
    tv_ops = require_module("torchvision.ops")
    true = np.array([[10, 10, 20, 30], [10, 10, 20, 30]], np.float32)
    pred = np.array([[20, 30, 10, 10], [15, 20, 15, 20]], np.float32)  # inverted; a point
    tv_giou = tv_ops.generalized_box_iou_loss(torch.tensor(pred), torch.tensor(true)).numpy()
    tv_ciou = tv_ops.complete_box_iou_loss(torch.tensor(pred), torch.tensor(true)).numpy()
    assert tv_giou[0] == pytest.approx(0.0, abs=1e-6) and np.isnan(tv_ciou[1])
    giou, ciou = _np(dl.giou_loss(true, pred)), _np(dl.ciou_loss(true, pred))
    # Inverted: no intersection, union = enclosing = the target -> 1 - 0 + 0.
    assert giou[0] == pytest.approx(1.0, abs=1e-6)
    # A point at the target's centre: IoU 0, no centre distance, enclosing = the target, so
    # GIoU loss 1 and CIoU loss 1 + alpha v with angles 0 and atan(10 / 20), alpha = v / (1 + v).
    v = 4 / math.pi**2 * math.atan(0.5) ** 2
    assert giou[1] == pytest.approx(1.0, abs=1e-6)
    assert ciou[1] == pytest.approx(1.0 + v * v / (1.0 + v), rel=1e-5)
    assert np.isfinite(ciou).all()


@pytest.mark.parametrize("name", ["giou_loss", "ciou_loss"])
def test_box_losses_finite_on_degenerate_boxes(name):
    loss = getattr(dl, name)
    value, (grad_true, grad_pred) = _gradients(loss, DEGENERATE[:, 0], DEGENERATE[:, 1])
    assert np.isfinite(value).all(), value
    assert np.isfinite(grad_true).all() and np.isfinite(grad_pred).all()
    assert np.abs(grad_pred).max() < 1e6  # no 1 / eps gradients at empty unions
    assert value[0] == pytest.approx(0.0, abs=1e-6)  # identical boxes
    assert (value >= -1e-6).all() and (value <= 3.0).all()
    # Identical zero-width / zero-height / zero-size boxes: IoU 0, same centre -> loss 1.
    np.testing.assert_allclose(value[1:4], 1.0, atol=1e-6)


def test_ciou_loss_hand_worked():
    # A = [0,0,2,2], B = [1,0,3,1]: intersection 1, union 4 + 2 - 1 = 5, IoU 0.2; centres
    # (1, 1), (2, 0.5): rho^2 = 1.25; enclosing [0,0,3,2]: c^2 = 13; DIoU = 0.2 - 1.25/13 =
    # 0.1038462; v = 4/pi^2 (atan 1 - atan 2)^2 = 0.0419565, alpha = v / (0.8 + v) =
    # 0.0498321, CIoU = 0.1038462 - 0.0020908 = 0.1017554.
    a, b = [0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 1.0]
    assert float(_np(kboxes.elementwise_diou(a, b))) == pytest.approx(0.1038462, abs=1e-6)
    assert float(_np(kboxes.elementwise_ciou(a, b))) == pytest.approx(0.1017554, abs=1e-6)
    assert float(_np(dl.ciou_loss(a, b))) == pytest.approx(1 - 0.1017554, abs=1e-6)
    # GIoU: 0.2 - (6 - 5) / 6 = 0.0333333.
    assert float(_np(dl.giou_loss(a, b))) == pytest.approx(1 - 0.0333333, abs=1e-6)


# ------------------------------------------------------------------ elementwise DIoU / CIoU


@pytest.mark.parity
def test_elementwise_diou_ciou_match_torchvision_pairwise_diagonal():
    torch = require_module("torch")
    tv_ops = require_module("torchvision.ops")
    true, pred = _box_pairs(np.random.default_rng(16), n=48, points=False)
    tp, tt = torch.tensor(pred, dtype=torch.float64), torch.tensor(true, dtype=torch.float64)
    iou = torch.diagonal(tv_ops.box_iou(tp, tt)).numpy()
    diou = torch.diagonal(tv_ops.distance_box_iou(tp, tt)).numpy()
    ciou = torch.diagonal(tv_ops.complete_box_iou(tp, tt)).numpy()
    # Zero-area pairs have union 0: box_iou is NaN there, ours 0 (`pairwise_iou` convention).
    empty = np.isnan(iou)
    assert empty.any() and not empty.all()
    got_diou = _np(kboxes.elementwise_diou(pred, true))
    got_ciou = _np(kboxes.elementwise_ciou(pred, true))
    np.testing.assert_allclose(got_diou[~empty], diou[~empty], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_ciou[~empty], ciou[~empty], rtol=1e-5, atol=1e-6)
    # IoU-derived: DIoU subtracts a normalised centre distance, CIoU an aspect term >= 0.
    got_iou = _np(kboxes.elementwise_iou(pred, true))
    np.testing.assert_allclose(got_iou[~empty], iou[~empty], rtol=1e-5, atol=1e-6)
    assert (got_ciou <= got_diou + 1e-6).all() and (got_diou <= got_iou + 1e-6).all()
    assert (got_ciou >= -2).all()
    # Symmetric, and the loss is 1 - CIoU up to torchvision's eps.
    np.testing.assert_allclose(_np(kboxes.elementwise_ciou(true, pred)), got_ciou, atol=1e-6)
    np.testing.assert_allclose(_np(dl.ciou_loss(true, pred)), 1 - got_ciou, atol=1e-5)


def test_elementwise_diou_ciou_broadcast_and_degenerate():
    rng = np.random.default_rng(17)
    true, pred = _box_pairs(rng, n=12)
    anchors = true[:1]  # (1, 4) against (2, 6, 4)
    got = _np(kboxes.elementwise_ciou(pred.reshape(2, 6, 4), anchors))
    expected = _np(kboxes.elementwise_ciou(pred, np.repeat(anchors, 12, 0))).reshape(2, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    for fn in (kboxes.elementwise_diou, kboxes.elementwise_ciou):
        value, grads = _gradients(fn, DEGENERATE[:, 0], DEGENERATE[:, 1])
        assert np.isfinite(value).all() and all(np.isfinite(g).all() for g in grads)
        assert value[0] == pytest.approx(1.0, abs=1e-6)  # identical
        np.testing.assert_allclose(value[1:4], 0.0, atol=1e-6)  # identical, empty union


# ------------------------------------------------------------------ DFL and its decoding


def _np_dfl(targets, logits):
    """The formula, in float64, by indexing the two bins."""
    reg_max = logits.shape[-1]
    y = np.clip(targets.astype(np.float64), 0, reg_max - 1 - 0.01)
    left = np.floor(y).astype(np.int64)
    z = logits.astype(np.float64)
    log_s = z - z.max(-1, keepdims=True)
    log_s = log_s - np.log(np.exp(log_s).sum(-1, keepdims=True))
    log_left = np.take_along_axis(log_s, left[..., None], -1)[..., 0]
    log_right = np.take_along_axis(log_s, left[..., None] + 1, -1)[..., 0]
    return -((left + 1 - y) * log_left + (y - left) * log_right)


def _np_bin_integral(logits):
    z = logits.astype(np.float64)
    s = np.exp(z - z.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ np.arange(logits.shape[-1])


def test_distribution_focal_loss_matches_numpy():
    rng = np.random.default_rng(18)
    logits = rng.normal(0, 3, (2, 30, 4, 16)).astype(np.float32)
    targets = rng.uniform(-1, 16.5, (2, 30, 4)).astype(np.float32)  # some out of range
    targets[0, :4, 0] = [0.0, 3.0, 14.99, 15.0]  # on bins and at the clip bound
    got = _np(dl.distribution_focal_loss(targets, logits))
    assert got.shape == (2, 30, 4)
    np.testing.assert_allclose(got, _np_dfl(targets, logits), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        _np(dl.bin_integral(logits)), _np_bin_integral(logits), rtol=1e-5, atol=1e-5
    )


def test_distribution_focal_loss_hand_worked():
    # reg_max 5, S = softmax(log [1, 1, 4, 3, 1]) = [0.1, 0.1, 0.4, 0.3, 0.1]. Target 2.3:
    # y_l = 2 (weight 0.7), y_r = 3 (weight 0.3): loss = -(0.7 ln 0.4 + 0.3 ln 0.3)
    # = 0.7 * 0.9162907 + 0.3 * 1.2039728 = 1.0025954. Target 10 is clipped to 3.99:
    # -(0.01 ln 0.3 + 0.99 ln 0.1) = 2.2915868. Target -1 is clipped to 0: -ln 0.1 = 2.3025851.
    logits = np.log(np.array([[1, 1, 4, 3, 1]] * 3, np.float32))
    got = _np(dl.distribution_focal_loss([2.3, 10.0, -1.0], logits))
    np.testing.assert_allclose(got, [1.0025954, 2.2915868, 2.3025851], rtol=1e-5)
    # Expected bin: 0.1 + 2 * 0.4 + 3 * 0.3 + 4 * 0.1 = 2.2.
    np.testing.assert_allclose(_np(dl.bin_integral(logits)), [2.2] * 3, rtol=1e-6)


def test_distribution_focal_loss_minimum_and_decoding_round_trip():
    # Logits putting the two-bin split on y_l, y_r (and ~0 elsewhere) reach the minimum,
    # the split's entropy, and bin_integral decodes them back to the target.
    targets = np.array([0.25, 2.5, 7.9], np.float32)
    logits = np.full((3, 9), -100.0, np.float32)
    for i, y in enumerate(targets):
        left = int(np.floor(y))
        logits[i, left], logits[i, left + 1] = np.log(left + 1 - y), np.log(y - left)
    w = targets - np.floor(targets)
    entropy = -(w * np.log(w) + (1 - w) * np.log(1 - w))
    np.testing.assert_allclose(_np(dl.distribution_focal_loss(targets, logits)), entropy, rtol=1e-5)
    np.testing.assert_allclose(_np(dl.bin_integral(logits)), targets, rtol=1e-5)
    worse = logits.copy()  # more mass on y_l than its share: the cross-entropy grows
    worse[np.arange(3), np.floor(targets).astype(int)] += 0.5
    assert (_np(dl.distribution_focal_loss(targets, worse)) > entropy).all()


def test_dfl_and_bin_integral_finite_for_extreme_logits():
    logits = np.stack([np.resize(EXTREME_LOGITS, 16), -np.resize(EXTREME_LOGITS, 16)])
    targets = np.array([0.0, 14.99], np.float32)
    value, (grad_targets, grad_logits) = _gradients(dl.distribution_focal_loss, targets, logits)
    assert np.isfinite(value).all() and (value >= 0).all()
    assert np.isfinite(grad_targets).all() and np.isfinite(grad_logits).all()
    decoded, (grad,) = _gradients(dl.bin_integral, logits)
    assert np.isfinite(decoded).all() and np.isfinite(grad).all()
    assert ((decoded >= 0) & (decoded <= 15)).all()


# ------------------------------------------------------------------ normalisation, tracing


def test_normalize_by_positives():
    got = _np(dl.normalize_by_positives([3.0, 8.0, 0.0], np.array([0, 4, 0], np.int32)))
    np.testing.assert_allclose(got, [3.0, 2.0, 0.0])
    assert float(_np(dl.normalize_by_positives(6.0, 3))) == pytest.approx(2.0)
    value, (grad,) = _gradients(lambda s: dl.normalize_by_positives(s, 0.0), np.float32([5.0]))
    assert value[0] == 5.0 and grad[0] == 1.0


def test_losses_trace_with_unknown_batch_and_anchor_dims():
    spec = tf.TensorSpec([None, None, 4], tf.float32)

    @tf.function(input_signature=[spec, spec, tf.TensorSpec([None, None, 4, 8], tf.float32)])
    def all_losses(true, pred, bins):
        return (
            dl.giou_loss(true, pred),
            dl.ciou_loss(true, pred),
            dl.smooth_l1_loss(true, pred),
            dl.sigmoid_focal_loss(tf.cast(true > 50, tf.float32), pred),
            dl.distribution_focal_loss(true / 20.0, bins),
            dl.bin_integral(bins),
        )

    true, pred = _box_pairs(np.random.default_rng(19), n=12)
    true, pred = true.reshape(2, 6, 4), pred.reshape(2, 6, 4)
    bins = np.random.default_rng(20).normal(size=(2, 6, 4, 8)).astype(np.float32)
    traced = all_losses(true, pred, bins)
    eager = (
        dl.giou_loss(true, pred),
        dl.ciou_loss(true, pred),
        dl.smooth_l1_loss(true, pred),
        dl.sigmoid_focal_loss((true > 50).astype(np.float32), pred),
        dl.distribution_focal_loss(true / 20.0, bins),
        dl.bin_integral(bins),
    )
    for a, b in zip(traced, eager):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.numpy(), _np(b), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda: dl.sigmoid_focal_loss([1.0], [0.0], alpha=1.5),
            "`alpha` must be in [0, 1], or None or negative for no alpha weighting, got 1.5.",
        ),
        (
            lambda: dl.sigmoid_focal_loss([1.0], [0.0], alpha=float("nan")),
            "`alpha` must be in [0, 1], or None or negative for no alpha weighting, got nan.",
        ),
        (lambda: dl.sigmoid_focal_loss([1.0], [0.0], gamma=-1), "`gamma` must be >= 0, got -1."),
        (
            lambda: dl.sigmoid_focal_loss(np.zeros((2, 3)), np.zeros((2, 4))),
            "`labels` must have the shape of `logits`, (2, 4), got (2, 3).",
        ),
        (lambda: dl.smooth_l1_loss([1.0], [0.0], beta=-0.5), "`beta` must be >= 0, got -0.5."),
        (
            lambda: dl.giou_loss(np.zeros((3, 4)), np.zeros((3, 5))),
            "`boxes_pred` must have shape (..., 4), got shape (3, 5).",
        ),
        (
            lambda: dl.ciou_loss(np.zeros((3, 2)), np.zeros((3, 4))),
            "`boxes_true` must have shape (..., 4), got shape (3, 2).",
        ),
        (
            lambda: dl.distribution_focal_loss(np.zeros((2,)), np.zeros((2, 1))),
            "`logits` must have shape (..., reg_max) with a known reg_max >= 2 bins, got shape (2, 1).",
        ),
        (
            lambda: dl.distribution_focal_loss(np.zeros((2, 4)), np.zeros((2, 3, 16))),
            "`targets` must have the shape of `logits[..., 0]`, (2, 3), got (2, 4).",
        ),
        (
            lambda: kboxes.elementwise_ciou(np.zeros((3, 4)), np.zeros((3, 3))),
            "`boxes2` must have shape (..., 4), got shape (3, 3).",
        ),
    ],
)
def test_bad_arguments_are_rejected(call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


def test_unknown_number_of_bins_is_rejected_when_traced():
    fn = tf.function(dl.bin_integral)
    message = (
        "`logits` must have shape (..., reg_max) with a known reg_max >= 2 bins, "
        "got shape (None, None)."
    )
    # tf.function prefixes the traceback ("in user code: ..."); the message ends it.
    with pytest.raises(ValueError, match=f"{re.escape(message)}$"):
        fn.get_concrete_function(tf.TensorSpec([None, None], tf.float32))
