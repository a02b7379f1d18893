"""Pictures of results: segmentation overlays, detection boxes, precision-recall curves.

Segmentation overlays need only Pillow; plots (PR curves) need matplotlib, from the ``plot``
extra, which is imported on first use.
"""

from __future__ import annotations

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
