"""VOC loader: the real BCCD set and synthetic malformed annotation folders."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasseg.data import voc
from tests.support import require_shared_data

README_COUNTS = {"RBC": 4155, "WBC": 372, "Platelets": 361}
LOGGER = "kerasseg.data.detection_records"


@pytest.fixture(scope="module")
def bccd_root():
    return require_shared_data("bccd") / "BCCD"


@pytest.fixture(scope="module")
def bccd(bccd_root):
    return voc.load_voc(bccd_root, split=None)


# ------------------------------------------------------------------------- BCCD


def test_bccd_parses_every_image_and_matches_the_readme_counts(bccd_root, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        annotations = voc.load_voc(bccd_root, split=None)
    assert len(annotations) == 364
    assert annotations.class_names == ["Platelets", "RBC", "WBC"]  # discovered, sorted
    report = annotations.report
    assert report.num_images == 364 and not report.skipped_images
    # The README's counts include the two zero-size RBC boxes, which are dropped.
    expected = dict(README_COUNTS, RBC=README_COUNTS["RBC"] - 2)
    assert report.class_counts == expected
    assert report.num_boxes == sum(expected.values()) == 4886
    assert dict(report.dropped_boxes) == {"degenerate": 2}
    assert report.clipped_boxes == 0 and report.images_without_boxes == 0
    # The degenerate boxes are reported by file name, in the log and in the report.
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name, box in (
        ("BloodImage_00338.xml", "[504, 337, 504, 337]"),
        ("BloodImage_00343.xml", "[181, 329, 181, 329]"),
    ):
        assert any(name in m and box in m and "degenerate" in m for m in messages), messages
        assert any(name in p for p in report.problems)
    assert any("Dropped 2 boxes: 2 degenerate" in m for m in messages)  # the summary
    # Cross-check one record against its XML, worked by hand.
    record = next(r for r in annotations.records if r.image_id == "BloodImage_00338")
    assert record.num_boxes == 13 and record.height == 480 and record.width == 640
    np.testing.assert_array_equal(record.boxes[0], [453, 81, 555, 182])
    assert record.classes[-1] == annotations.class_names.index("WBC")
    assert record.extras["difficult"].dtype == bool and not record.extras["difficult"].any()


def test_bccd_splits_partition_the_set(bccd_root, bccd):
    trainval = voc.load_voc(bccd_root, "trainval", class_names=bccd.class_names)
    test = voc.load_voc(bccd_root, "test", class_names=bccd.class_names)
    assert len(trainval) == 292 and len(test) == 72
    ids = {r.image_id for r in trainval.records} | {r.image_id for r in test.records}
    assert ids == {r.image_id for r in bccd.records}
    assert trainval.report.num_boxes + test.report.num_boxes == bccd.report.num_boxes


def test_bccd_batch_shapes_dtypes_and_padding(bccd):
    dataset = bccd.to_dataset(batch_size=3)
    max_boxes = bccd.max_boxes()
    assert max_boxes == 30
    images, target = next(iter(dataset))
    assert images.shape == (3, 480, 640, 3) and images.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
    assert target["boxes"].shape == (3, max_boxes, 4) and target["boxes"].dtype == tf.float32
    assert target["classes"].shape == (3, max_boxes) and target["classes"].dtype == tf.int32
    assert target["difficult"].shape == (3, max_boxes) and target["difficult"].dtype == tf.bool
    for i, record in enumerate(bccd.records[:3]):
        n = record.num_boxes
        np.testing.assert_array_equal(target["boxes"][i, :n], record.boxes)
        np.testing.assert_array_equal(target["classes"][i, :n], record.classes)
        assert np.all(target["classes"][i, n:].numpy() == -1)
        assert np.all(target["boxes"][i, n:].numpy() == 0)
    # Pixels: with the accurate IDCT, TensorFlow decodes exactly what Pillow does.
    reference = np.asarray(Image.open(bccd.records[0].image_path).convert("RGB"), np.float32)
    np.testing.assert_array_equal(images[0].numpy(), reference)


def test_bccd_resize_letterbox_and_flip_move_the_boxes(bccd):
    record = bccd.records[0]
    _, resized = next(iter(bccd.to_dataset(image_size=(240, 320))))
    np.testing.assert_allclose(resized["boxes"][: record.num_boxes], record.boxes / 2, rtol=1e-6)
    image, boxed = next(iter(bccd.to_dataset(image_size=(320, 320), letterbox=True, pad_value=114)))
    assert image.shape == (320, 320, 3)
    np.testing.assert_allclose(
        boxed["boxes"][: record.num_boxes], record.boxes / 2 + [0, 40, 0, 40], rtol=1e-6
    )
    assert np.all(image.numpy()[:40] == 114)

    def flips(seed):
        dataset = bccd.to_dataset(image_size=(48, 64), flip=True, seed=seed)
        out = []
        for (_image, target), rec in zip(dataset.take(8), bccd.records):
            n = rec.num_boxes
            scaled = rec.boxes / 10
            mirrored = np.stack(
                [64 - scaled[:, 2], scaled[:, 1], 64 - scaled[:, 0], scaled[:, 3]], 1
            )
            got = target["boxes"][:n].numpy()
            flipped = np.allclose(got, mirrored, atol=1e-4)
            assert flipped or np.allclose(got, scaled, atol=1e-4)
            out.append(flipped)
        return out

    first = flips(seed=7)
    assert first == flips(seed=7)  # reproducible with a seed
    assert 0 < sum(first) < 8


def test_bccd_max_boxes_overflow_is_never_silent(bccd_root, caplog):
    annotations = voc.load_voc(bccd_root, "test")
    with pytest.raises(
        ValueError,
        match=r"images have more than max_boxes=10 boxes: .*BloodImage_\d+\.xml \(\d+ boxes\)",
    ):
        annotations.to_dataset(max_boxes=10)
    excess = sum(max(0, r.num_boxes - 10) for r in annotations.records)
    over = [Path(r.source).name for r in annotations.records if r.num_boxes > 10]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        dataset = annotations.to_dataset(max_boxes=10, on_overflow="warn")
    assert annotations.report.dropped_boxes["over max_boxes"] == excess > 0
    assert any(
        over[0] in r.getMessage() and "exceed max_boxes=10" in r.getMessage()
        for r in caplog.records
    )
    assert next(iter(dataset))[1]["boxes"].shape == (10, 4)


# ------------------------------------------------------------- synthetic VOC folders


def _object(name, box, difficult=0):
    coords = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    name_tag = f"<name>{name}</name>" if name is not None else ""
    return f"<object>{name_tag}<difficult>{difficult}</difficult><bndbox>{coords}</bndbox></object>"


def _xml(filename, objects, size=(40, 30)):
    size_tag = (
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
        if size
        else ""
    )
    return f"<annotation><filename>{filename}</filename>{size_tag}{''.join(objects)}</annotation>"


@pytest.fixture()
def synthetic_voc(tmp_path):
    """A VOC folder with one clean image and one image per kind of problem (40x30 px)."""
    root = tmp_path / "voc"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    files = {
        "good": [_object("cat", (1, 2, 11, 12)), _object("dog", (5, 5, 20, 25), difficult=1)],
        "degenerate": [
            _object("cat", (10, 10, 10, 20)),
            _object("dog", (8, 8, 4, 12)),
            _object("cat", (0, 0, 5, 5)),
        ],
        "outside": [_object("dog", (-5, 20, 10, 40)), _object("cat", (50, 0, 60, 10))],
        "unknown": [_object("horse", (1, 1, 5, 5)), _object("cat", (1, 1, 6, 6))],
        "malformed": [
            _object("cat", ("abc", 1, 5, 5)),
            _object(None, (1, 1, 5, 5)),
            _object("cat", (2, 2, 7, 7)),
        ],
        "nosize": [_object("dog", (1, 1, 39, 29))],
        "wrongsize": [_object("dog", (1, 1, 39, 29))],
        "noimage": [_object("cat", (1, 1, 5, 5))],
    }
    for stem, objects in files.items():
        size = None if stem == "nosize" else ((80, 60) if stem == "wrongsize" else (40, 30))
        (root / "Annotations" / f"{stem}.xml").write_text(_xml(f"{stem}.jpg", objects, size))
        if stem != "noimage":
            Image.new("RGB", (40, 30), (10, 20, 30)).save(root / "JPEGImages" / f"{stem}.jpg")
    (root / "Annotations" / "broken.xml").write_text("<annotation><object><name>cat</name>")
    Image.new("RGB", (40, 30)).save(root / "JPEGImages" / "broken.jpg")
    ids = [*files, "broken", "missingxml"]
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids) + "\n")
    return root


def test_synthetic_problems_are_each_reported_with_their_file(synthetic_voc, caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        annotations = voc.load_voc(synthetic_voc, "train", class_names=["cat", "dog"])
    report = annotations.report
    text = "\n".join(report.problems)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    expectations = [
        ("degenerate.xml", "object #0 (cat): degenerate box [10, 10, 10, 20] (zero width/height)"),
        ("degenerate.xml", "object #1 (dog): degenerate box [8, 8, 4, 12] (inverted (max < min))"),
        (
            "outside.xml",
            "object #0 (dog): box [-5, 20, 10, 40] extends outside the 40x30 image; clipped to [0, 20, 10, 30]",
        ),
        ("outside.xml", "object #1 (cat): box [50, 0, 60, 10] lies outside the 40x30 image"),
        ("unknown.xml", "class 'horse' is not in class_names"),
        ("malformed.xml", "object #0 (cat): malformed <bndbox>"),
        ("malformed.xml", "object #1: no <name>"),
        ("wrongsize.xml", "<size> says 80x60 but wrongsize.jpg is 40x30"),
        ("noimage.xml", "image skipped: image file not found"),
        ("broken.xml", "image skipped: unparsable XML"),
        ("missingxml.xml", "image skipped: annotation file not found"),
    ]
    for file, message in expectations:
        assert any(file in line and message in line for line in text.splitlines()), (
            file,
            message,
            text,
        )
        assert any(file in line and message in line for line in logged.splitlines()), (
            file,
            message,
        )
    assert dict(report.dropped_boxes) == {
        "degenerate": 2,
        "outside image": 1,
        "unknown class": 1,
        "malformed": 2,
    }
    assert report.clipped_boxes == 1
    assert sorted(Path(f).name for f, _ in report.skipped_images) == [
        "broken.xml",
        "missingxml.xml",
        "noimage.xml",
    ]
    assert report.num_images == 7 and report.num_boxes == 8
    assert report.class_counts == {"cat": 4, "dog": 4}
    assert "Dropped 6 boxes" in report.summary() and "Skipped 3 images" in report.summary()

    by_id = {r.image_id: r for r in annotations.records}
    np.testing.assert_array_equal(by_id["good"].extras["difficult"], [False, True])
    np.testing.assert_array_equal(by_id["outside"].boxes, [[0, 20, 10, 30]])
    assert (by_id["nosize"].height, by_id["nosize"].width) == (30, 40)  # read from the image
    assert (by_id["wrongsize"].height, by_id["wrongsize"].width) == (30, 40)
    # The dataset still builds and pads the remaining boxes.
    images, target = next(iter(annotations.to_dataset(batch_size=7)))
    assert images.shape == (7, 30, 40, 3) and target["classes"].shape == (7, 2)


def test_discovered_classes_skip_difficult_and_strict(synthetic_voc):
    discovered = voc.load_voc(synthetic_voc, "train")
    assert discovered.class_names == ["cat", "dog", "horse"]
    no_difficult = voc.load_voc(
        synthetic_voc, "train", class_names=["cat", "dog"], skip_difficult=True
    )
    assert no_difficult.report.dropped_boxes["difficult"] == 1
    good = next(r for r in no_difficult.records if r.image_id == "good")
    assert good.num_boxes == 1 and not good.extras["difficult"].any()
    # Strict: the first problem (in split order, parsing first) raises, naming its file.
    with pytest.raises(ValueError, match=r"broken\.xml: unparsable XML.*strict"):
        voc.load_voc(synthetic_voc, "train", class_names=["cat", "dog"], strict=True)
    with pytest.raises(FileNotFoundError, match=r"Available splits: \['train'\]"):
        voc.load_voc(synthetic_voc, "val")
