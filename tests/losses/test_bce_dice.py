"""BceDice: BCE - ln(Dice) and the linear form, against NumPy and smp compositions."""

from __future__ import annotations

import pytest

from kerasseg import losses
from tests.losses import reference as ref
from tests.support import require_module

# Every test here compares against an independent reference (smp/torch live, NumPy, or
# numbers worked by hand).
pytestmark = pytest.mark.parity


CONFIGS = [("binary", 1), ("multilabel", 3), ("multiclass", 4)]


def _value(loss, y_true, y_pred) -> float:
    return float(loss(y_true, y_pred))


def _np_bce_dice(
    case, from_logits, *, per_image, log_dice, bce_weight=1.0, dice_weight=1.0, class_weights=None
):
    t, valid = case.one_hot()
    ce = ref.np_cross_entropy(case, from_logits, per_image=per_image, class_weights=class_weights)
    dice = ref.np_tversky_family(
        case.probs,
        t,
        valid,
        score="dice",
        smooth=1.0,
        per_image=per_image,
        log=log_dice,
        class_weights=class_weights,
    )
    return bce_weight * ce + dice_weight * dice


@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
@pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
@pytest.mark.parametrize("mode,num_classes", CONFIGS)
def test_log_and_linear_forms_match_numpy(mode, num_classes, from_logits, ignore):
    case = ref.make_case(mode, num_classes, seed=80 + num_classes, ignore=ignore)
    ignore_index = ref.IGNORE if ignore else None
    args = (case.y_true, case.y_pred(from_logits))
    for per_image in (False, True):
        default = losses.BceDice(
            mode, from_logits=from_logits, ignore_index=ignore_index, per_image=per_image
        )
        expected = _np_bce_dice(case, from_logits, per_image=per_image, log_dice=True)
        assert _value(default, *args) == pytest.approx(expected, rel=1e-5), per_image
        linear = losses.BceDice(
            mode,
            bce_weight=0.3,
            dice_weight=0.7,
            log_dice=False,
            from_logits=from_logits,
            ignore_index=ignore_index,
            per_image=per_image,
        )
        expected = _np_bce_dice(
            case,
            from_logits,
            per_image=per_image,
            log_dice=False,
            bce_weight=0.3,
            dice_weight=0.7,
        )
        assert _value(linear, *args) == pytest.approx(expected, rel=1e-5), per_image


def test_class_weights_apply_to_both_terms():
    case = ref.make_case("multiclass", 3, seed=85, ignore=True)
    weights = [0.2, 1.0, 2.0]
    loss = losses.BceDice("multiclass", class_weights=weights, ignore_index=ref.IGNORE)
    expected = _np_bce_dice(case, False, per_image=False, log_dice=True, class_weights=weights)
    assert _value(loss, case.y_true, case.probs) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("mode,num_classes", [("binary", 1), ("multiclass", 3)])
def test_matches_smp_composition(mode, num_classes):
    """BCE - ln Dice == smp's (Soft)BCE/CE + DiceLoss(log_loss=True, smooth=s/2)."""
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case(mode, num_classes, seed=86)
    pred_t, true_t = ref.smp_inputs(case, True)
    if mode == "binary":
        ce = smp.losses.SoftBCEWithLogitsLoss(ignore_index=None)(pred_t, true_t)
    else:
        ce = smp.losses.SoftCrossEntropyLoss(smooth_factor=0.0, ignore_index=None)(pred_t, true_t)
    for log_dice in (True, False):
        dice = smp.losses.DiceLoss(mode, smooth=0.5, log_loss=log_dice)(pred_t, true_t)
        ours = losses.BceDice(mode, from_logits=True, log_dice=log_dice)
        assert _value(ours, case.y_true, case.logits) == pytest.approx(float(ce + dice), rel=1e-5)


def test_equals_sum_of_parts():
    case = ref.make_case("binary", 1, seed=87, ignore=True)
    kwargs = {"ignore_index": ref.IGNORE, "per_image": True}
    whole_loss = losses.BceDice(bce_weight=2.0, dice_weight=0.5, **kwargs)
    whole = _value(whole_loss, case.y_true, case.probs)
    ce = _value(losses.CrossEntropy(**kwargs), case.y_true, case.probs)
    dice = _value(losses.Dice(log_loss=True, **kwargs), case.y_true, case.probs)
    assert whole == pytest.approx(2.0 * ce + 0.5 * dice, rel=1e-6)
