"""Lovász hinge / softmax: parity with smp (Berman et al.'s port) and NumPy; ignored pixels."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kerasseg import losses
from tests.losses import reference as ref
from tests.support import require_module

# Every test here compares against an independent reference (smp/torch live, NumPy, or
# numbers worked by hand).
pytestmark = pytest.mark.parity


def _value(loss, y_true, y_pred) -> float:
    return float(loss(y_true, y_pred))


def _smp_logits(case, from_logits):
    """smp's hinge always reads logits: give it the logits our loss derives from probs."""
    import torch

    pred_t, true_t = ref.smp_inputs(case, from_logits, float64=False)
    if not from_logits:
        pred_t = torch.logit(pred_t.clamp(ref.EPS, 1 - ref.EPS))
    return pred_t, true_t


@pytest.mark.parametrize("empty", [None, "image0"], ids=["masks", "empty-image"])
@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
@pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
def test_binary_hinge_matches_smp_and_numpy(from_logits, ignore, empty):
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case("binary", 1, seed=70, ignore=ignore, empty=empty)
    ignore_index = ref.IGNORE if ignore else None
    pred_t, true_t = _smp_logits(case, from_logits)
    for per_image in (False, True):
        reference = smp.losses.LovaszLoss("binary", per_image=per_image, ignore_index=ignore_index)
        ours = losses.Lovasz(
            from_logits=from_logits, per_image=per_image, ignore_index=ignore_index
        )
        got = _value(ours, case.y_true, case.y_pred(from_logits))
        assert got == pytest.approx(float(reference(pred_t, true_t)), rel=1e-5, abs=1e-5)
        expected = ref.np_lovasz(case, from_logits, per_image=per_image)
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("num_classes", [2, 4])
@pytest.mark.parametrize("ignore", [False, True], ids=["all-labelled", "ignore255"])
@pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
def test_softmax_matches_smp_and_numpy(from_logits, ignore, num_classes):
    smp = require_module("segmentation_models_pytorch")
    from segmentation_models_pytorch.losses.lovasz import _lovasz_softmax

    # the last class is absent, so "present" and "all" differ
    case = ref.make_case("multiclass", num_classes, seed=71, ignore=ignore, empty="last")
    ignore_index = ref.IGNORE if ignore else None
    pred_t, true_t = ref.smp_inputs(case, True, float64=False)
    probs_t = pred_t.softmax(dim=1)
    for per_image in (False, True):
        reference = smp.losses.LovaszLoss(
            "multiclass", per_image=per_image, ignore_index=ignore_index
        )
        ours = losses.Lovasz(
            "multiclass", from_logits=from_logits, per_image=per_image, ignore_index=ignore_index
        )
        got = _value(ours, case.y_true, case.y_pred(from_logits))
        assert got == pytest.approx(float(reference(pred_t, true_t)), rel=1e-5, abs=1e-6)
        for classes in ("present", "all", [0, num_classes - 1]):
            ours = losses.Lovasz(
                "multiclass",
                classes=classes,
                from_logits=from_logits,
                per_image=per_image,
                ignore_index=ignore_index,
            )
            got = _value(ours, case.y_true, case.y_pred(from_logits))
            expected = float(
                _lovasz_softmax(
                    probs_t, true_t, classes=classes, per_image=per_image, ignore=ignore_index
                )
            )
            assert got == pytest.approx(expected, rel=1e-5, abs=1e-6), (per_image, classes)
            expected_np = ref.np_lovasz(case, from_logits, per_image=per_image, classes=classes)
            assert got == pytest.approx(expected_np, rel=1e-5, abs=1e-6), (per_image, classes)


def test_multilabel_is_one_hinge_per_channel_unlike_smp():
    smp = require_module("segmentation_models_pytorch")
    case = ref.make_case("multilabel", 3, seed=72, ignore=True)
    pred_t, true_t = ref.smp_inputs(case, True, float64=False)
    for per_image in (False, True):
        ours = _value(
            losses.Lovasz(
                "multilabel", from_logits=True, per_image=per_image, ignore_index=ref.IGNORE
            ),
            case.y_true,
            case.logits,
        )
        per_channel = [
            float(
                smp.losses.LovaszLoss("binary", per_image=per_image, ignore_index=ref.IGNORE)(
                    pred_t[:, c : c + 1], true_t[:, c : c + 1]
                )
            )
            for c in range(3)
        ]
        assert ours == pytest.approx(np.mean(per_channel), rel=1e-5)
        assert ours == pytest.approx(ref.np_lovasz(case, True, per_image=per_image), rel=1e-5)
        # smp flattens the channels into one binary problem: a different number.
        flattened = float(
            smp.losses.LovaszLoss("multilabel", per_image=per_image, ignore_index=ref.IGNORE)(
                pred_t, true_t
            )
        )
        assert abs(ours - flattened) > 1e-3


@pytest.mark.parametrize("mode,num_classes", [("binary", 1), ("multiclass", 3), ("multilabel", 2)])
def test_ignored_pixels_change_neither_value_nor_gradient(mode, num_classes):
    """Ignored pixels get error -1: they sort after every positive error and add nothing.

    Filling the ignored pixels' predictions with anything (huge positive or negative logits,
    which would sort FIRST if their error were used) must give the same loss, the loss of
    the labelled pixels alone (NumPy, ignored pixels removed), and zero gradient there.
    """
    case = ref.make_case(mode, num_classes, seed=73, ignore=True)
    if mode == "multiclass":
        ignored = np.broadcast_to((case.y_true == ref.IGNORE)[..., None], case.logits.shape)
    else:
        ignored = case.y_true == ref.IGNORE
    assert ignored.any()
    for per_image in (False, True):
        loss = losses.Lovasz(mode, from_logits=True, ignore_index=ref.IGNORE, per_image=per_image)
        values = []
        for fill in (1e4, -1e4, 0.0):
            logits = tf.Variable(np.where(ignored, fill, case.logits).astype("float32"))
            with tf.GradientTape() as tape:
                value = loss(case.y_true, logits)
            grad = tape.gradient(value, logits).numpy()
            assert np.all(grad[ignored] == 0.0)
            assert np.any(grad[~ignored] != 0.0)
            values.append(float(value))
        expected = ref.np_lovasz(case, True, per_image=per_image)
        assert values == pytest.approx([expected] * 3, rel=1e-5)


def test_class_weights_and_perfect_prediction():
    case = ref.make_case("multiclass", 3, seed=74, ignore=True)
    t, _ = case.one_hot()
    # A perfect one-hot prediction has zero errors everywhere: loss 0.
    perfect = losses.Lovasz("multiclass", ignore_index=ref.IGNORE)
    assert _value(perfect, case.y_true, t.astype("float32")) == 0.0
    # Weighted class mean: compare against unweighted per-class losses.
    per_class = [
        _value(
            losses.Lovasz("multiclass", classes=[c], ignore_index=ref.IGNORE),
            case.y_true,
            case.probs,
        )
        for c in range(3)
    ]
    weights = [0.5, 1.0, 2.5]
    weighted = losses.Lovasz(
        "multiclass", classes="all", class_weights=weights, ignore_index=ref.IGNORE
    )
    assert _value(weighted, case.y_true, case.probs) == pytest.approx(
        np.dot(per_class, weights) / np.sum(weights), rel=1e-5
    )


def test_xla_compiled_matches_eager():
    """The vectorised sort/cumsum path compiles with XLA (jit_compile=True)."""
    case = ref.make_case("multiclass", 3, seed=75, ignore=True)
    for mode, y_true, y_pred in (
        ("multiclass", case.y_true, case.probs),
        ("binary", (case.y_true == 1).astype("float32")[..., None], case.logits[..., :1]),
    ):
        loss = losses.Lovasz(
            mode, per_image=True, ignore_index=ref.IGNORE, from_logits=mode == "binary"
        )
        compiled = tf.function(loss.__call__, jit_compile=True)
        eager = float(loss(y_true, y_pred))
        assert float(compiled(y_true, y_pred)) == pytest.approx(eager, rel=1e-6)
