"""COCO loader: synthetic instances files (clean and malformed), pycocotools cross-check."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kerasseg.data import coco
from tests.support import require_module

LOGGER = "kerasseg.data.detection_records"


def _write_images(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in sizes.items():
        Image.new("RGB", (width, height), (50, 100, 150)).save(folder / name)


@pytest.fixture()
def messy_coco(tmp_path):
    images_dir = tmp_path / "images"
    _write_images(images_dir, {"a.png": (40, 30), "b.png": (20, 20), "d.png": (16, 16)})
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.png", "width": 20, "height": 20},
            {"id": 3, "file_name": "missing.png", "width": 10, "height": 10},
            {"id": 4, "file_name": "d.png", "width": 16, "height": 16},  # no annotations
        ],
        # Deliberately unsorted ids: contiguous ids follow increasing COCO id.
        "categories": [
            {"id": 3, "name": "cat"},
            {"id": 1, "name": "dog"},
            {"id": 7, "name": "bird"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [2, 3, 10, 5], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 7, "bbox": [20, 10, 15, 15], "iscrowd": 1},
            {"id": 12, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 8], "iscrowd": 0},
            {"id": 13, "image_id": 2, "category_id": 1, "bbox": [15, 15, 10, 10], "iscrowd": 0},
            {"id": 14, "image_id": 2, "category_id": 99, "bbox": [1, 1, 2, 2], "iscrowd": 0},
            {"id": 15, "image_id": 42, "category_id": 1, "bbox": [1, 1, 2, 2], "iscrowd": 0},
            {"id": 16, "image_id": 2, "category_id": 3, "bbox": ["a", 1, 2, 2], "iscrowd": 0},
            {"id": 17, "image_id": 2, "category_id": 3, "bbox": [30, 30, 5, 5], "iscrowd": 0},
            {"id": 18, "image_id": 3, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 0},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, images_dir


def test_messy_coco_conversion_mapping_and_report(messy_coco, caplog):
    path, images_dir = messy_coco
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        annotations = coco.load_coco(path, images_dir)
    assert annotations.class_names == ["dog", "cat", "bird"]
    assert annotations.category_ids == [1, 3, 7]
    by_id = {r.image_id: r for r in annotations.records}
    assert sorted(by_id) == [1, 2, 4]
    # xywh [2, 3, 10, 5] -> xyxy [2, 3, 12, 8]; crowd [20, 10, 15, 15] clipped at x=40, y=30.
    np.testing.assert_array_equal(by_id[1].boxes, [[2, 3, 12, 8], [20, 10, 35, 25]])
    np.testing.assert_array_equal(by_id[1].classes, [1, 2])
    np.testing.assert_array_equal(by_id[1].extras["iscrowd"], [False, True])
    np.testing.assert_array_equal(by_id[2].boxes, [[15, 15, 20, 20]])  # clipped to 20x20
    assert by_id[4].num_boxes == 0
    report = annotations.report
    assert dict(report.dropped_boxes) == {
        "degenerate": 1,
        "unknown class": 1,
        "unknown image": 1,
        "malformed": 1,
        "outside image": 1,
        "image missing": 1,
    }
    assert report.clipped_boxes == 1 and report.images_without_boxes == 1
    assert report.class_counts == {"dog": 1, "cat": 1, "bird": 1}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for message in (
        "annotation id 12 (image 1)",
        "degenerate box [5, 5, 5, 13] (zero width/height)",
        "annotation id 14 (image 2): category_id 99 is not in 'categories'",
        "annotation id 15 (image 42): image_id 42 is not in 'images'",
        "annotation id 16 (image 2): malformed bbox ['a', 1, 2, 2]",
        "lies outside the 20x20 image",
        "missing.png (id 3) not found; its 1 boxes dropped",
    ):
        assert message in logged, message
    assert all(str(path) in line for line in report.problems)  # every message names the file


def test_class_subset_crowd_skipping_and_dataset(messy_coco):
    path, images_dir = messy_coco
    subset = coco.load_coco(path, images_dir, class_names=["bird", "dog"], skip_crowd=True)
    assert subset.class_names == ["bird", "dog"] and subset.category_ids == [7, 1]
    assert subset.report.dropped_boxes["crowd"] == 1
    assert subset.report.dropped_boxes["not in class_names"] == 4  # the "cat" annotations 10, 16-18
    with pytest.raises(ValueError, match=r"\['horse'\] are not categories"):
        coco.load_coco(path, images_dir, class_names=["horse"])

    annotations = coco.load_coco(path, images_dir)
    images, target = next(iter(annotations.to_dataset(batch_size=3)))
    # Different image sizes without image_size: padded to the largest in the batch.
    assert images.shape == (3, 30, 40, 3)
    assert set(target) == {"boxes", "classes", "iscrowd"}
    assert target["boxes"].shape == (3, 2, 4) and target["iscrowd"].dtype == tf.bool
    np.testing.assert_array_equal(target["classes"].numpy(), [[1, 2], [0, -1], [-1, -1]])
    np.testing.assert_array_equal(
        target["iscrowd"].numpy(), [[False, True], [False, False], [False, False]]
    )
    np.testing.assert_array_equal(images.numpy()[1, 20:], 0)  # padding rows of the 20x20 image


def test_malformed_files_raise_naming_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [}')
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        coco.load_coco(bad, tmp_path)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match=r"partial\.json: missing or invalid 'categories'"):
        coco.load_coco(partial, tmp_path)
    duplicate = tmp_path / "dup.json"
    duplicate.write_text(
        json.dumps(
            {
                "images": [],
                "annotations": [],
                "categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}],
            }
        )
    )
    with pytest.raises(ValueError, match=r"dup\.json: category id 1 appears twice"):
        coco.load_coco(duplicate, tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"COCO annotation file .*nothere\.json not found\."
    ):
        coco.load_coco(tmp_path / "nothere.json", tmp_path)


def test_strict_mode_raises_at_the_first_problem(messy_coco):
    path, images_dir = messy_coco
    with pytest.raises(ValueError, match=r"instances\.json: annotation id 12 .*degenerate.*strict"):
        coco.load_coco(path, images_dir, strict=True)


@pytest.mark.parity
def test_clean_file_agrees_with_pycocotools(tmp_path):
    coco_api = require_module("pycocotools.coco")
    rng = np.random.default_rng(0)
    sizes = {f"{i}.png": (int(rng.integers(20, 60)), int(rng.integers(20, 60))) for i in range(6)}
    _write_images(tmp_path / "img", sizes)
    images, annotations = [], []
    for i, (name, (w, h)) in enumerate(sizes.items()):
        images.append({"id": 100 + i, "file_name": name, "width": w, "height": h})
        for _ in range(int(rng.integers(0, 5))):
            x, y = rng.uniform(0, w - 6), rng.uniform(0, h - 6)
            bw, bh = rng.uniform(1, w - x), rng.uniform(1, h - y)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 100 + i,
                    "category_id": int(rng.choice([2, 5, 9])),
                    "bbox": [x, y, bw, bh],
                    "iscrowd": int(rng.uniform() < 0.2),
                    "area": bw * bh,
                }
            )
    path = tmp_path / "clean.json"
    categories = [{"id": 9, "name": "c9"}, {"id": 2, "name": "c2"}, {"id": 5, "name": "c5"}]
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )

    ours = coco.load_coco(path, tmp_path / "img")
    assert ours.report.clean
    reference = coco_api.COCO(str(path))
    assert ours.category_ids == sorted(reference.getCatIds())
    assert ours.class_names == [
        c["name"] for c in reference.loadCats(sorted(reference.getCatIds()))
    ]
    for record in ours.records:
        anns = reference.loadAnns(reference.getAnnIds(imgIds=[record.image_id]))
        expected = np.array(
            [
                [
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3],
                ]
                for a in anns
            ],
            np.float32,
        ).reshape(-1, 4)
        np.testing.assert_allclose(record.boxes, expected, rtol=1e-6)
        np.testing.assert_array_equal(
            record.classes, [ours.category_ids.index(a["category_id"]) for a in anns]
        )
        np.testing.assert_array_equal(record.extras["iscrowd"], [bool(a["iscrowd"]) for a in anns])
