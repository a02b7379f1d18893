"""Candidate (detection, ground truth) pairs: same image and same class, built in bulk."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

# Pairs materialised at once; bounds memory (a few arrays of this many float64/int64).
PAIR_CHUNK = 1 << 21


def segment_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted 1-D array."""
    if sorted_keys.size == 0:
        return np.zeros(0, np.int64)
    change = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    return np.concatenate([[0], change]).astype(np.int64)


def iter_pairs(
    det_keys: np.ndarray,
    gt_keys_sorted: np.ndarray,
    chunk: int = PAIR_CHUNK,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every (detection, ground truth) pair whose group keys are equal, in chunks.

    Args:
        det_keys: (D,) int64 group key of each detection (e.g. ``class * I + image``).
        gt_keys_sorted: (G,) int64 group keys of the ground truth, sorted ascending.
        chunk: Approximate number of pairs per yielded chunk.

    Yields:
        ``(det_index, gt_index)`` int64 arrays of equal length, ordered by detection then
        ground truth (both ascending), covering all pairs exactly once.
    """
    lo = np.searchsorted(gt_keys_sorted, det_keys, side="left")
    hi = np.searchsorted(gt_keys_sorted, det_keys, side="right")
    counts = hi - lo
    ends = np.cumsum(counts)
    total = int(ends[-1]) if ends.size else 0
    if total == 0:
        return
    # Split the detections so that each piece holds about `chunk` pairs.
    bounds = np.searchsorted(ends, np.arange(chunk, total, chunk), side="left") + 1
    bounds = np.unique(np.concatenate([[0], bounds, [len(det_keys)]]))
    for start, stop in itertools.pairwise(bounds):
        c = counts[start:stop]
        n = int(c.sum())
        if n == 0:
            continue
        det_index = np.repeat(np.arange(start, stop, dtype=np.int64), c)
        first = np.cumsum(c) - c  # position of each detection's first pair in this piece
        gt_index = np.arange(n, dtype=np.int64) + np.repeat(lo[start:stop] - first, c)
        yield det_index, gt_index
