"""Pictures of results: segmentation overlays, detection boxes, precision-recall curves.

Segmentation overlays need only Pillow; plots (PR curves) need matplotlib, from the ``plot``
extra, which is imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

# Segmentation ---------------------------------------------------------------------------


def _to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) in 0..255 (any dtype) -> (H, W, 3) uint8."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(
            f"`image` must have shape (H, W), (H, W, 1) or (H, W, 3); got {np.shape(image)}."
        )
    return np.clip(np.round(array), 0, 255).astype(np.uint8)


def mask_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    color: tuple[int, int, int] = (255, 40, 40),
    alpha: float = 0.5,
) -> np.ndarray:
    """Blends a binary mask onto an image.

    Args:
        image: (H, W), (H, W, 1) or (H, W, 3), values in 0..255.
        mask: (H, W) or (H, W, 1); nonzero pixels are painted.
        color: RGB colour of the mask.
        alpha: Opacity of the mask colour in [0, 1].

    Returns:
        (H, W, 3) uint8 image.
    """
    rgb = _to_uint8_rgb(image).astype(np.float64)
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.shape != rgb.shape[:2]:
        raise ValueError(
            f"`mask` must have the image's height and width {rgb.shape[:2]}; got {mask.shape}."
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha}.")
    painted = mask.astype(bool)
    rgb[painted] = (1 - alpha) * rgb[painted] + alpha * np.asarray(color, dtype=np.float64)
    return np.round(rgb).astype(np.uint8)


def overlay_panel(
    image: np.ndarray,
    true_mask: np.ndarray,
    pred_mask: np.ndarray,
    *,
    gap: int = 4,
) -> np.ndarray:
    """Side by side: the image, the ground truth overlaid, the prediction overlaid.

    Args:
        image: (H, W[, C]) in 0..255.
        true_mask: (H, W[, 1]) binary ground truth, painted green.
        pred_mask: (H, W[, 1]) binary prediction, painted red.
        gap: White pixels between the panels.

    Returns:
        (H, 3W + 2 gap, 3) uint8 image.
    """
    rgb = _to_uint8_rgb(image)
    panels = [
        rgb,
        mask_overlay(rgb, true_mask, color=(40, 200, 40)),
        mask_overlay(rgb, pred_mask, color=(255, 40, 40)),
    ]
    spacer = np.full((rgb.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([panels[0], spacer, panels[1], spacer, panels[2]], axis=1)


def save_png(image: np.ndarray, path: str) -> None:
    """Writes an (H, W, 3) uint8 array as PNG."""
    Image.fromarray(_to_uint8_rgb(image)).save(path)


# Detection ------------------------------------------------------------------------------


# A qualitative palette (tab10 then tab20's light tones), cycled by class id.
_BOX_COLORS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (199, 199, 199),
    (219, 219, 141),
    (158, 218, 229),
)


def class_color(class_id: int) -> tuple[int, int, int]:
    """The RGB colour used for a class id (the palette cycles after 20 classes)."""
    return _BOX_COLORS[int(class_id) % len(_BOX_COLORS)]


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray | None = None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    *,
    score_threshold: float = 0.0,
    line_width: int = 2,
) -> np.ndarray:
    """Draws labelled boxes on an image.

    Args:
        image: (H, W), (H, W, 1) or (H, W, 3) in 0..255.
        boxes: (N, 4) ``xyxy`` boxes in pixels.
        classes: (N,) class ids; negative ids (padding) are skipped.
        scores: Optional (N,) confidences, shown after the name; boxes scoring below
            ``score_threshold`` are skipped.
        class_names: Names by class id (list or dict); default: the id.
        score_threshold: Minimum score to draw (needs ``scores``).
        line_width: Box outline width in pixels.

    Returns:
        (H, W, 3) uint8 RGB image with the boxes drawn.
    """
    from PIL import ImageDraw, ImageFont

    rgb = Image.fromarray(_to_uint8_rgb(image))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1).astype(np.int64)
    if len(classes) != len(boxes):
        raise ValueError(
            f"`classes` must have one entry per box ({len(boxes)}); got {len(classes)}."
        )
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(
                f"`scores` must have one entry per box ({len(boxes)}); got {len(scores)}."
            )
    if isinstance(class_names, Sequence):
        names = dict(enumerate(class_names))
    else:
        names = dict(class_names or {})
    draw = ImageDraw.Draw(rgb)
    font = ImageFont.load_default()
    order = np.argsort(scores, kind="stable") if scores is not None else np.arange(len(boxes))
    for i in order:  # lowest score first, so the best boxes end up on top
        if classes[i] < 0 or (scores is not None and scores[i] < score_threshold):
            continue
        color = class_color(classes[i])
        x1, y1, x2, y2 = boxes[i].tolist()
        draw.rectangle([x1, y1, x2, y2], outline=color, width=line_width)
        label = str(names.get(int(classes[i]), int(classes[i])))
        if scores is not None:
            label = f"{label} {scores[i]:.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), label, font=font)
        lift = bottom - top + 2
        ty = y1 - lift if y1 - lift >= 0 else y1
        draw.rectangle([x1, ty, x1 + (right - left) + 4, ty + lift], fill=color)
        draw.text((x1 + 2, ty), label, fill=(255, 255, 255), font=font)
    return np.asarray(rgb, dtype=np.uint8)


def plot_pr_curves(
    result: Any,
    *,
    class_ids: Sequence[int] | None = None,
    iou_threshold: float = 0.5,
    max_classes: int = 20,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """Precision-recall curves of a detection evaluation, one line per class.

    Args:
        result: A :class:`kerasseg.metrics.detection.DetectionResult`.
        class_ids: Classes to plot; default: those with ground truth, the
            ``max_classes`` most frequent.
        iou_threshold: COCO: which IoU threshold's curves (0.5, 0.55, ..., 0.95); the
            legend shows AP at that threshold. VOC: ignored.
        max_classes: Cap on the number of curves when ``class_ids`` is None.
        title: Axes title (default: protocol and mAP).
        ax: A matplotlib Axes to draw into; default: a new Figure.

    Returns:
        The matplotlib Figure (needs the ``plot`` extra: matplotlib).
    """
    from matplotlib.figure import Figure

    if ax is None:
        figure = Figure(figsize=(6.4, 4.8))
        ax = figure.add_subplot()
    else:
        figure = ax.figure
    if class_ids is None:
        counts = zip(result.class_ids, result.num_ground_truth)
        present = [(int(n), int(c)) for c, n in counts if n > 0]
        class_ids = [c for _, c in sorted(present, key=lambda item: -item[0])[:max_classes]]
    if result.protocol == "coco":
        per_class_ap = result.per_class_ap_at(iou_threshold)
    else:
        per_class_ap = result.per_class_ap
    for class_id in class_ids:
        recall, precision = result.pr_curve(int(class_id), iou_threshold)
        color = np.asarray(class_color(class_id)) / 255
        label = f"{result.class_name(class_id)} (AP {per_class_ap[int(class_id)]:.3f})"
        if result.protocol == "coco":
            if recall.size:  # empty: no ground truth
                ax.plot(recall, precision, color=color, label=label)
        elif recall.size:
            # The devkit's raw curve, drawn as steps from recall 0.
            ax.step(
                np.concatenate([[0.0], recall]),
                np.concatenate([[precision[0]], precision]),
                where="pre",
                color=color,
                label=label,
            )
        elif np.isfinite(per_class_ap[int(class_id)]):  # never detected: a mark at the origin
            ax.plot([0.0], [0.0], marker="x", linestyle="none", color=color, label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    if title is None:
        where = f"IoU {iou_threshold:g}" if result.protocol == "coco" else "VOC"
        title = f"Precision-recall ({result.protocol}, {where}); mAP {result.map:.3f}"
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize="small")
    figure.tight_layout()
    return figure
