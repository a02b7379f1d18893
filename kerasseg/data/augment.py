"""Joint augmentation of an image and its mask: the same random crop, flips and rotation.

Written with stateless TensorFlow random ops, so a pipeline is reproducible for a seed and
runs inside `tf.data` graphs.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def joint_augment(
    image: tf.Tensor,
    mask: tf.Tensor,
    seed: tf.Tensor,
    *,
    crop_size: tuple[int, int] | None = None,
    flips: bool = True,
    rotate90: bool = True,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Applies one random crop / flip / 90-degree rotation to an image and its mask.

    Args:
        image: (H, W, C) float image.
        mask: (H, W, 1) integer mask, aligned with `image`.
        seed: int32/int64 tensor of shape (2,), the stateless random seed.
        crop_size: (h, w) of a random crop, or None for no crop; must not exceed (H, W).
        flips: Random horizontal and vertical flips.
        rotate90: Random rotation by a multiple of 90 degrees (square crops only: a
            rotation of a non-square image would change its shape).

    Returns:
        The augmented ``(image, mask)``, same dtypes; spatial size `crop_size` if given.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    mask_dtype = mask.dtype
    channels = tf.shape(image)[-1]
    stacked = tf.concat([image, tf.cast(mask, image.dtype)], axis=-1)
    if crop_size is not None:
        crop_h, crop_w = crop_size
        tf.debugging.assert_greater_equal(
            tf.shape(stacked)[:2],
            tf.constant([crop_h, crop_w]),
            message=f"crop_size {crop_size} is larger than the image",
        )
        stacked = tf.image.stateless_random_crop(
            stacked, size=tf.stack([crop_h, crop_w, tf.shape(stacked)[-1]]), seed=seeds[0]
        )
    if flips:
        stacked = tf.image.stateless_random_flip_left_right(stacked, seed=seeds[1])
        stacked = tf.image.stateless_random_flip_up_down(stacked, seed=seeds[2])
    if rotate90 and crop_size is not None and crop_size[0] == crop_size[1]:
        turns = tf.random.stateless_uniform((), seeds[3], minval=0, maxval=4, dtype=tf.int32)
        stacked = tf.image.rot90(stacked, k=turns)
    image_out = stacked[..., :channels]
    mask_out = tf.cast(tf.round(stacked[..., channels:]), mask_dtype)
    return image_out, mask_out


def seeded_map(dataset: tf.data.Dataset, fn: Any, seed: int) -> tf.data.Dataset:
    """Maps ``fn(image, mask, seed)`` over a dataset of (image, mask) with per-element seeds.

    The seeds come from `tf.data.Dataset.random`, so the same `seed` gives the same
    augmentations; each new iteration (epoch) draws new ones.
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True
    )
    return tf.data.Dataset.zip((dataset, seeds)).map(
        lambda pair, element_seed: fn(pair[0], pair[1], element_seed),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
