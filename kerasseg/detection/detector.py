"""The base model of every detector: loss inside the model, decoded detections from ``predict``.

A detector wraps a *network* (a functional `keras.Model`: images in 0..255 -> raw head
outputs, one tensor per pyramid level) and adds what turns it into a detector:

- ``compute_loss`` reads the raw padded ground truth of `kerasseg.detection.format`
  (``{"boxes": (B, M, 4) xyxy pixels, "classes": (B, M)}``, class -1 = padding), checks
  it, assigns it to the outputs with the family's own assigner and returns the family's
  loss, so ``compile(optimizer)`` + ``fit(images, targets)`` is all training needs;
- ``predict`` (``predict_step``) decodes the raw outputs with a
  `kerasseg.detection.postprocess.DetectionDecoder`, whose thresholds can be changed on a
  loaded model (`Detector.score_threshold`, ...);
- ``compile(optimizer)`` is enough; ``compile(loss=...)`` replaces the detector's loss
  with ``loss(y, y_pred)`` on the raw padded targets and the raw network outputs;
- metrics given to ``compile`` (e.g. `kerasseg.metrics.MeanAveragePrecision`) receive the
  packed ground truth and the decoded detections in ``evaluate`` and in ``fit``'s
  validation (not on training batches, whose decoding would only slow training down).

`Detector` holds what every family shares; `AnchorDetector` adds anchors (RetinaNet,
SSD); a family subclasses one of them and defines `Detector.detection_loss`.

Ground-truth boxes without area (``x2 <= x1`` or ``y2 <= y1``) cannot be regressed; they
are left out of the loss like padding rows (augmentation produces them when it crops
objects away), so they never make a loss NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from kerasseg.detection.anchors import AnchorGenerator
from kerasseg.detection.boxes import BoxCoder
from kerasseg.detection.format import (
    BOXES,
    CLASSES,
    FLAGS,
    pack_detections,
    pack_ground_truth,
)
from kerasseg.detection.postprocess import DetectionDecoder
from kerasseg.utils.checks import check_positive_int
from kerasseg.utils.value_checks import runtime_check as _runtime_check

__all__ = ["AnchorDetector", "DetectionTargets", "Detector", "check_targets"]


class DetectionTargets(dict):
    """Checked ground truth: ``boxes (B, M, 4)`` float32, ``classes (B, M)`` int32 (-1 on
    padding and on boxes without area), ``ignore (B, M)`` bool (crowd / difficult boxes,
    neither positive nor negative)."""


def check_targets(y: Any, num_classes: int) -> DetectionTargets:
    """Validates a padded ground-truth batch and returns it in the dtypes the losses use.

    Args:
        y: ``{"boxes": (B, M, 4), "classes": (B, M)[, "iscrowd" | "difficult": (B, M)]}``:
            xyxy boxes in pixels, class ids in ``[0, num_classes)`` or -1 for padding.
        num_classes: The detector's number of classes.

    Returns:
        The `DetectionTargets`.

    Raises:
        ValueError: for a missing key or a wrong shape (when tracing), and at run time for
            class ids outside ``[-1, num_classes)`` or non-finite boxes.
    """
    if not isinstance(y, Mapping) or BOXES not in y or CLASSES not in y:
        got = sorted(y) if isinstance(y, Mapping) else type(y).__name__
        raise ValueError(
            "Detector targets `y` must be a dict with 'boxes' (B, M, 4) xyxy pixels and "
            f"'classes' (B, M) (class -1 = padding); got {got}."
        )
    boxes = ops.cast(y[BOXES], "float32")
    classes = y[CLASSES]
    if len(boxes.shape) != 3 or boxes.shape[-1] != 4:
        raise ValueError(
            f"`y['boxes']` must have shape (B, M, 4) (xyxy pixels), got {tuple(boxes.shape)}."
        )
    if len(classes.shape) == 3 and classes.shape[-1] == 1:
        classes = classes[..., 0]
    if len(classes.shape) != 2:
        raise ValueError(f"`y['classes']` must have shape (B, M), got {tuple(classes.shape)}.")
    m_boxes, m_classes = boxes.shape[1], classes.shape[1]
    if m_boxes is not None and m_classes is not None and m_boxes != m_classes:
        raise ValueError(
            f"`y['boxes']` has {m_boxes} boxes per image but `y['classes']` has {m_classes}; "
            "they must be padded to the same length."
        )
    classes = ops.cast(ops.round(ops.cast(classes, "float32")), "int32")
    labelled = classes >= 0
    _runtime_check(
        ops.all(ops.logical_and(classes >= -1, classes < num_classes)),
        f"`y['classes']` must hold class ids in [0, {num_classes}) and -1 for padding "
        f"(the model has num_classes={num_classes}); a batch has ids outside that range.",
    )
    finite = ops.all(ops.isfinite(boxes), axis=-1)
    _runtime_check(
        ops.all(ops.logical_or(finite, ops.logical_not(labelled))),
        "`y['boxes']` must be finite for every labelled box (class >= 0); a batch has "
        "NaN or infinite coordinates.",
    )
    has_area = ops.logical_and(boxes[..., 2] > boxes[..., 0], boxes[..., 3] > boxes[..., 1])
    usable = ops.logical_and(ops.logical_and(labelled, finite), has_area)
    classes = ops.where(usable, classes, -1)
    boxes = ops.where(usable[..., None], boxes, 0.0)
    ignore = ops.zeros_like(usable)
    for flag in FLAGS:
        if flag in y:
            ignore = ops.logical_or(ignore, ops.cast(y[flag], "bool"))
    return DetectionTargets(boxes=boxes, classes=classes, ignore=ops.logical_and(ignore, usable))


def _without_padding_rows(targets: DetectionTargets) -> DetectionTargets:
    """Checked targets with the usable rows first (in their order), cut to the most any
    image of the batch has (at least one row).

    Assignment costs grow with ``B x M x N`` (rows x anchors), and pipelines pad generously
    (a mosaic's 4 x the rows of one image), so the padding is cut before it. The kept rows
    and their order are unchanged, so every assignment is the same. TensorFlow only: JAX
    traces with static shapes, where the rows stay as they are.
    """
    if keras.backend.backend() != "tensorflow":
        return targets
    usable = targets[CLASSES] >= 0
    rows = ops.shape(usable)[1]
    index = ops.arange(rows, dtype="int32")[None]
    order = ops.argsort(ops.where(usable, index, index + rows), axis=1)
    count = ops.max(ops.sum(ops.cast(usable, "int32"), axis=1))
    order = order[:, : ops.maximum(count, 1)]
    boxes = ops.take_along_axis(targets[BOXES], order[..., None], axis=1)
    return DetectionTargets(
        boxes=boxes,
        classes=ops.take_along_axis(targets[CLASSES], order, axis=1),
        ignore=ops.take_along_axis(targets["ignore"], order, axis=1),
    )


def _prediction_setting(name: str) -> property:
    """A detector property reading and setting its decoder's `name`: setting it re-traces
    ``predict`` (the traced function holds the old value) and needs no rebuild."""

    def get(self: Detector) -> Any:
        return getattr(self.decoder, name)

    def set(self: Detector, value: Any) -> None:
        setattr(self.decoder, name, value)  # validated by the decoder
        self.predict_function = None
        self.test_function = None

    return property(get, set, doc=f"The decoder's `{name}` (see `DetectionDecoder`).")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class Detector(keras.Model):
    """Base of every detector (see the module docstring).

    Subclasses set `LOSS_PARTS`, the names of the parts `detection_loss` returns.

    Args:
        network: Functional model, images ``(B, H, W, 3)`` in 0..255 -> raw outputs.
        num_classes: Object classes (without background).
        decoder: The `DetectionDecoder` of ``predict`` (or its config).
        **kwargs: `keras.Model` arguments (``name``).
    """

    LOSS_PARTS: tuple[str, ...] = ()

    def __init__(
        self,
        network: keras.Model,
        num_classes: int,
        decoder: DetectionDecoder | dict | None = None,
        **kwargs: Any,
    ):
        num_classes = check_positive_int(num_classes, "num_classes")
        if isinstance(decoder, dict):
            decoder = keras.saving.deserialize_keras_object(decoder)
        decoder = decoder or DetectionDecoder(num_classes, name="decoder")
        images = keras.Input(shape=network.input_shape[1:], name="images")
        super().__init__(inputs=images, outputs=network(images), **kwargs)
        self.network = network
        self.num_classes = num_classes
        self.decoder = decoder
        # One running mean per loss part, logged by fit/evaluate next to the total loss.
        self._part_trackers = {part: keras.metrics.Mean(name=part) for part in self.LOSS_PARTS}

    # ------------------------------------------------------------------ prediction

    score_threshold = _prediction_setting("score_threshold")
    iou_threshold = _prediction_setting("iou_threshold")
    max_detections = _prediction_setting("max_detections")
    pre_nms_top_k = _prediction_setting("pre_nms_top_k")

    def decode(self, outputs: Any, images: Any) -> dict[str, Any]:
        """Raw network outputs -> the padded detections dict (subclasses define it)."""
        raise NotImplementedError(f"{type(self).__name__} must define `decode`.")

    def predict_step(self, data: Any) -> dict[str, Any]:
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.decode(self(images, training=False), images)

    # --------------------------------------------------------------------- training

    def detection_loss(
        self, images: Any, targets: DetectionTargets, outputs: Any
    ) -> dict[str, Any]:
        """The family's loss as weighted scalar parts named `LOSS_PARTS` (their sum is the
        loss; each part is also logged): subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} must define `detection_loss`.")

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        if self._compile_loss is not None:  # compile(loss=...) replaces the own loss
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if sample_weight is not None:
            raise ValueError(
                "Detectors take no `sample_weight`; weight images by repeating them, or mark "
                "boxes to ignore with an 'iscrowd' / 'difficult' flag in the targets."
            )
        if y is None:
            raise ValueError(
                "Detectors train on targets: pass `y` = {'boxes': (B, M, 4), 'classes': "
                "(B, M)} to `fit` / `evaluate`."
            )
        targets = _without_padding_rows(check_targets(y, self.num_classes))
        parts = self.detection_loss(x, targets, y_pred)
        loss = ops.zeros((), "float32")
        for part, value in parts.items():
            self._part_trackers[part].update_state(value)
            loss = loss + value
        for extra in self.losses:  # weight regularisers
            loss = loss + self._aggregate_additional_loss(extra)
        return loss

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        if getattr(self, "_in_train_step", False):
            if self._compile_metrics is not None and not self._compile_metrics.built:
                # Built on the shapes they will see in validation (Keras reads every
                # metric's result at the end of an epoch, updated or not).
                truth = pack_ground_truth(y)
                shape = (ops.shape(truth)[0], self.decoder.max_detections, 6)
                self._compile_metrics.build(truth, ops.zeros(shape))
            return {m.name: m.result() for m in self.metrics if m is not self._compile_metrics}
        if self._compile_metrics is None:
            return self.get_metrics_result()
        truth, detections = pack_ground_truth(y), pack_detections(self.decode(y_pred, x))
        if not self._compile_metrics.built:  # Keras would build it on the raw outputs
            self._compile_metrics.build(truth, detections)
        self._compile_metrics.update_state(truth, detections)
        return self.get_metrics_result()

    def make_train_function(self, force: bool = False) -> Any:
        # Build the optimizer before tracing: a first trace that stops at bad targets would
        # leave its variables to the next trace, which `tf.function` refuses.
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
        return super().make_train_function(force)

    def train_step(self, *args: Any, **kwargs: Any) -> Any:
        # Training batches skip the compiled (detection) metrics: see the module docstring.
        self._in_train_step = True
        try:
            return super().train_step(*args, **kwargs)
        finally:
            self._in_train_step = False

    # ---------------------------------------------------------------- serialization

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": keras.saving.serialize_keras_object(self.network),
            "num_classes": self.num_classes,
            "decoder": keras.saving.serialize_keras_object(self.decoder),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Detector:
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


class AnchorDetector(Detector):
    """A detector predicting, at every anchor of every level, box deltas and class logits.

    The network's outputs are ``{"boxes": [per level (B, H_l, W_l, A_l * 4)], "classes":
    [per level (B, H_l, W_l, A_l * K)]}`` with the anchor order of
    `kerasseg.detection.anchors` (K = classes, + 1 with a softmax background).

    Args:
        network: The functional network.
        num_classes: Object classes.
        anchor_generator: The `AnchorGenerator` (or its config), one level per output.
        box_coder: The `BoxCoder` (or its config) encoding the regression targets.
        decoder: The `DetectionDecoder` (or its config); default one with `box_coder`.
        **kwargs: `keras.Model` arguments.
    """

    def __init__(
        self,
        network: keras.Model,
        num_classes: int,
        anchor_generator: AnchorGenerator | dict,
        box_coder: BoxCoder | dict | None = None,
        decoder: DetectionDecoder | dict | None = None,
        **kwargs: Any,
    ):
        if isinstance(anchor_generator, dict):
            anchor_generator = AnchorGenerator.from_config(anchor_generator)
        if isinstance(box_coder, dict):
            box_coder = BoxCoder.from_config(box_coder)
        box_coder = box_coder or BoxCoder()
        if decoder is None:
            decoder = DetectionDecoder(num_classes, box_coder=box_coder, name="decoder")
        super().__init__(network, num_classes, decoder=decoder, **kwargs)
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        outputs = self.network.output
        if not isinstance(outputs, Mapping) or set(outputs) != {BOXES, CLASSES}:
            raise ValueError(
                "An anchor detector's network must output {'boxes': [per level], 'classes': "
                f"[per level]}}; got {type(outputs).__name__}."
            )
        levels = len(_as_list(outputs[BOXES]))
        if levels != anchor_generator.num_levels:
            raise ValueError(
                f"`anchor_generator` has {anchor_generator.num_levels} levels but the network "
                f"outputs {levels}."
            )

    def level_outputs(self, outputs: Mapping[str, Any]) -> tuple[list, list, list[tuple]]:
        """Per level: ``(B, N_l, 4)`` box outputs, ``(B, N_l, K)`` class outputs, and the
        level's feature size ``(H_l, W_l)``."""
        boxes, classes, sizes = [], [], []
        for box_map, class_map in zip(_as_list(outputs[BOXES]), _as_list(outputs[CLASSES])):
            shape = ops.shape(box_map)
            anchors = self.anchor_generator.num_anchors_per_location()[len(boxes)]
            per_anchor = class_map.shape[-1] // anchors
            boxes.append(ops.reshape(box_map, (shape[0], -1, 4)))
            classes.append(ops.reshape(class_map, (shape[0], -1, per_anchor)))
            sizes.append((shape[1], shape[2]))
        return boxes, classes, sizes

    def anchors(self, images: Any, feature_sizes: Sequence[tuple]) -> list[Any]:
        """Per level, the ``(N_l, 4)`` anchors of images of this batch's size."""
        shape = ops.shape(images)
        return self.anchor_generator.per_level((shape[1], shape[2]), feature_sizes)

    def decode(self, outputs: Any, images: Any) -> dict[str, Any]:
        boxes, classes, sizes = self.level_outputs(outputs)
        shape = ops.shape(images)
        return self.decoder(
            boxes, classes, self.anchors(images, sizes), image_shape=(shape[1], shape[2])
        )

    def flat_outputs(self, images: Any, outputs: Any) -> tuple[Any, Any, Any]:
        """All levels concatenated: ``(B, N, 4)`` box outputs, ``(B, N, K)`` class
        outputs and the ``(N, 4)`` anchors."""
        boxes, classes, sizes = self.level_outputs(outputs)
        anchors = self.anchors(images, sizes)
        return (
            ops.concatenate(boxes, axis=1),
            ops.concatenate(classes, axis=1),
            ops.concatenate(anchors, axis=0),
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            anchor_generator=self.anchor_generator.get_config(),
            box_coder=self.box_coder.get_config(),
        )
        return config
