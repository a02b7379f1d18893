"""Draws docs/img/pr_curve.png with kerasseg.visualize.plot_pr_curves.

A seeded synthetic detector on synthetic images: every ground-truth box is found by a few
jittered detections (the "car" class sloppily, "person" tightly), plus random false
positives. The figure shows the per-class COCO precision-recall curves at IoU 0.5 and at
IoU 0.75 side by side: the stricter threshold turns loose boxes into false positives.

Run from the repository root:  python docs/scripts/make_pr_curve_figure.py
"""

from __future__ import annotations

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from kerasseg.metrics.detection import evaluate  # noqa: E402
from kerasseg.visualize import plot_pr_curves  # noqa: E402

CLASS_NAMES = ["person", "car", "dog"]
JITTER = {0: 0.04, 1: 0.16, 2: 0.09}  # relative box noise per class


def synthetic_set(num_images: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    ground_truth, detections = [], []
    for _ in range(num_images):
        n = int(rng.integers(1, 6))
        xy = rng.uniform(0, 400, (n, 2))
        wh = rng.uniform(20, 200, (n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        classes = rng.integers(0, 3, n)
        ground_truth.append({"boxes": boxes, "classes": classes})
        det_boxes, det_classes, det_scores = [], [], []
        for box, cls in zip(boxes, classes):
            if rng.random() < 0.1:  # missed entirely
                continue
            size = np.tile(box[2:] - box[:2], 2)
            for copy in range(int(rng.integers(1, 3))):
                det_boxes.append(box + rng.normal(0, JITTER[int(cls)], 4) * size)
                det_classes.append(cls)
                det_scores.append(rng.beta(5, 2) if copy == 0 else rng.beta(2, 4))
        for _ in range(int(rng.integers(0, 4))):
            xy0 = rng.uniform(0, 400, 2)
            det_boxes.append(np.concatenate([xy0, xy0 + rng.uniform(20, 150, 2)]))
            det_classes.append(rng.integers(0, 3))
            det_scores.append(rng.beta(2, 5))
        det_boxes = np.array(det_boxes).reshape(-1, 4)
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2])
        detections.append(
            {"boxes": det_boxes, "classes": np.array(det_classes), "scores": np.array(det_scores)}
        )
    return ground_truth, detections


def main() -> None:
    from matplotlib.figure import Figure

    ground_truth, detections = synthetic_set()
    result = evaluate(
        ground_truth,
        detections,
        protocol="coco",
        num_classes=3,
        class_names=CLASS_NAMES,
        progress=False,
    )
    print(result)
    figure = Figure(figsize=(10, 4.2))
    left, right = figure.subplots(1, 2, sharey=True)
    plot_pr_curves(result, iou_threshold=0.5, ax=left, title="COCO curves at IoU 0.5")
    plot_pr_curves(result, iou_threshold=0.75, ax=right, title="COCO curves at IoU 0.75")
    figure.tight_layout()
    out = os.path.join(ROOT, "docs", "img", "pr_curve.png")
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
