"""Tiny Keras models whose output is a known set of detections, for metric/callback tests.

The input is an image index (B, 1); a frozen lookup table returns that image's packed
detections (N, 6) ``[x1, y1, x2, y2, class, score]``, whatever the weights of the rest of
the model. Swapping the table's weights changes the detections without any training.
"""

from __future__ import annotations

import keras
import numpy as np

NUM_CLASSES = 3


def ground_truth(num_images: int = 6, width: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    """Padded ground truth: 1..width boxes per image on an integer grid, class -1 padding."""
    rng = np.random.default_rng(seed)
    boxes = np.zeros((num_images, width, 4), np.float32)
    classes = np.full((num_images, width), -1, np.float32)
    for i in range(num_images):
        n = int(rng.integers(1, width + 1))
        xy = rng.integers(0, 150, (n, 2))
        wh = rng.integers(12, 90, (n, 2))
        boxes[i, :n] = np.concatenate([xy, xy + wh], axis=1)
        classes[i, :n] = rng.integers(0, NUM_CLASSES, n)
    return {"boxes": boxes, "classes": classes}


def detections(
    gt: dict[str, np.ndarray], quality: int, width: int = 8, seed: int = 1
) -> np.ndarray:
    """Packed (B, width, 6) float32 detections; quality 0 is perfect, higher is worse.

    Each level shifts the true boxes further, turns more of them into the wrong class and
    adds more confident false positives.
    """
    rng = np.random.default_rng(seed + 17 * quality)
    num_images = gt["boxes"].shape[0]
    packed = np.zeros((num_images, width, 6), np.float32)
    packed[..., 4] = -1
    for i in range(num_images):
        rows = []
        for box, cls in zip(gt["boxes"][i], gt["classes"][i]):
            if cls < 0:
                continue
            size = box[2:] - box[:2]
            shift = np.round(size * 0.08 * quality * rng.uniform(0.5, 1.0, 2))
            moved = box + np.concatenate([shift, shift])
            wrong = rng.random() < 0.12 * quality
            rows.append([*moved, (cls + 1) % NUM_CLASSES if wrong else cls, 0.9 - 0.05 * quality])
        for _ in range(quality):
            xy = rng.integers(0, 150, 2)
            rows.append([*xy, *(xy + 30), rng.integers(0, NUM_CLASSES), 0.95])
        rows = rows[:width]
        packed[i, : len(rows)] = np.asarray(rows, np.float32)
    return packed


def lookup_model(num_images: int, width: int = 8) -> keras.Model:
    """Image index (B, 1) -> {"boxes", "classes", "scores", "dummy"} from a frozen table.

    "dummy" is a trainable Dense output, so that ``fit`` has a loss to minimise.
    """
    index = keras.Input((1,), dtype="int32", name="index")
    table = keras.layers.Embedding(num_images, width * 6, trainable=False, name="lut")
    packed = keras.layers.Reshape((width, 6))(table(index))
    dummy = keras.layers.Dense(1, name="dummy")(keras.ops.cast(index, "float32"))
    outputs = {
        "boxes": packed[..., :4],
        "classes": packed[..., 4],
        "scores": packed[..., 5],
        "dummy": dummy,
    }
    return keras.Model(index, outputs)


def packed_model(num_images: int, width: int = 8) -> keras.Model:
    """Image index (B, 1) -> packed (B, width, 6) detections from a frozen table."""
    index = keras.Input((1,), dtype="int32", name="index")
    table = keras.layers.Embedding(num_images, width * 6, trainable=False, name="lut")
    return keras.Model(index, keras.layers.Reshape((width, 6))(table(index)))


def set_detections(model: keras.Model, packed: np.ndarray) -> None:
    model.get_layer("lut").set_weights([packed.reshape(packed.shape[0], -1)])


def unpack(packed: np.ndarray) -> dict[str, np.ndarray]:
    return {"boxes": packed[..., :4], "classes": packed[..., 4], "scores": packed[..., 5]}
