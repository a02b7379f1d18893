"""COCO detection data: an instances JSON file into the dense padded format.

`load_coco` reads a COCO ``instances_*.json`` (``images``, ``annotations``,
``categories``) eagerly and validates every box into a `DetectionAnnotations`; its
``to_dataset`` decodes the images in `tf.data`. `coco_dataset` does both.

**Boxes.** COCO's ``bbox`` is ``[x, y, width, height]`` in pixels; it becomes xyxy
``[x, y, x + width, y + height]``.

**Class ids.** Contiguous ids ``0..C-1`` follow increasing COCO category id (COCO's 80
classes with ids 1..90 become 0..79); ``annotations.category_ids[i]`` is the COCO id of
class ``i`` (use it to write results back in COCO format) and ``class_names[i]`` its name.
With ``class_names`` given, only those categories are kept (in that order), and
annotations of other categories are dropped with a warning.

**Crowd regions** (``iscrowd=1``) are kept with the per-box bool key ``"iscrowd"`` (the
COCO protocol ignores detections matched to them); ``skip_crowd=True`` drops them.

**Validation** (each a warning naming the file and the annotation id, counted in the
report): boxes with zero or negative width/height are dropped, boxes partly outside the
image clipped, boxes entirely outside dropped, malformed ``bbox`` values dropped,
annotations of unknown categories or images dropped; images whose file is missing are
skipped. A file that is not valid JSON, or lacks ``images`` / ``annotations`` /
``categories``, raises a ValueError naming it. ``strict=True`` turns every warning into
an error.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasseg.data.detection_records import (
    DetectionAnnotations,
    DetectionRecord,
    LoadReport,
    finish,
    validate_box,
)

__all__ = ["coco_dataset", "load_coco"]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotation file {path} not found.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}).") from error
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a JSON object at the top level, got {type(data).__name__}."
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(
                f"{path}: missing or invalid {key!r} list (a COCO instances file has "
                "'images', 'annotations' and 'categories')."
            )
    return data


def _categories(
    path: Path, categories: list[dict[str, Any]], class_names: Sequence[str] | None
) -> tuple[list[str], list[int]]:
    by_id: dict[int, str] = {}
    for category in categories:
        try:
            cid, name = int(category["id"]), str(category["name"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: malformed category {category!r} ({error}).") from error
        if cid in by_id:
            raise ValueError(f"{path}: category id {cid} appears twice.")
        by_id[cid] = name
    ordered = sorted(by_id)
    if class_names is None:
        names = [by_id[c] for c in ordered]
        if len(set(names)) != len(names):
            duplicates = sorted(n for n, k in collections.Counter(names).items() if k > 1)
            raise ValueError(f"{path}: category names are not unique: {duplicates}.")
        return names, ordered
    id_of = {by_id[c]: c for c in ordered}
    missing = [n for n in class_names if n not in id_of]
    if missing:
        raise ValueError(
            f"`class_names` {missing} are not categories of {path} (it has {sorted(id_of)})."
        )
    return [str(n) for n in class_names], [id_of[n] for n in class_names]


def load_coco(
    annotation_file: str | Path,
    image_dir: str | Path,
    class_names: Sequence[str] | None = None,
    *,
    skip_crowd: bool = False,
    keep_images_without_boxes: bool = True,
    strict: bool = False,
) -> DetectionAnnotations:
    """Parses a COCO instances JSON eagerly into validated records.

    Args:
        annotation_file: The ``instances_*.json`` file.
        image_dir: The folder of the images' ``file_name``s.
        class_names: Category names to keep, in id order; None: all categories by
            increasing COCO id.
        skip_crowd: Drop ``iscrowd=1`` annotations (counted as ``"crowd"``) instead of
            keeping the flag.
        keep_images_without_boxes: Keep images with no (remaining) annotation.
        strict: Raise a ValueError at the first problem.

    Returns:
        `DetectionAnnotations` with ``extras["iscrowd"]`` per record and
        ``category_ids``; its ``report`` has been logged.
    """
    path, image_dir = Path(annotation_file), Path(image_dir)
    data = _read_json(path)
    names, category_ids = _categories(path, data["categories"], class_names)
    known_categories = {int(c["id"]) for c in data["categories"]}
    class_of = {cid: i for i, cid in enumerate(category_ids)}
    report = LoadReport(source=f"COCO {path}", strict=strict)

    images: dict[Any, dict[str, Any]] = {}
    for image in data["images"]:
        try:
            images[image["id"]] = {
                "file": str(image["file_name"]),
                "width": int(image["width"]),
                "height": int(image["height"]),
            }
        except (KeyError, TypeError, ValueError) as error:
            report.skip_image(path, f"malformed image entry {image!r} ({error!r})")

    per_image: dict[Any, list[tuple[np.ndarray, int, bool]]] = collections.defaultdict(list)
    for annotation in data["annotations"]:
        ann_id = annotation.get("id", "?")
        image_id = annotation.get("image_id")
        what = f"annotation id {ann_id} (image {image_id})"
        if image_id not in images:
            report.drop_box(
                path, "unknown image", f"{what}: image_id {image_id!r} is not in 'images'"
            )
            continue
        category = annotation.get("category_id")
        if category not in known_categories:
            report.drop_box(
                path, "unknown class", f"{what}: category_id {category!r} is not in 'categories'"
            )
            continue
        if category not in class_of:
            report.dropped_boxes["not in class_names"] += 1
            continue
        bbox = annotation.get("bbox")
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError) as error:
            report.drop_box(path, "malformed", f"{what}: malformed bbox {bbox!r} ({error})")
            continue
        crowd = bool(annotation.get("iscrowd", 0))
        if crowd and skip_crowd:
            report.dropped_boxes["crowd"] += 1
            continue
        info = images[image_id]
        box = validate_box(
            report,
            path,
            f"{what}, bbox xywh {bbox}",
            [x, y, x + w, y + h],
            info["width"],
            info["height"],
        )
        if box is not None:
            per_image[image_id].append((box, class_of[category], crowd))

    records = []
    for image_id, info in images.items():
        image_path = image_dir / info["file"]
        if not image_path.is_file():
            lost = len(per_image.get(image_id, []))
            report.dropped_boxes["image missing"] += lost
            report.skip_image(
                path, f"image {image_path} (id {image_id}) not found; its {lost} boxes dropped"
            )
            continue
        entries = per_image.get(image_id, [])
        if not entries and not keep_images_without_boxes:
            continue
        records.append(
            DetectionRecord(
                image_path=str(image_path),
                height=info["height"],
                width=info["width"],
                boxes=np.asarray([e[0] for e in entries], np.float32).reshape(-1, 4),
                classes=np.asarray([e[1] for e in entries], np.int32),
                extras={"iscrowd": np.asarray([e[2] for e in entries], bool)},
                image_id=image_id,
                source=f"{path} (image id {image_id})",
            )
        )
    finish(report, records, names)
    return DetectionAnnotations(
        records=records, class_names=names, report=report, category_ids=category_ids
    )


def coco_dataset(
    annotation_file: str | Path,
    image_dir: str | Path,
    class_names: Sequence[str] | None = None,
    *,
    skip_crowd: bool = False,
    strict: bool = False,
    **dataset_kwargs: Any,
) -> Any:
    """`load_coco` then ``to_dataset``: a `tf.data.Dataset` of ``(image, target)``.

    Args:
        annotation_file: COCO instances JSON.
        image_dir: Images folder.
        class_names: Categories to keep, or None for all.
        skip_crowd: Drop crowd annotations.
        strict: Raise at the first problem.
        **dataset_kwargs: ``to_dataset`` arguments.

    Returns:
        The dataset. Use `load_coco` when you also need the class mapping or the report.
    """
    annotations = load_coco(
        annotation_file, image_dir, class_names, skip_crowd=skip_crowd, strict=strict
    )
    return annotations.to_dataset(**dataset_kwargs)
