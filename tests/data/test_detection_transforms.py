"""Joint image + box transforms: hand-worked resize/letterbox/flip, padding, Keras adapter."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasseg.data import detection_transforms as T


def ramp_image(height, width):
    """An image whose pixels encode their coordinates (x in channel 0, y in channel 1)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([x, y, x + y], axis=-1)


def padded_target():
    return {
        "boxes": np.array([[2, 1, 5, 4], [0, 0, 10, 20], [0, 0, 0, 0]], np.float32),
        "classes": np.array([3, 0, -1], np.int32),
        "difficult": np.array([True, False, False]),
    }


def test_resize_scales_boxes():
    image, target = T.resize(ramp_image(20, 40), padded_target(), (10, 10))
    assert image.shape == (10, 10, 3) and image.dtype == tf.float32
    np.testing.assert_allclose(
        target["boxes"].numpy(), [[0.5, 0.5, 1.25, 2], [0, 0, 2.5, 10], [0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(target["classes"], [3, 0, -1])
    np.testing.assert_array_equal(target["difficult"], [True, False, False])


def test_letterbox_hand_worked_and_inverse():
    # 20 high x 40 wide into 40 x 40: scale 1, content rows 10..29, 10 rows of padding each side.
    original = ramp_image(20, 40)
    image, target = T.letterbox(original, padded_target(), (40, 40), pad_value=114.0)
    assert image.shape == (40, 40, 3)
    np.testing.assert_allclose(image.numpy()[10:30], original, atol=1e-4)
    assert np.all(image.numpy()[:10] == 114.0) and np.all(image.numpy()[30:] == 114.0)
    np.testing.assert_allclose(
        target["boxes"].numpy(), [[2, 11, 5, 14], [0, 10, 10, 30], [0, 0, 0, 0]]
    )
    # Downscale: 20x40 into 16x16 -> scale 0.4, content 8x16 at y offset 4.
    _, small = T.letterbox(original, padded_target(), (16, 16))
    np.testing.assert_allclose(
        small["boxes"].numpy()[:2], [[0.8, 4.4, 2.0, 5.6], [0, 4, 4, 12]], atol=1e-5
    )
    back = T.unletterbox_boxes(small["boxes"][:2], (20, 40), (16, 16))
    np.testing.assert_allclose(back.numpy(), padded_target()["boxes"][:2], atol=1e-5)
    # Top-left placement.
    _, corner = T.letterbox(original, padded_target(), (40, 40), center=False)
    np.testing.assert_allclose(corner["boxes"].numpy()[0], [2, 1, 5, 4])


def test_flip_hand_worked_and_involution():
    original = ramp_image(6, 10)
    image, target = T.flip_horizontal(original, padded_target())
    np.testing.assert_allclose(
        target["boxes"].numpy(), [[5, 1, 8, 4], [0, 0, 10, 20], [0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(
        image.numpy()[:, :, 0], 9 - original[:, :, 0]
    )  # x -> W - 1 - x per pixel
    twice_image, twice = T.flip_horizontal(image, target)
    np.testing.assert_allclose(twice["boxes"].numpy(), padded_target()["boxes"])
    np.testing.assert_allclose(twice_image.numpy(), original)


def test_random_flip_probabilities_and_batch_independence():
    batch = np.stack([ramp_image(6, 10)] * 16)
    boxes = np.tile(np.array([[[2, 1, 5, 4]]], np.float32), (16, 1, 1))
    target = {"boxes": boxes, "classes": np.zeros((16, 1), np.int32)}
    never, kept = T.random_flip_horizontal(batch, target, probability=0.0)
    np.testing.assert_allclose(kept["boxes"].numpy(), boxes)
    np.testing.assert_allclose(never.numpy(), batch)
    images, flipped = T.random_flip_horizontal(
        batch, target, probability=0.5, seed=tf.constant([1, 2])
    )
    was_flipped = flipped["boxes"].numpy()[:, 0, 0] == 5
    assert 0 < was_flipped.sum() < 16  # independent per image (seeded: not all equal)
    for i in range(16):
        expected = batch[i, :, ::-1] if was_flipped[i] else batch[i]
        np.testing.assert_allclose(images.numpy()[i], expected)
        assert flipped["boxes"].numpy()[i, 0].tolist() in ([5, 1, 8, 4], [2, 1, 5, 4])
    again, _ = T.random_flip_horizontal(batch, target, probability=0.5, seed=tf.constant([1, 2]))
    np.testing.assert_allclose(again.numpy(), images.numpy())


def test_pad_target_pads_and_refuses_to_truncate():
    target = {k: v[:2] for k, v in padded_target().items()}
    padded = T.pad_target(target, 4)
    np.testing.assert_array_equal(padded["classes"], [3, 0, -1, -1])
    np.testing.assert_array_equal(padded["difficult"], [True, False, False, False])
    np.testing.assert_allclose(padded["boxes"].numpy()[2:], 0)
    assert padded["boxes"].shape == (4, 4)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"More boxes than max_boxes=1 in one image"
    ):
        T.pad_target(target, 1)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match=r"`size` must be a \(height, width\) pair"):
        T.resize(ramp_image(4, 4), padded_target(), (0, 4))
    with pytest.raises(ValueError, match="`probability` must be in"):
        T.random_flip_horizontal(ramp_image(4, 4), padded_target(), probability=2)


def test_keras3_random_flip_through_the_adapter():
    batch = np.stack([ramp_image(6, 10)] * 8)
    target = {
        "boxes": np.tile(np.array([[[2, 1, 5, 4], [0, 0, 0, 0]]], np.float32), (8, 1, 1)),
        "classes": np.tile(np.array([[1, -1]], np.int32), (8, 1)),
    }
    layer = keras.layers.RandomFlip("horizontal", bounding_box_format="xyxy", seed=3)
    data = T.to_keras_dict(tf.constant(batch), {k: tf.constant(v) for k, v in target.items()})
    assert set(data["bounding_boxes"]) == {"boxes", "labels"}
    images, out = T.from_keras_dict(layer(data, training=True))
    np.testing.assert_array_equal(out["classes"], target["classes"])
    assert out["classes"].dtype == tf.int32
    for i in range(8):
        flipped = np.allclose(images[i].numpy(), batch[i, :, ::-1])
        assert flipped or np.allclose(images[i].numpy(), batch[i])
        expected = [5, 1, 8, 4] if flipped else [2, 1, 5, 4]
        np.testing.assert_allclose(out["boxes"].numpy()[i, 0], expected)


def test_from_keras_dict_densifies_ragged_keras_cv_output():
    ragged = {
        "images": tf.zeros((2, 4, 4, 3)),
        "bounding_boxes": {
            "boxes": tf.ragged.constant([[[1.0, 1, 2, 2]], []], ragged_rank=1),
            "classes": tf.ragged.constant([[2.0], []]),
        },
    }
    _, target = T.from_keras_dict(ragged, max_boxes=3, labels_key="classes")
    np.testing.assert_array_equal(target["classes"], [[2, -1, -1], [-1, -1, -1]])
    np.testing.assert_allclose(
        target["boxes"].numpy()[0], [[1, 1, 2, 2], [0, 0, 0, 0], [0, 0, 0, 0]]
    )
    with pytest.raises(
        ValueError, match=r"`max_boxes` is required to densify ragged bounding boxes"
    ):
        T.from_keras_dict(ragged, labels_key="classes")
