"""The decoding layer at the end of every detector's ``predict``.

`DetectionDecoder` turns raw per-level head outputs into the padded detection dict of
`kerasseg.detection.format`: class scores (sigmoid, or softmax without the background
column), the ``pre_nms_top_k`` best (box, class) candidates of each level, their boxes
decoded against their anchors and clipped to the image, then class-aware NMS
(`kerasseg.detection.nms.batched_nms`). Decoding only the selected candidates keeps the
cost independent of the number of anchors. The selection per level is torchvision's
RetinaNet postprocessing (score threshold, top-k per level, batched NMS, the best
``max_detections``), so converted models give torchvision's detections.

Padding rows of the output have class -1 and score -1 (and a zero box).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from kerasseg.detection.boxes import BoxCoder, clip_to_image
from kerasseg.detection.format import BOXES, CLASSES, NUM_DETECTIONS, PAD_CLASS, SCORES
from kerasseg.detection.nms import batched_nms
from kerasseg.utils.checks import check_choice, check_positive_int

__all__ = ["ACTIVATIONS", "BOX_ENCODINGS", "PAD_SCORE", "DetectionDecoder"]

#: ``"sigmoid"``: independent class probabilities (RetinaNet, YOLOv8); ``"softmax"``: a
#: distribution whose column 0 is the background (SSD, Fast R-CNN), dropped from the scores;
#: ``"none"``: the class outputs already are scores in [0, 1] (the grid YOLO's objectness
#: times class probability).
ACTIVATIONS = ("sigmoid", "softmax", "none")
#: ``"deltas"``: box outputs are offsets that the box coder decodes against anchors;
#: ``"xyxy"``: they already are boxes in pixels (anchor-free and grid detectors decode their
#: own parametrisation, which is cheap next to the network), and no anchors are needed.
BOX_ENCODINGS = ("deltas", "xyxy")
#: Score of a padding row in a detector's output.
PAD_SCORE = -1.0


def _check_threshold(value: Any, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"`{argument}` must be a number in [0, 1], got {value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package="kerasseg")
class DetectionDecoder(keras.layers.Layer):
    """Raw head outputs per level -> padded, NMS'd detections in image pixels.

    Args:
        num_classes: Object classes ``C`` (without background).
        box_coder: The `kerasseg.detection.boxes.BoxCoder` (or its config) that encoded the
            training targets; default unit variances (RetinaNet).
        activation: One of `ACTIVATIONS`. With ``"softmax"`` the class outputs have
            ``C + 1`` columns, background first.
        box_encoding: One of `BOX_ENCODINGS`.
        score_threshold: Candidates with a score at or below are dropped.
        iou_threshold: NMS IoU above which a box of the same class is suppressed.
        max_detections: Detections per image ``M`` (the output length).
        pre_nms_top_k: Best (box, class) candidates kept per level before NMS; None: all.
        class_agnostic: Let boxes of different classes suppress each other.
        clip_boxes: Clip decoded boxes to the image.
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        box_outputs: Per level, ``(B, N_l, 4)`` encoded box predictions.
        class_outputs: Per level, ``(B, N_l, C)`` (or ``C + 1``) class logits.
        anchors: Per level, ``(N_l, 4)`` xyxy anchors in pixels; None with
            ``box_encoding="xyxy"``.
        image_shape: ``(height, width)`` of the input images (ints or scalar tensors).

    The call returns ``{"boxes": (B, M, 4) float32 xyxy pixels, "classes": (B, M) int32,
    "scores": (B, M) float32 in [0, 1], "num_detections": (B,) int32}``, best first, padded
    with class -1 and score -1.
    """

    def __init__(
        self,
        num_classes: int,
        box_coder: BoxCoder | dict | None = None,
        activation: str = "sigmoid",
        box_encoding: str = "deltas",
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        max_detections: int = 100,
        pre_nms_top_k: int | None = 1000,
        class_agnostic: bool = False,
        clip_boxes: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        # Keras' jit_compile="auto" then stays off for the detector: XLA would recompile for
        # every input size and drop the target checks of its training step.
        self.supports_jit = False
        self.num_classes = check_positive_int(num_classes, "num_classes")
        if isinstance(box_coder, dict):
            box_coder = BoxCoder.from_config(box_coder)
        self.box_coder = box_coder or BoxCoder()
        self.activation = check_choice(activation, ACTIVATIONS, "activation")
        self.box_encoding = check_choice(box_encoding, BOX_ENCODINGS, "box_encoding")
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.pre_nms_top_k = pre_nms_top_k
        self.class_agnostic = bool(class_agnostic)
        self.clip_boxes = bool(clip_boxes)

    # The thresholds are plain attributes, validated on assignment, so that a loaded model
    # can be re-tuned without rebuilding (the detector resets its predict function).
    @property
    def score_threshold(self) -> float:
        return self._score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self._score_threshold = _check_threshold(value, "score_threshold")

    @property
    def iou_threshold(self) -> float:
        return self._iou_threshold

    @iou_threshold.setter
    def iou_threshold(self, value: float) -> None:
        self._iou_threshold = _check_threshold(value, "iou_threshold")

    @property
    def max_detections(self) -> int:
        return self._max_detections

    @max_detections.setter
    def max_detections(self, value: int) -> None:
        self._max_detections = check_positive_int(value, "max_detections")

    @property
    def pre_nms_top_k(self) -> int | None:
        return self._pre_nms_top_k

    @pre_nms_top_k.setter
    def pre_nms_top_k(self, value: int | None) -> None:
        self._pre_nms_top_k = None if value is None else check_positive_int(value, "pre_nms_top_k")

    def _scores(self, logits: Any) -> Any:
        logits = ops.cast(logits, "float32")
        expected = self.num_classes + (self.activation == "softmax")
        if logits.shape[-1] != expected:
            raise ValueError(
                f"`class_outputs` must have {expected} columns for {self.num_classes} classes "
                f"with activation {self.activation!r}, got shape {tuple(logits.shape)}."
            )
        if self.activation == "softmax":
            return ops.softmax(logits, axis=-1)[..., 1:]
        if self.activation == "none":
            return logits
        return ops.sigmoid(logits)

    def _level_candidates(self, deltas: Any, logits: Any, anchors: Any) -> tuple[Any, Any, Any]:
        """The level's best ``pre_nms_top_k`` (box, class) pairs: encoded boxes, scores, classes."""
        scores = self._scores(logits)
        batch = ops.shape(scores)[0]
        flat = ops.reshape(scores, (batch, -1))  # candidate n * C + c
        k = self.pre_nms_top_k
        static_candidates = flat.shape[1]
        if k is None or (static_candidates is not None and static_candidates <= k):
            order = None
            top_scores = flat
        else:
            if static_candidates is None:  # the level may hold fewer than k candidates
                filler = ops.full((batch, k), float("-inf"), dtype="float32")
                flat = ops.concatenate([flat, filler], axis=1)
            top_scores, order = ops.top_k(flat, k, sorted=False)
        if order is None:
            anchor_index = ops.arange(ops.shape(flat)[1]) // self.num_classes
            anchor_index = ops.broadcast_to(anchor_index[None], ops.shape(flat))
            classes = ops.broadcast_to(
                ops.arange(ops.shape(flat)[1])[None] % self.num_classes, ops.shape(flat)
            )
        else:
            # The filler candidates past the level's end point at its last box.
            anchor_index = ops.minimum(order // self.num_classes, ops.shape(deltas)[1] - 1)
            classes = order % self.num_classes
        boxes = ops.take_along_axis(ops.cast(deltas, "float32"), anchor_index[..., None], axis=1)
        if self.box_encoding == "deltas":
            level_anchors = ops.take(ops.cast(anchors, "float32"), anchor_index, axis=0)
            boxes = self.box_coder.decode(boxes, level_anchors)
        return boxes, top_scores, ops.cast(classes, "int32")

    def call(
        self,
        box_outputs: Sequence[Any],
        class_outputs: Sequence[Any],
        anchors: Sequence[Any] | None,
        image_shape: Sequence[Any],
    ) -> dict[str, Any]:
        if anchors is None:
            if self.box_encoding == "deltas":
                raise ValueError("`anchors` are needed to decode box_encoding='deltas'.")
            anchors = [None] * len(box_outputs)
        if not len(box_outputs) == len(class_outputs) == len(anchors):
            raise ValueError(
                "`box_outputs`, `class_outputs` and `anchors` must have one entry per level; "
                f"got {len(box_outputs)}, {len(class_outputs)} and {len(anchors)}."
            )
        parts = [
            self._level_candidates(*level) for level in zip(box_outputs, class_outputs, anchors)
        ]
        boxes, scores, classes = (ops.concatenate(p, axis=1) for p in zip(*parts))
        if self.clip_boxes:
            boxes = clip_to_image(boxes, image_shape)
        detections = batched_nms(
            boxes,
            scores,
            classes,
            max_detections=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
            pre_nms_top_k=None,
            class_agnostic=self.class_agnostic,
        )
        padding = detections[CLASSES] == PAD_CLASS
        detections[SCORES] = ops.where(padding, PAD_SCORE, detections[SCORES])
        return detections

    def compute_output_spec(self, box_outputs: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        batch = box_outputs[0].shape[0]
        m = self.max_detections
        return {
            BOXES: keras.KerasTensor((batch, m, 4), dtype="float32"),
            CLASSES: keras.KerasTensor((batch, m), dtype="int32"),
            SCORES: keras.KerasTensor((batch, m), dtype="float32"),
            NUM_DETECTIONS: keras.KerasTensor((batch,), dtype="int32"),
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            box_coder=self.box_coder.get_config(),
            activation=self.activation,
            box_encoding=self.box_encoding,
            score_threshold=self.score_threshold,
            iou_threshold=self.iou_threshold,
            max_detections=self.max_detections,
            pre_nms_top_k=self.pre_nms_top_k,
            class_agnostic=self.class_agnostic,
            clip_boxes=self.clip_boxes,
        )
        return config
