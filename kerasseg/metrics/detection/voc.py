"""PASCAL VOC box AP: the 2007 11-point rule and the 2010+ all-point rule.

The rules of the devkit's ``voc_eval`` (as in the py-faster-rcnn / Detectron port):

* Per class, all detections sorted by confidence (stable: ties keep their input order).
* A detection's overlap is its highest IoU with *any* ground truth of its class in its
  image (first one on ties). Above the threshold (``ovmax > 0.5``, strictly): if that
  ground truth is ``difficult`` the detection is ignored (neither TP nor FP); otherwise it
  is a TP if that ground truth was not already detected, else an FP (duplicate). At or
  below the threshold: FP. A detection never falls back to its second-best ground truth.
* ``recall = tp / npos`` with ``npos`` the non-difficult ground truth;
  ``precision = tp / max(tp + fp, eps)``.
* VOC2007 AP: mean over ``t in np.arange(0, 1.1, 0.1)`` of the highest precision at
  recall ``>= t``. VOC2010+ AP: area under the monotone (right-to-left maximum)
  precision envelope, summed where recall changes.
* mAP: mean AP over classes with at least one non-difficult ground truth.

Because the chosen ground truth does not depend on earlier decisions, TP/FP follow in
bulk: a hit is a TP exactly when it is the first (in score order) to claim its ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kerasseg.metrics.detection.inputs import BoxTable
from kerasseg.metrics.detection.iou import voc_pair_iou
from kerasseg.metrics.detection.pairs import iter_pairs, segment_starts

VOC07_RECALL_POINTS = np.arange(0.0, 1.1, 0.1)


@dataclass
class VocArrays:
    """What the VOC protocols compute.

    Attributes:
        ap: (K,) AP per class; NaN for classes without non-difficult ground truth.
        num_positives: (K,) non-difficult ground-truth count per class.
        curves: K pairs ``(recall, precision)``, one point per detection of the class in
            score order (the devkit's arrays; NaN recall where there is no ground truth).
        map: Mean AP over classes with ground truth (NaN if there are none).
    """

    ap: np.ndarray
    num_positives: np.ndarray
    curves: list[tuple[np.ndarray, np.ndarray]]
    map: float


def voc_ap(recall: np.ndarray, precision: np.ndarray, *, use_07_metric: bool) -> float:
    """Average precision from a devkit-style PR curve.

    Args:
        recall: (n,) nondecreasing recall after each detection.
        precision: (n,) precision after each detection.
        use_07_metric: 11-point interpolation (VOC2007) instead of all points.

    Returns:
        AP in [0, 1].
    """
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if use_07_metric:
        if recall.size == 0:
            return 0.0
        best_after = np.maximum.accumulate(precision[::-1])[::-1]
        first = np.searchsorted(recall, VOC07_RECALL_POINTS, side="left")
        points = np.where(first < recall.size, best_after[np.minimum(first, recall.size - 1)], 0.0)
        return float(np.sum(points / 11.0))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    change = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


def evaluate_voc(
    gt: BoxTable,
    dt: BoxTable,
    *,
    num_images: int,
    category_ids: np.ndarray,
    use_07_metric: bool,
    iou_threshold: float = 0.5,
    pixel_inclusive: bool = False,
    progress: Any = None,
) -> VocArrays:
    """Runs VOC evaluation on flat tables.

    Args:
        gt: Ground truth (``difficult`` flags honoured).
        dt: Detections; rows with classes outside ``category_ids`` are ignored.
        num_images: Number of images.
        category_ids: (K,) sorted class ids.
        use_07_metric: VOC2007 11-point AP instead of the all-point AP.
        iou_threshold: A detection needs IoU strictly above this.
        pixel_inclusive: The original devkit's ``+1`` pixel convention for widths/areas.
        progress: Optional tqdm-like object, advanced once per class.

    Returns:
        Per-class AP, PR curves and the mAP.
    """
    category_ids = np.asarray(category_ids, dtype=np.int64)
    num_k = len(category_ids)
    n_img = max(int(num_images), 1)
    dt = dt.select(np.isin(dt.classes, category_ids))
    d_k = np.searchsorted(category_ids, dt.classes)
    g_k_all = np.searchsorted(category_ids, gt.classes)
    g_group_all = g_k_all * n_img + gt.image
    g_order = np.argsort(g_group_all, kind="stable")
    g_group = g_group_all[g_order]
    g_boxes = gt.boxes[g_order]
    g_difficult = gt.difficult[g_order]
    num_positives = np.bincount(g_k_all[~gt.difficult], minlength=num_k)

    num_d = len(dt)
    best_iou = np.full(num_d, -np.inf)
    best_gt = np.full(num_d, -1, np.int64)
    for di, gi in iter_pairs(d_k * n_img + dt.image, g_group):
        iou = voc_pair_iou(dt.boxes[di], g_boxes[gi], pixel_inclusive=pixel_inclusive)
        seg = segment_starts(di)
        seg_id = np.repeat(np.arange(len(seg)), np.diff(np.append(seg, len(di))))
        seg_max = np.maximum.reduceat(iou, seg)
        first_best = np.minimum.reduceat(
            np.where(iou == seg_max[seg_id], np.arange(len(di)), len(di)), seg
        )
        owners = di[seg]
        best_iou[owners] = seg_max
        best_gt[owners] = gi[first_best]

    order = np.lexsort((np.arange(num_d), -dt.scores, d_k))  # class, score desc, input order
    hit = best_iou[order] > iou_threshold
    on_difficult = np.zeros(num_d, bool)
    on_difficult[hit] = g_difficult[best_gt[order][hit]]
    claims = hit & ~on_difficult
    claimed_gt = best_gt[order][claims]
    _, first_claim = np.unique(claimed_gt, return_index=True)
    tp = np.zeros(num_d, bool)
    tp[np.flatnonzero(claims)[first_claim]] = True
    fp = ~tp & ~on_difficult

    bounds = np.searchsorted(d_k[order], np.arange(num_k + 1))
    ap = np.full(num_k, np.nan)
    curves = []
    for k in range(num_k):
        tp_sum = np.cumsum(tp[bounds[k] : bounds[k + 1]]).astype(np.float64)
        fp_sum = np.cumsum(fp[bounds[k] : bounds[k + 1]]).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = tp_sum / float(num_positives[k])
        precision = tp_sum / np.maximum(tp_sum + fp_sum, np.finfo(np.float64).eps)
        curves.append((recall, precision))
        if num_positives[k] > 0:
            ap[k] = voc_ap(recall, precision, use_07_metric=use_07_metric)
        if progress is not None:
            progress.update(1)
    valid = num_positives > 0
    mean_ap = float(np.mean(ap[valid])) if np.any(valid) else float("nan")
    return VocArrays(ap=ap, num_positives=num_positives, curves=curves, map=mean_ap)
