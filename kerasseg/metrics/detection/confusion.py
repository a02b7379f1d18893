"""Detection confusion matrix with a background row and column."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from kerasseg.metrics.detection.inputs import BoxTable
from kerasseg.metrics.detection.iou import coco_pair_iou
from kerasseg.metrics.detection.pairs import iter_pairs


def _greedy_one_to_one(pair_d: np.ndarray, pair_g: np.ndarray) -> np.ndarray:
    """Greedy one-to-one matching of pairs given in priority order.

    Equivalent to walking the pairs in order and taking each whose detection and ground
    truth are both still free, computed in rounds: a pair that comes first among the
    remaining pairs of both its detection and its ground truth is taken by the greedy walk.

    Returns:
        Indices (into the pair arrays) of the pairs taken.
    """
    alive = np.arange(len(pair_d))
    taken = []
    while alive.size:
        d, g = pair_d[alive], pair_g[alive]
        _, first_d = np.unique(d, return_index=True)
        _, first_g = np.unique(g, return_index=True)
        both = np.intersect1d(first_d, first_g, assume_unique=True)
        picked = alive[both]
        taken.append(picked)
        used_d = np.isin(d, pair_d[picked])
        used_g = np.isin(g, pair_g[picked])
        alive = alive[~(used_d | used_g)]
    return np.concatenate(taken) if taken else np.zeros(0, np.int64)


def _by_image(table: BoxTable) -> BoxTable:
    """`table`'s rows sorted by image (stable: the order within an image is kept)."""
    return table.select(np.argsort(table.image, kind="stable"))


def _same_image_ious(
    dt: BoxTable, gt: BoxTable
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every (detection, ground truth) pair of the same image, with its COCO IoU, in chunks.

    Args:
        dt: Detections.
        gt: Ground truth sorted by image (`_by_image`). Crowd regions count as COCO
            counts them: intersection over the detection's area.

    Yields:
        ``(det_index, gt_index, iou)``: indices into `dt` and `gt` and the pairs' IoUs.
    """
    for di, gi in iter_pairs(dt.image, gt.image):
        iou = coco_pair_iou(
            dt.boxes[di], dt.box_area[di], gt.boxes[gi], gt.box_area[gi], gt.crowd[gi]
        )
        yield di, gi, iou


def confusion_matrix(
    gt: BoxTable,
    dt: BoxTable,
    *,
    category_ids: np.ndarray,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.0,
) -> np.ndarray:
    """Counts (ground-truth class, predicted class) pairs, with background.

    Matching is class-agnostic and one-to-one per image: detections with
    ``score >= score_threshold`` and ground truth overlapping with IoU ``>= iou_threshold``
    are paired greedily by decreasing IoU (ties: higher score first). Crowd and difficult
    ground truth take no part, except that an unmatched detection overlapping one of them
    by the threshold (crowd: intersection over the detection's area) is dropped rather
    than counted as a false positive.

    Args:
        gt, dt: Flat box tables.
        category_ids: (K,) sorted class ids; index K is background.
        iou_threshold: IoU needed for a match.
        score_threshold: Detections scoring below it are left out.

    Returns:
        (K + 1, K + 1) int64 counts; rows are ground truth, columns predictions; the last
        row counts false positives (background predicted as a class), the last column
        missed ground truth.
    """
    category_ids = np.asarray(category_ids, np.int64)
    num_k = len(category_ids)
    background = num_k
    dt = dt.select(np.isin(dt.classes, category_ids) & (dt.scores >= score_threshold))
    d_k = np.searchsorted(category_ids, dt.classes)
    ignored = gt.crowd | gt.difficult
    matrix = np.zeros((num_k + 1, num_k + 1), np.int64)

    regular = _by_image(gt.select(~ignored))
    r_k = np.searchsorted(category_ids, regular.classes)
    pair_d, pair_g, pair_iou = [], [], []
    for di, gi, iou in _same_image_ious(dt, regular):
        hit = iou >= iou_threshold
        pair_d.append(di[hit])
        pair_g.append(gi[hit])
        pair_iou.append(iou[hit])
    det_matched = np.zeros(len(dt), bool)
    gt_matched = np.zeros(len(regular), bool)
    if pair_d:
        pd, pg, pv = (np.concatenate(x) for x in (pair_d, pair_g, pair_iou))
        priority = np.lexsort((pg, pd, -dt.scores[pd], -pv))
        taken = priority[_greedy_one_to_one(pd[priority], pg[priority])]
        np.add.at(matrix, (r_k[pg[taken]], d_k[pd[taken]]), 1)
        det_matched[pd[taken]] = True
        gt_matched[pg[taken]] = True
    np.add.at(matrix, (r_k[~gt_matched], background), 1)

    # Unmatched detections on crowd/difficult regions are not false positives.
    spared = np.zeros(len(dt), bool)
    special = gt.select(ignored)
    if len(special):
        for di, _, iou in _same_image_ious(dt, _by_image(special)):
            spared[di[iou >= iou_threshold]] = True
    false_positive = ~det_matched & ~spared
    np.add.at(matrix, (background, d_k[false_positive]), 1)
    return matrix
