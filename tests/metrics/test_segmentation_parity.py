"""Parity of the streaming Dice/Jaccard/Cosine with `segmentation_models_pytorch.metrics`.

smp is run live on the concatenation of all batches; our metrics see the same data streamed
batch by batch through `update_state`. Reductions map as:

    average="micro"                 <-> reduction="micro"
    average="macro"                 <-> reduction="macro"
    average=None                    <-> reduction=None on the counts summed over images
    average="micro", per_image=True <-> reduction="micro-imagewise"
    average="macro", per_image=True <-> reduction="macro-imagewise"
    average=None, per_image=True    <-> reduction=None (per image), then mean over images

smp has no cosine score; its reductions are driven through `_compute_metric` with a cosine
function written here, on the counts from smp's own `get_stats`.
"""

from __future__ import annotations

import numpy as np
import pytest

import kerasseg  # noqa: F401  (after torch: see tests/conftest.py)
from kerasseg.metrics import Cosine, Dice, Jaccard
from tests.support import require_module

NUM_CLASSES = {"binary": 1, "multilabel": 3, "multiclass": 4}
BATCH_SIZES = (3, 2, 4)
HEIGHT, WIDTH = 6, 7
IGNORE = 255

REDUCTIONS = [
    # (average, per_image, smp reduction)
    ("micro", False, "micro"),
    ("macro", False, "macro"),
    (None, False, "per-class"),
    ("micro", True, "micro-imagewise"),
    ("macro", True, "macro-imagewise"),
    (None, True, "per-class-imagewise"),
]


@pytest.fixture(scope="module")
def smp():
    require_module("torch")
    return require_module("segmentation_models_pytorch.metrics")


def make_batches(mode: str, seed: int, from_logits: bool = False):
    """Seeded random NHWC batches with empty classes and ignored pixels in places.

    Returns a list of (y_true, y_pred) NumPy pairs.
    """
    rng = np.random.default_rng(seed)
    c = NUM_CLASSES[mode]
    total = sum(BATCH_SIZES)
    shape = (total, HEIGHT, WIDTH)
    if mode == "multiclass":
        logits = rng.normal(size=shape + (c,)).astype("float32")
        y_true = rng.integers(0, c, size=shape).astype("int32")
        # The last class is absent from target and prediction in the first images of each
        # batch (its score there is 0/0), and some pixels are unlabelled.
        absent = np.zeros(total, bool)
        absent[[0, 3, 5, 6]] = True
        logits[absent, ..., c - 1] = -20.0
        y_true[absent] = np.where(y_true[absent] == c - 1, 0, y_true[absent])
        y_true[rng.random(shape) < 0.1] = IGNORE
        y_pred = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        y_pred = y_pred.astype("float32")
    else:
        y_true = (rng.random(shape + (c,)) < 0.4).astype("uint8")
        y_pred = rng.random(shape + (c,)).astype("float32")
        # An image with nothing in target and prediction (0/0 for it), and an image whose
        # prediction is empty while its target is not.
        y_true[1, ..., 0] = 0
        y_pred[1, ..., 0] *= 0.4
        y_pred[4, ..., 0] *= 0.4
        y_true[4, 0, 0, 0] = 1
        if from_logits:
            y_pred = np.log(y_pred / (1.0 - y_pred)).astype("float32")
    splits = np.cumsum(BATCH_SIZES)[:-1]
    return list(zip(np.split(y_true, splits), np.split(y_pred, splits)))


def smp_stats(smp, mode: str, batches, from_logits: bool = False):
    """smp's (N, C) tp, fp, fn, tn on the concatenated batches (NCHW for smp)."""
    import torch

    y_true = np.concatenate([t for t, _ in batches])
    y_pred = np.concatenate([p for _, p in batches])
    if mode == "multiclass":
        output = torch.from_numpy(y_pred.argmax(-1)).long()
        target = torch.from_numpy(y_true).long()
        return smp.get_stats(
            output, target, mode="multiclass", num_classes=NUM_CLASSES[mode], ignore_index=IGNORE
        )
    output = torch.from_numpy(y_pred).permute(0, 3, 1, 2)
    if from_logits:
        output = torch.sigmoid(output)
    target = torch.from_numpy(y_true.astype("int64")).permute(0, 3, 1, 2)
    return smp.get_stats(output, target, mode=mode, threshold=0.5)


def _cosine(tp, fp, fn, tn):
    import torch

    tp, fp, fn = tp.double(), fp.double(), fn.double()
    score = tp / torch.sqrt((tp + fp) * (tp + fn))
    # 0/0 of an empty class stays NaN, which smp turns into `zero_division`; a class empty in
    # only one of target/prediction has no overlap: 0.
    nonempty = (tp + fp + fn) > 0
    return torch.where(nonempty & torch.isnan(score), torch.zeros_like(score), score)


def smp_score(smp, metric: str, stats, reduction: str, zero_division: float = 1.0):
    """smp's score for one of our (average, per_image) reductions, as a NumPy array."""
    from segmentation_models_pytorch.metrics import functional

    if metric == "cosine":

        def fn(*args, reduction):
            return functional._compute_metric(
                _cosine, *args, reduction=reduction, zero_division=zero_division
            )

    else:
        scorer = smp.iou_score if metric == "jaccard" else smp.f1_score

        def fn(*args, reduction):
            return scorer(*args, reduction=reduction, zero_division=zero_division)

    if reduction == "per-class":
        summed = [s.sum(0, keepdim=True) for s in stats]
        return fn(*summed, reduction=None)[0].double().numpy()
    if reduction == "per-class-imagewise":
        return fn(*stats, reduction=None).double().mean(0).numpy()
    return fn(*stats, reduction=reduction).double().numpy()


METRICS = {"dice": Dice, "jaccard": Jaccard, "cosine": Cosine}


def stream(metric, batches, y_true_dtype=None):
    for y_true, y_pred in batches:
        metric.update_state(y_true if y_true_dtype is None else y_true.astype(y_true_dtype), y_pred)
    return np.asarray(metric.result())


def build(name, mode, **kwargs):
    if mode == "multiclass":
        kwargs.setdefault("ignore_index", IGNORE)
    return METRICS[name](mode, NUM_CLASSES[mode], **kwargs)


@pytest.mark.parity
@pytest.mark.parametrize("mode", ["binary", "multilabel", "multiclass"])
@pytest.mark.parametrize("name", ["dice", "jaccard", "cosine"])
def test_matches_smp_for_every_reduction(smp, mode, name):
    batches = make_batches(mode, seed=1)
    stats = smp_stats(smp, mode, batches)
    # The data must exercise the 0/0 convention of the imagewise reductions.
    tp, fp, fn, _ = (s.numpy() for s in stats)
    assert ((tp + fp + fn) == 0).any()
    # The accumulated counts are smp's, summed over images.
    metric = build(name, mode)
    stream(metric, batches)
    counts = (
        metric.true_positives,
        metric.false_positives,
        metric.false_negatives,
        metric.true_negatives,
    )
    for ours, theirs in zip(counts, stats):
        np.testing.assert_array_equal(np.asarray(ours), theirs.sum(0).numpy())
    for average, per_image, reduction in REDUCTIONS:
        got = stream(build(name, mode, average=average, per_image=per_image), batches)
        want = smp_score(smp, name, stats, reduction)
        assert got.shape == want.shape, reduction
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=f"{name} {reduction}")


@pytest.mark.parity
@pytest.mark.parametrize("y_true_dtype", ["uint8", "int64", "float32"])
def test_target_dtypes_and_zero_division(smp, y_true_dtype):
    for mode in ("binary", "multiclass"):
        batches = make_batches(mode, seed=2)
        stats = smp_stats(smp, mode, batches)
        for name in ("dice", "jaccard"):
            metric = build(name, mode, per_image=True, zero_division=0.0)
            got = stream(metric, batches, y_true_dtype)
            want = smp_score(smp, name, stats, "macro-imagewise", zero_division=0.0)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=f"{mode} {name}")


@pytest.mark.parity
@pytest.mark.parametrize("mode", ["binary", "multilabel"])
def test_from_logits_matches_smp_on_sigmoid(smp, mode):
    batches = make_batches(mode, seed=3, from_logits=True)
    stats = smp_stats(smp, mode, batches, from_logits=True)
    got = stream(build("jaccard", mode, from_logits=True, average="micro"), batches)
    np.testing.assert_allclose(got, smp_score(smp, "jaccard", stats, "micro"), atol=1e-6)


@pytest.mark.parity
def test_class_ids_select_columns_of_smp_stats(smp):
    batches = make_batches("multiclass", seed=4)
    stats = smp_stats(smp, "multiclass", batches)
    kept = [s[:, [3, 1]] for s in stats]
    for average, per_image, reduction in REDUCTIONS:
        metric = build("dice", "multiclass", class_ids=[3, 1], average=average, per_image=per_image)
        got = stream(metric, batches)
        np.testing.assert_allclose(
            got, smp_score(smp, "dice", kept, reduction), atol=1e-6, err_msg=reduction
        )


@pytest.mark.parity
def test_integer_image_weights_equal_repeated_images(smp):
    """sample_weight (B,) = k counts an image k times (and weights its imagewise score)."""
    batches = make_batches("multiclass", seed=5)
    weights = [np.array([2, 0, 1]), np.array([1, 3]), np.array([0, 1, 1, 2])]
    repeated = [
        (np.repeat(t, w, axis=0), np.repeat(p, w, axis=0)) for (t, p), w in zip(batches, weights)
    ]
    stats = smp_stats(smp, "multiclass", repeated)
    for average, per_image, reduction in REDUCTIONS:
        metric = build("jaccard", "multiclass", average=average, per_image=per_image)
        for (y_true, y_pred), w in zip(batches, weights):
            metric.update_state(y_true, y_pred, sample_weight=w.astype("float32"))
        want = smp_score(smp, "jaccard", stats, reduction)
        np.testing.assert_allclose(metric.result(), want, atol=1e-6, err_msg=reduction)


@pytest.mark.parity
def test_integer_pixel_weights_equal_repeated_pixels(smp):
    """sample_weight (B, H, W) = k counts a pixel k times (dataset-level reductions)."""
    rng = np.random.default_rng(6)
    batches = make_batches("multilabel", seed=6)
    weights = [rng.integers(0, 3, size=t.shape[:-1]) for t, _ in batches]
    # All pixels of all images, each repeated by its weight, as one (1, 1, M, C) image.
    pixels_true = np.concatenate(
        [np.repeat(t.reshape(-1, 3), w.ravel(), axis=0) for (t, _), w in zip(batches, weights)]
    )
    pixels_pred = np.concatenate(
        [np.repeat(p.reshape(-1, 3), w.ravel(), axis=0) for (_, p), w in zip(batches, weights)]
    )
    stats = smp_stats(smp, "multilabel", [(pixels_true[None, None], pixels_pred[None, None])])
    for average in ("micro", "macro", None):
        metric = build("dice", "multilabel", average=average)
        for (y_true, y_pred), w in zip(batches, weights):
            metric.update_state(y_true, y_pred, sample_weight=w)
        reduction = "per-class" if average is None else average
        want = smp_score(smp, "dice", stats, reduction)
        np.testing.assert_allclose(metric.result(), want, atol=1e-6, err_msg=str(average))
