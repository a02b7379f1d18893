"""YOLOv8 (ultralytics, 2023): the anchor-free YOLO, ``yolov8_n`` / ``yolov8_xs`` / ``yolov8_s``.

A CSP-Darknet backbone (`kerasseg.detection.darknet`), the PAN neck
(`kerasseg.detection.necks.path_aggregation`) and a decoupled head per level
(`kerasseg.detection.heads.decoupled_head`). Every cell centre of P3-P5 (strides 8, 16,
32) is an *anchor point*; it predicts class logits and, per box side, a distribution over
``reg_max`` distance bins (in units of the level's stride) whose expectation is the
distance from the point to that side (distribution focal loss, Li et al., 2020).

Training assigns ground truth with TOOD's task-aligned assigner
(`kerasseg.detection.assigners.task_aligned_assign`: the top 10 points inside each box by
$s^{0.5} u^{6}$, score times CIoU) and minimises ultralytics' loss: BCE on the
alignment-normalised class targets (gain 0.5), CIoU (7.5) and DFL (1.5), each divided by
the sum of the target scores of the batch. (ultralytics multiplies the total by the batch
size; the optimiser sees the same direction.)

Sizes: ``n`` and ``s`` are ultralytics' ``yolov8n`` / ``yolov8s``; ``xs`` is keras-cv's
``YOLOV8Detector`` on its ``xs`` backbone with ``fpn_depth=1`` (the n widths, two
bottlenecks in the bottom-up neck blocks), for comparisons at equal size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from kerasseg.detection import losses as box_losses
from kerasseg.detection.assigners import task_aligned_assign
from kerasseg.detection.darknet import CSPDarknetConfig, csp_darknet
from kerasseg.detection.detector import DetectionTargets, Detector
from kerasseg.detection.format import BOXES, CLASSES
from kerasseg.detection.heads import decoupled_head
from kerasseg.detection.necks import path_aggregation
from kerasseg.detection.postprocess import DetectionDecoder
from kerasseg.detection.variants import register_detector_variant
from kerasseg.layers.checks import DivisibleSizeCheck, check_input_shape
from kerasseg.utils.checks import check_positive_int

__all__ = ["VARIANTS", "YOLOv8", "anchor_points", "yolov8"]

STRIDES = (8, 16, 32)
INPUT_MULTIPLE = 32
REG_MAX = 16
#: ultralytics' loss gains (``hyp.box``, ``hyp.cls``, ``hyp.dfl``).
BOX_GAIN = 7.5
CLASS_GAIN = 0.5
DFL_GAIN = 1.5
#: The task-aligned assigner's settings in YOLOv8.
TOP_K = 10
ALPHA = 0.5
BETA = 6.0

#: Per size: the width / depth multiples of ``yolov8.yaml`` and the bottlenecks of the
#: bottom-up neck blocks (None: as the top-down ones).
VARIANTS: dict[str, dict[str, Any]] = {
    "n": {"width": 0.25, "depth": 0.33, "bottom_up_repeats": None},
    "xs": {"width": 0.25, "depth": 0.33, "bottom_up_repeats": 2},
    "s": {"width": 0.50, "depth": 0.33, "bottom_up_repeats": None},
}


def anchor_points(
    feature_sizes: Sequence[tuple[Any, Any]], strides: Sequence[int]
) -> tuple[Any, Any]:
    """The cell centres of every level, row major, levels concatenated.

    Args:
        feature_sizes: ``(H_l, W_l)`` per level (ints or scalar tensors).
        strides: The stride of each level in pixels.

    Returns:
        ``(points, point_strides)``: ``(N, 2)`` float32 ``(x, y)`` pixel centres
        ``((j + 0.5) s, (i + 0.5) s)`` and ``(N,)`` float32 strides.
    """
    points, point_strides = [], []
    for (height, width), stride in zip(feature_sizes, strides):
        xs = (ops.cast(ops.arange(width), "float32") + 0.5) * stride
        ys = (ops.cast(ops.arange(height), "float32") + 0.5) * stride
        grid_x, grid_y = ops.meshgrid(xs, ys)  # (H, W) each
        level = ops.stack([ops.reshape(grid_x, (-1,)), ops.reshape(grid_y, (-1,))], axis=-1)
        points.append(level)
        point_strides.append(ops.full((ops.shape(level)[0],), float(stride), dtype="float32"))
    return ops.concatenate(points, axis=0), ops.concatenate(point_strides, axis=0)


def _distances_to_boxes(distances: Any, points: Any) -> Any:
    """``(..., 4)`` left/top/right/bottom pixel distances from ``(..., 2)`` points -> xyxy."""
    return ops.concatenate([points - distances[..., :2], points + distances[..., 2:]], axis=-1)


def _binary_cross_entropy_with_logits(targets: Any, logits: Any) -> Any:
    """Element-wise BCE on logits, the numerically stable form."""
    return ops.maximum(logits, 0.0) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))


def _points_in_boxes(points: Any, boxes: Any) -> Any:
    """``(B, N, M)``: whether point ``n`` lies inside box ``m`` (strictly)."""
    x, y = points[None, :, None, 0], points[None, :, None, 1]
    b = boxes[:, None]
    return ops.logical_and(
        ops.logical_and(x > b[..., 0], x < b[..., 2]),
        ops.logical_and(y > b[..., 1], y < b[..., 3]),
    )


@keras.saving.register_keras_serializable(package="kerasseg")
class YOLOv8(Detector):
    """YOLOv8: anchor points, DFL box distributions, task-aligned assignment.

    Built by `yolov8`; the arguments below are the training settings.

    Args:
        network: Functional model, images -> ``{"boxes": [per level (B, H_l, W_l, 4 R)],
            "classes": [per level (B, H_l, W_l, C)]}`` (R = `reg_max`).
        num_classes: Object classes.
        decoder: The `DetectionDecoder` (``box_encoding="xyxy"``) or its config.
        strides: Stride of each output level.
        reg_max: Distance bins per box side.
        top_k: Anchor points the assigner gives each object.
        alpha: Assigner exponent of the class score.
        beta: Assigner exponent of the IoU.
        box_loss_weight: Gain of the CIoU loss.
        class_loss_weight: Gain of the BCE class loss.
        dfl_loss_weight: Gain of the distribution focal loss.
        **kwargs: `keras.Model` arguments.
    """

    LOSS_PARTS = ("class_loss", "box_loss", "dfl_loss")

    def __init__(
        self,
        network: keras.Model,
        num_classes: int,
        decoder: DetectionDecoder | dict | None = None,
        strides: Sequence[int] = STRIDES,
        reg_max: int = REG_MAX,
        top_k: int = TOP_K,
        alpha: float = ALPHA,
        beta: float = BETA,
        box_loss_weight: float = BOX_GAIN,
        class_loss_weight: float = CLASS_GAIN,
        dfl_loss_weight: float = DFL_GAIN,
        **kwargs: Any,
    ):
        if decoder is None:
            decoder = DetectionDecoder(num_classes, box_encoding="xyxy", name="decoder")
        super().__init__(network, num_classes, decoder=decoder, **kwargs)
        if self.decoder.box_encoding != "xyxy":
            raise ValueError(
                "YOLOv8 decodes its own boxes: `decoder` must have box_encoding='xyxy', got "
                f"{self.decoder.box_encoding!r}."
            )
        self.strides = tuple(check_positive_int(s, "strides") for s in strides)
        self.reg_max = check_positive_int(reg_max, "reg_max")
        self.top_k = check_positive_int(top_k, "top_k")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.box_loss_weight = float(box_loss_weight)
        self.class_loss_weight = float(class_loss_weight)
        self.dfl_loss_weight = float(dfl_loss_weight)
        outputs = self.network.output
        if not isinstance(outputs, Mapping) or set(outputs) != {BOXES, CLASSES}:
            raise ValueError(
                "A YOLOv8 network must output {'boxes': [per level], 'classes': [per level]}; "
                f"got {type(outputs).__name__}."
            )
        if len(outputs[BOXES]) != len(self.strides):
            raise ValueError(
                f"`strides` has {len(self.strides)} levels but the network outputs "
                f"{len(outputs[BOXES])}."
            )

    def level_outputs(self, outputs: Mapping[str, Any]) -> tuple[list, list, list[tuple]]:
        """Per level: ``(B, N_l, 4, R)`` bin logits, ``(B, N_l, C)`` class logits, and the
        level's feature size ``(H_l, W_l)``."""
        bins, classes, sizes = [], [], []
        for box_map, class_map in zip(outputs[BOXES], outputs[CLASSES]):
            shape = ops.shape(box_map)
            bins.append(ops.reshape(ops.cast(box_map, "float32"), (shape[0], -1, 4, self.reg_max)))
            classes.append(
                ops.reshape(ops.cast(class_map, "float32"), (shape[0], -1, self.num_classes))
            )
            sizes.append((shape[1], shape[2]))
        return bins, classes, sizes

    def decode_boxes(self, bin_logits: Any, points: Any, point_strides: Any) -> Any:
        """``(B, N, 4, R)`` bin logits -> ``(B, N, 4)`` xyxy boxes in pixels."""
        distances = box_losses.bin_integral(bin_logits) * point_strides[:, None]
        return _distances_to_boxes(distances, points)

    def decode(self, outputs: Any, images: Any) -> dict[str, Any]:
        bins, classes, sizes = self.level_outputs(outputs)
        boxes = []
        for level_bins, size, stride in zip(bins, sizes, self.strides):
            points, point_strides = anchor_points([size], [stride])
            boxes.append(self.decode_boxes(level_bins, points, point_strides))
        shape = ops.shape(images)
        return self.decoder(boxes, classes, None, image_shape=(shape[1], shape[2]))

    def detection_loss(
        self, images: Any, targets: DetectionTargets, outputs: Any
    ) -> dict[str, Any]:
        bins, classes, sizes = self.level_outputs(outputs)
        bin_logits = ops.concatenate(bins, axis=1)  # (B, N, 4, R)
        class_logits = ops.concatenate(classes, axis=1)  # (B, N, C)
        points, point_strides = anchor_points(sizes, self.strides)
        pred_boxes = self.decode_boxes(bin_logits, points, point_strides)

        ignore = targets["ignore"]
        gt_classes = ops.where(ignore, -1, targets[CLASSES])  # crowd boxes: never assigned
        assigned = task_aligned_assign(
            ops.stop_gradient(ops.sigmoid(class_logits)),
            ops.stop_gradient(pred_boxes),
            points,
            targets[BOXES],
            gt_classes,
            top_k=self.top_k,
            alpha=self.alpha,
            beta=self.beta,
        )
        positive = assigned["positive"]
        positive_f = ops.cast(positive, "float32")
        target_scores = assigned["scores"]
        normaliser = ops.maximum(ops.sum(target_scores), 1.0)

        # Points inside a crowd / difficult box are neither positive nor negative.
        in_ignored = ops.any(
            ops.logical_and(_points_in_boxes(points, targets[BOXES]), ignore[:, None, :]),
            axis=-1,
        )
        counted = ops.cast(ops.logical_or(positive, ops.logical_not(in_ignored)), "float32")
        bce = _binary_cross_entropy_with_logits(target_scores, class_logits)
        class_loss = ops.sum(bce * counted[..., None]) / normaliser

        weight = ops.sum(target_scores, axis=-1) * positive_f  # (B, N)
        # Unassigned points regress onto their own (constant) prediction: finite, no gradient.
        matched = ops.where(positive[..., None], assigned[BOXES], ops.stop_gradient(pred_boxes))
        box_loss = ops.sum(box_losses.ciou_loss(matched, pred_boxes) * weight) / normaliser

        target_distances = (
            ops.concatenate([points - matched[..., :2], matched[..., 2:] - points], axis=-1)
            / point_strides[:, None]
        )
        dfl = box_losses.distribution_focal_loss(target_distances, bin_logits)  # (B, N, 4)
        dfl_loss = ops.sum(ops.mean(dfl, axis=-1) * weight) / normaliser
        return {
            "class_loss": self.class_loss_weight * class_loss,
            "box_loss": self.box_loss_weight * box_loss,
            "dfl_loss": self.dfl_loss_weight * dfl_loss,
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            strides=list(self.strides),
            reg_max=self.reg_max,
            top_k=self.top_k,
            alpha=self.alpha,
            beta=self.beta,
            box_loss_weight=self.box_loss_weight,
            class_loss_weight=self.class_loss_weight,
            dfl_loss_weight=self.dfl_loss_weight,
        )
        return config


def yolov8(
    width: float,
    depth: float,
    *,
    num_classes: int = 80,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    max_channels: int = 1024,
    bottom_up_repeats: int | None = None,
    reg_max: int = REG_MAX,
    score_threshold: float = 0.001,
    iou_threshold: float = 0.7,
    max_detections: int = 100,
    pre_nms_top_k: int = 1000,
    name: str = "yolov8",
) -> YOLOv8:
    """YOLOv8 of a given width and depth multiple (ultralytics' ``yolov8.yaml`` layout).

    Args:
        width: Width multiple of the base channels 64 ... 1024 (n: 0.25, s: 0.5).
        depth: Depth multiple of the C2f repeats (n, s: 0.33).
        num_classes: Object classes.
        input_shape: ``(H, W, 3)``, None for any size; static sizes must be multiples of 32.
            Images are RGB in 0..255 (the model divides by 255).
        max_channels: Cap on the base channels.
        bottom_up_repeats: Bottlenecks of the neck's bottom-up C2f blocks; None: as the
            top-down ones.
        reg_max: Distance bins per box side.
        score_threshold: ``predict``'s minimum score (0.001: ultralytics' validation).
        iou_threshold: ``predict``'s NMS IoU (0.7: ultralytics').
        max_detections: Detections per image returned by ``predict``.
        pre_nms_top_k: Candidates per level entering NMS.
        name: Model name.

    Returns:
        A `YOLOv8`: ``predict`` returns the padded detections dict, ``fit`` takes the
        padded ground truth.
    """
    check_positive_int(num_classes, "num_classes")
    config = CSPDarknetConfig(float(width), float(depth), int(max_channels))
    reason = "YOLOv8 halves the size 5 times"
    check_input_shape(tuple(input_shape), INPUT_MULTIPLE, reason)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = DivisibleSizeCheck(INPUT_MULTIPLE, reason=reason, name="size_check")(inputs)
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    features = csp_darknet(x, config)
    top_down = config.repeats(3)
    levels = path_aggregation(
        features,
        top_down_repeats=top_down,
        bottom_up_repeats=top_down if bottom_up_repeats is None else bottom_up_repeats,
    )
    box_maps, class_maps = decoupled_head(levels, num_classes, STRIDES, reg_max=reg_max)
    network = keras.Model(inputs, {BOXES: box_maps, CLASSES: class_maps}, name=f"{name}_network")
    decoder = DetectionDecoder(
        num_classes,
        box_encoding="xyxy",
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
        pre_nms_top_k=pre_nms_top_k,
        name="decoder",
    )
    return YOLOv8(network, num_classes, decoder=decoder, reg_max=reg_max, name=name)


for _size, _config in VARIANTS.items():
    globals()[f"yolov8_{_size}"] = register_detector_variant(
        f"yolov8_{_size}",
        yolov8,
        {**_config, "name": f"yolov8_{_size}"},
        doc=(
            f"YOLOv8-{_size} (width x{_config['width']}, depth x{_config['depth']}).\n\n"
            f"``yolov8(width={_config['width']}, depth={_config['depth']}, ...)``; see `yolov8`."
        ),
        family="yolov8",
        input_multiple=INPUT_MULTIPLE,
    )
