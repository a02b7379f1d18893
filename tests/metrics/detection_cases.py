"""Seeded adversarial detection sets shared by the detection-metric tests.

The sets stress every rule of the evaluators: boxes whose areas sit exactly on COCO's
area-range boundaries (32² and 96², as box area and as the annotation's "area" field),
crowd regions, duplicated ground truth (ties on IoU), tied scores, images without ground
truth, more than 100 detections for one image and class, tiny and huge boxes, a category
with ground truth but no detections and one with detections but no ground truth.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np

CATEGORY_IDS = (1, 3, 4, 7, 10, 12)
NO_DETECTIONS_CATEGORY = 4  # has ground truth, never detected
NO_GROUND_TRUTH_CATEGORY = 12  # detected, never in the ground truth
# (width, height) on and around the area boundaries, tiny and huge.
SPECIAL_SIZES = (
    (32, 32),
    (16, 64),
    (96, 96),
    (48, 192),
    (31.75, 32),
    (32.25, 32),
    (1, 1),
    (0.5, 2),
    (0.25, 0.25),
    (500, 400),
    (1000, 900),
)


def _quantize(values, grid: bool):
    # On a 1/4 grid xyxy <-> xywh conversions are exact, so array and JSON inputs agree.
    return [float(np.round(v * 4) / 4) if grid else float(v) for v in values]


def make_coco_case(seed: int, *, num_images: int = 30, grid: bool = True, quality: float = 0.5):
    """A COCO ground-truth dataset dict and results list.

    Args:
        seed: RNG seed.
        num_images: Number of images.
        grid: Put every coordinate on a 1/4-pixel grid.
        quality: Fraction of detections that are jittered copies of ground truth.
    """
    rng = np.random.default_rng(seed)
    detectable = [c for c in CATEGORY_IDS if c != NO_DETECTIONS_CATEGORY]
    labelled = [c for c in CATEGORY_IDS if c != NO_GROUND_TRUTH_CATEGORY]
    # Non-contiguous, shuffled image ids: evaluation must sort them like pycocotools.
    image_ids = rng.permutation(np.arange(5, 5 + 3 * num_images, 3)).tolist()
    images = [{"id": int(i), "width": 640, "height": 480} for i in image_ids]
    annotations, results = [], []

    def random_box():
        if rng.random() < 0.35:
            w, h = SPECIAL_SIZES[rng.integers(len(SPECIAL_SIZES))]
        else:
            w, h = np.exp(rng.uniform(-1, 6.5, 2))
        x, y = rng.uniform(0, 600, 2)
        return _quantize([x, y, w, h], grid)

    ann_id = 1
    for position, image_id in enumerate(image_ids):
        num_gt = int(rng.choice([0, 0, 1, 2, 4, 9, 16]))
        own = []
        for _ in range(num_gt):
            box = random_box()
            annotation = {
                "id": ann_id,
                "image_id": int(image_id),
                "category_id": int(rng.choice(labelled)),
                "bbox": box,
                "iscrowd": int(rng.random() < 0.12),
            }
            roll = rng.random()
            if roll < 0.55:
                annotation["area"] = box[2] * box[3]
            else:  # a segmentation area, sometimes exactly on a boundary
                annotation["area"] = float(
                    rng.choice([1024.0, 9216.0, 1023.75, 9216.25, box[2] * box[3] * 0.6])
                )
            annotations.append(annotation)
            own.append(annotation)
            ann_id += 1
            if rng.random() < 0.12:  # an exact duplicate: IoU ties between ground truths
                twin = dict(annotation, id=ann_id)
                annotations.append(twin)
                own.append(twin)
                ann_id += 1
        if grid and rng.random() < 0.3:
            # Two ground truths tied on IoU with one detection (the midpoint box): the
            # detection must take the later one, leaving the earlier for a second detection.
            x, y = _quantize(rng.uniform(0, 500, 2), grid)
            w, h, shift = float(rng.choice([40, 60, 100])), 50.0, float(rng.choice([4, 8, 12]))
            category = int(rng.choice([c for c in labelled if c != NO_DETECTIONS_CATEGORY]))
            for dx in (0.0, shift):
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": int(image_id),
                        "category_id": category,
                        "bbox": [x + dx, y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
                ann_id += 1
            top = float(rng.uniform(0.5, 1.0))
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": category,
                    "bbox": [x + shift / 2, y, w, h],
                    "score": top,
                }
            )
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "score": top / 2,
                }
            )
        # Every fifth image also gets a flood of one class: more than 100 detections for
        # one image and class, so that maxDets=100 cuts the list.
        num_det = int(rng.choice([0, 3, 12, 40]))
        num_flood = 115 if position % 5 == 0 else 0
        flood_class = int(rng.choice(detectable))
        for index in range(num_det + num_flood):
            derived = False
            if index >= num_det:
                category = flood_class
                box = random_box()
            elif own and rng.random() < quality:
                derived = True
                source = own[rng.integers(len(own))]
                category = source["category_id"]
                if rng.random() < 0.15:
                    category = int(rng.choice(detectable))
                if category == NO_DETECTIONS_CATEGORY:
                    category = NO_GROUND_TRUTH_CATEGORY
                x, y, w, h = source["bbox"]
                if rng.random() < 0.25:
                    box = [x, y, w, h]  # exact copy: IoU 1
                else:
                    spread = max(w, h) * rng.uniform(0, 0.2)
                    box = _quantize(
                        [
                            x + rng.normal() * spread,
                            y + rng.normal() * spread,
                            w * rng.uniform(0.75, 1.3),
                            h * rng.uniform(0.75, 1.3),
                        ],
                        grid,
                    )
            else:
                category = int(rng.choice(detectable))
                box = random_box()
            # Half the scores on a coarse grid: many exact ties. The flood scores low.
            score = float(np.round(rng.random(), 1)) if rng.random() < 0.5 else float(rng.random())
            if index >= num_det:
                score /= 4
            elif derived and rng.random() < quality:  # good detections tend to score higher
                score = 0.5 + score / 2
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": category,
                    "bbox": box,
                    "score": score,
                }
            )
    categories = [{"id": c, "name": f"class{c}"} for c in CATEGORY_IDS]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def run_pycocotools(pycocotools, ground_truth: dict, results: list):
    """pycocotools' COCOeval on in-memory dicts, silenced; returns the evaluator."""
    coco_module = __import__("pycocotools.coco", fromlist=["COCO"])
    eval_module = __import__("pycocotools.cocoeval", fromlist=["COCOeval"])
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = coco_module.COCO()
        coco_gt.dataset = copy.deepcopy(ground_truth)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        evaluator = eval_module.COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def coco_to_arrays(ground_truth: dict, results: list):
    """COCO dicts -> per-image dicts (xyxy), images in ascending id order, and the ids."""
    image_ids = sorted(image["id"] for image in ground_truth["images"])
    gt = {i: {"boxes": [], "classes": [], "iscrowd": [], "area": []} for i in image_ids}
    dt = {i: {"boxes": [], "classes": [], "scores": []} for i in image_ids}
    for a in ground_truth["annotations"]:
        x, y, w, h = a["bbox"]
        entry = gt[a["image_id"]]
        entry["boxes"].append([x, y, x + w, y + h])
        entry["classes"].append(a["category_id"])
        entry["iscrowd"].append(a["iscrowd"])
        entry["area"].append(a["area"])
    for r in results:
        x, y, w, h = r["bbox"]
        entry = dt[r["image_id"]]
        entry["boxes"].append([x, y, x + w, y + h])
        entry["classes"].append(r["category_id"])
        entry["scores"].append(r["score"])
    as_arrays = lambda d: {  # noqa: E731
        k: np.asarray(v, np.float64).reshape(-1, 4) if k == "boxes" else np.asarray(v)
        for k, v in d.items()
    }
    return [as_arrays(gt[i]) for i in image_ids], [as_arrays(dt[i]) for i in image_ids], image_ids
