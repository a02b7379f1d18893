"""Draws the detections and PR curves of a detector trained by a BCCD recipe.

Needs the weights of ``kerasseg zoo train yolov8_n.bccd`` in the cache ($KERASSEG_HOME);
writes docs/img/detector_bccd_detections.png (ground truth beside detections, two test
images) and docs/img/detector_bccd_pr.png (per-class precision-recall on the test split,
IoU 0.5 and 0.75).

Run from the repository root:  python docs/scripts/make_bccd_detection_figures.py [MODEL]
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import kerasseg  # noqa: E402
from kerasseg.cli_detection import demo_picture  # noqa: E402
from kerasseg.data import load_voc  # noqa: E402
from kerasseg.metrics.detection import evaluate  # noqa: E402
from kerasseg.training import detect_records  # noqa: E402
from kerasseg.visualize import plot_pr_curves, save_png  # noqa: E402
from kerasseg.zoo.recipes import load_recipe, resolve_data  # noqa: E402

IMAGES = os.path.join(ROOT, "docs", "img")


def main(name: str = "yolov8_n.bccd") -> None:
    recipe = load_recipe(name)
    root = resolve_data(recipe)
    test = load_voc(root, recipe.data.test, list(recipe.data.classes))
    size = recipe.train["image_size"]
    model = kerasseg.zoo.get(name, input_shape=(size, size, 3))
    model.score_threshold = 0.001
    detections = detect_records(model, test.records, letterbox=recipe.train["letterbox"])
    picture = demo_picture(test, detections, 2)
    save_png(picture[::2, ::2], os.path.join(IMAGES, "detector_bccd_detections.png"))
    result = evaluate(test.ground_truth(), detections, "coco", class_names=test.class_names)
    print(result)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, iou in zip(axes, (0.5, 0.75)):
        plot_pr_curves(result, iou_threshold=iou, title=f"{name}, BCCD test, IoU {iou}", ax=ax)
    figure.tight_layout()
    figure.savefig(os.path.join(IMAGES, "detector_bccd_pr.png"), dpi=90)


if __name__ == "__main__":
    main(*sys.argv[1:])
