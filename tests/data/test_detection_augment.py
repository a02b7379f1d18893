"""Box-aware augmentation: boxes checked against the pixels they were painted as.

Each box ``i`` is painted as an indicator channel ``i`` of the image, so after a geometric
transform its expected box is the tight extent of that channel in the output, whatever
the implementation does. Nearest resizing with integer (or halving) factors moves pixels
without interpolation, so those checks are exact; other factors round by up to 1 px.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf

from kerasseg.data import detection_augment as A
from kerasseg.data import detection_transforms as T
from tests.support import require_shared_data


def painted(height, width, boxes):
    """(H, W, N) image whose channel i is 1 inside integer box i (xyxy, end-exclusive)."""
    image = np.zeros((height, width, len(boxes)), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, int)):
        image[y1:y2, x1:x2, i] = 1.0
    return image


def extent(channel):
    """Tight xyxy box (end-exclusive) of the non-zero pixels of a (H, W) array, or None."""
    ys, xs = np.nonzero(channel > 0.5)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def make_target(boxes, pad=2):
    """Target with `pad` padding rows; extras: "ident" (the row's channel) and "difficult"."""
    boxes = np.asarray(boxes, np.float32)
    n = len(boxes)
    return {
        "boxes": np.concatenate([boxes, np.zeros((pad, 4), np.float32)]),
        "classes": np.array([i % 3 for i in range(n)] + [-1] * pad, np.int32),
        "ident": np.array(list(range(n)) + [0] * pad, np.int32),
        "difficult": np.array([i % 2 == 1 for i in range(n)] + [False] * pad),
    }


BOXES = [[2, 2, 10, 8], [12, 4, 20, 16], [0, 10, 6, 16], [8, 8, 14, 14], [18, 0, 20, 2]]


def check_against_paint(
    image, target, source_target, min_visibility, full_areas, atol=0.0, rows=None
):
    """Every kept box equals its channel's extent; the drop decisions follow visibility.

    `full_areas[i]`: box i's area after scaling (before clipping), in output pixels;
    `rows`: the expected padded length (default: the source's).
    """
    image = np.asarray(image)
    boxes, classes = np.asarray(target["boxes"]), np.asarray(target["classes"])
    ident, difficult = np.asarray(target["ident"]), np.asarray(target["difficult"])
    rows = len(source_target["classes"]) if rows is None else rows
    assert boxes.shape == (rows, 4) and classes.shape == (rows,)
    valid = classes >= 0
    # Kept rows first, padding rows all zero.
    assert not np.any(valid[np.argmin(valid) :]) or valid.all()
    assert np.all(boxes[~valid] == 0) and np.all(ident[~valid] == 0) and not difficult[~valid].any()
    kept = set()
    for row in np.nonzero(valid)[0]:
        i = int(ident[row])
        kept.add(i)
        assert classes[row] == source_target["classes"][i]  # extras follow their boxes
        assert difficult[row] == source_target["difficult"][i]
        expected = extent(image[..., i])
        assert expected is not None, f"box {i} kept but not visible"
        np.testing.assert_allclose(boxes[row], expected, atol=atol, err_msg=f"box {i}")
    assert list(ident[valid]) == sorted(ident[valid])  # original order kept
    for i, area in enumerate(full_areas):
        visible = float((image[..., i] > 0.5).sum())
        if visible == 0:
            assert i not in kept, f"box {i} cut away but kept"
        elif atol == 0:
            assert (i in kept) == (visible >= min_visibility * area), (i, visible, area)
        elif visible >= (min_visibility + 0.2) * area:
            assert i in kept, f"box {i} well visible but dropped"


# ------------------------------------------------------------- random_scale_crop


@pytest.mark.parametrize("scale", [2.0, 0.5, 1.0])
def test_scale_crop_is_exact_for_integer_and_half_scales(scale):
    source = make_target(BOXES)
    image = painted(16, 20, BOXES)
    full = [scale * scale * (b[2] - b[0]) * (b[3] - b[1]) for b in BOXES]
    for seed in range(6):
        out_image, out = A.random_scale_crop(
            image, source, (12, 14), (scale, scale), min_visibility=0.3, method="nearest", seed=seed
        )
        assert out_image.shape == (12, 14, 5) and out_image.dtype == tf.float32
        check_against_paint(out_image, out, source, 0.3, full)


def test_scale_crop_random_scales_within_one_pixel():
    rng = np.random.default_rng(0)
    x1, y1 = rng.integers(0, 30, 8), rng.integers(0, 20, 8)
    boxes = np.stack([x1, y1, x1 + rng.integers(3, 10, 8), y1 + rng.integers(3, 10, 8)], 1)
    source = make_target(boxes, pad=1)
    image = painted(30, 40, boxes)
    for seed in range(8):
        out_image, out = A.random_scale_crop(
            image, source, (24, 24), (0.6, 1.7), min_visibility=0.2, method="nearest", seed=seed
        )
        # The drawn scale is not reported, so only "cut away => dropped" and the extents
        # (±1 px: nearest resizing by a non-integer factor rounds) are checked here.
        areas = [np.inf] * len(boxes)
        check_against_paint(out_image, out, source, 0.2, areas, atol=1.0)
        b = out["boxes"].numpy()
        assert b.min() >= 0 and np.all(b[:, [0, 2]] <= 24) and np.all(b[:, [1, 3]] <= 24)


def test_scale_crop_pads_a_smaller_image_and_shifts_boxes():
    source = make_target(BOXES)
    image = painted(16, 20, BOXES)
    out_image, out = A.random_scale_crop(
        image, source, (30, 40), (1.0, 1.0), pad_value=7.0, method="nearest", seed=3
    )
    out_image = out_image.numpy()
    # The 16 x 20 content lies somewhere in the 30 x 40 canvas; locate it by the fill.
    inside = np.all(out_image != 7.0, axis=-1)
    top, left = extent(inside)[1], extent(inside)[0]
    assert extent(inside).tolist() == [left, top, left + 20, top + 16]
    np.testing.assert_allclose(out["boxes"][:5], np.asarray(BOXES) + [left, top, left, top])
    check_against_paint(np.where(out_image == 7.0, 0, out_image), out, source, 0.25, [1] * 5)


def test_scale_crop_area_extra_and_fully_cut_boxes():
    # 40 x 40 image, crop 10 x 10 at scale 1: at most a corner survives.
    boxes = [[0, 0, 4, 4], [30, 30, 40, 40], [0, 30, 10, 40]]
    source = {
        "boxes": np.array(boxes, np.float32),
        "classes": np.array([0, 1, 2], np.int32),
        "area": np.array([16.0, 100.0, 100.0], np.float32),
    }
    for seed in range(5):
        out_image, out = A.random_scale_crop(
            painted(40, 40, boxes), source, (10, 10), (1.0, 1.0), min_visibility=0.0, seed=seed
        )
        valid = out["classes"].numpy() >= 0
        for row in np.nonzero(valid)[0]:
            b = out["boxes"].numpy()[row]
            i = int(out["classes"].numpy()[row])
            np.testing.assert_allclose(b, extent(out_image.numpy()[..., i]))
            visible = (b[2] - b[0]) * (b[3] - b[1])
            assert out["area"].numpy()[row] == pytest.approx(visible)  # area x visible fraction
        for i in range(3):
            if extent(out_image.numpy()[..., i]) is None:
                assert i not in out["classes"].numpy()[valid]
        assert np.all(out["area"].numpy()[~valid] == 0)


def test_scale_crop_in_tf_data_is_static_and_reproducible():
    source = make_target(BOXES)
    image = painted(16, 20, BOXES)
    dataset = tf.data.Dataset.from_tensors((image, source)).repeat(4)
    seeds = tf.data.Dataset.from_tensor_slices(np.arange(8).reshape(4, 2))

    def build():
        return tf.data.Dataset.zip((dataset, seeds)).map(
            lambda element, seed: A.random_scale_crop(
                element[0], element[1], (12, 12), (0.5, 2.0), seed=seed
            )
        )

    augmented = build()
    spec = augmented.element_spec
    assert spec[0].shape == (12, 12, 5) and spec[1]["boxes"].shape == (7, 4)
    first = list(augmented.batch(4).as_numpy_iterator())
    second = list(build().batch(4).as_numpy_iterator())
    assert first[0][0].shape == (4, 12, 12, 5)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1]["boxes"], b[1]["boxes"])
    # Graph and eager agree for one seed; different seeds give different crops.
    eager_image, eager = A.random_scale_crop(image, source, (12, 12), (0.5, 2.0), seed=[2, 3])
    np.testing.assert_allclose(first[0][0][1], eager_image.numpy())
    np.testing.assert_allclose(first[0][1]["boxes"][1], eager["boxes"].numpy())
    assert not np.array_equal(first[0][0][0], first[0][0][1])


# -------------------------------------------------------------------------- flips


def test_flip_vertical_hand_worked_paint_and_involution():
    boxes = [[2, 1, 5, 4], [0, 0, 10, 6]]
    source = make_target(boxes, pad=1)
    image, out = A.flip_vertical(painted(6, 10, boxes), source)
    np.testing.assert_allclose(out["boxes"].numpy(), [[2, 2, 5, 5], [0, 0, 10, 6], [0, 0, 0, 0]])
    check_against_paint(image, out, source, 0.0, [1, 1])
    back_image, back = A.flip_vertical(image, out)
    np.testing.assert_allclose(back["boxes"].numpy(), source["boxes"])
    np.testing.assert_allclose(back_image.numpy(), painted(6, 10, boxes))


def test_random_flip_vertical_probabilities_and_batch():
    image = painted(6, 10, [[2, 1, 5, 4]])
    batch = np.stack([image] * 16)
    target = {"boxes": np.tile([[[2, 1, 5, 4]]], (16, 1, 1)).astype(np.float32)}
    target["classes"] = np.zeros((16, 1), np.int32)
    same, kept = A.random_flip_vertical(batch, target, probability=0.0, seed=0)
    np.testing.assert_allclose(same.numpy(), batch)
    np.testing.assert_allclose(kept["boxes"].numpy(), target["boxes"])
    _, flipped = A.random_flip_vertical(batch, target, probability=1.0, seed=0)
    np.testing.assert_allclose(flipped["boxes"].numpy()[:, 0], [[2, 2, 5, 5]] * 16)
    images, half = A.random_flip_vertical(batch, target, probability=0.5, seed=[1, 2])
    is_flipped = half["boxes"].numpy()[:, 0, 1] == 2
    assert 0 < is_flipped.sum() < 16  # independent per image
    for k in range(16):
        np.testing.assert_allclose(half["boxes"].numpy()[k, 0], extent(images.numpy()[k, ..., 0]))


# ------------------------------------------------------------------------- colour


def test_colour_jitter_keeps_range_shape_and_boxes():
    rng = np.random.default_rng(1)
    image = rng.choice([0.0, 255.0, 128.0], size=(8, 9, 3)).astype(np.float32)
    target = make_target(BOXES[:2])
    strong = dict(brightness=0.5, contrast=0.8, saturation=0.9, hue=0.5)
    for seed in range(4):
        out, out_target = A.random_colour_jitter(image, target, seed=seed, **strong)
        assert out.shape == image.shape and out.dtype == tf.float32
        assert out.numpy().min() >= 0.0 and out.numpy().max() <= 255.0
        assert out_target is target
    a, _ = A.random_colour_jitter(image, target, seed=5)
    b, _ = A.random_colour_jitter(image, target, seed=5)
    c, _ = A.random_colour_jitter(image, target, seed=6)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), c.numpy())
    off, _ = A.random_colour_jitter(image, target, brightness=0, contrast=0, saturation=0, hue=0)
    np.testing.assert_array_equal(off.numpy(), image)
    # A batch: one draw per image.
    batch, _ = A.random_colour_jitter(np.stack([image] * 3), target, seed=1, **strong)
    assert batch.shape == (3, 8, 9, 3) and not np.allclose(batch[0], batch[1])
    # Grey images: brightness/contrast only.
    grey, _ = A.random_colour_jitter(image[..., :1], target, saturation=0, hue=0, seed=0)
    assert grey.shape == (8, 9, 1)
    with pytest.raises(ValueError, match="`saturation` and `hue` need RGB"):
        A.random_colour_jitter(image[..., :1], target)


# ------------------------------------------------------------------------- mosaic


def mosaic_inputs():
    """4 images of 16 x 16, 2 boxes each; channels 0..7 the boxes, 8..11 'image k here'."""
    rng = np.random.default_rng(2)
    images, targets, all_boxes = [], [], []
    for k in range(4):
        x1, y1 = rng.integers(0, 10, 2), rng.integers(0, 10, 2)
        boxes = np.stack([x1, y1, x1 + rng.integers(2, 7, 2), y1 + rng.integers(2, 7, 2)], 1)
        image = np.zeros((16, 16, 12), np.float32)
        image[..., 2 * k : 2 * k + 2] = painted(16, 16, boxes)
        image[..., 8 + k] = 1.0
        images.append(image)
        target = make_target(boxes, pad=1)
        target["ident"][:2] += 2 * k
        targets.append(target)
        all_boxes.append(boxes)
    batched = {key: np.stack([t[key] for t in targets]) for key in targets[0]}
    return np.stack(images), batched, np.concatenate(all_boxes).astype(np.float32)


def test_mosaic_places_each_image_in_its_quadrant_exactly():
    images, targets, boxes = mosaic_inputs()
    sources = {"classes": targets["classes"][:, :2].reshape(-1)}
    sources["difficult"] = targets["difficult"][:, :2].reshape(-1)
    for seed in range(5):
        image, out = A.mosaic(
            images, targets, (32, 32), scale_range=(1.0, 1.0), method="nearest", seed=seed
        )
        image = image.numpy()
        assert image.shape == (32, 32, 12) and out["boxes"].shape == (12, 4)  # 4 x 3 rows
        quads = [extent(image[..., 8 + k]) for k in range(4)]
        cx, cy = quads[0][2], quads[0][3]
        assert 8 <= cx <= 24 and 8 <= cy <= 24
        np.testing.assert_array_equal(quads[1], [cx, 0, 32, cy])
        np.testing.assert_array_equal(quads[2], [0, cy, cx, 32])
        np.testing.assert_array_equal(quads[3], [cx, cy, 32, 32])
        # Hand-derived placement: each 16 x 16 image is fitted (x2) to 32 x 32 and its
        # corner nearest the centre sits at (cx, cy); boxes clipped to the quadrant.
        ident = out["ident"].numpy()
        for row in np.nonzero(out["classes"].numpy() >= 0)[0]:
            i = int(ident[row])
            k = i // 2
            x0, y0, x1, y1 = quads[k]
            dx = cx - 32 if k in (0, 2) else cx
            dy = cy - 32 if k in (0, 1) else cy
            expected = np.clip(boxes[i] * 2 + [dx, dy, dx, dy], [x0, y0] * 2, [x1, y1] * 2)
            np.testing.assert_allclose(out["boxes"].numpy()[row], expected)
        full = [4 * (b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
        check_against_paint(image, out, sources, 0.25, full, rows=12)


def test_mosaic_pads_uncovered_parts_and_takes_a_list():
    images, targets, _ = mosaic_inputs()
    listed = [{key: value[k] for key, value in targets.items()} for k in range(4)]
    image, out = A.mosaic(
        list(images),
        listed,
        (64, 64),
        20,
        scale_range=(0.25, 0.25),  # 16 x 16 -> 16 x 16 tiles in quadrants >= 16 px
        center_range=(0.4, 0.6),
        pad_value=-1.0,
        method="nearest",
        seed=0,
    )
    assert out["classes"].shape == (20,)
    covered = (image.numpy()[..., 8:] == 1.0).sum(-1)
    assert covered.sum() == 4 * 256 and np.all(image.numpy()[covered == 0] == -1.0)


def test_mosaic_overflow_raises_or_warns(caplog):
    images, targets, _ = mosaic_inputs()
    args = dict(scale_range=(1.0, 1.0), center_range=(0.5, 0.5), min_visibility=0.0, seed=0)
    _, full = A.mosaic(images, targets, (32, 32), **args)
    count = int((full["classes"].numpy() >= 0).sum())
    assert count >= 3
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_boxes=2"):
        A.mosaic(images, targets, (32, 32), 2, **args)
    with caplog.at_level(logging.WARNING, logger="kerasseg.data.detection_augment"):
        _, cut = A.mosaic(images, targets, (32, 32), 2, on_overflow="warn", **args)
    assert cut["classes"].shape == (2,) and np.all(cut["classes"].numpy() >= 0)
    assert any(f"{count} boxes exceed max_boxes=2" in r.getMessage() for r in caplog.records)


def mosaic_elements():
    images, targets, _ = mosaic_inputs()
    elements = tf.data.Dataset.from_tensor_slices((images, targets))
    return elements.map(lambda i, t: (tf.image.resize(i, (32, 32), "nearest"), t)), targets


def test_mosaic_dataset_is_reproducible_and_keeps_the_epoch_length():
    elements, _ = mosaic_elements()

    def build():
        return A.mosaic_dataset(elements, (32, 32), seed=3, scale_range=(1.0, 1.0), buffer_size=4)

    dataset = build()
    spec = dataset.element_spec
    assert spec[0].shape == (32, 32, 12) and spec[1]["boxes"].shape == (12, 4)
    first = list(dataset.as_numpy_iterator())
    second = list(build().as_numpy_iterator())
    assert len(first) == 4
    for (image_a, target_a), (image_b, target_b) in zip(first, second):
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(target_a["boxes"], target_b["boxes"])
        np.testing.assert_array_equal(image_a[..., 8:].sum(-1), 1.0)  # 4 tiles, no gap
    # Element i is the top-left image of its mosaic; the partners are drawn at random.
    assert [int(np.argmax(image[0, 0, 8:])) for image, _ in first] == [0, 1, 2, 3]
    corners = {
        tuple(np.argmax(image[[0, 0, -1, -1], [0, -1, 0, -1], 8:], -1)) for image, _ in first
    }
    assert any(len(set(c)) > 1 for c in corners)


def test_mosaic_dataset_probability_and_pass_through():
    elements, targets = mosaic_elements()
    # probability 0: unchanged images, targets padded to 4 x 3 rows.
    passed = A.mosaic_dataset(elements, (32, 32), probability=0.0)
    for (image, target), k in zip(passed.as_numpy_iterator(), range(4)):
        np.testing.assert_array_equal(image[..., 8 + k], 1.0)
        np.testing.assert_array_equal(target["classes"][:3], targets["classes"][k])
        assert np.all(target["classes"][3:] == -1)
    some = A.mosaic_dataset(elements, (32, 32), 16, probability=0.5, seed=0, buffer_size=4)
    images, batch = next(iter(some.batch(4)))  # mosaics and pass-throughs stack
    assert images.shape == (4, 32, 32, 12) and batch["ident"].shape == (4, 16)
    with pytest.raises(ValueError, match="output_size"):
        A.mosaic_dataset(elements, (16, 16), probability=0.5)
    with pytest.raises(ValueError, match="unbatched"):
        A.mosaic_dataset(elements.batch(2), (32, 32))


def test_mosaic_maps_over_a_batched_dataset():
    elements, _ = mosaic_elements()
    grouped = elements.batch(4).map(
        lambda i, t: A.mosaic(i, t, (32, 32), scale_range=(1.0, 1.0), seed=1)
    )
    assert grouped.element_spec[0].shape == (32, 32, 12)
    image, target = next(iter(grouped))
    assert target["boxes"].shape == (12, 4)
    np.testing.assert_array_equal(image.numpy()[..., 8:].sum(-1), 1.0)
    assert [
        int(np.argmax(image.numpy()[y, x, 8:])) for y, x in [(0, 0), (0, -1), (-1, 0), (-1, -1)]
    ] == [0, 1, 2, 3]


# ---------------------------------------------------------------------- composite


def test_detection_augmentation_is_exact_reproducible_and_batches():
    source = make_target(BOXES)
    image = painted(16, 20, BOXES)
    dataset = tf.data.Dataset.from_tensors((image, source)).repeat(6)
    options = dict(scale_range=(2.0, 2.0), flip_vertical=True, colour=False, method="nearest")
    augment = A.detection_augmentation((24, 24), seed=1, **options)
    full = [4 * (b[2] - b[0]) * (b[3] - b[1]) for b in BOXES]
    outputs = list(augment.apply(dataset).as_numpy_iterator())
    for out_image, out in outputs:
        check_against_paint(out_image, out, source, 0.25, full)
    again = list(A.detection_augmentation((24, 24), seed=1, **options).apply(dataset))
    for (a, ta), (b, tb) in zip(outputs, again):
        np.testing.assert_array_equal(a, b.numpy())
        np.testing.assert_array_equal(ta["boxes"], tb["boxes"].numpy())
    assert len({out[0].tobytes() for out in outputs}) > 1  # each element drawn afresh
    # Plain `dataset.map(fn)`: the generator-based seeds are reproducible too.
    mapped = [
        list(dataset.map(A.detection_augmentation((24, 24), seed=4, **options))) for _ in range(2)
    ]
    for (a, ta), (b, tb) in zip(*mapped):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(ta["boxes"].numpy(), tb["boxes"].numpy())
    batched = next(iter(dataset.map(augment).batch(3)))
    assert batched[0].shape == (3, 24, 24, 5) and batched[1]["classes"].shape == (3, 7)


def test_detection_augmentation_with_mosaic_on_bccd():
    from kerasseg.data import voc

    root = require_shared_data("bccd") / "BCCD"
    annotations = voc.load_voc(root, "test")
    annotations.records = annotations.records[:3]  # a few images keep the test fast
    dataset = annotations.to_dataset()
    rows = dataset.element_spec[1]["boxes"].shape[0]
    augment = A.detection_augmentation(
        (96, 128), scale_range=(0.2, 0.3), mosaic_probability=1.0, mosaic_buffer_size=2, seed=0
    )
    batches = list(augment.apply(dataset).batch(3).as_numpy_iterator())
    assert len(batches) == 1
    for images, target in batches:
        assert images.shape == (3, 96, 128, 3) and images.min() >= 0 and images.max() <= 255
        assert target["boxes"].shape == (3, 4 * rows, 4)
        assert set(target) == {"boxes", "classes", "difficult"}
        valid = target["classes"] >= 0
        assert valid.any(axis=1).all()
        boxes = target["boxes"][valid]
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        assert boxes.min() >= 0 and boxes[:, [0, 2]].max() <= 128 and boxes[:, [1, 3]].max() <= 96
        assert np.all(target["boxes"][~valid] == 0)


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda im, t: A.random_scale_crop(im, t, (8,)), "`output_size` must be a \\(height"),
        (lambda im, t: A.random_scale_crop(im, t, (0, 8)), "got \\(0, 8\\)"),
        (lambda im, t: A.random_scale_crop(im, t, 8), "`output_size`"),
        (lambda im, t: A.random_scale_crop(im, t, (8, 8.5)), "`output_size`"),
        (lambda im, t: A.random_scale_crop(im, t, (8, 8), (1.5, 0.5)), "low > high"),
        (lambda im, t: A.random_scale_crop(im, t, (8, 8), (0.0, 1.0)), "`scale_range`"),
        (
            lambda im, t: A.random_scale_crop(im, t, (8, 8), min_visibility=1.5),
            "`min_visibility` must be a number in \\[0.0, 1.0\\], got 1.5",
        ),
        (lambda im, t: A.random_scale_crop(im[None], t, (8, 8)), "one \\(H, W, C\\) image"),
        (lambda im, t: A.random_scale_crop(im, {"boxes": 1}, (8, 8)), "'boxes' and 'classes'"),
        (
            lambda im, t: A.random_scale_crop(im, {**t, "image_id": 3}, (8, 8)),
            "'image_id' is a scalar",
        ),
        (lambda im, t: A.random_flip_vertical(im, t, probability=-0.1), "`probability`"),
        (lambda im, t: A.random_colour_jitter(im, t, hue=0.7), "`hue` must be a number in"),
        (lambda im, t: A.random_colour_jitter(im, t, contrast=-1), "`contrast`"),
        (lambda im, t: A.mosaic([im] * 3, [t] * 3, (8, 8)), "needs 4 images"),
        (lambda im, t: A.mosaic([im] * 4, [t] * 4, (8, 8), 0), "`max_boxes` must be a positive"),
        (
            lambda im, t: A.mosaic([im] * 4, [t] * 4, (8, 8), center_range=(0.0, 1.0)),
            "`center_range` must be a non-decreasing",
        ),
        (lambda im, t: A.mosaic([im] * 4, [t] * 4, (1, 8)), "ints >= 2"),
        (lambda im, t: A.mosaic([im] * 4, [t] * 4, (8, 8), on_overflow="drop"), "on_overflow"),
        (lambda im, t: A.detection_augmentation((8, 8), colour={"gamma": 1}), "`colour` keys"),
        (lambda im, t: A.detection_augmentation((8, 8), mosaic_probability=2), "mosaic_prob"),
        (lambda im, t: A.detection_augmentation((8, 8), seed=1.5), "`seed` must be an int"),
    ],
)
def test_argument_errors_name_the_argument(call, message):
    image = painted(6, 6, [[1, 1, 3, 3], [0, 0, 2, 2], [2, 2, 5, 5]])
    with pytest.raises(ValueError, match=message):
        call(image, make_target([[1, 1, 3, 3], [0, 0, 2, 2], [2, 2, 5, 5]]))


def test_existing_transforms_compose_with_the_new_ones():
    # letterbox -> random_scale_crop keeps the boxes on the painted pixels.
    boxes = [[0, 0, 4, 4], [4, 2, 8, 6]]
    source = make_target(boxes)
    image, target = T.letterbox(painted(8, 8, boxes), source, (16, 16), method="nearest")
    out_image, out = A.random_scale_crop(
        image, target, (10, 10), (1.0, 1.0), method="nearest", seed=0
    )
    check_against_paint(out_image, out, source, 0.25, [64, 64])
