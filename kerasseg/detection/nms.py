"""Non-maximum suppression: greedy, class-aware batched (padded), and Soft-NMS.

All functions are written with `keras.ops` (a `fori_loop` over the selected detections),
so they run on every backend, eagerly or inside a model's `predict`, with a batch
dimension and fixed output shapes. `NonMaxSuppression` wraps `batched_nms` as a
registered, serializable Keras layer.

**Semantics** (the same as `tf.image.non_max_suppression` and
`torchvision.ops.nms`, checked by the tests):

- A candidate is considered only if ``score > score_threshold`` (strictly).
- Candidates are visited in decreasing score; equal scores in increasing input index.
- The visited candidate is kept and suppresses every remaining candidate with
  ``IoU > iou_threshold`` (strictly: an IoU exactly at the threshold survives).
- Class-aware NMS (`batched_nms`) only lets boxes of the same class suppress each other.
  It masks the IoU by class equality rather than using torchvision's "offset the boxes
  per class" trick, which loses float32 precision on large offsets.

**Soft-NMS** (Bodla et al., 2017) decays instead of removing: after keeping the box $M$,
every remaining box $b_i$ gets $s_i \\leftarrow s_i f(\\mathrm{IoU}(M, b_i))$ with

- linear: $f = 1 - \\mathrm{IoU}$ if $\\mathrm{IoU} \\ge N_t$ else $1$;
- gaussian: $f = \\exp(-\\mathrm{IoU}^2 / \\sigma)$ (the paper's form; TensorFlow's
  ``soft_nms_sigma`` is $\\sigma / 2$ in this notation);

and the next box kept is the one with the highest *decayed* score. Boxes whose decayed
score falls to ``score_threshold`` or below are discarded.

**Output format** of `batched_nms`: the dense padded dict of `kerasseg.detection.format`,
``{"boxes": (B, M, 4) float32 xyxy, "classes": (B, M) int32 (-1 = padding),
"scores": (B, M) float32 (0 at padding), "num_detections": (B,) int32}``, detections
sorted by decreasing score. The valid entries are always the first ``num_detections``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from kerasseg.detection.format import BOXES, CLASSES, NUM_DETECTIONS, PAD_CLASS, SCORES

__all__ = [
    "NonMaxSuppression",
    "batched_nms",
    "non_max_suppression",
    "soft_nms",
]

_METHODS = ("hard", "linear", "gaussian")


def _check_common(max_output_size: Any, iou_threshold: float, method: str, sigma: float) -> int:
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}.")
    if (
        not isinstance(max_output_size, int)
        or isinstance(max_output_size, bool)
        or max_output_size < 1
    ):
        raise ValueError(
            f"`max_output_size` / `max_detections` must be a positive int, got {max_output_size!r}."
        )
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"`iou_threshold` must be in [0, 1], got {iou_threshold!r}.")
    if method == "gaussian" and not float(sigma) > 0:
        raise ValueError(f"`sigma` must be positive for gaussian Soft-NMS, got {sigma!r}.")
    return max_output_size


def _greedy_select(
    boxes: Any,
    scores: Any,
    classes: Any,
    max_output_size: int,
    iou_threshold: float,
    score_threshold: float,
    method: str = "hard",
    sigma: float = 0.5,
) -> tuple[Any, Any, Any]:
    """The greedy (Soft-)NMS loop on a batch of candidates.

    Args:
        boxes: ``(B, K, 4)`` xyxy candidates.
        scores: ``(B, K)`` scores; ``-inf`` marks a padding candidate.
        classes: ``(B, K)`` int classes, or None (class-agnostic).
        max_output_size: ``M``, the number of selections.

    Returns:
        ``indices (B, M)`` int32 into the K axis (-1 padding), ``kept_scores (B, M)``
        (the score when selected, 0 at padding) and ``num (B,)`` int32.
    """
    scores = ops.cast(scores, "float32")
    num_candidates = ops.shape(scores)[1]
    alive = ops.logical_and(scores > score_threshold, scores > float("-inf"))
    batch = ops.shape(scores)[0]
    indices = ops.full((batch, max_output_size), -1, dtype="int32")
    kept = ops.zeros((batch, max_output_size), dtype="float32")
    slots = ops.arange(max_output_size, dtype="int32")[None, :]  # (1, M)
    positions = ops.arange(num_candidates, dtype="int32")[None, :]  # (1, K)
    # Loop invariants, hoisted: coordinates and areas of all candidates, (B, K) each.
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    areas = ops.maximum(x2 - x1, 0.0) * ops.maximum(y2 - y1, 0.0)

    def overlap_with(best: Any) -> Any:
        """IoU of each image's chosen box with all its candidates, (B, K)."""
        chosen = ops.take_along_axis(boxes, best[:, None, None], axis=1)[:, 0, :]  # (B, 4)
        inter_w = ops.maximum(
            ops.minimum(x2, chosen[:, 2:3]) - ops.maximum(x1, chosen[:, 0:1]), 0.0
        )
        inter_h = ops.maximum(
            ops.minimum(y2, chosen[:, 3:4]) - ops.maximum(y1, chosen[:, 1:2]), 0.0
        )
        inter = inter_w * inter_h
        chosen_area = ops.take_along_axis(areas, best[:, None], axis=1)
        union = areas + chosen_area - inter
        overlap = ops.where(union > 0, inter / ops.where(union > 0, union, 1.0), 0.0)
        if classes is not None:
            chosen_class = ops.take_along_axis(classes, best[:, None], axis=1)
            overlap = ops.where(classes == chosen_class, overlap, 0.0)
        return overlap

    def body(step: Any, current: Any, alive: Any, indices: Any, kept: Any) -> tuple[Any, ...]:
        masked = ops.where(alive, current, float("-inf"))
        best = ops.cast(ops.argmax(masked, axis=1), "int32")  # first max: lowest index on ties
        best_score = ops.take_along_axis(masked, best[:, None], axis=1)  # (B, 1)
        write = ops.logical_and(slots == step, best_score > float("-inf"))
        indices = ops.where(write, best[:, None], indices)
        kept = ops.where(write, best_score, kept)

        overlap = overlap_with(best)
        if method == "hard":
            alive = ops.logical_and(alive, overlap <= iou_threshold)
        else:
            if method == "linear":
                decay = ops.where(overlap >= iou_threshold, 1.0 - overlap, 1.0)
            else:
                decay = ops.exp(-(overlap * overlap) / sigma)
            current = current * decay
            alive = ops.logical_and(alive, current > score_threshold)
        alive = ops.logical_and(alive, positions != best[:, None])
        return step + 1, current, alive, indices, kept

    def cond(step: Any, current: Any, alive: Any, indices: Any, kept: Any) -> Any:
        # Stop early once every image has run out of candidates.
        return ops.logical_and(step < max_output_size, ops.any(alive))

    state = (ops.convert_to_tensor(0, dtype="int32"), scores, alive, indices, kept)
    _, _, _, indices, kept = ops.while_loop(cond, body, state)
    num = ops.sum(ops.cast(indices >= 0, "int32"), axis=1)
    return indices, kept, num


_COMPILED: dict[Any, Any] = {}


def _tensorflow_hard_select(
    boxes: Any,
    scores: Any,
    classes: Any,
    max_output_size: int,
    iou_threshold: float,
    score_threshold: float,
    method: str = "hard",
    sigma: float = 0.5,
) -> tuple[Any, Any, Any]:
    """`_greedy_select` for hard NMS with TensorFlow's NMS kernel, image by image.

    The same selections (greedy by score, lower index first on ties, IoU strictly above
    the threshold suppresses, scores strictly above the score threshold): about 40x
    faster on CPU than the loop of tensor ops, whose 100 steps each touch all candidates.
    Classes are kept apart by shifting each class's boxes beyond the others' extent (the
    coordinate trick of torchvision's ``batched_nms``).
    """
    import tensorflow as tf

    del method, sigma  # hard NMS only
    boxes = tf.cast(boxes, tf.float32)
    scores = tf.cast(scores, tf.float32)
    if classes is not None:
        finite = tf.math.is_finite(scores)[..., None]
        low = tf.reduce_min(tf.where(finite, boxes, np.inf))
        high = tf.reduce_max(tf.where(finite, boxes, -np.inf))
        extent = tf.maximum(high - low, 0.0) + 1.0
        shift = tf.cast(classes, tf.float32)[..., None] * extent
        boxes = tf.where(finite, boxes - low + shift, 0.0)

    def one_image(args: tuple[Any, Any]) -> Any:
        image_boxes, image_scores = args
        # The kernel wants finite scores; padding candidates (-inf) sit below the threshold.
        image_scores = tf.where(tf.math.is_finite(image_scores), image_scores, -np.inf)
        picked = tf.image.non_max_suppression(
            image_boxes,
            tf.maximum(image_scores, tf.float32.min),
            max_output_size,
            iou_threshold=iou_threshold,
            score_threshold=max(score_threshold, float(np.finfo(np.float32).min)),
        )
        picked = tf.cast(picked, tf.int32)
        return tf.pad(picked, [[0, max_output_size - tf.shape(picked)[0]]], constant_values=-1)

    indices = tf.map_fn(one_image, (boxes, scores), fn_output_signature=tf.int32)
    valid = indices >= 0
    kept = tf.where(valid, tf.gather(scores, tf.maximum(indices, 0), batch_dims=1), 0.0)
    num = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
    return indices, kept, num


def _select(*args: Any) -> tuple[Any, Any, Any]:
    """Greedy (Soft-)NMS: `_greedy_select`, or TensorFlow's NMS kernel for hard NMS on
    that backend (`_tensorflow_hard_select`), compiled with `tf.function` when called
    eagerly.

    An eager `while_loop` runs op by op in Python (about a second for 100 detections);
    the compiled one takes milliseconds. Inside a traced model it is inlined as is.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        method = args[6] if len(args) > 6 else "hard"
        select = _tensorflow_hard_select if method == "hard" else _greedy_select
        if tf.executing_eagerly():
            if select not in _COMPILED:
                _COMPILED[select] = tf.function(select, reduce_retracing=True)
            return _COMPILED[select](*args)
        return select(*args)
    return _greedy_select(*args)


def _batched(x: Any, rank: int) -> tuple[Any, bool]:
    x = ops.convert_to_tensor(x)
    if len(x.shape) == rank - 1:
        return ops.expand_dims(x, 0), True
    if len(x.shape) != rank:
        raise ValueError(
            f"Expected a tensor of rank {rank - 1} or {rank}, got shape {tuple(x.shape)}."
        )
    return x, False


def _sort_candidates(scores: Any, k: Any) -> tuple[Any, Any]:
    # top_k keeps the lower index first among equal scores (TF, JAX and torch agree).
    values, order = ops.top_k(scores, k, sorted=True)
    return values, ops.cast(order, "int32")


def _single_class(
    boxes: Any,
    scores: Any,
    max_output_size: int,
    iou_threshold: float,
    score_threshold: float,
    method: str,
    sigma: float,
) -> tuple[Any, Any, Any]:
    boxes, unbatched = _batched(ops.cast(boxes, "float32"), 3)
    scores, _ = _batched(ops.cast(scores, "float32"), 2)
    num_boxes = boxes.shape[1] if boxes.shape[1] is not None else ops.shape(boxes)[1]
    sorted_scores, order = _sort_candidates(scores, num_boxes)
    sorted_boxes = ops.take_along_axis(boxes, order[..., None], axis=1)
    picks, kept, num = _select(
        sorted_boxes,
        sorted_scores,
        None,
        max_output_size,
        iou_threshold,
        score_threshold,
        method,
        sigma,
    )
    # Back to indices into the caller's (unsorted) boxes.
    original = ops.take_along_axis(order, ops.maximum(picks, 0), axis=1)
    original = ops.where(picks >= 0, original, -1)
    if unbatched:
        return original[0], kept[0], num[0]
    return original, kept, num


def non_max_suppression(
    boxes: Any,
    scores: Any,
    *,
    max_output_size: int,
    iou_threshold: float = 0.5,
    score_threshold: float = float("-inf"),
) -> tuple[Any, Any]:
    """Greedy single-class NMS with a padded output.

    Args:
        boxes: ``(N, 4)`` or ``(B, N, 4)`` xyxy boxes (``yxyx`` works too: IoU does not
            care).
        scores: ``(N,)`` or ``(B, N)`` scores.
        max_output_size: ``M``, the most boxes kept (the output length).
        iou_threshold: Suppress candidates with IoU strictly above this.
        score_threshold: Ignore boxes with score at or below this.

    Returns:
        ``(indices, num_valid)``: ``indices`` of shape ``(M,)`` / ``(B, M)``, int32 into
        the input's N axis in decreasing score order, padded with -1 after the first
        ``num_valid`` (int32 scalar / ``(B,)``).
    """
    _check_common(max_output_size, iou_threshold, "hard", 1.0)
    indices, _, num = _single_class(
        boxes, scores, max_output_size, float(iou_threshold), float(score_threshold), "hard", 1.0
    )
    return indices, num


def soft_nms(
    boxes: Any,
    scores: Any,
    *,
    max_output_size: int,
    method: str = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.3,
    score_threshold: float = 0.001,
) -> tuple[Any, Any, Any]:
    """Soft-NMS (Bodla et al., 2017), single class, padded output.

    Args:
        boxes: ``(N, 4)`` or ``(B, N, 4)`` xyxy boxes.
        scores: ``(N,)`` or ``(B, N)`` scores.
        max_output_size: ``M``, the most boxes kept.
        method: ``"linear"`` or ``"gaussian"`` (see the module docstring).
        sigma: Gaussian width $\\sigma$ (paper's notation, default 0.5).
        iou_threshold: $N_t$ of the linear method (unused by the gaussian one).
        score_threshold: Boxes whose decayed score is at or below this are dropped.

    Returns:
        ``(indices, new_scores, num_valid)``: int32 indices into the input (-1 padded),
        the decayed scores at selection time (0 at padding; non-increasing), and the
        count of valid entries.
    """
    if method not in ("linear", "gaussian"):
        raise ValueError(f"`method` must be 'linear' or 'gaussian', got {method!r}.")
    _check_common(max_output_size, iou_threshold, method, sigma)
    return _single_class(
        boxes,
        scores,
        max_output_size,
        float(iou_threshold),
        float(score_threshold),
        method,
        float(sigma),
    )


def _candidates(boxes: Any, scores: Any, classes: Any) -> tuple[Any, Any, bool]:
    """Flattens the three `batched_nms` layouts into per-image candidate lists.

    Returns:
        ``(flat_scores (B, K0), pick, unbatched)``: ``pick(order)`` gathers the boxes
        ``(B, k, 4)`` and int32 classes ``(B, k)`` of candidate indices ``order (B, k)``
        (indices past the end, from -inf padding, are clamped: their scores are -inf).
    """
    boxes = ops.cast(ops.convert_to_tensor(boxes), "float32")
    scores = ops.cast(ops.convert_to_tensor(scores), "float32")
    if classes is not None:
        if len(scores.shape) not in (1, 2) or len(boxes.shape) != len(scores.shape) + 1:
            raise ValueError(
                "With `classes`, expected boxes (B, N, 4), scores (B, N), classes (B, N); got "
                f"boxes {tuple(boxes.shape)}, scores {tuple(scores.shape)}."
            )
        classes = ops.cast(ops.convert_to_tensor(classes), "int32")
        unbatched = len(scores.shape) == 1
        if unbatched:
            boxes, scores, classes = boxes[None], scores[None], classes[None]

        def pick(order: Any) -> tuple[Any, Any]:
            order = ops.minimum(order, ops.shape(scores)[1] - 1)
            return (
                ops.take_along_axis(boxes, order[..., None], axis=1),
                ops.take_along_axis(classes, order, axis=1),
            )

        return scores, pick, unbatched

    if len(scores.shape) not in (2, 3):
        raise ValueError(
            f"`scores` must be (B, N, C) (or (N, C)) without `classes`, got {tuple(scores.shape)}."
        )
    unbatched = len(scores.shape) == 2
    if unbatched:
        boxes, scores = boxes[None], scores[None]
    num_classes = scores.shape[-1]
    if num_classes is None:
        raise ValueError("The number of classes (last axis of `scores`) must be static.")
    batch = ops.shape(scores)[0]
    if len(boxes.shape) not in (3, 4):
        raise ValueError(f"`boxes` must be (B, N, 4) or (B, N, C, 4), got {tuple(boxes.shape)}.")
    # Candidate n * C + c is class c of box n; class-specific boxes flatten the same way.
    shared = len(boxes.shape) == 3
    if not shared:
        boxes = ops.reshape(boxes, (batch, -1, 4))

    def pick(order: Any) -> tuple[Any, Any]:
        index = order // num_classes if shared else order
        index = ops.minimum(index, ops.shape(boxes)[1] - 1)
        return ops.take_along_axis(boxes, index[..., None], axis=1), order % num_classes

    return ops.reshape(scores, (batch, -1)), pick, unbatched


def batched_nms(
    boxes: Any,
    scores: Any,
    classes: Any = None,
    *,
    max_detections: int = 100,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.05,
    pre_nms_top_k: int | None = 1000,
    class_agnostic: bool = False,
    method: str = "hard",
    sigma: float = 0.5,
) -> dict[str, Any]:
    """Class-aware NMS over a batch, returning the dense padded detection dict.

    Three input layouts:

    - ``boxes (B, N, 4)``, ``scores (B, N, C)``, ``classes=None``: per-class scores with
      boxes shared by all classes (RetinaNet, SSD, YOLO). Every (box, class) pair is a
      candidate.
    - ``boxes (B, N, C, 4)``, ``scores (B, N, C)``: class-specific boxes (Fast/Faster
      R-CNN heads).
    - ``boxes (B, N, 4)``, ``scores (B, N)``, ``classes (B, N)`` int: one class per box
      (torchvision's ``batched_nms``).

    The batch axis may be omitted (then so is it in the output).

    Args:
        boxes: xyxy boxes in absolute pixels, see the layouts.
        scores: Scores (probabilities, not logits), see the layouts.
        classes: Class ids for the third layout.
        max_detections: ``M``, detections kept per image (output length).
        iou_threshold: Suppression IoU (strictly above suppresses), or $N_t$ for linear
            Soft-NMS.
        score_threshold: Candidates with score at or below are ignored.
        pre_nms_top_k: Only the ``pre_nms_top_k`` best-scoring candidates per image enter
            NMS (bounds the cost when N x C is large); None: all.
        class_agnostic: Let boxes of different classes suppress each other.
        method: ``"hard"`` (greedy NMS), ``"linear"`` or ``"gaussian"`` Soft-NMS.
        sigma: Gaussian Soft-NMS width.

    Returns:
        ``{"boxes": (B, M, 4) float32, "classes": (B, M) int32 with -1 padding,
        "scores": (B, M) float32, "num_detections": (B,) int32}``.
    """
    _check_common(max_detections, iou_threshold, method, sigma)
    if pre_nms_top_k is not None and (not isinstance(pre_nms_top_k, int) or pre_nms_top_k < 1):
        raise ValueError(f"`pre_nms_top_k` must be a positive int or None, got {pre_nms_top_k!r}.")
    flat_scores, pick, unbatched = _candidates(boxes, scores, classes)

    # Pre-selection of the best candidates: pad with -inf so that top-k never asks for
    # more than there are (N may be dynamic), then sort.
    num_candidates = flat_scores.shape[1]
    if pre_nms_top_k is None:
        k = num_candidates if num_candidates is not None else ops.shape(flat_scores)[1]
    elif num_candidates is not None and num_candidates <= pre_nms_top_k:
        k = num_candidates
    else:
        k = pre_nms_top_k
        if num_candidates is None:
            filler = ops.full((ops.shape(flat_scores)[0], k), float("-inf"), dtype="float32")
            flat_scores = ops.concatenate([flat_scores, filler], axis=1)
    top_scores, order = _sort_candidates(flat_scores, k)
    top_boxes, top_classes = pick(order)

    picks, kept_scores, num = _select(
        top_boxes,
        top_scores,
        None if class_agnostic else top_classes,
        max_detections,
        float(iou_threshold),
        float(score_threshold),
        method,
        float(sigma),
    )
    valid = picks >= 0
    safe = ops.maximum(picks, 0)
    out_boxes = ops.take_along_axis(top_boxes, safe[..., None], axis=1)
    out = {
        BOXES: ops.where(valid[..., None], out_boxes, 0.0),
        CLASSES: ops.where(valid, ops.take_along_axis(top_classes, safe, axis=1), PAD_CLASS),
        SCORES: kept_scores,
        NUM_DETECTIONS: num,
    }
    if unbatched:
        out = {key: value[0] for key, value in out.items()}
    return out


@keras.saving.register_keras_serializable(package="kerasseg")
class NonMaxSuppression(keras.layers.Layer):
    """Batched, class-aware (Soft-)NMS as a layer: the end of a detector's `predict`.

    Call with ``(boxes, scores)`` or ``(boxes, scores, classes)`` in one of the layouts of
    `batched_nms`; returns its dict ``{"boxes", "classes", "scores",
    "num_detections"}`` of fixed shapes, so the model's outputs are dense and batchable.
    Works on every backend (a `keras.ops.fori_loop`), in eager calls and traced graphs.

    Args:
        max_detections: Detections per image (output length).
        iou_threshold: Suppression IoU.
        score_threshold: Minimum score (exclusive) of a candidate.
        pre_nms_top_k: Candidates entering NMS per image (None: all).
        class_agnostic: Suppress across classes.
        method: ``"hard"``, ``"linear"`` or ``"gaussian"``.
        sigma: Gaussian Soft-NMS width.
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        max_detections: int = 100,
        iou_threshold: float = 0.5,
        score_threshold: float = 0.05,
        pre_nms_top_k: int | None = 1000,
        class_agnostic: bool = False,
        method: str = "hard",
        sigma: float = 0.5,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        _check_common(max_detections, iou_threshold, method, sigma)
        self.max_detections = max_detections
        self.iou_threshold = float(iou_threshold)
        self.score_threshold = float(score_threshold)
        self.pre_nms_top_k = pre_nms_top_k
        self.class_agnostic = bool(class_agnostic)
        self.method = method
        self.sigma = float(sigma)

    def call(self, boxes: Any, scores: Any, classes: Any = None) -> dict[str, Any]:
        return batched_nms(
            boxes,
            scores,
            classes,
            max_detections=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
            pre_nms_top_k=self.pre_nms_top_k,
            class_agnostic=self.class_agnostic,
            method=self.method,
            sigma=self.sigma,
        )

    def compute_output_spec(self, boxes: Any, scores: Any, classes: Any = None) -> dict[str, Any]:
        batch = scores.shape[0] if classes is not None or len(scores.shape) == 3 else None
        if classes is None and len(scores.shape) == 2:  # unbatched (N, C)
            shape = ()
        elif classes is not None and len(scores.shape) == 1:
            shape = ()
        else:
            shape = (batch,)
        m = self.max_detections
        return {
            BOXES: keras.KerasTensor(shape + (m, 4), dtype="float32"),
            CLASSES: keras.KerasTensor(shape + (m,), dtype="int32"),
            SCORES: keras.KerasTensor(shape + (m,), dtype="float32"),
            NUM_DETECTIONS: keras.KerasTensor(shape, dtype="int32"),
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            max_detections=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
            pre_nms_top_k=self.pre_nms_top_k,
            class_agnostic=self.class_agnostic,
            method=self.method,
            sigma=self.sigma,
        )
        return config
