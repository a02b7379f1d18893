"""A synthetic segmentation set: random ellipses and rectangles on a noisy background.

Cheap to generate, deterministic for a seed, and hard enough that a model has to learn
shape and contrast rather than a single intensity threshold.
"""

from __future__ import annotations

import numpy as np


def synthetic_shapes(
    num_images: int,
    size: tuple[int, int] = (128, 128),
    *,
    num_classes: int = 1,
    channels: int = 3,
    shapes_per_image: tuple[int, int] = (2, 6),
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Generates images with filled ellipses/rectangles and their masks.

    Each shape gets a random class in 1..num_classes (the background is 0) and an intensity
    that overlaps with the background's noise, so thresholding alone does not solve it.

    Args:
        num_images: Number of images N.
        size: (H, W).
        num_classes: Foreground classes; 1 gives a binary task.
        channels: Image channels (1 or 3).
        shapes_per_image: Inclusive range of the number of shapes drawn per image.
        seed: Random seed.

    Returns:
        ``(images, masks)``: images (N, H, W, channels) float32 in 0..255; masks
        (N, H, W, 1) int32 class ids in 0..num_classes (later shapes paint over earlier ones).
    """
    if num_images < 1:
        raise ValueError(f"`num_images` must be >= 1, got {num_images}.")
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3, got {channels}.")
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
    height, width = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    images = np.empty((num_images, height, width, channels), dtype=np.float32)
    masks = np.zeros((num_images, height, width, 1), dtype=np.int32)
    for index in range(num_images):
        background = rng.uniform(60, 140, size=channels)
        image = background + rng.normal(0, 25, size=(height, width, channels))
        label = np.zeros((height, width), dtype=np.int32)
        for _ in range(rng.integers(shapes_per_image[0], shapes_per_image[1] + 1)):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry = rng.uniform(0.05, 0.2) * height
            rx = rng.uniform(0.05, 0.2) * width
            if rng.random() < 0.5:
                inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            else:
                inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
            class_id = int(rng.integers(1, num_classes + 1))
            # Brighter than the background on average, by a class-dependent amount.
            image[inside] = (
                background + 40 + 30 * class_id + rng.normal(0, 25, (inside.sum(), channels))
            )
            label[inside] = class_id
        images[index] = np.clip(image, 0, 255)
        masks[index, ..., 0] = label
    return images, masks
