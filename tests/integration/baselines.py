"""No-learning baselines that an integration test's model must beat by a stated margin.

A threshold on a real-data test means something only above what a model that learns
nothing reaches: for binary segmentation, one global intensity threshold chosen on the
training images (optionally after a small Gaussian blur). Detectors will get theirs here too
(e.g. one box per image at the mean training box).
"""

from __future__ import annotations

import numpy as np

#: Blur widths (Gaussian sigma, pixels) the threshold baseline also tries; 0 = none.
BLUR_SIGMAS = (0.0, 1.0)


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """(N, H, W) images blurred with a separable Gaussian (radius 3 sigma, reflected edges)."""
    if sigma <= 0:
        return images.astype(np.float64)
    radius = int(np.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = images.astype(np.float64)
    for axis in (1, 2):
        padded = np.pad(
            out, [(radius, radius) if a == axis else (0, 0) for a in range(3)], mode="reflect"
        )
        out = sum(
            w * np.take(padded, np.arange(i, i + out.shape[axis]), axis=axis)
            for i, w in enumerate(kernel)
        )
    return out


def _dice(predicted: np.ndarray, target: np.ndarray) -> float:
    tp = np.sum(predicted & target)
    return float(2 * tp / (predicted.sum() + target.sum()))


def _best_level(values: np.ndarray, target: np.ndarray) -> tuple[bool, float, float]:
    """``(darker, level, dice)``: the rule ``values < level`` (darker) or ``values >= level``
    with the highest Dice on `target`, over 256 levels (from histograms, not 512 passes)."""
    bins = np.clip(np.floor(values), 0, 255).astype(np.int64)
    foreground = np.bincount(bins[target], minlength=256)
    everything = np.bincount(bins.ravel(), minlength=256)
    positives = foreground.sum()
    # Predicting bins < k: TP and predicted counts for k = 0..256.
    tp_below = np.concatenate([[0], np.cumsum(foreground)])
    predicted_below = np.concatenate([[0], np.cumsum(everything)])
    candidates = []
    for darker in (True, False):
        tp = tp_below if darker else positives - tp_below
        predicted = predicted_below if darker else everything.sum() - predicted_below
        dice = 2 * tp / np.maximum(predicted + positives, 1)
        k = int(np.argmax(dice))
        candidates.append((float(dice[k]), darker, float(k)))
    dice, darker, level = max(candidates)
    return darker, level, dice


def threshold_baseline(
    train_images: np.ndarray,
    train_masks: np.ndarray,
    val_images: np.ndarray,
    val_masks: np.ndarray,
    sigmas: tuple[float, ...] = BLUR_SIGMAS,
) -> tuple[float, dict]:
    """Validation Dice of one global intensity threshold chosen on the training images.

    For every blur in `sigmas`, the threshold and polarity (foreground darker or brighter)
    with the best training Dice are chosen and scored on the validation images; the result
    is the best of those validation scores (the strongest of these no-learning rules).

    Args:
        train_images, val_images: (N, H, W[, 1]) intensities in 0..255.
        train_masks, val_masks: (N, H, W[, 1]) binary foreground masks.

    Returns:
        ``(dice, rule)``: the validation Dice and its rule (sigma, polarity, level).
    """

    def squeeze(array: np.ndarray) -> np.ndarray:
        return array[..., 0] if array.ndim == 4 else array

    train_masks, val_masks = squeeze(train_masks) > 0.5, squeeze(val_masks) > 0.5
    results = []
    for sigma in sigmas:
        darker, level, train_dice = _best_level(
            gaussian_blur(squeeze(train_images), sigma), train_masks
        )
        val = np.clip(np.floor(gaussian_blur(squeeze(val_images), sigma)), 0, 255)
        predicted = val < level if darker else val >= level
        rule = {"sigma": sigma, "darker": darker, "level": level, "train_dice": train_dice}
        results.append((_dice(predicted, val_masks), rule))
    return max(results, key=lambda r: r[0])
