"""Joint image + box transforms for detection input pipelines (TensorFlow ops).

Every transform takes and returns ``(image, target)``: ``image`` is ``(H, W, C)`` or a
batch ``(B, H, W, C)``, float (0..255 for kerasseg models); ``target`` is a dict with
``"boxes"`` (``(N, 4)`` / ``(B, N, 4)`` xyxy absolute pixels) and ``"classes"`` (``(N,)`` /
``(B, N)`` int, ``-1`` marks padding) plus any per-box extras (``"difficult"``,
``"iscrowd"``) that are passed through. Padding rows (class ``-1``) keep zero boxes.

They run eagerly or inside `tf.data.Dataset.map`. `pad_target` pads a target to a fixed
number of boxes (the dense format of `kerasseg.detection.format`), and `to_keras_dict` /
`from_keras_dict` adapt between that format and the ``{"images", "bounding_boxes":
{"boxes", "labels"}}`` dict of Keras' preprocessing layers (or keras-cv's, with
``labels_key="classes"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from kerasseg.detection.format import CLASSES, PAD_CLASS

__all__ = [
    "flip_horizontal",
    "from_keras_dict",
    "letterbox",
    "letterbox_params",
    "pad_target",
    "random_flip_horizontal",
    "resize",
    "to_keras_dict",
    "unletterbox_boxes",
]

Target = dict[str, Any]


def _image_hw(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    shape = tf.shape(image)
    return shape[-3], shape[-2]


def _valid_rows(target: Target) -> tf.Tensor | None:
    classes = target.get("classes")
    return None if classes is None else tf.convert_to_tensor(classes) >= 0


def _with_boxes(target: Target, boxes: tf.Tensor) -> Target:
    """A copy of `target` with new boxes; padding rows (class -1) stay all-zero."""
    valid = _valid_rows(target)
    if valid is not None:
        boxes = tf.where(valid[..., None], boxes, tf.zeros_like(boxes))
    out = dict(target)
    out["boxes"] = boxes
    return out


def _check_size(size: Sequence[int], name: str = "size") -> tuple[int, int]:
    if len(size) != 2 or any(int(s) <= 0 for s in size):
        raise ValueError(f"`{name}` must be a (height, width) pair of positive ints, got {size!r}.")
    return int(size[0]), int(size[1])


def resize(
    image: Any, target: Target, size: Sequence[int], method: str = "bilinear"
) -> tuple[tf.Tensor, Target]:
    """Resizes to `size` (aspect ratio not kept) and scales the boxes with it.

    Args:
        image: ``(H, W, C)`` or ``(B, H, W, C)``.
        target: Target dict (see the module docstring).
        size: Output ``(height, width)``.
        method: `tf.image.resize` method.

    Returns:
        ``(image, target)``: float32 image of the new size, boxes multiplied by
        ``(new_w / W, new_h / H)``.
    """
    out_h, out_w = _check_size(size)
    image = tf.convert_to_tensor(image)
    height, width = _image_hw(image)
    resized = tf.image.resize(tf.cast(image, tf.float32), (out_h, out_w), method=method)
    scale = tf.stack([out_w / tf.cast(width, tf.float32), out_h / tf.cast(height, tf.float32)] * 2)
    boxes = tf.cast(target["boxes"], tf.float32) * tf.cast(scale, tf.float32)
    return resized, _with_boxes(target, boxes)


def letterbox_params(
    image_size: Sequence[Any], size: Sequence[int], center: bool = True
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Scale and padding of a letterbox resize from `image_size` to `size`.

    The image is scaled by ``s = min(out_h / h, out_w / w)`` to ``(round(h s), round(w
    s))`` and padded to `size` (centred, or at the bottom/right).

    Args:
        image_size: Original ``(height, width)`` (ints or scalar tensors).
        size: Output ``(height, width)``.
        center: Pad evenly on both sides (the extra pixel, if any, bottom/right) rather
            than only at the bottom/right.

    Returns:
        ``(scaled_size, scale_xy, offset_xy)``: the int32 ``(h', w')`` of the resized
        content, float32 per-axis scales ``(w'/w, h'/h)`` and the float32 ``(x, y)``
        offset of its top-left corner.
    """
    out_h, out_w = _check_size(size)
    height = tf.cast(image_size[0], tf.float32)
    width = tf.cast(image_size[1], tf.float32)
    scale = tf.minimum(out_h / height, out_w / width)
    new_h = tf.minimum(tf.cast(tf.round(height * scale), tf.int32), out_h)
    new_w = tf.minimum(tf.cast(tf.round(width * scale), tf.int32), out_w)
    if center:
        offset = tf.stack([(out_w - new_w) // 2, (out_h - new_h) // 2])
    else:
        offset = tf.zeros((2,), tf.int32)
    scale_xy = tf.stack([tf.cast(new_w, tf.float32) / width, tf.cast(new_h, tf.float32) / height])
    return tf.stack([new_h, new_w]), scale_xy, tf.cast(offset, tf.float32)


def letterbox(
    image: Any,
    target: Target,
    size: Sequence[int],
    pad_value: float = 0.0,
    center: bool = True,
    method: str = "bilinear",
) -> tuple[tf.Tensor, Target]:
    """Resizes keeping the aspect ratio and pads to `size` (YOLO/SSD "letterbox").

    Args:
        image: ``(H, W, C)`` or ``(B, H, W, C)`` (one size for the whole batch).
        target: Target dict.
        size: Output ``(height, width)``.
        pad_value: Fill of the padding (e.g. 114 as in YOLOv5, 0 by default).
        center: Centre the content (see `letterbox_params`).
        method: `tf.image.resize` method.

    Returns:
        ``(image, target)`` with the boxes scaled and shifted like the content. Map
        predictions back to the original image with `unletterbox_boxes`.
    """
    out_h, out_w = _check_size(size)
    image = tf.cast(tf.convert_to_tensor(image), tf.float32)
    height, width = _image_hw(image)
    scaled, scale_xy, offset = letterbox_params((height, width), size, center)
    content = tf.image.resize(image, scaled, method=method)
    top, left = tf.cast(offset[1], tf.int32), tf.cast(offset[0], tf.int32)
    bottom, right = out_h - scaled[0] - top, out_w - scaled[1] - left
    spatial = [[top, bottom], [left, right], [0, 0]]
    paddings = ([[0, 0]] if image.shape.rank == 4 else []) + spatial
    padded = tf.pad(content, paddings, constant_values=pad_value)
    padded = tf.ensure_shape(padded, image.shape[:-3].concatenate([out_h, out_w, image.shape[-1]]))
    boxes = tf.cast(target["boxes"], tf.float32) * tf.tile(scale_xy, [2]) + tf.tile(offset, [2])
    return padded, _with_boxes(target, boxes)


def unletterbox_boxes(
    boxes: Any, image_size: Sequence[Any], size: Sequence[int], center: bool = True
) -> tf.Tensor:
    """Maps xyxy boxes from letterboxed coordinates back to the original image.

    Args:
        boxes: ``(..., 4)`` boxes on the ``size`` letterboxed image (e.g. predictions).
        image_size: The original ``(height, width)``.
        size: The letterbox output ``(height, width)``.
        center: As given to `letterbox`.

    Returns:
        ``(..., 4)`` boxes in original pixels (not clipped).
    """
    _, scale_xy, offset = letterbox_params(image_size, size, center)
    return (tf.cast(boxes, tf.float32) - tf.tile(offset, [2])) / tf.tile(scale_xy, [2])


def _flip(image: Any, target: Target, *, vertical: bool) -> tuple[tf.Tensor, Target]:
    """Mirrors image and boxes left-right (``x -> W - x``), or top-bottom (``y -> H - y``).

    Args:
        image: ``(H, W, C)`` or ``(B, H, W, C)``.
        target: Target dict.
        vertical: Mirror top-bottom instead of left-right.

    Returns:
        ``(image, target)``; the target's boxes float32.
    """
    image = tf.convert_to_tensor(image)
    height, width = _image_hw(image)
    boxes = tf.cast(target["boxes"], tf.float32)
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    if vertical:
        height = tf.cast(height, tf.float32)
        flipped, image_axis = [x1, height - y2, x2, height - y1], -3
    else:
        width = tf.cast(width, tf.float32)
        flipped, image_axis = [width - x2, y1, width - x1, y2], -2
    return tf.reverse(image, axis=[image_axis]), _with_boxes(target, tf.stack(flipped, axis=-1))


def _flip_where(
    do_flip: tf.Tensor, image: tf.Tensor, target: Target, *, vertical: bool
) -> tuple[tf.Tensor, Target]:
    """`_flip` applied only to the images where `do_flip` is true.

    Args:
        do_flip: Boolean tensor of `image`'s batch shape (``()`` for one image).
        image: ``(H, W, C)`` or ``(B, H, W, C)`` tensor.
        target: Target dict.
        vertical: As for `_flip`.

    Returns:
        ``(image, target)``; the target's boxes float32.
    """
    batch_shape = tf.shape(do_flip)
    flipped_image, flipped_target = _flip(image, target, vertical=vertical)
    image_mask = tf.reshape(do_flip, tf.concat([batch_shape, [1, 1, 1]], 0))
    box_mask = tf.reshape(do_flip, tf.concat([batch_shape, [1, 1]], 0))
    out = dict(target)
    out["boxes"] = tf.where(box_mask, flipped_target["boxes"], tf.cast(target["boxes"], tf.float32))
    return tf.where(image_mask, flipped_image, image), out


def flip_horizontal(image: Any, target: Target) -> tuple[tf.Tensor, Target]:
    """Mirrors image and boxes left-right: ``x -> W - x``.

    Args:
        image: ``(H, W, C)`` or ``(B, H, W, C)``.
        target: Target dict.

    Returns:
        ``(image, target)``.
    """
    return _flip(image, target, vertical=False)


def random_flip_horizontal(
    image: Any, target: Target, probability: float = 0.5, seed: Any = None
) -> tuple[tf.Tensor, Target]:
    """`flip_horizontal` with the given probability, jointly for image and boxes.

    For a batch, each image is flipped independently.

    Args:
        image: ``(H, W, C)`` or ``(B, H, W, C)``.
        target: Target dict.
        probability: Chance of flipping, in 0..1.
        seed: A stateless seed (shape ``(2,)`` int tensor) for reproducible pipelines,
            or None for TensorFlow's global random state.

    Returns:
        ``(image, target)``.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"`probability` must be in [0, 1], got {probability!r}.")
    image = tf.convert_to_tensor(image)
    batch_shape = tf.shape(image)[:-3]
    if seed is None:
        draw = tf.random.uniform(batch_shape)
    else:
        draw = tf.random.stateless_uniform(batch_shape, seed=seed)
    return _flip_where(draw < probability, image, target, vertical=False)


def pad_target(target: Target, max_boxes: int) -> Target:
    """Pads (never truncates) a single image's target to `max_boxes` rows.

    Boxes are padded with zeros, ``"classes"`` with -1 and every other per-box key with
    zeros (``False`` for booleans).

    Args:
        target: ``{"boxes": (N, 4), "classes": (N,), ...}`` with ``N <= max_boxes``.
        max_boxes: The padded length.

    Returns:
        The padded dict, static first dimension `max_boxes`.

    Raises:
        tf.errors.InvalidArgumentError: at run time if ``N > max_boxes`` (the loaders
            check this eagerly, with file names, before building the pipeline).
    """
    count = tf.shape(target["boxes"])[0]
    assert_fits = tf.debugging.assert_less_equal(
        count, max_boxes, message=f"More boxes than max_boxes={max_boxes} in one image"
    )
    out = {}
    with tf.control_dependencies([assert_fits]):
        extra = max_boxes - count
    for key, value in target.items():
        value = tf.convert_to_tensor(value)
        fill = PAD_CLASS if key == CLASSES else 0
        fill = tf.cast(fill, value.dtype) if value.dtype != tf.bool else False
        paddings = tf.concat([[[0, extra]], tf.zeros((value.shape.rank - 1, 2), tf.int32)], 0)
        padded = tf.pad(value, paddings, constant_values=fill)
        out[key] = tf.ensure_shape(padded, [max_boxes] + value.shape[1:].as_list())
    return out


def to_keras_dict(images: Any, target: Target, labels_key: str = "labels") -> dict[str, Any]:
    """Our ``(images, target)`` as Keras' preprocessing-layer input dict.

    ``{"images": images, "bounding_boxes": {"boxes": ..., labels_key: classes}}``, to be
    used with ``bounding_box_format="xyxy"``. Use ``labels_key="classes"`` for keras-cv.
    Extra per-box keys are carried in ``"bounding_boxes"`` unchanged.
    """
    boxes = {key: value for key, value in target.items() if key != "classes"}
    boxes[labels_key] = target["classes"]
    return {"images": images, "bounding_boxes": boxes}


def from_keras_dict(
    data: dict[str, Any], max_boxes: int | None = None, labels_key: str = "labels"
) -> tuple[Any, Target]:
    """Inverse of `to_keras_dict`; densifies ragged outputs (keras-cv) to `max_boxes`.

    Labels come back as int32 ``"classes"``; ragged boxes/labels (keras-cv layers drop
    the -1 rows) are padded back with zeros / -1 to `max_boxes` (required then).
    """
    boxes = dict(data["bounding_boxes"])
    classes = boxes.pop(labels_key)
    target = {"classes": classes, **boxes}
    if any(isinstance(value, tf.RaggedTensor) for value in target.values()):
        if max_boxes is None:
            raise ValueError("`max_boxes` is required to densify ragged bounding boxes.")
        dense = {}
        for key, value in target.items():
            fill = PAD_CLASS if key == CLASSES else 0
            if isinstance(value, tf.RaggedTensor):
                shape = [None, max_boxes] + value.shape[2:].as_list()
                value = value.to_tensor(default_value=tf.cast(fill, value.dtype), shape=shape)
            dense[key] = value
        target = dense
    target["classes"] = tf.cast(target["classes"], tf.int32)
    return data["images"], target
