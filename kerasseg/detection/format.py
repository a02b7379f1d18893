"""The dense padded detection dict: its keys, its padding, and its packed tensor form.

Every part of kerasseg that hands boxes around uses this one format: the data loaders
(VOC, COCO, the ``tf.data`` records), `kerasseg.detection.nms.batched_nms` and the
detectors' ``predict``, the mAP evaluator, the Keras metric and the callback.

A batch of B images with room for N boxes each::

    {"boxes":   (B, N, 4) float32, xyxy in absolute pixels,
     "classes": (B, N) int32 class ids, PAD_CLASS (-1) on the padding rows,
     "scores":  (B, N) float32, detections only (0 on the padding rows),
     "iscrowd" / "difficult": (B, N) bool, ground truth only (optional flags),
     "num_detections": (B,) int32, NMS output only}

(the keras-cv dense format, so its augmentation layers work on it). Inside
``fit``/``evaluate`` Keras gives a metric one tensor per output, so there the dict travels
*packed*: detections as (B, N, 6) ``[x1, y1, x2, y2, class, score]``, ground truth as
(B, M, 5) ``[x1, y1, x2, y2, class]`` or (B, M, 6) with a last column of flags.

This module imports nothing of kerasseg and no deep-learning framework at import time
(``pack_*`` use `keras.ops` when called), so the NumPy evaluator can use it without Keras.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

BOXES = "boxes"
CLASSES = "classes"
SCORES = "scores"
NUM_DETECTIONS = "num_detections"
#: Per-box ground-truth flags: COCO's crowd regions and VOC's difficult objects.
FLAGS = ("iscrowd", "difficult")
#: Keys of a ground-truth dict, in the order they are read.
GROUND_TRUTH_KEYS = (BOXES, CLASSES, *FLAGS, "area")
#: The class id of a padding row (its box and score are 0).
PAD_CLASS = -1

__all__ = [
    "BOXES",
    "CLASSES",
    "FLAGS",
    "GROUND_TRUTH_KEYS",
    "NUM_DETECTIONS",
    "PAD_CLASS",
    "SCORES",
    "pack_detections",
    "pack_ground_truth",
    "to_numpy",
    "unpack_detections",
    "unpack_ground_truth",
]


def to_numpy(value: Any) -> np.ndarray:
    """Tensors (TF, torch, JAX, Keras) and lists -> NumPy array; ragged tensors are refused."""
    if hasattr(value, "to_tensor") and hasattr(value, "row_splits"):  # tf.RaggedTensor
        raise TypeError(
            "Ragged tensors are not accepted directly; pad them first, e.g. "
            "`classes.to_tensor(default_value=-1)` and `boxes.to_tensor()`."
        )
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    elif hasattr(value, "detach") and hasattr(value, "cpu"):  # torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def pack_detections(detections: Mapping[str, Any]) -> Any:
    """``{"boxes": (B, N, 4), "classes": (B, N), "scores": (B, N)}`` -> (B, N, 6) float32.

    Works on tensors of any Keras backend (inside a model too) and on NumPy arrays.
    """
    from keras import ops

    boxes = ops.cast(detections[BOXES], "float32")
    classes = ops.cast(detections[CLASSES], "float32")[..., None]
    scores = ops.cast(detections[SCORES], "float32")[..., None]
    return ops.concatenate([boxes, classes, scores], axis=-1)


def pack_ground_truth(ground_truth: Mapping[str, Any], flag: str | None = None) -> Any:
    """``{"boxes": (B, M, 4), "classes": (B, M)[, flag: (B, M)]}`` -> (B, M, 5 or 6) float32.

    Args:
        ground_truth: Padded ground truth (class -1 = padding).
        flag: Name of an optional per-box flag to pack as a 6th column (``"iscrowd"`` or
            ``"difficult"``); None packs it when exactly one of them is present.
    """
    from keras import ops

    parts = [
        ops.cast(ground_truth[BOXES], "float32"),
        ops.cast(ground_truth[CLASSES], "float32")[..., None],
    ]
    if flag is None:
        present = [k for k in FLAGS if k in ground_truth]
        if len(present) > 1:
            raise ValueError("`ground_truth` has both 'iscrowd' and 'difficult'; pass `flag`.")
        flag = present[0] if present else None
    if flag is not None:
        parts.append(ops.cast(ground_truth[flag], "float32")[..., None])
    return ops.concatenate(parts, axis=-1)


def unpack_detections(value: Any, what: str = "`y_pred`") -> dict[str, np.ndarray]:
    """A detections dict or a packed (B, N, 6) tensor -> dict of NumPy arrays.

    Raises:
        ValueError: naming `what`, for a tensor that is not (B, N, 6).
    """
    if isinstance(value, Mapping):
        return {k: to_numpy(value[k]) for k in (BOXES, CLASSES, SCORES)}
    array = to_numpy(value)
    if array.ndim != 3 or array.shape[-1] != 6:
        raise ValueError(
            f"{what} must be a dict of detections or a packed (B, N, 6) tensor "
            f"[x1, y1, x2, y2, class, score]; got shape {array.shape}."
        )
    return {BOXES: array[..., :4], CLASSES: np.round(array[..., 4]), SCORES: array[..., 5]}


def unpack_ground_truth(value: Any, flag: str, what: str = "`y_true`") -> dict[str, np.ndarray]:
    """A ground-truth dict or a packed (B, M, 5|6) tensor -> dict of NumPy arrays.

    Args:
        value: The dict, or the packed tensor.
        flag: What a 6th column holds (``"iscrowd"`` or ``"difficult"``).
        what: How error messages name `value`.

    Raises:
        ValueError: naming `what`, for a tensor that is not (B, M, 5) or (B, M, 6).
    """
    if isinstance(value, Mapping):
        return {k: to_numpy(value[k]) for k in GROUND_TRUTH_KEYS if k in value}
    array = to_numpy(value)
    if array.ndim != 3 or array.shape[-1] not in (5, 6):
        raise ValueError(
            f"{what} must be a dict of ground truth or a packed (B, M, 5) tensor "
            f"[x1, y1, x2, y2, class] (or (B, M, 6) with an {flag!r} column); got shape "
            f"{array.shape}."
        )
    out = {BOXES: array[..., :4], CLASSES: np.round(array[..., 4])}
    if array.shape[-1] == 6:
        out[flag] = array[..., 5] > 0.5
    return out
