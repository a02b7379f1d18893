"""Focal: sigmoid focal vs smp and NumPy; multiclass softmax focal vs smp's one-vs-rest."""

from __future__ import annotations

import numpy as np
import pytest

from kerasseg import losses
from tests.losses import reference as ref
from tests.support import require_module

# Every test here compares against an independent reference (smp/torch live, NumPy, or
# numbers worked by hand).
pytestmark = pytest.mark.parity


def _value(loss, y_true, y_pred) -> float:
    return float(loss(y_true, y_pred))


@pytest.mark.parametrize("alpha,gamma", [(None, 2.0), (0.25, 2.0), (0.6, 0.5)])
@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
@pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
def test_binary_matches_smp_and_numpy(from_logits, ignore, alpha, gamma):
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case("binary", 1, seed=60, ignore=ignore)
    ignore_index = ref.IGNORE if ignore else None
    pred_t, true_t = ref.smp_inputs(case, from_logits)
    reference = smp.losses.FocalLoss(
        "binary", alpha=alpha, gamma=gamma, ignore_index=ignore_index, from_logits=from_logits
    )
    ours = losses.Focal(
        alpha=alpha, gamma=gamma, from_logits=from_logits, ignore_index=ignore_index
    )
    got = _value(ours, case.y_true, case.y_pred(from_logits))
    assert got == pytest.approx(float(reference(pred_t, true_t)), rel=1e-5, abs=1e-7)
    expected = ref.np_focal(case, from_logits, gamma=gamma, alpha=alpha, per_image=False)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
def test_multilabel_matches_smp_and_numpy(from_logits):
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case("multilabel", 3, seed=61)
    pred_t, true_t = ref.smp_inputs(case, from_logits)
    weights = [1.0, 0.5, 2.0]
    reference = smp.losses.FocalLoss(
        "multilabel", alpha=0.25, gamma=2.0, from_logits=from_logits, class_weights=weights
    )
    ours = losses.Focal(
        "multilabel", alpha=0.25, gamma=2.0, from_logits=from_logits, class_weights=weights
    )
    got = _value(ours, case.y_true, case.y_pred(from_logits))
    assert got == pytest.approx(float(reference(pred_t, true_t)), rel=1e-5)
    # smp's multilabel focal fails on ignore_index (it indexes one channel with the 4-D
    # mask), so ignored entries and per-image means are checked against NumPy only.
    case_ignore = ref.make_case("multilabel", 3, seed=62, ignore=True)
    for per_image in (False, True):
        loss = losses.Focal(
            "multilabel",
            alpha=0.25,
            from_logits=from_logits,
            ignore_index=ref.IGNORE,
            class_weights=weights,
            per_image=per_image,
        )
        expected = ref.np_focal(
            case_ignore,
            from_logits,
            gamma=2.0,
            alpha=0.25,
            per_image=per_image,
            class_weights=weights,
        )
        got = _value(loss, case_ignore.y_true, case_ignore.y_pred(from_logits))
        assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
@pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
def test_multiclass_is_softmax_focal(from_logits, ignore):
    case = ref.make_case("multiclass", 4, seed=63, ignore=ignore)
    ignore_index = ref.IGNORE if ignore else None
    weights = [1.0, 2.0, 0.5, 1.5]
    for gamma in (2.0, 0.5):
        for per_image in (False, True):
            for class_weights in (None, weights):
                loss = losses.Focal(
                    "multiclass",
                    gamma=gamma,
                    from_logits=from_logits,
                    per_image=per_image,
                    ignore_index=ignore_index,
                    class_weights=class_weights,
                )
                expected = ref.np_focal(
                    case,
                    from_logits,
                    gamma=gamma,
                    per_image=per_image,
                    class_weights=class_weights,
                )
                got = _value(loss, case.y_true, case.y_pred(from_logits))
                assert got == pytest.approx(expected, rel=1e-5), (gamma, per_image)


@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
def test_multiclass_differs_from_smp_whose_version_is_our_multilabel(ignore):
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case("multiclass", 4, seed=64, ignore=ignore)
    ignore_index = ref.IGNORE if ignore else None
    weights = [1.0, 2.0, 0.5, 1.5]
    pred_t, true_t = ref.smp_inputs(case, True)
    smp_value = float(
        smp.losses.FocalLoss(
            "multiclass", gamma=2.0, ignore_index=ignore_index, class_weights=weights
        )(pred_t, true_t)
    )
    softmax_focal = _value(
        losses.Focal(
            "multiclass", from_logits=True, ignore_index=ignore_index, class_weights=weights
        ),
        case.y_true,
        case.logits,
    )
    assert abs(softmax_focal - smp_value) > 1e-2
    # smp's multiclass focal = C one-vs-rest sigmoid focal losses = our multilabel mode on
    # one-hot targets (ignored pixels carry the ignore value in every channel).
    one_hot = np.zeros(case.y_true.shape + (4,), "float32")
    for c in range(4):
        one_hot[..., c] = case.y_true == c
    one_hot[case.y_true == ref.IGNORE] = ref.IGNORE
    one_vs_rest = _value(
        losses.Focal(
            "multilabel", from_logits=True, ignore_index=ignore_index, class_weights=weights
        ),
        one_hot,
        case.logits,
    )
    assert one_vs_rest == pytest.approx(smp_value, rel=1e-5)


def test_gamma_zero_is_cross_entropy():
    for mode, num_classes in (("binary", 1), ("multiclass", 3)):
        case = ref.make_case(mode, num_classes, seed=65, ignore=True)
        kwargs = {"from_logits": True, "ignore_index": ref.IGNORE}
        focal = _value(losses.Focal(mode, gamma=0.0, **kwargs), case.y_true, case.logits)
        ce = _value(losses.CrossEntropy(mode, **kwargs), case.y_true, case.logits)
        assert focal == pytest.approx(ce, rel=1e-6)


def test_alpha_is_rejected_for_multiclass():
    with pytest.raises(
        ValueError, match=r"for mode=.multiclass. weight the classes with `class_weights`"
    ):
        losses.Focal("multiclass", alpha=0.25)


@pytest.mark.parity
@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
def test_weighted_multilabel_focal_matches_torchvision(ignore):
    """Per entry torchvision's ``sigmoid_focal_loss`` (reduction "none"); the class-weighted
    mean over labelled entries is sum(w * loss) / sum(w)."""
    torch = require_module("torch")
    torchvision = require_module("torchvision")
    case = ref.make_case("multilabel", 3, seed=73, ignore=ignore)
    weights = [2.0, 0.5, 1.0]
    ours = losses.Focal(
        "multilabel",
        alpha=0.25,
        gamma=2.0,
        from_logits=True,
        ignore_index=ref.IGNORE if ignore else None,
        class_weights=weights,
    )
    got = _value(ours, case.y_true, case.y_pred(True))
    logits = torch.tensor(case.logits, dtype=torch.float64)
    targets = torch.tensor(np.where(case.y_true == ref.IGNORE, 0, case.y_true)).double()
    labelled = torch.tensor(case.y_true != ref.IGNORE, dtype=torch.float64)
    per_entry = torchvision.ops.sigmoid_focal_loss(
        logits, targets, alpha=0.25, gamma=2.0, reduction="none"
    )
    weight = torch.tensor(weights, dtype=torch.float64).expand_as(logits) * labelled
    expected = (per_entry * weight).sum() / weight.sum()
    assert got == pytest.approx(float(expected), rel=1e-5)
