"""Times kerasseg's COCO mAP evaluator against pycocotools and faster-coco-eval.

Synthetic COCO-like data (seeded): every image has 1-15 ground-truth boxes over 80
categories (about 1 in 30 a crowd region, areas spread over small/medium/large) and exactly
100 detections: 1-5 jittered copies of each ground-truth box (sometimes with the wrong
class; the first copy scoring high, the others lower) and random low-scoring boxes
filling the rest.

Each evaluator starts from the same in-memory COCO dicts (ground-truth dataset and results
list) and ends with the 12 summary numbers; the time covers indexing, matching,
accumulation and the summary. The numbers must agree exactly (to 1e-12) with pycocotools'.

Needs pycocotools and faster-coco-eval installed (`pip install pycocotools faster-coco-eval`).
Run from the repository root (CPU heavy, a few minutes):

    python benchmarks/map_eval.py            # 5,000 and 500 images
    python benchmarks/map_eval.py --images 500
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def synthetic_coco(
    num_images: int, num_classes: int = 80, dets_per_image: int = 100, seed: int = 0
):
    """A COCO ground-truth dict and a results list."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    ann_id = 1
    for image_id in range(1, num_images + 1):
        width, height = 640.0, 480.0
        images.append({"id": image_id, "width": width, "height": height})
        n_gt = int(rng.integers(1, 16))
        sizes = np.exp(rng.uniform(np.log(8), np.log(400), (n_gt, 2)))
        w = np.minimum(sizes[:, 0], width - 1)
        h = np.minimum(sizes[:, 1], height - 1)
        x = rng.uniform(0, width - w)
        y = rng.uniform(0, height - h)
        classes = rng.integers(1, num_classes + 1, n_gt)
        gts = []
        for j in range(n_gt):
            bbox = [float(x[j]), float(y[j]), float(w[j]), float(h[j])]
            crowd = int(rng.random() < 1 / 30)
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": int(classes[j]),
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": crowd,
                }
            )
            gts.append((bbox, int(classes[j])))
            ann_id += 1
        dets, scores = [], []
        for bbox, cls in gts:
            for copy_index in range(int(rng.integers(1, 6))):
                bx, by, bw, bh = bbox
                jitter = rng.normal(0, 0.1, 4) * np.array([bw, bh, bw, bh])
                c = cls if rng.random() < 0.9 else int(rng.integers(1, num_classes + 1))
                dets.append(
                    (
                        [
                            bx + jitter[0],
                            by + jitter[1],
                            max(bw + jitter[2], 1.0),
                            max(bh + jitter[3], 1.0),
                        ],
                        c,
                    )
                )
                # The first box on an object tends to score high, the duplicates lower.
                scores.append(rng.beta(6, 2) if copy_index == 0 else rng.beta(2, 3))
        dets, scores = dets[:dets_per_image], scores[:dets_per_image]
        n_random = dets_per_image - len(dets)
        sizes = np.exp(rng.uniform(np.log(8), np.log(300), (n_random, 2)))
        rx = rng.uniform(0, width - sizes[:, 0])
        ry = rng.uniform(0, height - sizes[:, 1])
        rc = rng.integers(1, num_classes + 1, n_random)
        dets += [([rx[j], ry[j], sizes[j, 0], sizes[j, 1]], int(rc[j])) for j in range(n_random)]
        scores += list(rng.beta(1, 6, n_random))  # background boxes: mostly low scores
        for (bbox, cls), score in zip(dets, scores):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": cls,
                    "bbox": [float(v) for v in bbox],
                    "score": float(score),
                }
            )
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, num_classes + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def run_pycocotools(gt, results, module: str):
    if module == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    else:
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        elapsed = time.perf_counter() - start
    return elapsed, np.asarray(evaluator.stats, dtype=np.float64), evaluator.eval["precision"]


def run_kerasseg(gt, results):
    from kerasseg.metrics.detection import evaluate

    start = time.perf_counter()
    result = evaluate(gt, results, protocol="coco", progress=False)
    return time.perf_counter() - start, result.stats, result.precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="*", default=[5000, 500])
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per tool (best kept)")
    args = parser.parse_args()
    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)
    import kerasseg.metrics.detection  # noqa: F401  (import cost outside the timings)

    rows = []
    for num_images in args.images:
        gt, results = synthetic_coco(num_images)
        timings, outputs = {}, {}
        for name in ("pycocotools", "faster-coco-eval", "kerasseg"):
            best = np.inf
            for _ in range(args.repeats):
                # Each tool gets fresh copies: pycocotools' loadRes edits the results.
                gt_copy, res_copy = copy.deepcopy(gt), copy.deepcopy(results)
                if name == "kerasseg":
                    elapsed, stats, precision = run_kerasseg(gt_copy, res_copy)
                else:
                    module = "pycocotools" if name == "pycocotools" else "faster_coco_eval"
                    elapsed, stats, precision = run_pycocotools(gt_copy, res_copy, module)
                best = min(best, elapsed)
            timings[name] = best
            outputs[name] = (stats, precision)
        ref_stats, ref_precision = outputs["pycocotools"]
        ours_stats, ours_precision = outputs["kerasseg"]
        fast_stats, _ = outputs["faster-coco-eval"]
        same = bool(
            np.max(np.abs(ours_stats - ref_stats)) <= 1e-12
            and np.max(np.abs(ours_precision - ref_precision)) <= 1e-12
        )
        fast_diff = float(np.max(np.abs(fast_stats - ref_stats)))
        rows.append((num_images, len(results), timings, same, fast_diff, ours_stats[0]))

    print()
    print(
        "| images | detections | pycocotools (s) | faster-coco-eval (s) | kerasseg (s) "
        "| vs pycocotools | vs faster-coco-eval | identical to pycocotools | AP |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|:---:|---:|")
    for num_images, n_det, t, same, _fast_diff, ap in rows:
        print(
            f"| {num_images:,} | {n_det:,} | {t['pycocotools']:.2f} | {t['faster-coco-eval']:.2f} "
            f"| {t['kerasseg']:.2f} | {t['pycocotools'] / t['kerasseg']:.1f}x "
            f"| {t['faster-coco-eval'] / t['kerasseg']:.1f}x | {'yes' if same else 'NO'} "
            f"| {ap:.4f} |"
        )
    print(
        "\n(faster-coco-eval's largest difference from pycocotools' 12 numbers: "
        + ", ".join(f"{r[0]} images: {r[4]:.1e}" for r in rows)
        + ")"
    )
    if not all(r[3] for r in rows):
        raise SystemExit("kerasseg's numbers differ from pycocotools'")


if __name__ == "__main__":
    main()
