"""Anchor shapes from the data: YOLOv2's k-means "dimension clusters".

Redmon & Farhadi (2017) choose a grid detector's priors by k-means on the training boxes'
widths and heights with the distance $d(\\text{box}, \\text{centroid}) = 1 -
\\mathrm{IoU}(\\text{box}, \\text{centroid})$ between shapes placed on the same centre,
so that large boxes do not dominate as they would with Euclidean distances; they report
the *Avg IOU* of each box with its nearest centroid (61.0 with 5 clusters on VOC 2007,
against 60.9 for Faster R-CNN's 9 hand-picked anchors).

`kmeans_anchors` runs that k-means (Lloyd's iterations, centroids the mean shape of their
cluster, k-means++ or random initialisation, deterministic for a seed); `average_iou`
computes the Avg IOU; `fit_anchors` takes the boxes of a `kerasseg.data` VOC / COCO load
(or arrays of boxes), rescales them to the training input size as
`kerasseg.data.DetectionAnnotations.to_dataset` resizes the images, and returns both.

NumPy only: no Keras or TensorFlow needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerasseg.detection import boxes_np

__all__ = [
    "INITS",
    "AnchorFit",
    "average_iou",
    "box_shapes",
    "fit_anchors",
    "kmeans_anchors",
    "shape_iou",
]

#: Initialisations of `kmeans_anchors`: k-means++ (Arthur & Vassilvitskii, 2007, with the
#: 1 - IoU distance) or k distinct box shapes drawn uniformly.
INITS = ("kmeans++", "random")
ITERATIONS = 300


def _check_shapes(boxes_wh: Any, argument: str = "boxes_wh") -> np.ndarray:
    """``(N, 2)`` positive, finite widths and heights as float64."""
    array = np.asarray(boxes_wh, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(
            f"`{argument}` must have shape (N, 2) (box widths and heights in pixels), got "
            f"shape {array.shape}."
        )
    bad = ~np.all(np.isfinite(array) & (array > 0), axis=1)
    if bad.any():
        raise ValueError(
            f"`{argument}` must hold positive, finite widths and heights; {int(bad.sum())} of "
            f"{len(array)} rows do not (first: {array[bad][0].tolist()}). Drop boxes without "
            "area first."
        )
    return array


def shape_iou(boxes_wh: Any, anchors_wh: Any) -> np.ndarray:
    """IoU of every box shape with every anchor shape, both centred on the same point.

    Args:
        boxes_wh: ``(N, 2)`` widths and heights.
        anchors_wh: ``(K, 2)`` widths and heights.

    Returns:
        ``(N, K)`` IoU in [0, 1]: ``min(w) min(h) / (w h + w' h' - min(w) min(h))``.
    """

    def centred(wh: np.ndarray) -> np.ndarray:
        return np.concatenate([-wh / 2.0, wh / 2.0], axis=-1)

    return boxes_np.pairwise_iou(
        centred(np.asarray(boxes_wh, np.float64)), centred(np.asarray(anchors_wh, np.float64))
    )


def average_iou(boxes_wh: Any, anchors_wh: Any) -> float:
    """YOLOv2's *Avg IOU*: the mean over boxes of the IoU with their best anchor.

    Args:
        boxes_wh: ``(N, 2)`` positive widths and heights, N >= 1.
        anchors_wh: ``(K, 2)`` positive widths and heights, K >= 1.

    Returns:
        The mean in [0, 1].
    """
    boxes_wh = _check_shapes(boxes_wh)
    anchors_wh = _check_shapes(anchors_wh, "anchors_wh")
    if not len(boxes_wh) or not len(anchors_wh):
        raise ValueError(
            f"`average_iou` needs at least one box and one anchor, got {len(boxes_wh)} and "
            f"{len(anchors_wh)}."
        )
    return float(shape_iou(boxes_wh, anchors_wh).max(axis=1).mean())


def _kmeans_plus_plus(boxes_wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability proportional to the
    squared distance ``(1 - IoU)^2`` to the nearest centre chosen so far."""
    centres = [boxes_wh[rng.integers(len(boxes_wh))]]
    distance = 1.0 - shape_iou(boxes_wh, np.array(centres))[:, 0]
    for _ in range(1, k):
        weights = np.square(np.maximum(distance, 0.0))
        centres.append(boxes_wh[rng.choice(len(boxes_wh), p=weights / weights.sum())])
        distance = np.minimum(distance, 1.0 - shape_iou(boxes_wh, centres[-1][None])[:, 0])
    return np.array(centres)


def _initial_centres(
    boxes_wh: np.ndarray, unique: np.ndarray, k: int, init: Any, rng: np.random.Generator
) -> np.ndarray:
    if not isinstance(init, str):
        centres = _check_shapes(init, "init")
        if centres.shape != (k, 2):
            raise ValueError(
                f"`init` given as centres must have shape (k, 2) = ({k}, 2), got {centres.shape}."
            )
        return centres.copy()
    if init not in INITS:
        raise ValueError(f"`init` must be one of {INITS} or a (k, 2) array, got {init!r}.")
    if init == "random":
        return unique[rng.choice(len(unique), size=k, replace=False)]
    return _kmeans_plus_plus(boxes_wh, k, rng)


def _update_centres(
    boxes_wh: np.ndarray, assignment: np.ndarray, distance: np.ndarray, centres: np.ndarray
) -> np.ndarray:
    """Each centre becomes the mean shape of its cluster; an empty cluster takes the box
    farthest from its own centre (the first such box, so the result is deterministic)."""
    updated = centres.copy()
    taken = np.zeros(len(boxes_wh), bool)
    for c in range(len(centres)):
        members = assignment == c
        if members.any():
            updated[c] = boxes_wh[members].mean(axis=0)
            continue
        candidates = np.where(taken, -1.0, distance)
        farthest = int(np.argmax(candidates))
        taken[farthest] = True
        updated[c] = boxes_wh[farthest]
    return updated


def kmeans_anchors(
    boxes_wh: Any,
    k: int,
    *,
    iterations: int = ITERATIONS,
    seed: int | None = 0,
    init: str | Any = "kmeans++",
) -> np.ndarray:
    """YOLOv2's k-means on box shapes with the distance ``1 - IoU`` of centred boxes.

    Lloyd's iterations: every box joins the centroid it overlaps best (the first on ties),
    every centroid moves to the mean width and height of its boxes; until the assignment
    no longer changes or after `iterations`.

    Args:
        boxes_wh: ``(N, 2)`` box widths and heights in pixels (positive, finite).
        k: Number of anchors, at most the number of distinct shapes in `boxes_wh`.
        iterations: Maximum number of assignment / update rounds.
        seed: Seed of the initialisation (same seed, same anchors).
        init: One of `INITS`, or a ``(k, 2)`` array of initial centroids.

    Returns:
        ``(k, 2)`` float32 anchor ``(width, height)`` in pixels, sorted by area (then width).

    Raises:
        ValueError: for a bad `boxes_wh`, `k` or `init`, or `k` above the number of
            distinct box shapes.
    """
    boxes_wh = _check_shapes(boxes_wh)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be a positive int, got {k!r}.")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"`iterations` must be a positive int, got {iterations!r}.")
    unique = np.unique(boxes_wh, axis=0)
    if k > len(unique):
        raise ValueError(
            f"`k`={k} anchors need at least {k} distinct box shapes; `boxes_wh` has "
            f"{len(unique)} ({len(boxes_wh)} boxes). Use fewer anchors or more boxes."
        )
    rng = np.random.default_rng(seed)
    centres = _initial_centres(boxes_wh, unique, int(k), init, rng)
    assignment = None
    for _ in range(iterations):
        iou = shape_iou(boxes_wh, centres)
        new_assignment = np.argmax(iou, axis=1)
        if assignment is not None and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        distance = 1.0 - iou[np.arange(len(boxes_wh)), assignment]
        centres = _update_centres(boxes_wh, assignment, distance, centres)
    order = np.lexsort((centres[:, 0], centres[:, 0] * centres[:, 1]))
    return centres[order].astype(np.float32)


def _record_scale(
    height: int, width: int, image_size: Sequence[int] | None, letterbox: bool
) -> np.ndarray:
    """``(sx, sy)`` mapping a record's pixels to the training input's, as
    `kerasseg.data.detection_transforms.resize` / ``letterbox`` move its boxes."""
    if image_size is None:
        return np.ones(2)
    out_h, out_w = image_size
    if not letterbox:
        return np.array([out_w / width, out_h / height])
    scale = min(out_h / height, out_w / width)
    new_h = min(round(height * scale), out_h)
    new_w = min(round(width * scale), out_w)
    return np.array([new_w / width, new_h / height])


def _widths_and_heights(boxes: Any) -> np.ndarray:
    """``(..., 4)`` xyxy boxes -> ``(N, 2)`` float64 widths and heights."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return boxes[:, 2:] - boxes[:, :2]


def box_shapes(
    source: Any, *, image_size: Sequence[int] | None = None, letterbox: bool = False
) -> np.ndarray:
    """The ``(N, 2)`` widths and heights of every box with an area in `source`.

    Args:
        source: A `kerasseg.data.DetectionAnnotations` (`kerasseg.data.load_voc`,
            `kerasseg.data.load_coco`; crowd and difficult boxes included: they are real
            object shapes), or xyxy pixel boxes: one ``(N, 4)`` array (padded ``(B, M, 4)``
            batches too) or a sequence of per-image ``(N_i, 4)`` arrays. Rows without area
            (padding, degenerate boxes) are left out.
        image_size: ``(height, width)`` of the training input: each record's boxes are
            rescaled as ``to_dataset(image_size=...)`` resizes its image. Annotations only.
        letterbox: The images are letterboxed to `image_size` (aspect ratio kept).

    Returns:
        ``(N, 2)`` float64 widths and heights in (training input) pixels.

    Raises:
        ValueError: for `image_size` with arrays (their image sizes are unknown), a bad
            `image_size`, or boxes not shaped ``(..., 4)``.
    """
    if image_size is not None:
        if len(image_size) != 2 or any(int(v) < 1 for v in image_size):
            raise ValueError(
                f"`image_size` must be (height, width) positive ints, got {image_size!r}."
            )
        image_size = (int(image_size[0]), int(image_size[1]))
    if letterbox and image_size is None:
        raise ValueError("`letterbox=True` needs an `image_size`.")
    records = getattr(source, "records", None)
    if records is not None:
        shapes = [
            _widths_and_heights(r.boxes) * _record_scale(r.height, r.width, image_size, letterbox)
            for r in records
        ]
    else:
        if image_size is not None:
            raise ValueError(
                "`image_size` needs annotations (`kerasseg.data.load_voc` / `load_coco`), "
                "whose records know their image sizes; pass arrays already in training "
                "pixels without it."
            )
        arrays = [source] if isinstance(source, np.ndarray) else list(source)
        shapes = []
        for i, boxes in enumerate(arrays):
            boxes = np.asarray(boxes, np.float64)
            if boxes.shape[-1:] != (4,):
                raise ValueError(
                    f"Boxes must be xyxy arrays of shape (..., 4), got shape {boxes.shape} "
                    f"(entry {i})."
                )
            shapes.append(_widths_and_heights(boxes))
    wh = np.concatenate(shapes) if shapes else np.zeros((0, 2))
    keep = np.all(np.isfinite(wh) & (wh > 0), axis=1)
    return wh[keep]


@dataclasses.dataclass(frozen=True)
class AnchorFit:
    """The result of `fit_anchors`.

    Attributes:
        anchors: ``(k, 2)`` float32 ``(width, height)`` in training-input pixels, sorted by
            area (the ``anchors`` argument of `kerasseg.detection.yolo.yolov2`).
        average_iou: YOLOv2's Avg IOU of the boxes with their best anchor, in [0, 1].
        num_boxes: Boxes the anchors were fitted on.
        image_size: The training input ``(height, width)`` the boxes were rescaled to, or
            None.
    """

    anchors: np.ndarray
    average_iou: float
    num_boxes: int
    image_size: tuple[int, int] | None


def fit_anchors(
    source: Any,
    k: int = 5,
    *,
    image_size: Sequence[int] | None = None,
    letterbox: bool = False,
    iterations: int = ITERATIONS,
    seed: int | None = 0,
    init: str | Any = "kmeans++",
) -> AnchorFit:
    """YOLOv2's dimension clusters of a data set, at the training input size.

    Args:
        source: Annotations or boxes, see `box_shapes`.
        k: Number of anchors (YOLOv2: 5).
        image_size: ``(height, width)`` the images are resized to for training.
        letterbox: The images are letterboxed to `image_size`.
        iterations: See `kmeans_anchors`.
        seed: See `kmeans_anchors`.
        init: See `kmeans_anchors`.

    Returns:
        The `AnchorFit`: anchors and their Avg IOU on the boxes.

    Raises:
        ValueError: for no box with an area, or the errors of `box_shapes` and
            `kmeans_anchors`.

    Example:
        >>> train = kerasseg.data.load_voc("BCCD", "train")
        >>> fit = fit_anchors(train, 5, image_size=(416, 416))
        >>> model = kerasseg.zoo.get("yolov2_cspdarknet_n", num_classes=3,
        ...                          anchors=fit.anchors)
    """
    wh = box_shapes(source, image_size=image_size, letterbox=letterbox)
    if not len(wh):
        raise ValueError("`source` has no box with an area to fit anchors on.")
    anchors = kmeans_anchors(wh, k, iterations=iterations, seed=seed, init=init)
    return AnchorFit(
        anchors=anchors,
        average_iou=average_iou(wh, anchors),
        num_boxes=len(wh),
        image_size=None if image_size is None else (int(image_size[0]), int(image_size[1])),
    )
