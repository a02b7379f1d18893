"""Turns the accepted input formats into flat NumPy box tables, validating as it goes.

Three input formats reach the evaluator:

* COCO JSON: a ground-truth dataset (dict or path) and a results list (list of dicts or
  path). Boxes are ``[x, y, width, height]``; they are converted to ``xyxy`` here, at the
  boundary, keeping the original width and height for the box area so that IoUs are
  bit-identical to pycocotools'.
* Per-image arrays: one dict per image, ``{"boxes": (N, 4), "classes": (N,),
  "scores": (N,)}`` (scores for detections only; optional ``"iscrowd"``, ``"difficult"``
  and ``"area"`` for ground truth).
* Padded batches, the library's dense format: ``{"boxes": (B, N, 4), "classes": (B, N),
  "scores": (B, N)}`` where rows with a negative class are padding.

Everything becomes a :class:`BoxTable`: one row per box, with the image index it belongs to.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from kerasseg.detection.format import to_numpy

_CROWD_KEYS = ("iscrowd", "crowd")


@dataclass
class BoxTable:
    """A flat table of boxes over many images (one row per box).

    Attributes:
        image: (n,) int64 index of the image each box belongs to.
        classes: (n,) int64 class (category) id.
        boxes: (n, 4) float64 ``xyxy`` in pixels.
        box_area: (n,) float64 ``width * height`` computed from the box as given.
        area: (n,) float64 area used for COCO's area ranges (COCO's ``"area"`` field when
            given, else ``box_area``).
        scores: (n,) float64 confidences, or None for ground truth.
        crowd: (n,) bool COCO ``iscrowd`` flags.
        difficult: (n,) bool VOC ``difficult`` flags.
    """

    image: np.ndarray
    classes: np.ndarray
    boxes: np.ndarray
    box_area: np.ndarray
    area: np.ndarray
    scores: np.ndarray | None
    crowd: np.ndarray
    difficult: np.ndarray

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @staticmethod
    def empty(with_scores: bool) -> BoxTable:
        return BoxTable(
            image=np.zeros(0, np.int64),
            classes=np.zeros(0, np.int64),
            boxes=np.zeros((0, 4), np.float64),
            box_area=np.zeros(0, np.float64),
            area=np.zeros(0, np.float64),
            scores=np.zeros(0, np.float64) if with_scores else None,
            crowd=np.zeros(0, bool),
            difficult=np.zeros(0, bool),
        )

    @staticmethod
    def concatenate(tables: Sequence[BoxTable], with_scores: bool) -> BoxTable:
        if not tables:
            return BoxTable.empty(with_scores)
        return BoxTable(
            image=np.concatenate([t.image for t in tables]),
            classes=np.concatenate([t.classes for t in tables]),
            boxes=np.concatenate([t.boxes for t in tables]),
            box_area=np.concatenate([t.box_area for t in tables]),
            area=np.concatenate([t.area for t in tables]),
            scores=np.concatenate([t.scores for t in tables]) if with_scores else None,
            crowd=np.concatenate([t.crowd for t in tables]),
            difficult=np.concatenate([t.difficult for t in tables]),
        )

    def select(self, mask_or_index: np.ndarray) -> BoxTable:
        return BoxTable(
            image=self.image[mask_or_index],
            classes=self.classes[mask_or_index],
            boxes=self.boxes[mask_or_index],
            box_area=self.box_area[mask_or_index],
            area=self.area[mask_or_index],
            scores=None if self.scores is None else self.scores[mask_or_index],
            crowd=self.crowd[mask_or_index],
            difficult=self.difficult[mask_or_index],
        )


def _check_finite(name: str, values: np.ndarray) -> None:
    if values.size and not np.all(np.isfinite(values)):
        bad = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(
            f"`{name}` must be finite; found {values[tuple(bad)]} at index {tuple(bad.tolist())}."
        )


def _check_ordered(name: str, boxes: np.ndarray) -> None:
    """xyxy boxes need x2 >= x1 and y2 >= y1."""
    if not boxes.size:
        return
    negative = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if np.any(negative):
        row = int(np.flatnonzero(negative)[0])
        raise ValueError(
            f"`{name}` must be xyxy boxes with x2 >= x1 and y2 >= y1 (negative width or "
            f"height); box {row} is {boxes[row].tolist()}."
        )


def _optional_flag(entry: Mapping[str, Any], keys: Sequence[str], shape: tuple[int, ...]) -> Any:
    for key in keys:
        if key in entry and entry[key] is not None:
            flags = to_numpy(entry[key])
            if flags.shape != shape:
                raise ValueError(
                    f"`{key}` must have the shape of `classes` {shape}; got {flags.shape}."
                )
            return flags.astype(bool)
    return None


def table_from_arrays(
    entry: Mapping[str, Any],
    *,
    is_detection: bool,
    image_offset: int,
    what: str,
) -> tuple[BoxTable, int]:
    """One per-image dict ((N, 4) boxes) or one padded batch ((B, N, 4)) -> BoxTable.

    Args:
        entry: Dict with "boxes", "classes" (and "scores" for detections; optional
            "iscrowd"/"difficult"/"area" for ground truth).
        is_detection: Whether scores are required.
        image_offset: Index given to the first image of the entry.
        what: "ground_truth" or "detections", for error messages.

    Returns:
        The table and the number of images in the entry.
    """
    if not isinstance(entry, Mapping):
        raise TypeError(
            f"`{what}` entries must be dicts with 'boxes' and 'classes'; got "
            f"{type(entry).__name__}."
        )
    for key in ("boxes", "classes") + (("scores",) if is_detection else ()):
        if key not in entry:
            raise ValueError(f"`{what}` must have a {key!r} entry; got keys {sorted(entry)}.")
    boxes = to_numpy(entry["boxes"]).astype(np.float64)
    classes_raw = to_numpy(entry["classes"])
    if boxes.ndim not in (2, 3) or boxes.shape[-1] != 4:
        raise ValueError(
            f"`{what}['boxes']` must have shape (N, 4) for one image or (B, N, 4) for a batch; "
            f"got {boxes.shape}."
        )
    batched = boxes.ndim == 3
    if classes_raw.ndim == boxes.ndim and classes_raw.shape[-1] == 1:
        classes_raw = classes_raw[..., 0]
    if classes_raw.shape != boxes.shape[:-1]:
        raise ValueError(
            f"`{what}['classes']` must have shape {boxes.shape[:-1]} to match `boxes` "
            f"{boxes.shape}; got {classes_raw.shape}."
        )
    if classes_raw.size and not np.all(np.isfinite(classes_raw.astype(np.float64))):
        raise ValueError(f"`{what}['classes']` must be finite integers.")
    classes = classes_raw.astype(np.int64)
    if classes_raw.size and np.any(classes != classes_raw):
        raise ValueError(
            f"`{what}['classes']` must hold integer class ids; got {classes_raw.dtype} values "
            "with a fractional part."
        )
    shape = classes.shape
    scores = None
    if is_detection:
        scores = to_numpy(entry["scores"]).astype(np.float64)
        if scores.ndim == len(shape) + 1 and scores.shape[-1] == 1:
            scores = scores[..., 0]
        if scores.shape != shape:
            raise ValueError(
                f"`{what}['scores']` must have shape {shape} to match `classes`; got "
                f"{scores.shape}."
            )
    crowd = _optional_flag(entry, _CROWD_KEYS, shape)
    difficult = _optional_flag(entry, ("difficult",), shape)
    area = None
    if not is_detection and entry.get("area") is not None:
        area = to_numpy(entry["area"]).astype(np.float64)
        if area.shape != shape:
            raise ValueError(f"`{what}['area']` must have shape {shape}; got {area.shape}.")

    num_images = shape[0] if batched else 1
    image = (
        np.broadcast_to(np.arange(num_images, dtype=np.int64)[:, None], shape)
        if batched
        else np.zeros(shape, np.int64)
    ) + image_offset
    keep = classes >= 0  # negative classes are padding
    boxes = boxes[keep]
    _check_finite(f"{what}['boxes']", boxes)
    _check_ordered(f"{what}['boxes']", boxes)
    if scores is not None:
        scores = scores[keep]
        _check_finite(f"{what}['scores']", scores)
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if area is not None:
        area = area[keep]
        _check_finite(f"{what}['area']", area)
    table = BoxTable(
        image=image[keep],
        classes=classes[keep],
        boxes=boxes,
        box_area=box_area,
        area=box_area if area is None else area,
        scores=scores,
        crowd=np.zeros(len(boxes), bool) if crowd is None else crowd[keep],
        difficult=np.zeros(len(boxes), bool) if difficult is None else difficult[keep],
    )
    return table, num_images


# COCO JSON -----------------------------------------------------------------------------


@dataclass
class CocoInputs:
    ground_truth: BoxTable
    detections: BoxTable
    image_ids: np.ndarray  # (I,) sorted image ids; BoxTable.image indexes into it
    category_ids: np.ndarray  # (K,) sorted category ids
    category_names: dict[int, str]


def _load_json(source: Any, what: str) -> Any:
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8") as handle:
            return json.load(handle)
    return source


def is_coco_dataset(value: Any) -> bool:
    """Whether `value` looks like a COCO ground-truth dataset (dict or JSON path)."""
    if isinstance(value, (str, os.PathLike)):
        return True
    return isinstance(value, Mapping) and ("annotations" in value or "images" in value)


def _column(annotations: Sequence[Mapping[str, Any]], key: str, what: str) -> list[Any]:
    try:
        return list(map(itemgetter(key), annotations))
    except KeyError:
        raise ValueError(f"every entry of `{what}` needs a {key!r}.") from None
    except TypeError:
        raise ValueError(f"`{what}` must be a list of dicts.") from None


def _xywh_table(
    annotations: Sequence[Mapping[str, Any]],
    image_ids: np.ndarray,
    *,
    is_detection: bool,
    what: str,
) -> BoxTable:
    """COCO annotations or results -> BoxTable (``image`` indexes the sorted ``image_ids``)."""
    n = len(annotations)
    if n == 0:
        return BoxTable.empty(is_detection)
    ids = np.asarray(_column(annotations, "image_id", what))
    image = np.searchsorted(image_ids, ids)
    unknown = (image >= len(image_ids)) | (image_ids[np.minimum(image, len(image_ids) - 1)] != ids)
    if np.any(unknown):
        raise ValueError(
            f"`{what}` refers to image id {ids[unknown][0].item()!r}, which is not among the "
            "ground truth's images."
        )
    category = np.asarray(_column(annotations, "category_id", what), dtype=np.int64)
    bboxes = _column(annotations, "bbox", what)
    try:
        lengths = np.fromiter(map(len, bboxes), np.int64, n)
        if np.any(lengths != 4):
            raise ValueError
        xywh = np.fromiter(chain.from_iterable(bboxes), np.float64, 4 * n).reshape(n, 4)
    except (ValueError, TypeError):
        raise ValueError(
            f"`{what}` bboxes must be [x, y, width, height] lists of 4 numbers."
        ) from None
    _check_finite(f"{what} bbox", xywh)
    if np.any(xywh[:, 2:] < 0):
        row = int(np.flatnonzero(np.any(xywh[:, 2:] < 0, axis=1))[0])
        raise ValueError(
            f"`{what}` bboxes must have width and height >= 0; entry {row} has bbox "
            f"{xywh[row].tolist()}."
        )
    boxes = np.empty_like(xywh)
    boxes[:, :2] = xywh[:, :2]
    # x + w exactly as pycocotools' C code computes the far edge.
    boxes[:, 2] = xywh[:, 0] + xywh[:, 2]
    boxes[:, 3] = xywh[:, 1] + xywh[:, 3]
    box_area = xywh[:, 2] * xywh[:, 3]
    scores = None
    area = box_area
    crowd = np.zeros(n, bool)
    if is_detection:
        scores = np.asarray(_column(annotations, "score", what), dtype=np.float64)
        if scores.shape != (n,):
            raise ValueError(f"every `{what}` 'score' must be a single number.")
        _check_finite(f"{what} score", scores)
    else:
        area = np.fromiter((a.get("area", np.nan) for a in annotations), np.float64, n)
        missing = np.isnan(area)
        area[missing] = box_area[missing]
        crowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in annotations), bool, n)
    return BoxTable(
        image=image.astype(np.int64),
        classes=category,
        boxes=boxes,
        box_area=box_area,
        area=area,
        scores=scores,
        crowd=crowd,
        difficult=np.zeros(n, bool),
    )


def from_coco(ground_truth: Any, results: Any) -> CocoInputs:
    """COCO ground truth (dict or JSON path) and results (list or JSON path) -> tables.

    Raises:
        ValueError: Results on images or categories the ground truth does not have,
            negative widths, missing fields or non-finite values.
    """
    dataset = _load_json(ground_truth, "ground_truth")
    if not isinstance(dataset, Mapping) or "images" not in dataset or "annotations" not in dataset:
        raise ValueError(
            "`ground_truth` must be a COCO dataset with 'images' and 'annotations' "
            f"(and 'categories'); got {type(dataset).__name__}."
        )
    image_ids = np.array(sorted({image["id"] for image in dataset["images"]}))
    categories = dataset.get("categories")
    if categories is None:
        raise ValueError("`ground_truth` must have a 'categories' list.")
    category_ids = np.array(sorted({int(c["id"]) for c in categories}), dtype=np.int64)
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in categories}
    results = _load_json(results, "detections")
    if not isinstance(results, Sequence) or isinstance(results, (str, bytes)):
        raise ValueError(
            f"`detections` must be a COCO results list of dicts; got {type(results).__name__}."
        )
    gt = _xywh_table(dataset["annotations"], image_ids, is_detection=False, what="ground_truth")
    dt = _xywh_table(results, image_ids, is_detection=True, what="detections")
    for table, what in ((gt, "ground_truth"), (dt, "detections")):
        if len(category_ids):
            position = np.searchsorted(category_ids, table.classes)
            unknown = category_ids[np.minimum(position, len(category_ids) - 1)] != table.classes
        else:
            unknown = np.ones(len(table), bool)
        if np.any(unknown):
            raise ValueError(
                f"`{what}` uses category id {int(table.classes[unknown][0])}, which is not in "
                f"the ground truth's categories {category_ids.tolist()[:20]}"
                f"{' ...' if len(category_ids) > 20 else ''}."
            )
    return CocoInputs(gt, dt, image_ids, category_ids, names)
