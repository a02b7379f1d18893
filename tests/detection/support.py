"""Shared by the detector tests: a tiny synthetic detection batch and the checks every
detector's outputs and losses must pass."""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasseg.detection.detector import check_targets

SIZE = 64
NUM_CLASSES = 3
DETECTION_KEYS = {"boxes", "classes", "scores", "num_detections"}


def synthetic_batch(
    seed: int = 0,
    images: int = 4,
    max_boxes: int = 4,
    size: int = SIZE,
    num_classes: int = NUM_CLASSES,
    sides: tuple[float, float] = (12.0, 30.0),
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bright rectangles (their class's colour channel) on a dark noisy background; image
    0 has no object, the others 1..max_boxes (padding after them)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 40, (images, size, size, 3)).astype("float32")
    boxes = np.zeros((images, max_boxes, 4), "float32")
    classes = np.full((images, max_boxes), -1, "int32")
    for b in range(1, images):
        for j in range(rng.integers(1, max_boxes + 1)):
            w, h = rng.uniform(*sides, 2)
            x1, y1 = rng.uniform(0, size - w), rng.uniform(0, size - h)
            boxes[b, j] = [x1, y1, x1 + w, y1 + h]
            classes[b, j] = rng.integers(num_classes)
            x[b, int(y1) : int(y1 + h), int(x1) : int(x1 + w), classes[b, j] % 3] = 230.0
    return x, {"boxes": boxes, "classes": classes}


def assert_padded_detections(
    out: dict[str, np.ndarray],
    batch: int,
    num_classes: int,
    image_size: tuple[int, int],
    max_detections: int = 100,
    score_threshold: float = 0.0,
) -> None:
    """`out` is the padded detections dict: shapes, dtypes, sorted scores above the
    threshold, classes in range, boxes inside the image, padding rows -1."""
    assert set(out) == DETECTION_KEYS
    assert out["boxes"].shape == (batch, max_detections, 4) and out["boxes"].dtype == np.float32
    assert out["classes"].shape == out["scores"].shape == (batch, max_detections)
    assert out["classes"].dtype == np.int32 and out["num_detections"].dtype == np.int32
    height, width = image_size
    for b in range(batch):
        n = out["num_detections"][b]
        assert np.all(out["classes"][b, :n] >= 0) and np.all(out["classes"][b, :n] < num_classes)
        assert np.all(out["scores"][b, :n] > score_threshold)
        assert np.all(np.diff(out["scores"][b, :n]) <= 0)
        np.testing.assert_array_equal(out["classes"][b, n:], -1)
        np.testing.assert_array_equal(out["scores"][b, n:], -1.0)
        boxes = out["boxes"][b, :n]
        assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= width)
        assert np.all(boxes[:, [1, 3]] <= height)


#: Degenerate ground truth: a zero-width box, a point and one real box (with padding), and
#: batches without any object.
DEGENERATE_TARGETS = {
    "boxes": np.array(
        [[[0, 0, 0, 0], [10, 10, 10, 30]], [[5, 5, 5, 5], [20, 20, 40, 40]]], "float32"
    ),
    "classes": np.array([[-1, 1], [2, 0]], "int32"),
}
EMPTY_TARGETS = {"boxes": np.zeros((2, 0, 4), "float32"), "classes": np.zeros((2, 0), "int32")}
BACKGROUND_TARGETS = {"boxes": np.zeros((2, 3, 4), "float32"), "classes": np.full((2, 3), -1)}


def assert_finite_losses_and_gradients(model: Any, images: np.ndarray) -> dict[str, Any]:
    """The loss and its gradients are finite for degenerate and empty targets; returns the
    loss parts on the empty batch (each family checks what they must be)."""
    import tensorflow as tf

    for y in (DEGENERATE_TARGETS, EMPTY_TARGETS, BACKGROUND_TARGETS):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(images, y, model(images, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        assert np.isfinite(float(loss))
        assert all(np.all(np.isfinite(g.numpy())) for g in grads if g is not None)
    targets = check_targets(EMPTY_TARGETS, model.num_classes)
    return {k: float(v) for k, v in model.detection_loss(images, targets, model(images)).items()}
