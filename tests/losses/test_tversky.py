"""Tversky: alpha on false positives, beta on false negatives; parity with smp and NumPy."""

from __future__ import annotations

import numpy as np
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


@pytest.mark.parametrize("alpha,beta", [(0.3, 0.7), (0.8, 0.2)])
@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
@pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
@pytest.mark.parametrize("mode,num_classes", CONFIGS)
def test_matches_smp_and_numpy(mode, num_classes, from_logits, ignore, alpha, beta):
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case(mode, num_classes, seed=20 + num_classes, ignore=ignore)
    ignore_index = ref.IGNORE if ignore else None
    pred_t, true_t = ref.smp_inputs(case, from_logits)
    t, valid = case.one_hot()
    reference = smp.losses.TverskyLoss(
        mode,
        from_logits=from_logits,
        smooth=1.0,
        ignore_index=ignore_index,
        alpha=alpha,
        beta=beta,
    )
    for per_image in (False, True):
        ours = losses.Tversky(
            mode,
            alpha=alpha,
            beta=beta,
            from_logits=from_logits,
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
            score="tversky",
            smooth=1.0,
            per_image=per_image,
            alpha=alpha,
            beta=beta,
        )
        assert got == pytest.approx(expected_smp, rel=1e-5, abs=1e-6), per_image
        assert got == pytest.approx(expected_np, rel=1e-5, abs=1e-6), per_image


def test_hand_worked_example():
    # Four pixels, p = [0.9, 0.6, 0.2, 0.1], t = [1, 1, 0, 1], smooth 0:
    #   TP = 0.9 + 0.6 + 0.1 = 1.6
    #   FP = sum p (1 - t) = 0.2
    #   FN = sum (1 - p) t = 0.1 + 0.4 + 0.9 = 1.4
    #   alpha 0.7, beta 0.3: T = 1.6 / (1.6 + 0.14 + 0.42) = 1.6 / 2.16 = 0.7407407, loss 0.2592593
    #   alpha 0.3, beta 0.7: T = 1.6 / (1.6 + 0.06 + 0.98) = 1.6 / 2.64 = 0.6060606, loss 0.3939394
    #   alpha 0.3, beta 0.7, gamma 2: loss 0.3939394^2 = 0.1551882
    y_pred = np.array([0.9, 0.6, 0.2, 0.1], "float32").reshape(1, 2, 2, 1)
    y_true = np.array([1, 1, 0, 1], "float32").reshape(1, 2, 2, 1)
    loss_fp = losses.Tversky(alpha=0.7, beta=0.3, smooth=0.0)
    loss_fn = losses.Tversky(alpha=0.3, beta=0.7, smooth=0.0)
    loss_focal = losses.Tversky(alpha=0.3, beta=0.7, gamma=2.0, smooth=0.0)
    assert _value(loss_fp, y_true, y_pred) == pytest.approx(0.25925926, abs=1e-6)
    assert _value(loss_fn, y_true, y_pred) == pytest.approx(0.39393939, abs=1e-6)
    assert _value(loss_focal, y_true, y_pred) == pytest.approx(0.15518825, abs=1e-6)


def test_alpha_punishes_false_positives_beta_false_negatives():
    """Pins the semantics (Keras 3.15's built-in Tversky has alpha and beta swapped)."""
    y_true = np.zeros((1, 4, 4, 1), "float32")
    y_true[0, :2, :2] = 1  # 4 positive pixels
    over = y_true.copy()
    over[0, 2, :2] = 1  # 2 extra pixels: 2 FP, 0 FN
    under = y_true.copy()
    under[0, 1, :2] = 0  # 2 missed pixels: 0 FP, 2 FN
    precise = losses.Tversky(alpha=0.9, beta=0.1, smooth=0.0)  # alpha large: hates FP
    sensitive = losses.Tversky(alpha=0.1, beta=0.9, smooth=0.0)  # beta large: hates FN
    # TP 4, FP 2: T = 4 / (4 + 0.9 * 2) = 0.689655; TP 2, FN 2: T = 2 / (2 + 0.1 * 2) = 0.909091
    assert _value(precise, y_true, over) == pytest.approx(1 - 4 / 5.8, abs=1e-6)
    assert _value(precise, y_true, under) == pytest.approx(1 - 2 / 2.2, abs=1e-6)
    assert _value(precise, y_true, over) > _value(precise, y_true, under)
    assert _value(sensitive, y_true, under) > _value(sensitive, y_true, over)


def test_special_cases_are_dice_and_jaccard():
    case = ref.make_case("multiclass", 3, seed=4, ignore=True)
    kwargs = {"from_logits": True, "ignore_index": ref.IGNORE}
    args = (case.y_true, case.logits)
    assert _value(losses.Tversky("multiclass", alpha=1, beta=1, smooth=1.0, **kwargs), *args) == (
        pytest.approx(_value(losses.Jaccard("multiclass", smooth=1.0, **kwargs), *args), rel=1e-6)
    )
    assert _value(losses.Tversky("multiclass", smooth=0.5, **kwargs), *args) == pytest.approx(
        _value(losses.Dice("multiclass", smooth=1.0, **kwargs), *args), rel=1e-6
    )


def test_gamma_binary_matches_smp():
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case("binary", 1, seed=8, ignore=True)
    pred_t, true_t = ref.smp_inputs(case, True)
    for gamma in (0.75, 2.0):
        reference = smp.losses.TverskyLoss(
            "binary", smooth=1.0, alpha=0.3, beta=0.7, gamma=gamma, ignore_index=ref.IGNORE
        )
        ours = losses.Tversky(
            alpha=0.3, beta=0.7, gamma=gamma, from_logits=True, ignore_index=ref.IGNORE
        )
        assert _value(ours, case.y_true, case.logits) == pytest.approx(
            float(reference(pred_t, true_t)), rel=1e-5
        )


def test_gamma_multiclass_is_per_class_unlike_smp():
    """kerasseg: mean_c (1 - T_c)^gamma; smp: (mean_c (1 - T_c))^gamma."""
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case("multiclass", 4, seed=9)
    pred_t, true_t = ref.smp_inputs(case, True)
    t, valid = case.one_hot()
    gamma = 2.0
    ours = _value(
        losses.Tversky("multiclass", alpha=0.3, beta=0.7, gamma=gamma, from_logits=True),
        case.y_true,
        case.logits,
    )
    expected = ref.np_tversky_family(
        case.probs,
        t,
        valid,
        score="tversky",
        smooth=1.0,
        per_image=False,
        alpha=0.3,
        beta=0.7,
        gamma=gamma,
    )
    assert ours == pytest.approx(expected, rel=1e-5)
    smp_value = float(
        smp.losses.TverskyLoss("multiclass", smooth=1.0, alpha=0.3, beta=0.7, gamma=gamma)(
            pred_t, true_t
        )
    )
    plain = ref.np_tversky_family(
        case.probs, t, valid, score="tversky", smooth=1.0, per_image=False, alpha=0.3, beta=0.7
    )
    assert smp_value == pytest.approx(plain**gamma, rel=1e-5)  # what smp computes
    assert abs(ours - smp_value) > 1e-4  # and it is not ours
