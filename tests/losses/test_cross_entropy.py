"""CrossEntropy: parity with torch/smp (live) and NumPy; target layouts; class weights."""

from __future__ import annotations

import numpy as np
import pytest

from kerasseg import losses
from tests.losses import reference as ref
from tests.support import require_module

# Every test here compares against an independent reference (smp/torch live, NumPy, or
# numbers worked by hand).
pytestmark = pytest.mark.parity


CONFIGS = [("binary", 1), ("multilabel", 3), ("multiclass", 2), ("multiclass", 5)]


def _value(loss, y_true, y_pred) -> float:
    return float(loss(y_true, y_pred))


@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
@pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
@pytest.mark.parametrize("mode,num_classes", CONFIGS)
def test_matches_numpy(mode, num_classes, from_logits, ignore):
    case = ref.make_case(mode, num_classes, seed=30 + num_classes, ignore=ignore)
    ignore_index = ref.IGNORE if ignore else None
    for per_image in (False, True):
        ours = losses.CrossEntropy(
            mode, from_logits=from_logits, ignore_index=ignore_index, per_image=per_image
        )
        expected = ref.np_cross_entropy(case, from_logits, per_image=per_image)
        got = _value(ours, case.y_true, case.y_pred(from_logits))
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6), per_image


@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
@pytest.mark.parametrize("mode,num_classes", CONFIGS[:2])
def test_bce_matches_torch_and_smp(mode, num_classes, ignore):
    torch = require_module("torch")
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case(mode, num_classes, seed=40 + num_classes, ignore=ignore)
    ignore_index = ref.IGNORE if ignore else None
    got = _value(
        losses.CrossEntropy(mode, from_logits=True, ignore_index=ignore_index),
        case.y_true,
        case.logits,
    )
    pred_t, true_t = ref.smp_inputs(case, True)
    valid = true_t != ref.IGNORE
    expected_torch = torch.nn.functional.binary_cross_entropy_with_logits(
        pred_t[valid], true_t[valid]
    )
    assert got == pytest.approx(float(expected_torch), rel=1e-5)
    # smp zeroes ignored entries but divides by all of them: rescale to the labelled ones.
    smp_value = float(smp.losses.SoftBCEWithLogitsLoss(ignore_index=ignore_index)(pred_t, true_t))
    assert got == pytest.approx(smp_value * valid.numel() / int(valid.sum()), rel=1e-5)


@pytest.mark.parametrize(
    "weights", [None, [0.5, 2.0, 1.0, 0.0, 3.0]], ids=["unweighted", "weighted"]
)
@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
def test_softmax_ce_matches_torch_and_smp(ignore, weights):
    torch = require_module("torch")
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case("multiclass", 5, seed=50, ignore=ignore)
    ignore_index = ref.IGNORE if ignore else None
    got = _value(
        losses.CrossEntropy(
            "multiclass", from_logits=True, ignore_index=ignore_index, class_weights=weights
        ),
        case.y_true,
        case.logits,
    )
    pred_t, true_t = ref.smp_inputs(case, True)
    expected_torch = torch.nn.functional.cross_entropy(
        pred_t,
        true_t,
        weight=None if weights is None else torch.tensor(weights).double(),
        ignore_index=ref.IGNORE if ignore else -100,
    )
    assert got == pytest.approx(float(expected_torch), rel=1e-5)
    assert got == pytest.approx(
        ref.np_cross_entropy(case, True, per_image=False, class_weights=weights), rel=1e-5
    )
    if weights is None:
        smp_value = float(
            smp.losses.SoftCrossEntropyLoss(smooth_factor=0.0, ignore_index=ignore_index)(
                pred_t, true_t
            )
        )
        n_valid = int((true_t != ref.IGNORE).sum())
        assert got == pytest.approx(smp_value * true_t.numel() / n_valid, rel=1e-5)


def test_multilabel_class_weights_match_numpy():
    case = ref.make_case("multilabel", 3, seed=52, ignore=True)
    weights = [1.0, 0.25, 4.0]
    for per_image in (False, True):
        loss = losses.CrossEntropy(
            "multilabel", ignore_index=ref.IGNORE, class_weights=weights, per_image=per_image
        )
        expected = ref.np_cross_entropy(case, False, per_image=per_image, class_weights=weights)
        assert _value(loss, case.y_true, case.probs) == pytest.approx(expected, rel=1e-5)


def test_multiclass_target_layouts_agree():
    case = ref.make_case("multiclass", 4, seed=53, ignore=True)
    labels = case.y_true
    one_hot = np.zeros(labels.shape + (4,), "float32")
    for c in range(4):
        one_hot[..., c] = labels == c  # ignored pixels: all-zero rows
    loss = losses.CrossEntropy("multiclass", from_logits=True, ignore_index=ref.IGNORE)
    expected = _value(loss, labels, case.logits)
    assert _value(loss, labels[..., None], case.logits) == pytest.approx(expected, rel=1e-6)
    assert _value(loss, one_hot, case.logits) == pytest.approx(expected, rel=1e-6)


def test_binary_without_channel_axis():
    case = ref.make_case("binary", 1, seed=54)
    loss = losses.CrossEntropy(from_logits=True)
    expected = _value(loss, case.y_true, case.logits)
    assert _value(loss, case.y_true[..., 0], case.logits) == pytest.approx(expected, rel=1e-6)
    no_channel = _value(loss, case.y_true[..., 0], case.logits[..., 0])
    assert no_channel == pytest.approx(expected, rel=1e-6)


@pytest.mark.parity
@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
def test_multilabel_class_weights_match_torch(ignore):
    """Weighted multilabel BCE is torch's ``binary_cross_entropy_with_logits(weight=W)``
    summed and divided by the sum of W, with W the channel's weight at labelled entries
    and 0 at ignored ones."""
    torch = require_module("torch")
    case = ref.make_case("multilabel", 3, seed=71, ignore=ignore)
    weights = [0.5, 2.0, 1.0]
    ours = losses.CrossEntropy(
        "multilabel",
        from_logits=True,
        ignore_index=ref.IGNORE if ignore else None,
        class_weights=weights,
    )
    got = _value(ours, case.y_true, case.y_pred(True))
    logits = torch.tensor(case.logits, dtype=torch.float64)
    labelled = torch.tensor(case.y_true != ref.IGNORE, dtype=torch.float64)
    targets = torch.tensor(np.where(case.y_true == ref.IGNORE, 0, case.y_true)).double()
    weight = torch.tensor(weights, dtype=torch.float64).expand_as(logits) * labelled
    expected = (
        torch.nn.functional.binary_cross_entropy_with_logits(
            logits, targets, weight=weight, reduction="sum"
        )
        / weight.sum()
    )
    assert got == pytest.approx(float(expected), rel=1e-5)
    unweighted = _value(
        losses.CrossEntropy("multilabel", from_logits=True, ignore_index=ours.ignore_index),
        case.y_true,
        case.y_pred(True),
    )
    assert abs(unweighted - got) > 1e-3  # the weights matter on this case
