"""Padding rows cost nothing: the loss is the same however many there are, and wherever."""

import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.detection.detector import _without_padding_rows, check_targets
from tests.detection.support import NUM_CLASSES, synthetic_batch

#: One small model of each family (the tiny settings of the family tests).
FAMILIES = {
    "yolov8_n": {},
    "yolov2_cspdarknet_n": {"head_channels": 16, "passthrough_channels": 8},
    "ssd_resnet18": {"extra_channels": (16, 16, 16)},
    "retinanet_resnet18": {"channels": 16, "head_convs": 1},
}


def _interleaved(targets, extra_rows, seed=0):
    """The same boxes with `extra_rows` padding rows mixed in among them (order kept)."""
    rng = np.random.default_rng(seed)
    batch, rows = targets["classes"].shape
    total = rows + extra_rows
    boxes = np.full((batch, total, 4), 7.0, "float32")  # padding with arbitrary coordinates
    classes = np.full((batch, total), -1, "int32")
    for b in range(batch):
        slots = np.sort(rng.choice(total, rows, replace=False))
        boxes[b, slots] = targets["boxes"][b]
        classes[b, slots] = targets["classes"][b]
    return {"boxes": boxes, "classes": classes}


def test_padding_rows_are_cut_and_the_boxes_keep_their_order():
    _, targets = synthetic_batch(max_boxes=5)
    padded = _interleaved(targets, extra_rows=27)
    cut = _without_padding_rows(check_targets(padded, NUM_CLASSES))
    most = int((targets["classes"] >= 0).sum(axis=1).max())
    assert tuple(cut["boxes"].shape) == (4, most, 4)
    for b in range(4):
        real = targets["classes"][b] >= 0
        n = int(real.sum())
        np.testing.assert_array_equal(
            np.asarray(cut["classes"])[b, :n], targets["classes"][b, real]
        )
        np.testing.assert_array_equal(np.asarray(cut["boxes"])[b, :n], targets["boxes"][b, real])
        np.testing.assert_array_equal(np.asarray(cut["classes"])[b, n:], -1)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_loss_does_not_depend_on_the_padding(name):
    keras.utils.set_random_seed(0)
    model = kerasseg.zoo.get(name, weights=None, num_classes=NUM_CLASSES, **FAMILIES[name])
    images, targets = synthetic_batch(size=128)
    outputs = model(images, training=False)
    reference = float(model.compute_loss(images, targets, outputs))
    padded = float(model.compute_loss(images, _interleaved(targets, 60), outputs))
    assert reference > 0
    np.testing.assert_allclose(padded, reference, rtol=1e-5)
