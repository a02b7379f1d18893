"""Dice and Jaccard: parity with smp (live) and NumPy, a hand-worked example, absent classes."""

from __future__ import annotations

import numpy as np
import pytest

from kerasseg import losses
from tests.losses import reference as ref
from tests.support import require_module

# Every test here compares against an independent reference (smp/torch live, NumPy, or
# numbers worked by hand).
pytestmark = pytest.mark.parity


CONFIGS = [("binary", 1), ("multilabel", 3), ("multiclass", 2), ("multiclass", 4)]
TOL = {"rtol": 1e-5, "atol": 1e-6}


def _value(loss, y_true, y_pred) -> float:
    return float(loss(y_true, y_pred))


@pytest.mark.parametrize("name", ["Dice", "Jaccard"])
@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
@pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
@pytest.mark.parametrize("mode,num_classes", CONFIGS)
def test_matches_smp_and_numpy(name, mode, num_classes, from_logits, ignore):
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case(mode, num_classes, seed=num_classes * 10 + ignore, ignore=ignore)
    ignore_index = ref.IGNORE if ignore else None
    pred_t, true_t = ref.smp_inputs(case, from_logits)
    t, valid = case.one_hot()
    smooth = 1.0
    # smp's Dice is (TP + s') / (TP + (FP + FN) / 2 + s'): its smooth is half of ours.
    smp_smooth = smooth / 2 if name == "Dice" else smooth
    smp_cls = smp.losses.DiceLoss if name == "Dice" else smp.losses.JaccardLoss
    for log_loss in (False, True):
        reference = smp_cls(
            mode,
            from_logits=from_logits,
            smooth=smp_smooth,
            log_loss=log_loss,
            ignore_index=ignore_index,
        )
        for per_image in (False, True):
            ours = getattr(losses, name)(
                mode,
                from_logits=from_logits,
                smooth=smooth,
                log_loss=log_loss,
                per_image=per_image,
                ignore_index=ignore_index,
            )
            got = _value(ours, case.y_true, case.y_pred(from_logits))
            if per_image:
                expected_smp = ref.smp_per_image_mean(reference, pred_t, true_t)
            else:
                expected_smp = float(reference(pred_t, true_t))
            expected_np = ref.np_tversky_family(
                case.probs,
                t,
                valid,
                score=name.lower(),
                smooth=smooth,
                per_image=per_image,
                log=log_loss,
            )
            assert got == pytest.approx(expected_smp, rel=1e-5, abs=1e-6), (log_loss, per_image)
            assert got == pytest.approx(expected_np, rel=1e-5, abs=1e-6), (log_loss, per_image)


@pytest.mark.parametrize("name", ["Dice", "Jaccard"])
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_class_weights_match_smp(name, mode):
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case(mode, 3, seed=7, ignore=True)
    weights = [0.2, 1.0, 3.0]
    pred_t, true_t = ref.smp_inputs(case, True)
    smp_cls = smp.losses.DiceLoss if name == "Dice" else smp.losses.JaccardLoss
    reference = smp_cls(
        mode,
        from_logits=True,
        smooth=0.5 if name == "Dice" else 1.0,
        ignore_index=ref.IGNORE,
        class_weights=weights,
    )
    ours = getattr(losses, name)(
        mode, from_logits=True, ignore_index=ref.IGNORE, class_weights=weights
    )
    got = _value(ours, case.y_true, case.logits)
    assert got == pytest.approx(float(reference(pred_t, true_t)), rel=1e-5, abs=1e-6)
    t, valid = case.one_hot()
    expected = ref.np_tversky_family(
        case.probs,
        t,
        valid,
        score=name.lower(),
        smooth=1.0,
        per_image=False,
        class_weights=weights,
    )
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_dice_hand_worked_example():
    # Four pixels, p = [0.9, 0.6, 0.2, 0.1], t = [1, 1, 0, 1]:
    #   TP = 0.9 + 0.6 + 0.1 = 1.6, sum(p) = 1.8, sum(t) = 3
    #   smooth 1: Dice = (2 * 1.6 + 1) / (1.8 + 3 + 1) = 4.2 / 5.8 = 0.7241379..., loss 0.2758621
    #   smooth 0: Dice = 3.2 / 4.8 = 2/3, loss 1/3; -ln(2/3) = 0.4054651
    #   Jaccard, smooth 0: 1.6 / (1.8 + 3 - 1.6) = 1.6 / 3.2 = 0.5, loss 0.5
    y_pred = np.array([0.9, 0.6, 0.2, 0.1], "float32").reshape(1, 2, 2, 1)
    y_true = np.array([1, 1, 0, 1], "float32").reshape(1, 2, 2, 1)
    assert _value(losses.Dice(smooth=1.0), y_true, y_pred) == pytest.approx(0.27586207, abs=1e-6)
    assert _value(losses.Dice(smooth=0.0), y_true, y_pred) == pytest.approx(1 / 3, abs=1e-6)
    assert _value(losses.Dice(smooth=0.0, log_loss=True), y_true, y_pred) == pytest.approx(
        0.40546511, abs=1e-6
    )
    assert _value(losses.Jaccard(smooth=0.0), y_true, y_pred) == pytest.approx(0.5, abs=1e-6)


def test_absent_class_is_penalised_unlike_smp():
    """smp zeroes the loss of classes absent from the batch's target; we do not."""
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case("multiclass", 3, seed=3, empty="last")  # class 2 never occurs
    assert not np.any(case.y_true == 2)
    pred_t, true_t = ref.smp_inputs(case, True)
    smp_value = float(smp.losses.DiceLoss("multiclass", smooth=0.5)(pred_t, true_t))
    ours_all = _value(losses.Dice("multiclass", from_logits=True), case.y_true, case.logits)
    ours_present = _value(
        losses.Dice("multiclass", from_logits=True, classes="present"), case.y_true, case.logits
    )
    t, valid = case.one_hot()
    expected_all = ref.np_tversky_family(
        case.probs, t, valid, score="dice", smooth=1.0, per_image=False
    )
    assert ours_all == pytest.approx(expected_all, rel=1e-5)
    # smp = (sum of the 2 present classes' losses) / 3; ours with classes="present" averages
    # over the 2 present classes only.
    assert ours_present == pytest.approx(smp_value * 3 / 2, rel=1e-5)
    # The absent class's loss FP / (FP + 1) with FP = sum of its probabilities (~170 pixels'
    # worth here) is close to 1 and raises the mean well above smp's.
    absent_loss = 3 * ours_all - 2 * ours_present
    fp = case.probs[..., 2].astype("float64").sum()
    assert absent_loss == pytest.approx(fp / (fp + 1.0), rel=1e-5)
    assert ours_all > smp_value + 0.2


def test_empty_binary_mask():
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case("binary", 1, seed=5, empty="all")
    pred_t, true_t = ref.smp_inputs(case, True)
    assert float(smp.losses.DiceLoss("binary", smooth=0.5)(pred_t, true_t)) == 0.0
    ours = _value(losses.Dice(from_logits=True), case.y_true, case.logits)
    fp = case.probs.astype("float64").sum()
    assert ours == pytest.approx(fp / (fp + 1.0), rel=1e-5)  # Dice = 1 / (FP + 1)
    assert _value(losses.Dice(from_logits=True, classes="present"), case.y_true, case.logits) == 0.0
    # A perfect empty prediction of an empty mask costs nothing.
    assert _value(losses.Dice(), case.y_true, np.zeros_like(case.probs)) == 0.0


def test_present_and_listed_classes_match_numpy():
    case = ref.make_case("multilabel", 4, seed=11, empty="image0", ignore=True)
    t, valid = case.one_hot()
    for classes in ("present", [0, 2]):
        for per_image in (False, True):
            loss = losses.Jaccard(
                "multilabel", classes=classes, per_image=per_image, ignore_index=ref.IGNORE
            )
            expected = ref.np_tversky_family(
                case.probs,
                t,
                valid,
                score="jaccard",
                smooth=1.0,
                per_image=per_image,
                classes=classes,
            )
            assert _value(loss, case.y_true, case.probs) == pytest.approx(expected, rel=1e-5)
