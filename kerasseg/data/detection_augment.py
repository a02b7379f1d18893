"""Box-aware random augmentation for detection pipelines: scale jitter + crop, flips,
colour jitter and mosaic, in TensorFlow ops for `tf.data`.

A from-scratch detector trained on a few hundred images (BCCD: 364) overfits quickly; these
augmentations multiply the views of each image while keeping the boxes exact. They follow
the conventions of `kerasseg.data.detection_transforms`: ``image`` is float, 0..255 RGB,
``(H, W, C)``; ``target`` is a dict with ``"boxes"`` ``(M, 4)`` float xyxy absolute
pixels, ``"classes"`` ``(M,)`` int (``-1`` marks padding, whose boxes are zero) and any
per-box extras (``"difficult"``, ``"iscrowd"``, ``"area"``), every non-box entry having
``M`` rows.

Geometric transforms keep the padded length ``M`` (so batches stack): a box cut away by a
crop, or left with less than ``min_visibility`` of its area, becomes a padding row (class
-1, zero box, zero/False extras), and the kept boxes are moved to the front in their
original order. ``"area"`` extras are scaled with the image and by the visible fraction
(an approximation for COCO's segment areas).

Randomness is stateless: every function takes a ``seed`` (shape ``(2,)`` int tensor, a
Python int, or None for a fresh random one), so a pipeline is reproducible. Typical use::

    augment = detection_augmentation((480, 640), max_boxes=256, mosaic_probability=0.5, seed=0)
    train = augment.apply(annotations.to_dataset(shuffle=True, seed=0)).batch(8)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from kerasseg.data import detection_transforms as T
from kerasseg.detection.format import BOXES, CLASSES, PAD_CLASS

__all__ = [
    "DEFAULT_COLOUR",
    "DetectionAugmentation",
    "detection_augmentation",
    "flip_vertical",
    "mosaic",
    "mosaic_dataset",
    "random_colour_jitter",
    "random_flip_vertical",
    "random_scale_crop",
]

logger = logging.getLogger(__name__)

Target = dict[str, Any]

DEFAULT_COLOUR = {"brightness": 0.15, "contrast": 0.3, "saturation": 0.3, "hue": 0.02}
"""Default amounts of `random_colour_jitter`: moderate, and hue moves only a little since
stain colour carries class information in microscopy (BCCD's WBCs are the purple cells)."""
_INT32_MAX = 2**31 - 1


# ----------------------------------------------------------------- argument checks


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_output_size(size: Any, name: str = "output_size", minimum: int = 1) -> tuple[int, int]:
    expected = f"a (height, width) pair of ints >= {minimum}"
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError(f"`{name}` must be {expected}, got {size!r}.")
    out = []
    for value in size:
        if hasattr(value, "item") and not isinstance(value, (list, tuple)):
            value = value.item()  # NumPy scalars
        if not _is_number(value) or int(value) != value or int(value) < minimum:
            raise ValueError(f"`{name}` must be {expected}, got {size!r}.")
        out.append(int(value))
    return out[0], out[1]


def _check_unit(value: Any, name: str, low: float = 0.0, high: float = 1.0) -> float:
    if not _is_number(value) or not low <= value <= high:
        raise ValueError(f"`{name}` must be a number in [{low}, {high}], got {value!r}.")
    return float(value)


def _check_interval(
    value: Any, name: str, low: float, high: float, open_ends: bool = False
) -> tuple[float, float]:
    """A (low, high) pair with ``low <= high`` inside [low, high] (or (low, high))."""
    bounds = f"({low}, {high})" if open_ends else f"[{low}, {high}]"
    expected = f"a non-decreasing (low, high) pair of numbers in {bounds}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"`{name}` must be {expected}, got {value!r}.")
    first, second = value
    if not (_is_number(first) and _is_number(second)):
        raise ValueError(f"`{name}` must be {expected}, got {value!r}.")
    if not (math.isfinite(first) and math.isfinite(second)):
        raise ValueError(f"`{name}` must be {expected}, got {value!r}.")
    inside = (low < first and second < high) if open_ends else (low <= first and second <= high)
    if not inside:
        raise ValueError(f"`{name}` must be {expected}, got {value!r}.")
    if first > second:
        raise ValueError(f"`{name}` must be {expected}, got {value!r} (low > high).")
    return float(first), float(second)


def _check_scale_range(value: Any, name: str = "scale_range") -> tuple[float, float]:
    low, high = _check_interval(value, name, 0.0, math.inf, open_ends=True)
    return low, high


def _check_max_boxes(value: Any, name: str = "max_boxes") -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int or None, got {value!r}.")
    return value


def _check_colour(
    brightness: Any, contrast: Any, saturation: Any, hue: Any
) -> tuple[float, float, float, float]:
    return (
        _check_unit(brightness, "brightness"),
        _check_unit(contrast, "contrast"),
        _check_unit(saturation, "saturation"),
        _check_unit(hue, "hue", 0.0, 0.5),
    )


def _check_target(target: Any, function: str) -> None:
    if not isinstance(target, Mapping) or BOXES not in target or CLASSES not in target:
        got = sorted(target) if isinstance(target, Mapping) else type(target).__name__
        raise ValueError(
            f"{function}: `target` must be a dict with 'boxes' and 'classes', got {got!r}."
        )
    for key, value in target.items():
        # Every entry is per box (it follows its box through crops and drops).
        if tf.convert_to_tensor(value).shape.rank == 0:
            raise ValueError(
                f"{function}: every target entry must have one row per box, but {key!r} "
                "is a scalar; keep per-image values out of the target."
            )


def _single_image(image: Any, function: str) -> tf.Tensor:
    image = tf.cast(tf.convert_to_tensor(image), tf.float32)
    if image.shape.rank != 3:
        raise ValueError(
            f"{function} works on one (H, W, C) image, got shape {image.shape}; map it over "
            "the dataset before batching."
        )
    return image


# --------------------------------------------------------------------------- seeds


def _as_seed(seed: Any) -> tf.Tensor:
    """A stateless seed: ``(2,)`` int64 from a tensor, an int, or a fresh random one."""
    if seed is None:
        return tf.random.uniform([2], 0, _INT32_MAX, dtype=tf.int64)
    if isinstance(seed, int) and not isinstance(seed, bool):
        return tf.constant([seed, 0], tf.int64)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if not seed.shape.is_compatible_with([2]):
        raise ValueError(f"`seed` must be an int or a (2,) int tensor, got shape {seed.shape}.")
    return seed


def _split(seed: tf.Tensor, num: int) -> tf.Tensor:
    return tf.random.experimental.stateless_split(seed, num=num)


def _uniform(seed: tf.Tensor, low: float, high: float) -> tf.Tensor:
    return tf.random.stateless_uniform((), seed, minval=low, maxval=high)


def _randint(seed: tf.Tensor, low: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """An int32 uniformly in the closed range [low, high] (``low <= high``)."""
    return tf.random.stateless_uniform((), seed, minval=low, maxval=high + 1, dtype=tf.int32)


# --------------------------------------------------------------- per-box row logic


def _row_mask(mask: tf.Tensor, value: tf.Tensor) -> tf.Tensor:
    """`mask` (M,) reshaped to broadcast against a per-box `value` (M, ...)."""
    return tf.reshape(mask, [-1] + [1] * (value.shape.rank - 1))


def _pad_fill(key: str, value: tf.Tensor) -> Any:
    """The value of a padding row: -1 for classes, 0 / False for every other entry."""
    if value.dtype == tf.bool:
        return False
    return tf.constant(PAD_CLASS if key == CLASSES else 0, value.dtype)


def _compact(target: Target) -> Target:
    """Moves the valid rows (class >= 0) first, keeping their order."""
    keep = tf.convert_to_tensor(target[CLASSES]) >= 0
    order = tf.argsort(tf.cast(tf.logical_not(keep), tf.int32), stable=True)
    return {key: tf.gather(tf.convert_to_tensor(value), order) for key, value in target.items()}


def _keep_rows(
    target: Target, boxes: tf.Tensor, keep: tf.Tensor, area_factor: tf.Tensor, compact: bool = True
) -> Target:
    """New target: `boxes` on the kept rows, padding elsewhere; kept rows first if `compact`.

    Moving the kept rows to the front (stable) keeps the "padding at the end" layout of
    `detection_transforms.pad_target`, so a later truncation only removes padding.
    """
    out: Target = {}
    for key, value in target.items():
        value = boxes if key == BOXES else tf.convert_to_tensor(value)
        if key == "area":
            value = tf.cast(value, tf.float32) * area_factor
        out[key] = tf.where(_row_mask(keep, value), value, _pad_fill(key, value))
    return _compact(out) if compact else out


def _place(
    image: tf.Tensor,
    target: Target,
    scaled_hw: tf.Tensor,
    offset_xy: tf.Tensor,
    canvas_hw: tf.Tensor,
    min_visibility: float,
    pad_value: float,
    method: str,
    compact: bool = True,
) -> tuple[tf.Tensor, Target]:
    """Resizes `image` to `scaled_hw` and pastes it at `offset_xy` on a `canvas_hw` canvas.

    The offset (x, y) of the scaled image's top-left corner may be negative (the image is
    cropped) or leave a margin (filled with `pad_value`). Boxes follow, are clipped to the
    canvas, and those left with too little area become padding rows.
    """
    height, width = T._image_hw(image)
    new_h, new_w = scaled_hw[0], scaled_hw[1]
    canvas_h, canvas_w = canvas_hw[0], canvas_hw[1]
    dx, dy = offset_xy[0], offset_xy[1]
    scaled = tf.image.resize(image, tf.stack([new_h, new_w]), method=method)
    # Pad what the canvas shows beyond the image, then crop what lies beyond the canvas.
    paddings = [
        [tf.maximum(dy, 0), tf.maximum(canvas_h - new_h - dy, 0)],
        [tf.maximum(dx, 0), tf.maximum(canvas_w - new_w - dx, 0)],
        [0, 0],
    ]
    padded = tf.pad(tf.cast(scaled, tf.float32), paddings, constant_values=pad_value)
    top, left = tf.maximum(-dy, 0), tf.maximum(-dx, 0)
    canvas = padded[top : top + canvas_h, left : left + canvas_w]

    scale_x = tf.cast(new_w, tf.float32) / tf.cast(width, tf.float32)
    scale_y = tf.cast(new_h, tf.float32) / tf.cast(height, tf.float32)
    shift = tf.cast(tf.stack([dx, dy, dx, dy]), tf.float32)
    boxes = tf.cast(target[BOXES], tf.float32) * tf.stack([scale_x, scale_y] * 2) + shift
    limit = tf.cast(tf.stack([canvas_w, canvas_h] * 2), tf.float32)
    clipped = tf.clip_by_value(boxes, 0.0, limit)

    def area(b: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(b[:, 2] - b[:, 0]) * tf.nn.relu(b[:, 3] - b[:, 1])

    full, visible = area(boxes), area(clipped)
    keep = (tf.convert_to_tensor(target[CLASSES]) >= 0) & (visible > 0)
    keep &= visible >= min_visibility * full
    fraction = tf.math.divide_no_nan(visible, full)
    return canvas, _keep_rows(target, clipped, keep, scale_x * scale_y * fraction, compact)


def _scaled_size(height: tf.Tensor, width: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    size = tf.round(tf.cast(tf.stack([height, width]), tf.float32) * scale)
    return tf.maximum(tf.cast(size, tf.int32), 1)


# ---------------------------------------------------------------- scale and crop


def random_scale_crop(
    image: Any,
    target: Target,
    output_size: Sequence[int],
    scale_range: Sequence[float] = (0.5, 1.5),
    *,
    min_visibility: float = 0.25,
    pad_value: float = 0.0,
    method: str = "bilinear",
    seed: Any = None,
) -> tuple[tf.Tensor, Target]:
    """Random scale jitter, then a random crop (or padding) to a fixed `output_size`.

    The image is resized by a factor ``s`` drawn uniformly in `scale_range` (size
    ``round(H s) x round(W s)``; boxes are scaled by the exact per-axis ratios), then
    placed at a random offset on an `output_size` canvas: cropped where it is larger,
    surrounded by `pad_value` where it is smaller. Boxes are shifted with it and clipped
    to the canvas.

    Args:
        image: ``(H, W, C)`` float image, 0..255 (one image: map before batching).
        target: Target dict with ``M`` rows (see the module docstring).
        output_size: Output ``(height, width)``, positive ints.
        scale_range: ``(low, high)``, ``0 < low <= high``: the scale factor's range
            relative to the input image.
        min_visibility: In [0, 1]: a box whose clipped area is below this fraction of its
            area before clipping, or whose clipped area is 0, becomes a padding row.
        pad_value: Fill of the canvas outside the image.
        method: `tf.image.resize` method (``"nearest"`` for label-exact tests).
        seed: Stateless seed (``(2,)`` int tensor or int), or None for a random one.

    Returns:
        ``(image, target)``: float32 ``(out_h, out_w, C)`` image; target with the same
        ``M`` rows and keys, float32 boxes in ``[0, out_w] x [0, out_h]``, kept boxes first.

    Raises:
        ValueError: for an invalid argument (named in the message) or a batched image.
    """
    out_h, out_w = _check_output_size(output_size)
    low, high = _check_scale_range(scale_range)
    min_visibility = _check_unit(min_visibility, "min_visibility")
    _check_target(target, "random_scale_crop")
    image = _single_image(image, "random_scale_crop")
    seeds = _split(_as_seed(seed), 3)
    height, width = T._image_hw(image)
    scaled_hw = _scaled_size(height, width, _uniform(seeds[0], low, high))
    # Offset of the scaled image on the canvas: negative = crop, positive = margin.
    slack = tf.constant([out_h, out_w]) - scaled_hw
    dy = _randint(seeds[1], tf.minimum(slack[0], 0), tf.maximum(slack[0], 0))
    dx = _randint(seeds[2], tf.minimum(slack[1], 0), tf.maximum(slack[1], 0))
    canvas, out = _place(
        image,
        target,
        scaled_hw,
        tf.stack([dx, dy]),
        tf.constant([out_h, out_w]),
        min_visibility,
        pad_value,
        method,
    )
    return tf.ensure_shape(canvas, [out_h, out_w, image.shape[-1]]), out


# -------------------------------------------------------------------------- flips


def flip_vertical(image: Any, target: Target) -> tuple[tf.Tensor, Target]:
    """Mirrors image and boxes top-bottom: ``y -> H - y``.

    Args:
        image: ``(H, W, C)`` or ``(B, H, W, C)``.
        target: Target dict.

    Returns:
        ``(image, target)``.
    """
    return T._flip(image, target, vertical=True)


def random_flip_vertical(
    image: Any, target: Target, probability: float = 0.5, seed: Any = None
) -> tuple[tf.Tensor, Target]:
    """`flip_vertical` with the given probability, jointly for image and boxes.

    The mirror of `detection_transforms.random_flip_horizontal`; for a batch, each image
    is flipped independently.

    Args:
        image: ``(H, W, C)`` or ``(B, H, W, C)``.
        target: Target dict.
        probability: Chance of flipping, in [0, 1].
        seed: Stateless seed (``(2,)`` int tensor or int), or None for a random one.

    Returns:
        ``(image, target)``.

    Raises:
        ValueError: if `probability` is outside [0, 1].
    """
    probability = _check_unit(probability, "probability")
    image = tf.convert_to_tensor(image)
    batch_shape = tf.shape(image)[:-3]
    do_flip = tf.random.stateless_uniform(batch_shape, seed=_as_seed(seed)) < probability
    return T._flip_where(do_flip, image, target, vertical=True)


# ------------------------------------------------------------------------- colour


def _jitter_one(
    image: tf.Tensor,
    seed: tf.Tensor,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
) -> tf.Tensor:
    seeds = _split(seed, 4)
    if brightness > 0:
        image = tf.image.adjust_brightness(
            image, 255.0 * _uniform(seeds[0], -brightness, brightness)
        )
    if contrast > 0:
        image = tf.image.adjust_contrast(image, _uniform(seeds[1], 1 - contrast, 1 + contrast))
    image = tf.clip_by_value(image, 0.0, 255.0)
    if saturation > 0 or hue > 0:
        # The HSV round trip of tf.image expects 0..1 values.
        unit = image / 255.0
        if saturation > 0:
            factor = _uniform(seeds[2], 1 - saturation, 1 + saturation)
            unit = tf.image.adjust_saturation(unit, factor)
        if hue > 0:
            unit = tf.image.adjust_hue(unit, _uniform(seeds[3], -hue, hue))
        image = tf.clip_by_value(unit * 255.0, 0.0, 255.0)
    return image


def random_colour_jitter(
    image: Any,
    target: Target,
    *,
    brightness: float = DEFAULT_COLOUR["brightness"],
    contrast: float = DEFAULT_COLOUR["contrast"],
    saturation: float = DEFAULT_COLOUR["saturation"],
    hue: float = DEFAULT_COLOUR["hue"],
    seed: Any = None,
) -> tuple[tf.Tensor, Target]:
    """Random brightness, contrast, saturation and hue (in this order); boxes untouched.

    Each factor is drawn uniformly (one draw per image, also in a batch): brightness adds
    ``d * 255`` with ``d`` in ``[-brightness, brightness]``, contrast and saturation scale
    by a factor in ``[1 - x, 1 + x]`` (`tf.image.adjust_contrast` / `adjust_saturation`),
    hue shifts by a fraction of the colour wheel in ``[-hue, hue]``. 0 disables one.

    Args:
        image: ``(H, W, 3)`` or ``(B, H, W, 3)`` float RGB image, 0..255 (a 1-channel
            image works with ``saturation=hue=0``).
        target: Target dict, returned unchanged.
        brightness: In [0, 1], as a fraction of 255.
        contrast: In [0, 1].
        saturation: In [0, 1].
        hue: In [0, 0.5].
        seed: Stateless seed (``(2,)`` int tensor or int), or None for a random one.

    Returns:
        ``(image, target)``: float32 image clipped to [0, 255], same shape.

    Raises:
        ValueError: for an argument out of range, or saturation/hue on a non-RGB image.
    """
    brightness, contrast, saturation, hue = _check_colour(brightness, contrast, saturation, hue)
    image = tf.cast(tf.convert_to_tensor(image), tf.float32)
    if image.shape.rank not in (3, 4):
        raise ValueError(f"`image` must be (H, W, C) or (B, H, W, C), got shape {image.shape}.")
    if (saturation > 0 or hue > 0) and image.shape[-1] != 3:
        raise ValueError(
            f"`saturation` and `hue` need RGB images (3 channels), got shape {image.shape}; "
            "pass saturation=0, hue=0."
        )
    seed = _as_seed(seed)
    options = (brightness, contrast, saturation, hue)
    if image.shape.rank == 3:
        return _jitter_one(image, seed, *options), target
    seeds = tf.random.experimental.stateless_split(seed, num=tf.shape(image)[0])
    jittered = tf.map_fn(
        lambda pair: _jitter_one(pair[0], pair[1], *options),
        (image, seeds),
        fn_output_signature=tf.TensorSpec(image.shape[1:], tf.float32),
    )
    return jittered, target


# ------------------------------------------------------------------------- mosaic


def _fit_rows(target: Target, max_boxes: int, on_overflow: str) -> Target:
    """Pads a kept-first target to `max_boxes` rows, or truncates it, never silently."""
    rows = target[BOXES].shape[0]
    if rows is not None and rows <= max_boxes:
        return T.pad_target(target, max_boxes)
    count = tf.reduce_sum(tf.cast(tf.convert_to_tensor(target[CLASSES]) >= 0, tf.int32))
    if on_overflow == "raise":
        check = tf.debugging.assert_less_equal(
            count,
            max_boxes,
            message=(
                f"mosaic: more boxes than max_boxes={max_boxes} in one mosaic; raise "
                "`max_boxes` (None keeps every box) or pass on_overflow='warn'"
            ),
        )
    else:

        def warn(number: Any) -> Any:
            if int(number) > max_boxes:
                logger.warning(
                    "mosaic: %d boxes exceed max_boxes=%d; the last %d are dropped. Raise "
                    "`max_boxes` (None keeps every box).",
                    int(number),
                    max_boxes,
                    int(number) - max_boxes,
                )
            return number

        check = tf.py_function(warn, [count], Tout=tf.int32)
    with tf.control_dependencies([check]):
        truncated = {
            key: tf.identity(tf.convert_to_tensor(v)[:max_boxes]) for key, v in target.items()
        }
    return T.pad_target(truncated, max_boxes)


def _unstack_inputs(images: Any, targets: Any) -> tuple[list[tf.Tensor], list[Target]]:
    if isinstance(images, (list, tuple)):
        image_list = [tf.convert_to_tensor(image) for image in images]
    else:
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4:
            raise ValueError(
                f"`images` must be a (4, H, W, C) tensor or a list of 4 images, got shape "
                f"{images.shape}."
            )
        if images.shape[0] is None:  # e.g. after `.batch(4)` without drop_remainder
            images = tf.ensure_shape(images, [4, *images.shape[1:]])
        image_list = tf.unstack(images, num=images.shape[0])
    if isinstance(targets, Mapping):
        _check_target(targets, "mosaic")
        target_list = [
            {key: tf.convert_to_tensor(value)[i] for key, value in targets.items()}
            for i in range(len(image_list))
        ]
    else:
        target_list = list(targets)
    if len(image_list) != 4 or len(target_list) != 4:
        raise ValueError(
            f"mosaic needs 4 images and 4 targets, got {len(image_list)} images and "
            f"{len(target_list)} targets."
        )
    keys = sorted(target_list[0]) if isinstance(target_list[0], Mapping) else None
    for target in target_list:
        _check_target(target, "mosaic")
        if sorted(target) != keys:
            raise ValueError(
                f"mosaic: the 4 targets must have the same keys, got {keys} and {sorted(target)}."
            )
    return [_single_image(image, "mosaic") for image in image_list], target_list


def mosaic(
    images: Any,
    targets: Any,
    output_size: Sequence[int],
    max_boxes: int | None = None,
    *,
    scale_range: Sequence[float] = (0.5, 1.0),
    center_range: Sequence[float] = (0.25, 0.75),
    min_visibility: float = 0.25,
    pad_value: float = 0.0,
    method: str = "bilinear",
    on_overflow: str = "raise",
    seed: Any = None,
) -> tuple[tf.Tensor, Target]:
    """Combines 4 images and their boxes into one `output_size` image (YOLOv4's mosaic).

    A random centre ``(cx, cy)`` (fractions of the output drawn in `center_range`) splits
    the output into 4 quadrants: top-left, top-right, bottom-left, bottom-right, filled by
    images 0, 1, 2, 3. Each image is resized to fit `output_size` (aspect ratio kept)
    times a random factor in `scale_range`, and its corner nearest the centre is placed at
    the centre; what falls outside its quadrant is cut away and any uncovered part of the
    quadrant is `pad_value`. Boxes follow, clipped to their quadrant; those left with less
    than `min_visibility` of their area become padding.

    Args:
        images: ``(4, H, W, C)`` tensor (e.g. a ``.batch(4)`` element) or a list of 4
            ``(H_i, W_i, C)`` images, float 0..255.
        targets: Batched target dict (``(4, M, ...)`` entries) or a list of 4 target
            dicts with the same keys.
        output_size: Output ``(height, width)``, ints >= 2.
        max_boxes: Padded row count of the result; None: the sum of the 4 targets' rows,
            which never drops a box.
        scale_range: ``(low, high)``, ``0 < low <= high``: scale relative to the
            aspect-preserving fit of each image into `output_size`.
        center_range: ``(low, high)`` in (0, 1): range of the centre as a fraction of
            the output's height and width.
        min_visibility: In [0, 1]: minimum visible fraction of a box's area.
        pad_value: Fill of the uncovered parts.
        method: `tf.image.resize` method.
        on_overflow: When the kept boxes exceed `max_boxes`: ``"raise"`` (an
            `tf.errors.InvalidArgumentError` at run time) or ``"warn"`` (keep the first
            `max_boxes`, log a warning with the count).
        seed: Stateless seed (``(2,)`` int tensor or int), or None for a random one.

    Returns:
        ``(image, target)``: float32 ``(out_h, out_w, C)`` image, target with
        `max_boxes` rows (kept boxes first, in quadrant order), float32 boxes.

    Raises:
        ValueError: for an invalid argument (named in the message).
    """
    out_h, out_w = _check_output_size(output_size, minimum=2)
    max_boxes = _check_max_boxes(max_boxes)
    low, high = _check_scale_range(scale_range)
    center_low, center_high = _check_interval(center_range, "center_range", 0.0, 1.0, True)
    min_visibility = _check_unit(min_visibility, "min_visibility")
    if on_overflow not in ("raise", "warn"):
        raise ValueError(f"`on_overflow` must be 'raise' or 'warn', got {on_overflow!r}.")
    image_list, target_list = _unstack_inputs(images, targets)
    if max_boxes is None:
        rows = [target[BOXES].shape[0] for target in target_list]
        if any(r is None for r in rows):
            raise ValueError("mosaic: `max_boxes` is required when the box count is not static.")
        max_boxes = sum(rows)

    seeds = _split(_as_seed(seed), 6)
    cx = tf.clip_by_value(
        tf.cast(tf.floor(_uniform(seeds[0], center_low, center_high) * out_w), tf.int32),
        1,
        out_w - 1,
    )
    cy = tf.clip_by_value(
        tf.cast(tf.floor(_uniform(seeds[1], center_low, center_high) * out_h), tf.int32),
        1,
        out_h - 1,
    )
    # Quadrant (origin x, origin y, width, height), in the order of the images.
    quadrants = [
        (0, 0, cx, cy),
        (cx, 0, out_w - cx, cy),
        (0, cy, cx, out_h - cy),
        (cx, cy, out_w - cx, out_h - cy),
    ]
    tiles, parts = [], []
    for index, (image, target, (x0, y0, q_w, q_h)) in enumerate(
        zip(image_list, target_list, quadrants)
    ):
        height, width = T._image_hw(image)
        fit = tf.minimum(out_h / tf.cast(height, tf.float32), out_w / tf.cast(width, tf.float32))
        scaled_hw = _scaled_size(height, width, fit * _uniform(seeds[2 + index], low, high))
        # The image's corner nearest the centre goes to the centre.
        dx = q_w - scaled_hw[1] if index in (0, 2) else tf.constant(0)
        dy = q_h - scaled_hw[0] if index in (0, 1) else tf.constant(0)
        tile, part = _place(
            image,
            target,
            scaled_hw,
            tf.stack([dx, dy]),
            tf.stack([q_h, q_w]),
            min_visibility,
            pad_value,
            method,
            compact=False,  # the combined target is compacted once below
        )
        shift = tf.cast(tf.stack([x0, y0, x0, y0]), tf.float32)
        tiles.append(tile)
        parts.append(T._with_boxes(part, part[BOXES] + shift))
    canvas = tf.concat(
        [tf.concat([tiles[0], tiles[1]], axis=1), tf.concat([tiles[2], tiles[3]], axis=1)], axis=0
    )
    canvas = tf.ensure_shape(canvas, [out_h, out_w, image_list[0].shape[-1]])
    combined = {
        key: tf.concat([tf.convert_to_tensor(part[key]) for part in parts], axis=0)
        for key in parts[0]
    }
    return canvas, _fit_rows(_compact(combined), max_boxes, on_overflow)


def _element_spec(dataset: tf.data.Dataset, function: str) -> tuple[Any, Any]:
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], Mapping)):
        raise ValueError(
            f"{function} needs a dataset of (image, target dict) elements, got {spec}."
        )
    image_spec, target_spec = spec
    if BOXES not in target_spec or CLASSES not in target_spec:
        raise ValueError(
            f"{function}: the targets must have 'boxes' and 'classes', got {sorted(target_spec)}."
        )
    if image_spec.shape.rank != 3:
        raise ValueError(
            f"{function} works on unbatched (H, W, C) images, got shape {image_spec.shape}; "
            "apply it before `.batch`."
        )
    return image_spec, target_spec


def mosaic_dataset(
    dataset: tf.data.Dataset,
    output_size: Sequence[int],
    max_boxes: int | None = None,
    probability: float = 1.0,
    seed: int | None = None,
    *,
    scale_range: Sequence[float] = (0.5, 1.0),
    center_range: Sequence[float] = (0.25, 0.75),
    min_visibility: float = 0.25,
    pad_value: float = 0.0,
    method: str = "bilinear",
    on_overflow: str = "raise",
    buffer_size: int = 16,
    num_parallel_calls: int | None = None,
) -> tf.data.Dataset:
    """Replaces each element, with `probability`, by a `mosaic` of it and 3 others.

    The epoch keeps its length: element ``i`` is the top-left image of its mosaic, and
    the 3 partners come from 3 shuffled, repeated copies of `dataset` (each element is
    therefore read about 4 times: put a ``.cache()`` before an expensive decode). The
    other elements pass through, padded to `max_boxes` rows; they must already have
    `output_size` (e.g. after `random_scale_crop`).

    Args:
        dataset: Unbatched ``(image, target)`` elements (``(H, W, C)`` float 0..255
            images, targets with ``M`` rows).
        output_size: Output ``(height, width)``, ints >= 2.
        max_boxes: Padded row count of every output target; None: ``4 M`` (``M`` must be
            static then), which never drops a box.
        probability: Chance of a mosaic, in [0, 1].
        seed: Int seed of the draws and the partners' shuffles (reproducible; each new
            iteration draws new ones), or None.
        scale_range: See `mosaic`.
        center_range: See `mosaic`.
        min_visibility: See `mosaic`.
        pad_value: See `mosaic`.
        method: See `mosaic`.
        on_overflow: See `mosaic`; also applies to pass-through elements with more than
            `max_boxes` boxes.
        buffer_size: Shuffle buffer of each partner copy (decoded images are held there:
            keep it small for large images).
        num_parallel_calls: Parallelism of the map (default AUTOTUNE).

    Returns:
        The dataset of ``(image, target)``: float32 ``(out_h, out_w, C)`` images,
        targets with `max_boxes` rows and the input's keys.

    Raises:
        ValueError: for an invalid argument (named in the message), or pass-through
            images whose static size is not `output_size`.
    """
    out_h, out_w = _check_output_size(output_size, minimum=2)
    max_boxes = _check_max_boxes(max_boxes)
    probability = _check_unit(probability, "probability")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ValueError(f"`seed` must be an int or None, got {seed!r}.")
    if not isinstance(buffer_size, int) or isinstance(buffer_size, bool) or buffer_size < 1:
        raise ValueError(f"`buffer_size` must be a positive int, got {buffer_size!r}.")
    image_spec, target_spec = _element_spec(dataset, "mosaic_dataset")
    rows = target_spec[BOXES].shape[0]
    if max_boxes is None:
        if rows is None:
            raise ValueError(
                "mosaic_dataset: `max_boxes` is required when the targets' box count is not "
                "static (pad them with `detection_transforms.pad_target`)."
            )
        max_boxes = 4 * rows
    options = dict(
        scale_range=scale_range,
        center_range=center_range,
        min_visibility=min_visibility,
        pad_value=pad_value,
        method=method,
        on_overflow=on_overflow,
    )
    # Checks the options now rather than inside the first traced call.
    _check_scale_range(scale_range)
    _check_interval(center_range, "center_range", 0.0, 1.0, True)
    _check_unit(min_visibility, "min_visibility")
    if on_overflow not in ("raise", "warn"):
        raise ValueError(f"`on_overflow` must be 'raise' or 'warn', got {on_overflow!r}.")
    if probability < 1.0:
        static_hw = image_spec.shape[:2].as_list()
        if None not in static_hw and static_hw != [out_h, out_w]:
            raise ValueError(
                f"mosaic_dataset with probability < 1 passes images through unchanged, so they "
                f"must have output_size {(out_h, out_w)}, got {tuple(static_hw)}; apply "
                "`random_scale_crop` or `detection_transforms.resize` first."
            )

    def passthrough(image: tf.Tensor, target: Target) -> tuple[tf.Tensor, Target]:
        size_ok = tf.debugging.assert_equal(
            tf.shape(image)[:2],
            tf.constant([out_h, out_w]),
            message=f"mosaic_dataset: a pass-through image does not have output_size {(out_h, out_w)}",
        )
        with tf.control_dependencies([size_ok]):
            image = tf.ensure_shape(
                tf.cast(image, tf.float32), [out_h, out_w, image_spec.shape[-1]]
            )
        target = dict(target)
        target[BOXES] = tf.cast(target[BOXES], tf.float32)
        if "area" in target:
            target["area"] = tf.cast(target["area"], tf.float32)
        return image, _fit_rows(_compact(target), max_boxes, on_overflow)

    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
    if probability == 0.0:
        return dataset.map(
            tf.autograph.experimental.do_not_convert(passthrough), num_parallel_calls=parallel
        )

    partners = [
        dataset.repeat().shuffle(
            buffer_size, seed=None if seed is None else seed + k, reshuffle_each_iteration=True
        )
        for k in (1, 2, 3)
    ]
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(
        2, drop_remainder=True
    )

    def combine(element: Any, first: Any, second: Any, third: Any, pair: tf.Tensor) -> Any:
        draw, mosaic_seed = tf.unstack(_split(pair, 2))
        group = (element, first, second, third)

        def make() -> tuple[tf.Tensor, Target]:
            return mosaic(
                [item[0] for item in group],
                [item[1] for item in group],
                (out_h, out_w),
                max_boxes,
                seed=mosaic_seed,
                **options,
            )

        if probability == 1.0:
            return make()
        chosen = tf.random.stateless_uniform((), draw) < probability
        return tf.cond(chosen, make, lambda: passthrough(*element))

    zipped = tf.data.Dataset.zip((dataset, *partners, seeds))
    # Plain graph code (explicit tf.cond): autograph conversion would only slow tracing.
    return zipped.map(
        tf.autograph.experimental.do_not_convert(combine),
        num_parallel_calls=parallel,
        deterministic=True,
    )


# ---------------------------------------------------------------------- composite


class DetectionAugmentation:
    """Random scale + crop, flips and colour jitter for unbatched ``(image, target)``.

    Built by `detection_augmentation`. Call it as ``fn(image, target)`` (e.g.
    ``dataset.map(fn)``: seeds come from an internal `tf.random.Generator` seeded with
    `seed`, reproducible for a sequential map) or ``fn(image, target, seed)`` with a
    stateless ``(2,)`` seed; or use `apply`, which draws per-element seeds from
    `tf.data.Dataset.random` (reproducible with parallel maps) and adds the mosaic.

    Attributes:
        output_size: Output ``(height, width)``.
        seed: The int seed, or None.
        mosaic_probability: Chance of a mosaic in `apply`.
        max_boxes: Row count of the targets after a mosaic (None: 4x the input's).
    """

    def __init__(
        self,
        output_size: Sequence[int],
        *,
        scale_range: Sequence[float] = (0.5, 1.5),
        min_visibility: float = 0.25,
        flip_horizontal: bool = True,
        flip_vertical: bool = False,
        colour: bool | Mapping[str, float] = True,
        mosaic_probability: float = 0.0,
        mosaic_scale_range: Sequence[float] = (0.5, 1.0),
        mosaic_buffer_size: int = 16,
        max_boxes: int | None = None,
        pad_value: float = 0.0,
        method: str = "bilinear",
        seed: int | None = None,
    ) -> None:
        """See `detection_augmentation` for the arguments."""
        self.output_size = _check_output_size(output_size)
        self.scale_range = _check_scale_range(scale_range)
        self.min_visibility = _check_unit(min_visibility, "min_visibility")
        self.flip_horizontal = bool(flip_horizontal)
        self.flip_vertical = bool(flip_vertical)
        if isinstance(colour, Mapping):
            unknown = sorted(set(colour) - set(DEFAULT_COLOUR))
            if unknown:
                raise ValueError(
                    f"`colour` keys must be among {sorted(DEFAULT_COLOUR)}, got {unknown}."
                )
            self.colour: dict[str, float] | None = dict(DEFAULT_COLOUR, **colour)
            _check_colour(**self.colour)
        elif isinstance(colour, bool):
            self.colour = dict(DEFAULT_COLOUR) if colour else None
        else:
            raise ValueError(
                f"`colour` must be a bool or a dict of jitter amounts, got {colour!r}."
            )
        self.mosaic_probability = _check_unit(mosaic_probability, "mosaic_probability")
        self.mosaic_scale_range = _check_scale_range(mosaic_scale_range, "mosaic_scale_range")
        if (
            not isinstance(mosaic_buffer_size, int)
            or isinstance(mosaic_buffer_size, bool)
            or mosaic_buffer_size < 1
        ):
            raise ValueError(
                f"`mosaic_buffer_size` must be a positive int, got {mosaic_buffer_size!r}."
            )
        self.mosaic_buffer_size = mosaic_buffer_size
        self.max_boxes = _check_max_boxes(max_boxes)
        if self.mosaic_probability > 0:
            _check_output_size(output_size, minimum=2)
        self.pad_value = float(pad_value)
        self.method = method
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"`seed` must be an int or None, got {seed!r}.")
        self.seed = seed
        with tf.init_scope():
            self._generator = (
                tf.random.Generator.from_non_deterministic_state()
                if seed is None
                else tf.random.Generator.from_seed(seed)
            )

    @tf.autograph.experimental.do_not_convert
    def __call__(self, image: Any, target: Target, seed: Any = None) -> tuple[tf.Tensor, Target]:
        """Augments one element.

        Args:
            image: ``(H, W, C)`` float image, 0..255.
            target: Target dict with ``M`` rows.
            seed: Stateless ``(2,)`` seed; None draws one from the internal generator.

        Returns:
            ``(image, target)``: float32 ``output_size`` image, target with ``M`` rows.
        """
        if seed is None:
            seed = self._generator.make_seeds(1)[:, 0]
        seeds = _split(_as_seed(seed), 4)
        image, target = random_scale_crop(
            image,
            target,
            self.output_size,
            self.scale_range,
            min_visibility=self.min_visibility,
            pad_value=self.pad_value,
            method=self.method,
            seed=seeds[0],
        )
        if self.flip_horizontal:
            image, target = T.random_flip_horizontal(image, target, 0.5, seed=seeds[1])
        if self.flip_vertical:
            image, target = random_flip_vertical(image, target, 0.5, seed=seeds[2])
        if self.colour is not None:
            image, target = random_colour_jitter(image, target, seed=seeds[3], **self.colour)
        return image, target

    def apply(
        self, dataset: tf.data.Dataset, num_parallel_calls: int | None = None
    ) -> tf.data.Dataset:
        """Augments every element of an unbatched dataset, then mosaics some of them.

        Args:
            dataset: Unbatched ``(image, target)`` elements.
            num_parallel_calls: Parallelism of the maps (default AUTOTUNE).

        Returns:
            The augmented dataset (batch it afterwards); reproducible for an int `seed`,
            new draws each epoch.
        """
        _element_spec(dataset, "DetectionAugmentation.apply")
        parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
        seeds = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True).batch(
            2, drop_remainder=True
        )
        augmented = tf.data.Dataset.zip((dataset, seeds)).map(
            tf.autograph.experimental.do_not_convert(
                lambda element, pair: self(element[0], element[1], pair)
            ),
            num_parallel_calls=parallel,
            deterministic=True,
        )
        if self.mosaic_probability == 0:
            return augmented
        return mosaic_dataset(
            augmented,
            self.output_size,
            self.max_boxes,
            self.mosaic_probability,
            None if self.seed is None else self.seed + 7919,  # a stream apart from the above
            scale_range=self.mosaic_scale_range,
            min_visibility=self.min_visibility,
            pad_value=self.pad_value,
            method=self.method,
            buffer_size=self.mosaic_buffer_size,
            num_parallel_calls=num_parallel_calls,
        )


def detection_augmentation(
    output_size: Sequence[int],
    *,
    scale_range: Sequence[float] = (0.5, 1.5),
    flip_horizontal: bool = True,
    flip_vertical: bool = False,
    colour: bool | Mapping[str, float] = True,
    mosaic_probability: float = 0.0,
    max_boxes: int | None = None,
    seed: int | None = None,
    min_visibility: float = 0.25,
    mosaic_scale_range: Sequence[float] = (0.5, 1.0),
    mosaic_buffer_size: int = 16,
    pad_value: float = 0.0,
    method: str = "bilinear",
) -> DetectionAugmentation:
    """The standard training augmentation of a detector, as one `DetectionAugmentation`.

    Per element: `random_scale_crop` to `output_size`, random horizontal (and vertical)
    flips with probability 0.5, `random_colour_jitter`; then, in
    `DetectionAugmentation.apply`, a `mosaic_dataset` with `mosaic_probability`.

    Args:
        output_size: Output ``(height, width)``, positive ints.
        scale_range: ``(low, high)``, ``0 < low <= high``: scale jitter of
            `random_scale_crop`.
        flip_horizontal: Random left-right flips.
        flip_vertical: Random top-bottom flips (for data without an "up", as microscopy).
        colour: Colour jitter: True for the defaults (`DEFAULT_COLOUR`), False for none,
            or a dict overriding some of ``brightness``, ``contrast``, ``saturation``,
            ``hue``.
        mosaic_probability: In [0, 1]: chance of a mosaic (`apply` only).
        max_boxes: Row count of the targets after the mosaic step; None: 4x the input's
            (never drops a box). Without mosaic the targets keep their rows.
        seed: Int seed for reproducible pipelines, or None.
        min_visibility: In [0, 1]: boxes with less of their area visible become padding.
        mosaic_scale_range: Scale range of the mosaic tiles (see `mosaic`).
        mosaic_buffer_size: Shuffle buffer of the mosaic partners (see `mosaic_dataset`).
        pad_value: Fill of uncovered canvas.
        method: `tf.image.resize` method.

    Returns:
        The `DetectionAugmentation`: ``dataset.map(fn)`` or ``fn.apply(dataset)``.

    Raises:
        ValueError: for an invalid argument (named in the message).
    """
    return DetectionAugmentation(
        output_size,
        scale_range=scale_range,
        min_visibility=min_visibility,
        flip_horizontal=flip_horizontal,
        flip_vertical=flip_vertical,
        colour=colour,
        mosaic_probability=mosaic_probability,
        mosaic_scale_range=mosaic_scale_range,
        mosaic_buffer_size=mosaic_buffer_size,
        max_boxes=max_boxes,
        pad_value=pad_value,
        method=method,
        seed=seed,
    )
