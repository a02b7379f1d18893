"""COCO-style box mAP, vectorised, with pycocotools' exact rules.

The rules reproduced (pycocotools 2.0, ``COCOeval`` with ``iouType="bbox"``):

* IoU thresholds ``np.linspace(.5, .95, 10)``, 101 recall points ``np.linspace(0, 1, 101)``,
  area ranges ``[0, 1e5²]``, ``[0, 32²]``, ``[32², 96²]``, ``[96², 1e5²]`` inclusive at both
  ends, ``maxDets`` (1, 10, 100) per image *and category*.
* Per image and category: detections sorted by score (stable), the top ``maxDets[-1]``
  kept; each detection in turn takes the unmatched ground truth with the highest IoU
  ``>= t`` (ties: the later one), preferring ground truth inside the area range and not
  crowd (only when none qualifies does it fall back to an ignored one). Crowd ground truth
  may be matched any number of times, with IoU ``= intersection / area(detection)``.
  Detections matched to ignored ground truth, and unmatched detections outside the area
  range, are ignored.
* Accumulation per category, area range and maxDets: all detections sorted by score
  (stable across images in image-id order), cumulative TP/FP, precision
  ``tp / (tp + fp + eps)`` made monotone from the right, sampled at the first point whose
  recall reaches each recall threshold (``searchsorted(side="left")``), 0 beyond the
  highest recall. ``-1`` where a category has no (non-ignored) ground truth.

How it is vectorised: candidate pairs (same image and class, IoU >= 0.5) are built in bulk;
the greedy matching, which is sequential within an (image, class) group, runs as one loop
over the *rank* of a detection within its group, with all groups, area ranges and IoU
thresholds processed at once in each step. Accumulation runs one small loop over classes,
vectorised over IoU thresholds, area ranges, maxDets and recall thresholds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from kerasseg.metrics.detection.inputs import BoxTable
from kerasseg.metrics.detection.iou import coco_pair_iou
from kerasseg.metrics.detection.pairs import iter_pairs, segment_starts

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = np.array(
    [[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]], dtype=np.float64
)
AREA_LABELS = ("all", "small", "medium", "large")
MAX_DETECTIONS = (1, 10, 100)
# The best-IoU search starts at min(t, 1 - 1e-10) in pycocotools.
_MATCH_THRESHOLDS = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)

STAT_NAMES = (
    "map",
    "map50",
    "map75",
    "map_small",
    "map_medium",
    "map_large",
    "mar1",
    "mar10",
    "mar100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


@dataclass
class CocoArrays:
    """What the COCO protocol computes.

    Attributes:
        precision: (T, R, K, A, M) interpolated precision; -1 where category k has no
            ground truth in area range a.
        recall: (T, K, A, M) highest recall; -1 likewise.
        stats: (12,) the summary numbers in pycocotools' order (see ``STAT_NAMES``).
        max_detections: The M maxDets values.
    """

    precision: np.ndarray
    recall: np.ndarray
    stats: np.ndarray
    max_detections: tuple[int, ...]


def evaluate_coco(
    gt: BoxTable,
    dt: BoxTable,
    *,
    num_images: int,
    category_ids: np.ndarray,
    max_detections: tuple[int, ...] = MAX_DETECTIONS,
    progress: Any = None,
) -> CocoArrays:
    """Runs COCO box evaluation on flat tables.

    Args:
        gt: Ground truth; classes must all be in ``category_ids``.
        dt: Detections; rows with classes outside ``category_ids`` are ignored.
        num_images: Number of images (``BoxTable.image`` values are below it).
        category_ids: (K,) sorted unique category ids (the K axis of the outputs).
        max_detections: Ascending maxDets values (pycocotools: 1, 10, 100).
        progress: Optional tqdm-like object; ``update(n)`` is called as work completes.

    Returns:
        The precision/recall arrays and the 12 summary numbers.
    """
    category_ids = np.asarray(category_ids, dtype=np.int64)
    maxdets = np.array(sorted(int(m) for m in max_detections), dtype=np.int64)
    num_k = len(category_ids)
    n_img = max(int(num_images), 1)
    _num_t, _num_r = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)
    num_a, _num_m = len(AREA_RANGES), len(maxdets)

    # Detections: group by (class, image), best score first, keep the top maxDets[-1];
    # then lay them out once in accumulation order (class, score, image, rank), which is
    # the order pycocotools' accumulate() walks them in.
    dt = dt.select(np.isin(dt.classes, category_ids))
    d_k_all = np.searchsorted(category_ids, dt.classes)
    rank, det = _rank_and_order(d_k_all, dt.image, dt.scores, n_img, int(maxdets[-1]))
    d_k = d_k_all[det]
    d_img = dt.image[det]
    d_group = d_k * n_img + d_img
    d_boxes = dt.boxes[det]
    d_area = dt.box_area[det]
    num_d = len(det)

    # Ground truth: grouped the same way, annotation order kept within a group.
    g_k_all = np.searchsorted(category_ids, gt.classes)
    g_group_all = g_k_all * n_img + gt.image
    g_order = np.argsort(g_group_all, kind="stable")
    g_group = g_group_all[g_order]
    g_k = g_k_all[g_order]
    g_boxes = gt.boxes[g_order]
    g_box_area = gt.box_area[g_order]
    g_area = gt.area[g_order]
    g_crowd = gt.crowd[g_order]
    num_g = len(g_order)
    lo, hi = AREA_RANGES[:, 0:1], AREA_RANGES[:, 1:2]
    g_ignore = g_crowd[None, :] | (g_area[None, :] < lo) | (g_area[None, :] > hi)  # (A, G)
    d_outside = (d_area[None, :] < lo) | (d_area[None, :] > hi)  # (A, D)

    # Candidate pairs: only IoU >= the lowest threshold can ever match.
    min_thr = float(_MATCH_THRESHOLDS.min())
    pair_d, pair_g, pair_iou = [], [], []
    for di, gi in iter_pairs(d_group, g_group):
        iou = coco_pair_iou(d_boxes[di], d_area[di], g_boxes[gi], g_box_area[gi], g_crowd[gi])
        hit = iou >= min_thr
        pair_d.append(di[hit])
        pair_g.append(gi[hit])
        pair_iou.append(iou[hit])
    pair_d = np.concatenate(pair_d) if pair_d else np.zeros(0, np.int64)
    pair_g = np.concatenate(pair_g) if pair_g else np.zeros(0, np.int64)
    pair_iou = np.concatenate(pair_iou) if pair_iou else np.zeros(0, np.float64)

    dt_matched, dt_ignored_match = _greedy_match(
        pair_d, pair_g, pair_iou, rank, g_ignore, g_crowd, num_d, num_g, progress
    )
    # Non-ignored ground truth per class and area range.
    npig = np.stack(
        [np.bincount(g_k[~g_ignore[a]], minlength=num_k) for a in range(num_a)], axis=1
    )  # (K, A)
    precision, recall = _accumulate(
        dt_matched, dt_ignored_match, d_outside, rank, d_k, npig, maxdets
    )
    if progress is not None:
        progress.update(1)
    stats = summarize(precision, recall, maxdets)
    return CocoArrays(precision, recall, stats, tuple(int(m) for m in maxdets))


def _rank_and_order(
    k: np.ndarray, image: np.ndarray, scores: np.ndarray, num_images: int, max_det: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ranks detections within their (class, image) group and orders them for accumulation.

    Within a group: score descending, ties in input order (pycocotools' stable sort);
    only ranks below ``max_det`` are kept. The kept detections are returned ordered by
    (class, score descending, image, rank), the order of pycocotools' stable sort of the
    per-image lists concatenated in image order.

    Returns:
        ``(rank, index)``: the rank of each kept detection and its row in the input,
        both in accumulation order.
    """
    n = len(k)
    # Dense rank of the score (0 = best, equal scores share a rank) turns every sort
    # below into one integer sort.
    _, score_rank = np.unique(-scores, return_inverse=True)
    num_scores = int(score_rank.max(initial=0)) + 1
    group = k * num_images + image
    if int(group.max(initial=0)) < np.iinfo(np.int64).max // (2 * num_scores):
        by_group = np.argsort(group * num_scores + score_rank, kind="stable")
    else:  # keys would overflow: slower multi-key sort
        by_group = np.lexsort((np.arange(n), score_rank, group))
    group_sorted = group[by_group]
    starts = segment_starts(group_sorted)
    rank = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    keep = rank < max_det
    by_group, rank = by_group[keep], rank[keep]
    # A stable sort by (class, score) keeps the (image, rank) order of the group sort.
    by_score = np.argsort(k[by_group] * num_scores + score_rank[by_group], kind="stable")
    return rank[by_score], by_group[by_score]


def _greedy_match(
    pair_d: np.ndarray,
    pair_g: np.ndarray,
    pair_iou: np.ndarray,
    rank: np.ndarray,
    g_ignore: np.ndarray,
    g_crowd: np.ndarray,
    num_d: int,
    num_g: int,
    progress: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' greedy matching for every (area range, IoU threshold) at once.

    Within an (image, class) group a detection's match depends on the earlier (higher
    scored) detections, so the loop runs over the detection's rank in its group; each
    step handles the rank-r detection of every group together.

    Returns:
        ``(matched, matched_ignored)``, both (A, T, D) bool: whether detection d is
        matched, and whether the ground truth it matched is ignored.
    """
    num_a, num_t = g_ignore.shape[0], len(_MATCH_THRESHOLDS)
    matched_gt = np.zeros((num_a, num_t, num_g), bool)
    dt_matched = np.zeros((num_a, num_t, num_d), bool)
    dt_ignored_match = np.zeros((num_a, num_t, num_d), bool)
    if pair_d.size == 0:
        return dt_matched, dt_ignored_match
    # Pairs ordered by (rank, detection, ground truth in annotation order).
    by_rank = np.argsort(rank[pair_d], kind="stable")
    pair_d, pair_g, pair_iou = pair_d[by_rank], pair_g[by_rank], pair_iou[by_rank]
    pair_rank = rank[pair_d]
    bounds = np.append(segment_starts(pair_rank), len(pair_rank))
    if progress is not None:
        progress.total = (progress.total or 0) + len(bounds) - 1
        progress.refresh()
    # One integer key per (pair, area range) orders the candidates of a detection the
    # way pycocotools' loop does: regular (not ignored) ground truth first, then higher
    # IoU, then the later ground truth. IoUs enter as their exact rank among all IoUs.
    _, iou_rank = np.unique(pair_iou, return_inverse=True)
    num_ious = int(iou_rank.max()) + 1
    span = int(np.max(np.diff(bounds)))
    regular_bonus = num_ious * span
    thresholds = _MATCH_THRESHOLDS[:, None]
    for start, stop in itertools.pairwise(bounds):
        d = pair_d[start:stop]
        g = pair_g[start:stop]
        seg = segment_starts(d)
        position = np.arange(stop - start)
        key = (iou_rank[start:stop] * span + position)[None, :] + regular_bonus * ~g_ignore[:, g]
        # Usable: IoU above the threshold, and the ground truth free (crowds always are).
        usable = (~matched_gt[:, :, g] | g_crowd[g]) & (pair_iou[start:stop] >= thresholds)
        best = np.maximum.reduceat(np.where(usable, key[:, None, :], -1), seg, axis=2)
        a_i, t_i, s_i = np.nonzero(best >= 0)
        chosen = best[a_i, t_i, s_i] % span
        g_sel = g[chosen]
        d_sel = d[chosen]
        matched_gt[a_i, t_i, g_sel] = True
        dt_matched[a_i, t_i, d_sel] = True
        dt_ignored_match[a_i, t_i, d_sel] = g_ignore[a_i, g_sel]
        if progress is not None:
            progress.update(1)
    return dt_matched, dt_ignored_match


def _min_counts(npig: np.ndarray) -> np.ndarray:
    """Smallest TP count c with ``c / npig >= r`` (float division) for each recall point.

    Args:
        npig: (...) positive ground-truth counts (>= 1).

    Returns:
        (..., R) int64 counts, nondecreasing along the last axis.
    """
    n = npig.astype(np.int64)[..., None, None]
    guess = np.ceil(RECALL_THRESHOLDS * npig[..., None]).astype(np.int64)  # (..., R)
    candidates = np.clip(guess[..., None] + np.arange(-2, 3), 0, n)  # (..., R, 5)
    ok = candidates / n >= RECALL_THRESHOLDS[:, None]
    return np.where(ok, candidates, np.iinfo(np.int64).max).min(axis=-1)


def _segment_cumsum(values: np.ndarray, starts_of: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum that restarts at each segment (``starts_of``: the index
    where each element's segment starts)."""
    total = np.cumsum(values, dtype=np.int64)
    return total - (total[starts_of] - values[starts_of])


def _accumulate(
    dt_matched: np.ndarray,
    dt_ignored_match: np.ndarray,
    d_outside: np.ndarray,
    rank: np.ndarray,
    d_k: np.ndarray,
    npig: np.ndarray,
    maxdets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' ``accumulate``, computed from the true positives only.

    With detections of a class in accumulation order, pycocotools' precision at the
    first point reaching recall r is the monotone envelope there, i.e. the best
    ``tp / (fp + tp + eps)`` over the true positives from the c-th on, c being the
    smallest count with ``c / npig >= r``: between true positives precision only falls.
    So only true positives need visiting, each with the number of false positives before
    it. That count is (counted detections before it) - (matched detections before it);
    the first term needs one cumulative sum per area range and maxDets, the second only
    runs over matched detections.

    Args:
        dt_matched, dt_ignored_match: (A, T, D) match flags from the greedy matching,
            detections in accumulation order (class, score, image, rank).
        d_outside: (A, D) whether a detection's area is outside each area range.
        rank: (D,) rank of each detection within its (image, class) group.
        d_k: (D,) class index (nondecreasing).
        npig: (K, A) non-ignored ground-truth counts.
        maxdets: (M,) maxDets.

    Returns:
        ``precision`` (T, R, K, A, M) and ``recall`` (T, K, A, M), -1 where npig is 0.
    """
    num_a, num_t, _ = dt_matched.shape
    num_k, num_m, num_r = npig.shape[0], len(maxdets), len(RECALL_THRESHOLDS)
    class_start = np.searchsorted(d_k, np.arange(num_k))
    rank_ok = rank[None, :] < maxdets[:, None]  # (M, D)
    inside = ~d_outside  # (A, D)
    # Detections that count (TP or FP) unless matched: inside the area range, within
    # maxDets. Their running count per class is needed only at true positives.
    counted = (inside[:, None, :] & rank_ok[None, :, :]).astype(np.int32)  # (A, M, D)
    counted_incl = np.cumsum(counted, axis=-1, dtype=np.int32)
    counted_excl = counted_incl - counted  # before each detection, over all classes

    a_i, t_i, p_i = np.nonzero(dt_matched)  # sorted by (a, t, position)
    regular = ~dt_ignored_match[a_i, t_i, p_i]
    k_i = d_k[p_i]
    group = (a_i * num_t + t_i) * num_k + k_i  # nondecreasing
    starts = segment_starts(group)
    starts_of = np.repeat(starts, np.diff(np.append(starts, len(group))))
    inside_i = inside[a_i, p_i]

    # Where each true positive's count c lands among the recall points: the points it
    # can serve are those whose smallest sufficient count is <= c.
    c_min = _min_counts(np.maximum(npig.T, 1))  # (A, K, R)
    stride = int(npig.max(initial=0)) + 2
    offsets = np.arange(num_a * num_k)[:, None] * stride
    table = (offsets + c_min.reshape(num_a * num_k, num_r)).ravel()

    precision = np.zeros((num_m, num_a * num_t * num_k, num_r))
    tp_total = np.zeros((num_m, num_a * num_t * num_k), np.int64)
    for m in range(num_m):
        ok = rank_ok[m, p_i]
        seen = (ok & inside_i).astype(np.int64)
        matched_before = _segment_cumsum(seen, starts_of) - seen
        is_tp = regular & ok
        tp_count = _segment_cumsum(is_tp.astype(np.int64), starts_of)
        sel = np.flatnonzero(is_tp)
        if sel.size == 0:
            continue
        tp = tp_count[sel].astype(np.float64)
        a_s, p_s = a_i[sel], p_i[sel]
        before = counted_excl[a_s, m, p_s] - counted_excl[a_s, m, class_start[k_i[sel]]]
        fp = (before - matched_before[sel]).astype(np.float64)
        value = tp / (fp + tp + np.spacing(1))
        ak = a_i[sel] * num_k + k_i[sel]
        served = np.searchsorted(table, ak * stride + tp_count[sel], side="right") - ak * num_r
        cell = group[sel] * num_r + (served - 1)  # nondecreasing
        cell_starts = segment_starts(cell)
        best = np.maximum.reduceat(value, cell_starts)
        flat = precision[m].reshape(-1)
        flat[cell[cell_starts]] = best
        tp_total[m] = np.bincount(group[sel], minlength=num_a * num_t * num_k)
    # Best precision at this recall point or any higher one.
    precision = np.maximum.accumulate(precision[:, :, ::-1], axis=2)[:, :, ::-1]
    precision = precision.reshape(num_m, num_a, num_t, num_k, num_r).transpose(2, 4, 3, 1, 0)
    recall = tp_total.reshape(num_m, num_a, num_t, num_k) / np.maximum(npig.T, 1)[None, :, None]
    recall = recall.transpose(2, 3, 1, 0)
    absent = (npig == 0)[None, :, :, None]  # (1, K, A, 1)
    precision = np.where(absent[:, None], -1.0, precision)
    recall = np.where(absent, -1.0, recall)
    return np.ascontiguousarray(precision), np.ascontiguousarray(recall)


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summarize(precision: np.ndarray, recall: np.ndarray, maxdets: np.ndarray) -> np.ndarray:
    """The 12 COCO numbers (pycocotools' ``summarize`` for boxes)."""
    area_index = {label: i for i, label in enumerate(AREA_LABELS)}
    top = len(maxdets) - 1

    def ap(iou: float | None = None, area: str = "all", m: int = top) -> float:
        s = precision
        if iou is not None:
            s = s[np.where(iou == IOU_THRESHOLDS)[0]]
        return _mean_valid(s[:, :, :, area_index[area], m])

    def ar(area: str = "all", m: int = top) -> float:
        return _mean_valid(recall[:, :, area_index[area], m])

    mids = [0, min(1, top), top]
    return np.array(
        [
            ap(),
            ap(iou=0.5),
            ap(iou=0.75),
            ap(area="small"),
            ap(area="medium"),
            ap(area="large"),
            ar(m=mids[0]),
            ar(m=mids[1]),
            ar(m=mids[2]),
            ar(area="small"),
            ar(area="medium"),
            ar(area="large"),
        ]
    )
