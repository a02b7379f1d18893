"""Synthetic sets: random ellipses and rectangles on a noisy background.

`synthetic_shapes` gives segmentation masks, `synthetic_boxes` detection boxes (and
`write_synthetic_voc` writes them as a VOC folder). Cheap to generate, deterministic for a
seed, and hard enough that a model has to learn shape and contrast rather than a single
intensity threshold.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


def synthetic_boxes(
    num_images: int,
    size: tuple[int, int] = (128, 128),
    *,
    num_classes: int = 2,
    objects_per_image: tuple[int, int] = (1, 5),
    object_size: tuple[float, float] = (0.12, 0.35),
    seed: int = 0,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Generates RGB images of coloured rectangles and ellipses with their boxes.

    Class ``k`` is drawn in colour channel ``k % 3``, as a rectangle for even ``k`` and an
    ellipse for odd ``k``, with an intensity that overlaps the background noise, so a
    detector has to use colour and shape. Objects may overlap (later ones paint over earlier
    ones; every box stays the full extent of its object).

    Args:
        num_images: Number of images N.
        size: (H, W).
        num_classes: Object classes (ids ``0..num_classes-1``).
        objects_per_image: Inclusive range of the number of objects per image.
        object_size: Range of an object's side as a fraction of the image's shorter side.
        seed: Random seed.

    Returns:
        ``(images, boxes, classes)``: images (N, H, W, 3) float32 in 0..255; per image an
        (n, 4) float32 array of xyxy pixel boxes and an (n,) int32 array of class ids.
    """
    if num_images < 1:
        raise ValueError(f"`num_images` must be >= 1, got {num_images}.")
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1, got {num_classes}.")
    low, high = objects_per_image
    if not 0 <= low <= high:
        raise ValueError(
            f"`objects_per_image` must be (low, high) with 0 <= low <= high, got {objects_per_image}."
        )
    height, width = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    images = np.empty((num_images, height, width, 3), dtype=np.float32)
    all_boxes, all_classes = [], []
    for index in range(num_images):
        image = rng.uniform(50, 110, size=3) + rng.normal(0, 20, size=(height, width, 3))
        boxes, classes = [], []
        for _ in range(rng.integers(low, high + 1)):
            side = min(height, width) * rng.uniform(*object_size, size=2)
            h, w = min(side[0], height - 1), min(side[1], width - 1)
            y1, x1 = rng.uniform(0, height - h), rng.uniform(0, width - w)
            class_id = int(rng.integers(num_classes))
            if class_id % 2 == 0:
                inside = (yy >= y1) & (yy < y1 + h) & (xx >= x1) & (xx < x1 + w)
            else:
                cy, cx = y1 + h / 2, x1 + w / 2
                inside = ((yy + 0.5 - cy) / (h / 2)) ** 2 + ((xx + 0.5 - cx) / (w / 2)) ** 2 <= 1
            color = np.full(3, 60.0)
            color[class_id % 3] = 220.0
            image[inside] = color + rng.normal(0, 20, (int(inside.sum()), 3))
            boxes.append([x1, y1, x1 + w, y1 + h])
            classes.append(class_id)
        images[index] = np.clip(image, 0, 255)
        all_boxes.append(np.asarray(boxes, np.float32).reshape(-1, 4))
        all_classes.append(np.asarray(classes, np.int32))
    return images, all_boxes, all_classes


_COLOR_NAMES = ("red", "green", "blue")


def synthetic_box_class_names(num_classes: int) -> list[str]:
    """The names of `synthetic_boxes`' classes: ``"red rectangle"``, ``"green ellipse"``..."""
    names = []
    for k in range(num_classes):
        shape = "rectangle" if k % 2 == 0 else "ellipse"
        suffix = f" {k // 6 + 1}" if k >= 6 else ""
        names.append(f"{_COLOR_NAMES[k % 3]} {shape}{suffix}")
    return names


def write_synthetic_voc(
    root: str | os.PathLike,
    splits: dict[str, int],
    size: tuple[int, int] = (128, 128),
    *,
    num_classes: int = 2,
    seed: int = 0,
    **kwargs: Any,
) -> Path:
    """Writes a `synthetic_boxes` set as a PASCAL VOC folder (PNG images, XML boxes).

    Args:
        root: The folder to write (``JPEGImages/``, ``Annotations/``,
            ``ImageSets/Main/<split>.txt``).
        splits: Split name -> number of images, e.g. ``{"trainval": 96, "test": 24}``;
            the splits get disjoint images.
        size: (H, W) of the images.
        num_classes: Object classes, named by `synthetic_box_class_names`.
        seed: Random seed.
        **kwargs: Further `synthetic_boxes` arguments (``objects_per_image``...).

    Returns:
        `root`, ready for `kerasseg.data.load_voc`.
    """
    from xml.sax.saxutils import escape

    from PIL import Image

    root = Path(root)
    total = sum(splits.values())
    images, boxes, classes = synthetic_boxes(
        total, size, num_classes=num_classes, seed=seed, **kwargs
    )
    names = synthetic_box_class_names(num_classes)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"{index:05d}" for index in range(total)]
    for image_id, image, image_boxes, image_classes in zip(ids, images, boxes, classes):
        Image.fromarray(image.round().astype(np.uint8)).save(
            root / "JPEGImages" / f"{image_id}.png"
        )
        objects = "".join(
            f"<object><name>{escape(names[c])}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{b[0]:.1f}</xmin><ymin>{b[1]:.1f}</ymin><xmax>{b[2]:.1f}</xmax>"
            f"<ymax>{b[3]:.1f}</ymax></bndbox></object>"
            for b, c in zip(image_boxes.tolist(), image_classes.tolist())
        )
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.png</filename><size><width>{size[1]}</width>"
            f"<height>{size[0]}</height><depth>3</depth></size>{objects}</annotation>\n"
        )
    start = 0
    for split, count in splits.items():
        lines = "".join(f"{i}\n" for i in ids[start : start + count])
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text(lines)
        start += count
    return root
