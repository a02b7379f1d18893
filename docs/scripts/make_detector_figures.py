"""Draws the figures of the "Detectors" concepts page with kerasseg itself.

One BCCD training image (`IMAGE_ID`) and its ground truth, loaded with
`kerasseg.data.load_voc`, appear in three figures:

- ``docs/img/detector_grid_anchors.png``: the image letterboxed to 416 x 416
  (`kerasseg.data.detection_transforms.letterbox`), YOLOv2's 13 x 13 grid, the cell holding
  the centre of the white blood cell, and the five k-means priors of the BCCD training boxes
  (`kerasseg.detection.anchor_fitting.fit_anchors`, k = 5) centred on that cell; the solid
  prior is the one YOLOv2 makes responsible for the box (best shape IoU).
- ``docs/img/detector_retinanet_anchors.png``: the nine RetinaNet anchors
  (`kerasseg.detection.retinanet.retinanet_anchors`) of one location of P3 and of P5, the
  locations nearest the white cell's centre, with their IoU with its box.
- ``docs/img/detector_yolov8_points.png``: the anchor points of P3-P5
  (`kerasseg.detection.yolov8.anchor_points`) on the image letterboxed to 320 x 320, and
  the points the task-aligned assigner (`kerasseg.detection.assigners.task_aligned_assign`)
  gives each object. No trained model is involved: every point "predicts" the box of the
  object whose centre is nearest, jittered with seeded noise that grows with the point's
  distance from that centre, and every class score is 0.5, so the ranking is by CIoU alone.

Run from the repository root:  python docs/scripts/make_detector_figures.py
The data folder defaults to ../shared/data/bccd/BCCD (override with BCCD_ROOT).
"""

from __future__ import annotations

import io
import logging
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kerasseg.data import load_voc  # noqa: E402
from kerasseg.data.detection_transforms import letterbox  # noqa: E402
from kerasseg.detection import boxes_np  # noqa: E402
from kerasseg.detection.anchor_fitting import fit_anchors, shape_iou  # noqa: E402
from kerasseg.detection.assigners import task_aligned_assign  # noqa: E402
from kerasseg.detection.retinanet import retinanet_anchors  # noqa: E402
from kerasseg.detection.yolov8 import STRIDES, anchor_points  # noqa: E402
from kerasseg.visualize import class_color  # noqa: E402

BCCD = os.environ.get("BCCD_ROOT", os.path.join(ROOT, "..", "shared", "data", "bccd", "BCCD"))
IMAGE_ID = "BloodImage_00048"
WBC = "WBC"
OUT = os.path.join(ROOT, "docs", "img")
DPI = 100
MAX_BYTES = 150_000
YOLOV2_SIZE, YOLOV2_STRIDE = 416, 32
YOLOV8_SIZE = 320
SEED = 0


def _rgb(class_id: int) -> tuple[float, float, float]:
    return tuple(c / 255.0 for c in class_color(class_id))


def _save(figure, name: str) -> None:
    """Renders `figure` and writes it as a 256-colour PNG (the photos stay small)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB")
    path = os.path.join(OUT, name)
    image.save(path, optimize=True)
    if os.path.getsize(path) > MAX_BYTES:
        image.quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KB)")


def _letterboxed(image: np.ndarray, record, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The image and its boxes letterboxed to ``size x size`` by the library."""
    target = {"boxes": record.boxes, "classes": record.classes}
    out, moved = letterbox(image.astype("float32"), target, (size, size))
    return np.asarray(out).clip(0, 255).astype("uint8"), np.asarray(moved["boxes"])


def _draw_truth(ax, boxes: np.ndarray, classes: np.ndarray, names, width: float = 1.2) -> None:
    from matplotlib.patches import Rectangle

    seen = set()
    for box, c in zip(boxes, classes):
        x1, y1, x2, y2 = box
        label = names[c] if c not in seen else None
        seen.add(c)
        ax.add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=width, ec=_rgb(c), label=label)
        )


def grid_figure(image, record, names, wbc: int, train) -> None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    picture, boxes = _letterboxed(image, record, YOLOV2_SIZE)
    fit = fit_anchors(train, 5, image_size=(YOLOV2_SIZE, YOLOV2_SIZE), letterbox=True)
    box = boxes[wbc]
    centre = (box[:2] + box[2:]) / 2
    column, row = (centre // YOLOV2_STRIDE).astype(int)
    cell_centre = (np.array([column, row]) + 0.5) * YOLOV2_STRIDE
    responsible = int(np.argmax(shape_iou((box[2:] - box[:2])[None], fit.anchors)[0]))

    figure = Figure(figsize=(7.2, 4.9))
    ax = figure.subplots()
    ax.imshow(picture)
    cells = YOLOV2_SIZE // YOLOV2_STRIDE
    for k in range(cells + 1):
        ax.axhline(k * YOLOV2_STRIDE, color="white", lw=0.5, alpha=0.6)
        ax.axvline(k * YOLOV2_STRIDE, color="white", lw=0.5, alpha=0.6)
    ax.add_patch(
        Rectangle(
            (column * YOLOV2_STRIDE, row * YOLOV2_STRIDE),
            YOLOV2_STRIDE,
            YOLOV2_STRIDE,
            fc=(1.0, 1.0, 0.0, 0.4),
            ec="yellow",
            lw=1.5,
            label=f"cell (row {row}, column {column})",
        )
    )
    _draw_truth(ax, boxes, record.classes, names)
    ax.plot(*centre, "o", color="yellow", ms=5, mec="black", label="WBC centre")
    for a, (w, h) in enumerate(fit.anchors):
        best = a == responsible
        ax.add_patch(
            Rectangle(
                (cell_centre[0] - w / 2, cell_centre[1] - h / 2),
                w,
                h,
                fill=False,
                ec="black" if best else "0.15",
                lw=2.2 if best else 1.0,
                ls="-" if best else "--",
                label=f"prior {a}: {w:.0f} x {h:.0f}" + (" (responsible)" if best else ""),
            )
        )
    ax.set_xlim(0, YOLOV2_SIZE)
    ax.set_ylim(YOLOV2_SIZE, 0)
    ax.set_xticks(range(0, YOLOV2_SIZE + 1, 4 * YOLOV2_STRIDE))
    ax.set_yticks(range(0, YOLOV2_SIZE + 1, 4 * YOLOV2_STRIDE))
    ax.tick_params(labelsize=7)
    ax.set_title(
        f"YOLOv2 at {YOLOV2_SIZE} x {YOLOV2_SIZE}: {cells} x {cells} cells, 5 k-means priors "
        f"(avg IoU {fit.average_iou:.3f})",
        fontsize=9,
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    figure.tight_layout()
    _save(figure, "detector_grid_anchors.png")
    print(f"  priors {np.round(fit.anchors, 1).tolist()}, responsible prior {responsible}")


def retinanet_figure(image, record, names, wbc: int) -> None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    height, width = image.shape[:2]
    generator = retinanet_anchors()
    per_level = [np.asarray(level) for level in generator.per_level((height, width))]
    sizes = generator.feature_sizes((height, width))
    box = record.boxes[wbc]
    centre = (box[:2] + box[2:]) / 2
    figure = Figure(figsize=(10, 4.1))
    axes = figure.subplots(1, 2)
    styles = {0.5: "-", 1.0: "--", 2.0: ":"}
    size_colours = ("tab:blue", "tab:orange", "tab:red")
    for ax, level in zip(axes, (0, 2)):
        stride = generator.strides[level][0]
        rows, columns = sizes[level]
        # torchvision's anchors are centred on (column * stride, row * stride).
        column, row = np.clip(np.round(centre / stride).astype(int), 0, [columns - 1, rows - 1])
        index = (row * columns + column) * 9
        anchors = per_level[level][index : index + 9]
        iou = boxes_np.pairwise_iou(box[None], anchors)[0]
        ax.imshow(image)
        _draw_truth(ax, record.boxes[wbc : wbc + 1], record.classes[wbc : wbc + 1], names, 2.0)
        for a, anchor in enumerate(anchors):
            x1, y1, x2, y2 = anchor
            ratio = (y2 - y1) / (x2 - x1)
            ratio = min(styles, key=lambda r: abs(np.log(r / ratio)))
            ax.add_patch(
                Rectangle(
                    (x1, y1),
                    x2 - x1,
                    y2 - y1,
                    fill=False,
                    lw=1.4,
                    ec=size_colours[a % 3],
                    ls=styles[ratio],
                    label=f"{x2 - x1:.0f} x {y2 - y1:.0f}, IoU {iou[a]:.2f}",
                )
            )
        ax.plot(column * stride, row * stride, "o", color="yellow", mec="black", ms=4)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.axis("off")
        ax.set_title(
            f"P{level + 3} (stride {stride:.0f}, {rows} x {columns} locations): 9 anchors, "
            f"best IoU {iou.max():.2f}",
            fontsize=9,
        )
        ax.legend(loc="lower left", fontsize=6, ncol=3, framealpha=0.85)
        print(f"  P{level + 3}: best IoU with the WBC {iou.max():.3f}")
    figure.tight_layout()
    _save(figure, "detector_retinanet_anchors.png")


def _jittered_predictions(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Each point's "prediction": the box whose centre is nearest (in box half-sizes),
    each side moved by seeded Gaussian noise of (0.03 + 0.12 d) times the box size, d the
    point's normalised distance from the centre."""
    rng = np.random.default_rng(SEED)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    halves = (boxes[:, 2:] - boxes[:, :2]) / 2
    distance = np.linalg.norm((points[:, None] - centres[None]) / halves[None], axis=-1)
    nearest = np.argmin(distance, axis=1)
    chosen = boxes[nearest]
    size = np.tile(chosen[:, 2:] - chosen[:, :2], 2)
    sigma = (0.03 + 0.12 * distance[np.arange(len(points)), nearest])[:, None]
    return chosen + rng.normal(size=chosen.shape) * sigma * size


def yolov8_figure(image, record, names, wbc: int) -> None:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    picture, boxes = _letterboxed(image, record, YOLOV8_SIZE)
    sizes = [(YOLOV8_SIZE // s, YOLOV8_SIZE // s) for s in STRIDES]
    points, point_strides = (np.asarray(v) for v in anchor_points(sizes, STRIDES))
    predictions = _jittered_predictions(points, boxes)
    num_classes = len(names)
    assigned = task_aligned_assign(
        np.full((1, len(points), num_classes), 0.5, "float32"),
        predictions[None].astype("float32"),
        points,
        boxes[None].astype("float32"),
        record.classes[None].astype("int32"),
    )
    positive = np.asarray(assigned["positive"])[0]
    gt_index = np.asarray(assigned["gt_index"])[0]
    target = np.asarray(assigned["scores"])[0].max(axis=-1)
    box = boxes[wbc]
    inside = (
        (points[:, 0] > box[0])
        & (points[:, 0] < box[2])
        & (points[:, 1] > box[1])
        & (points[:, 1] < box[3])
    )
    mine = positive & (gt_index == wbc)
    markers = {8.0: ("o", 7), 16.0: ("s", 22), 32.0: ("D", 40)}

    figure = Figure(figsize=(10, 4.6))
    whole, zoom = figure.subplots(1, 2)
    whole.imshow(picture)
    _draw_truth(whole, boxes, record.classes, names, 1.0)
    for stride, (marker, area) in markers.items():
        level = point_strides == stride
        whole.scatter(
            *points[level & positive].T,
            s=area * 1.5,
            marker=marker,
            c="yellow",
            edgecolors="black",
            linewidths=0.4,
            label=f"positives on P{int(np.log2(stride))}",
        )
    margin = 24
    x1, y1, x2, y2 = box
    crop = (x1 - margin, y1 - margin, x2 + margin, y2 + margin)
    whole.add_patch(
        Rectangle(
            crop[:2], crop[2] - crop[0], crop[3] - crop[1], fill=False, ec="white", lw=1.0, ls="--"
        )
    )
    whole.set_xlim(0, YOLOV8_SIZE)
    whole.set_ylim(YOLOV8_SIZE, 0)
    whole.axis("off")
    whole.set_title(
        f"{YOLOV8_SIZE} x {YOLOV8_SIZE}: {len(points)} anchor points, {int(positive.sum())} "
        f"positives for {len(boxes)} objects",
        fontsize=9,
    )
    whole.legend(loc="lower left", fontsize=6, framealpha=0.85)

    zoom.imshow(picture)
    _draw_truth(zoom, boxes[wbc : wbc + 1], record.classes[wbc : wbc + 1], names, 2.0)
    counts = []
    for stride, (marker, area) in markers.items():
        level = point_strides == stride
        name = f"P{int(np.log2(stride))}"
        zoom.scatter(
            *points[level & ~inside].T,
            s=area,
            marker=marker,
            facecolors="none",
            edgecolors="0.85",
            linewidths=0.8,
        )
        zoom.scatter(
            *points[level & inside & ~mine].T,
            s=area,
            marker=marker,
            facecolors="none",
            edgecolors="tab:cyan",
            linewidths=1.2,
            label=f"{name} inside the box: {int((level & inside).sum())}",
        )
        zoom.scatter(
            *points[level & mine].T,
            s=max(area * 2.5, 40),
            marker=marker,
            c="yellow",
            edgecolors="black",
            linewidths=0.8,
            label=f"{name} picked: {int((level & mine).sum())}",
        )
        counts.append(
            f"{name} {int((level & inside).sum())} inside, {int((level & mine).sum())} picked"
        )
    best = int(np.argmax(np.where(mine, target, -1)))
    px1, py1, px2, py2 = predictions[best]
    zoom.add_patch(
        Rectangle(
            (px1, py1),
            px2 - px1,
            py2 - py1,
            fill=False,
            ec="yellow",
            lw=1.0,
            ls="--",
            label=f"best point's box, target {target[best]:.2f}",
        )
    )
    zoom.set_xlim(crop[0], crop[2])
    zoom.set_ylim(crop[3], crop[1])
    zoom.axis("off")
    zoom.set_title(f"the WBC: top 10 of {int(inside.sum())} points by $s^{{0.5}} u^6$", fontsize=9)
    zoom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    figure.tight_layout()
    _save(figure, "detector_yolov8_points.png")
    print(
        f"  WBC: {'; '.join(counts)}; targets of its positives "
        f"{np.round(np.sort(target[mine])[::-1], 2).tolist()}"
    )


def main() -> None:
    from PIL import Image

    logging.basicConfig(level=logging.ERROR)
    train = load_voc(BCCD, "train")
    names = train.class_names
    record = next(r for r in train.records if r.image_id == IMAGE_ID)
    image = np.asarray(Image.open(record.image_path).convert("RGB"))
    wbc = int(np.where(record.classes == names.index(WBC))[0][0])
    print(f"{IMAGE_ID}: {record.num_boxes} boxes, WBC box {record.boxes[wbc].tolist()}")
    grid_figure(image, record, names, wbc, train)
    retinanet_figure(image, record, names, wbc)
    yolov8_figure(image, record, names, wbc)


if __name__ == "__main__":
    main()
