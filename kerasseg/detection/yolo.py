"""YOLOv2 (Redmon & Farhadi, 2017, "YOLO9000: Better, Faster, Stronger"): ``yolov2_<backbone>``.

The grid detector of the lecture. The image is covered by the cells of the stride-32
feature map; each cell predicts, for each of its ``A`` *priors* (anchor shapes, YOLOv2's
k-means dimension clusters, `kerasseg.detection.anchor_fitting`), an objectness logit, a
box ``(t_x, t_y, t_w, t_h)`` and ``C`` class logits, for the objects whose centre lies in
that cell:

$$c_x = (j + \\sigma(t_x))\\,s,\\quad c_y = (i + \\sigma(t_y))\\,s,\\quad
  w = p_w e^{t_w},\\quad h = p_h e^{t_h}$$

for cell ``(i, j)`` (row, column), stride ``s`` and prior ``(p_w, p_h)`` in pixels
(``t_wh`` is clipped at `WH_CLIP` before the exponential). The score of class ``c`` is
$\\sigma(t_o)\\,\\mathrm{softmax}(t)_c$.

**Network.** A backbone (CSP-Darknet of `kerasseg.detection.darknet`, or a kerasseg
encoder), two 3x3 conv-BN-SiLU blocks on the stride-32 feature, YOLOv2's *passthrough*
(the stride-16 feature through a 1x1 conv-BN-SiLU, reorganised space-to-depth 2x2 by
`SpaceToDepth` and concatenated), one more 3x3 block and a 1x1 predictor of ``A (5 + C)``
channels, kept as three 1x1 convolutions (boxes ``A * 4``, objectness ``A``, classes
``A * C``: the same weights split by role, so that each has its own initialisation and
the outputs are named). The paper's Darknet-19 uses leaky ReLU; here the head uses the
backbone's SiLU blocks.

**Assignment** (`assign_grid_targets`, darknet's ``region_layer``): each ground-truth box
goes to the cell containing its centre and, in it, to the prior whose shape (both
centred) has the best IoU with the box's shape. When several boxes land on the same cell
and prior, the *last* one in the targets' order is kept (darknet overwrites its deltas in
that order); a crowd / difficult box is never assigned, and the prediction it would have
been assigned to is neither positive nor negative (unless a real box takes it).

**Loss** (`YOLOv2.detection_loss`; the weights are darknet's ``yolo-voc.cfg``), summed
over the predictions and divided by the batch size:

- objectness: binary cross-entropy (darknet: squared error of the sigmoid); target the
  IoU of the decoded box with its object (``rescore``, the paper's "objectness predicts
  the IOU", darknet's ``rescore=1``; 1 with ``rescore=False``) with weight
  `OBJECT_WEIGHT` for the responsible predictions; target 0 with weight
  `NOOBJECT_WEIGHT` for the others, except those whose decoded box has an IoU above
  `IGNORE_IOU` with any ground-truth box (ignored, as darknet's ``thresh``). The IoU
  target rises as the boxes improve, so this part can grow in the first steps while the
  others fall; ``rescore=False`` is a fixed objective;
- box: on the responsible predictions, squared error between $\\sigma(t_{xy})$ and the
  centre's offset in its cell, plus squared error between $t_{wh}$ and
  $\\log(w_{gt} / p_w), \\log(h_{gt} / p_h)$, scaled by ``2 - w h / (W H)`` (small boxes
  weigh more; ``W H`` is the image area);
- class: softmax cross-entropy on the responsible predictions (YOLOv2's softmax; YOLOv3
  moved to independent sigmoids).

The objectness bias starts at `PRIOR_PROBABILITY` (darknet starts at 0.5). Left out:
darknet's first-12800-images loss pulling every prediction towards its prior, multi-scale
training, and the hierarchical WordTree classes of YOLO9000.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from kerasseg.detection import boxes as box_ops
from kerasseg.detection import losses as box_losses
from kerasseg.detection.anchors import AnchorGenerator
from kerasseg.detection.darknet import CSPDarknetConfig, conv_bn_silu, csp_darknet
from kerasseg.detection.detector import DetectionTargets, Detector
from kerasseg.detection.format import BOXES, CLASSES
from kerasseg.detection.heads import HEAD_STDDEV, prior_bias
from kerasseg.detection.postprocess import DetectionDecoder
from kerasseg.detection.variants import register_detector_variant
from kerasseg.encoders.features import encoder_features
from kerasseg.layers.checks import DivisibleSizeCheck, check_input_shape
from kerasseg.utils.checks import check_positive_int

__all__ = [
    "OBJECTNESS",
    "VARIANTS",
    "VOC_ANCHORS",
    "SpaceToDepth",
    "YOLOv2",
    "assign_grid_targets",
    "check_anchors",
    "decode_grid_boxes",
    "yolov2",
    "yolov2_head",
]

#: The key of the objectness maps in the network's outputs (next to ``boxes`` and
#: ``classes``).
OBJECTNESS = "objectness"
STRIDE = 32
INPUT_MULTIPLE = 32
#: YOLOv2's five VOC priors (``yolo-voc.cfg``, in cells of stride 32) in pixels.
VOC_ANCHORS: tuple[tuple[float, float], ...] = tuple(
    (w * STRIDE, h * STRIDE)
    for w, h in (
        (1.3221, 1.73145),
        (3.19275, 4.00944),
        (5.05587, 8.09892),
        (9.47112, 4.84053),
        (11.2364, 10.0071),
    )
)
#: darknet's ``thresh``: a non-responsible prediction whose box overlaps a ground-truth box
#: by more than this IoU is not pushed towards objectness 0.
IGNORE_IOU = 0.6
#: darknet's ``object_scale``, ``noobject_scale``, ``coord_scale``, ``class_scale``.
OBJECT_WEIGHT = 5.0
NOOBJECT_WEIGHT = 1.0
BOX_WEIGHT = 1.0
CLASS_WEIGHT = 1.0
#: Largest ``t_w``, ``t_h`` exponentiated (boxes up to 62.5 times their prior; as
#: torchvision's box coder clip), so that decoding never overflows.
WH_CLIP = math.log(1000.0 / 16.0)
#: Initial objectness probability of every prediction (RetinaNet's prior: the many empty
#: cells do not swamp the first steps). YOLOv2 starts from zero biases.
PRIOR_PROBABILITY = 0.01
#: Block of YOLOv2's passthrough (``reorg``) layer.
PASSTHROUGH_BLOCK = 2
CSPDARKNET = "cspdarknet"

#: Per variant: the backbone (``"cspdarknet"`` with its width / depth multiples, or a
#: kerasseg encoder), the width of the head's 3x3 blocks and of the passthrough's 1x1
#: projection (YOLOv2: 1024 and 64). Sized for CPU budgets.
VARIANTS: dict[str, dict[str, Any]] = {
    "cspdarknet_n": {
        "backbone": CSPDARKNET,
        "width": 0.25,
        "depth": 0.33,
        "head_channels": 256,
        "passthrough_channels": 32,
    },
    "cspdarknet_s": {
        "backbone": CSPDARKNET,
        "width": 0.50,
        "depth": 0.33,
        "head_channels": 512,
        "passthrough_channels": 64,
    },
    "resnet18": {"backbone": "resnet18", "head_channels": 256, "passthrough_channels": 32},
}


# --------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="kerasseg")
class SpaceToDepth(keras.layers.Layer):
    """YOLOv2's passthrough (``reorg``) layer: each ``b x b`` block of pixels becomes one
    pixel of ``b * b`` times the channels (``tf.nn.space_to_depth``'s channel order:
    block row, block column, channel).

    Args:
        block_size: The block side ``b``.
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        inputs: ``(B, H, W, C)`` with H and W multiples of `block_size`.

    The call returns ``(B, H / b, W / b, b * b * C)``.
    """

    def __init__(self, block_size: int = PASSTHROUGH_BLOCK, **kwargs: Any):
        super().__init__(**kwargs)
        self.block_size = check_positive_int(block_size, "block_size")

    def _check(self, input_shape: Sequence[Any]) -> None:
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"`SpaceToDepth` expects (B, H, W, C) inputs with known channels, got "
                f"{tuple(input_shape)}."
            )
        for axis, size in zip(("height", "width"), input_shape[1:3]):
            if size is not None and size % self.block_size:
                raise ValueError(
                    f"`SpaceToDepth` needs a {axis} that is a multiple of block_size="
                    f"{self.block_size}, got {size}."
                )

    def call(self, inputs: Any) -> Any:
        self._check(inputs.shape)
        b, channels = self.block_size, inputs.shape[-1]
        shape = ops.shape(inputs)
        height, width = shape[1] // b, shape[2] // b
        x = ops.reshape(inputs, (-1, height, b, width, b, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, height, width, b * b * channels))

    def compute_output_shape(self, input_shape: Sequence[Any]) -> tuple:
        self._check(input_shape)
        b = self.block_size
        batch, height, width, channels = input_shape
        return (
            batch,
            None if height is None else height // b,
            None if width is None else width // b,
            b * b * channels,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(block_size=self.block_size)
        return config


# ------------------------------------------------------------------- box geometry


def check_anchors(anchors: Any, argument: str = "anchors") -> np.ndarray:
    """Validates prior shapes.

    Args:
        anchors: ``(A, 2)`` ``(width, height)`` pairs in pixels, all positive and finite.
        argument: The argument name for the messages.

    Returns:
        The ``(A, 2)`` float32 array.

    Raises:
        ValueError: for another shape, or non-positive / non-finite sides.
    """
    try:
        array = np.asarray(anchors, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`{argument}` must be (A, 2) (width, height) pairs in pixels, got {anchors!r}."
        ) from error
    if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
        raise ValueError(
            f"`{argument}` must have shape (A, 2) ((width, height) pairs in pixels, A >= 1), "
            f"got shape {array.shape}."
        )
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(
            f"`{argument}` must hold positive, finite widths and heights, got {array.tolist()}."
        )
    return array


def _centred_boxes(wh: Any) -> Any:
    """``(..., 2)`` widths and heights -> ``(..., 4)`` xyxy boxes centred on the origin."""
    half = ops.cast(wh, "float32") / 2.0
    return ops.concatenate([-half, half], axis=-1)


def _centres_and_sizes(boxes: Any) -> tuple[Any, Any]:
    """``(..., 4)`` xyxy -> ``(..., 2)`` centres and ``(..., 2)`` sizes."""
    return (boxes[..., :2] + boxes[..., 2:]) / 2.0, boxes[..., 2:] - boxes[..., :2]


def decode_grid_boxes(box_outputs: Any, priors: Any, stride: float) -> Any:
    """YOLOv2's parametrisation: raw ``(t_x, t_y, t_w, t_h)`` -> xyxy boxes in pixels.

    A prior is centred on its cell, so ``(j + sigma(t_x)) s`` is the prior's centre plus
    ``(sigma(t_x) - 1/2) s``.

    Args:
        box_outputs: ``(B, N, 4)`` raw outputs, any real values.
        priors: ``(N, 4)`` xyxy priors: each prediction's anchor shape centred on its cell.
        stride: The grid's stride in pixels.

    Returns:
        ``(B, N, 4)`` float32 xyxy boxes (not clipped to the image).
    """
    t = ops.cast(box_outputs, "float32")
    centres, sizes = _centres_and_sizes(ops.cast(priors, "float32"))
    centre = centres + (ops.sigmoid(t[..., :2]) - 0.5) * stride
    half = sizes * ops.exp(ops.minimum(t[..., 2:], WH_CLIP)) / 2.0
    return ops.concatenate([centre - half, centre + half], axis=-1)


# ------------------------------------------------------------------ assignment


def _with_padding_row(boxes: Any, classes: Any, ignore: Any) -> tuple[Any, Any, Any]:
    """Prepends one padding box to each image, so that row 0 means "no object" and
    images without boxes (``M = 0``) need no special case."""
    batch = ops.shape(boxes)[0]
    boxes = ops.concatenate([ops.zeros((batch, 1, 4), "float32"), boxes], axis=1)
    classes = ops.concatenate([ops.full((batch, 1), -1, "int32"), classes], axis=1)
    ignore = ops.concatenate([ops.zeros((batch, 1), "bool"), ignore], axis=1)
    return boxes, classes, ignore


def _grid_slots(boxes: Any, feature_size: Sequence[Any], anchors: Any, stride: float) -> Any:
    """``(B, M)`` flat index ``(i W + j) A + a`` of the cell containing each box's centre
    and of the prior whose centred shape overlaps the box's best (the first on ties)."""
    height, width = (ops.cast(v, "int32") for v in feature_size)
    num_anchors = anchors.shape[0]
    centres, sizes = _centres_and_sizes(boxes)
    cells = ops.cast(ops.floor(centres / stride), "int32")  # (B, M, 2): column, row
    column = ops.clip(cells[..., 0], 0, width - 1)
    row = ops.clip(cells[..., 1], 0, height - 1)
    shape_iou = box_ops.pairwise_iou(_centred_boxes(sizes), _centred_boxes(anchors))
    best = ops.cast(ops.argmax(shape_iou, axis=-1), "int32")  # (B, M)
    return (row * width + column) * num_anchors + best


def assign_grid_targets(
    boxes: Any,
    classes: Any,
    ignore: Any,
    feature_size: Sequence[Any],
    anchors: Any,
    stride: float,
) -> dict[str, Any]:
    """YOLOv2's assignment of ground-truth boxes to grid predictions (see the module
    docstring: centre cell, best prior shape, the last box wins a shared prediction).

    Args:
        boxes: ``(B, M, 4)`` xyxy boxes in pixels.
        classes: ``(B, M)`` int class ids, -1 for padding (and boxes without area, as
            `kerasseg.detection.detector.check_targets` marks them).
        ignore: ``(B, M)`` bool, crowd / difficult boxes (never assigned).
        feature_size: ``(H, W)`` of the grid (ints or scalar tensors).
        anchors: ``(A, 2)`` prior ``(width, height)`` in pixels.
        stride: The grid's stride in pixels.

    Returns:
        A dict over the ``N = H W A`` predictions in ``(row, column, prior)`` order:

        - ``"positive"``: ``(B, N)`` bool, responsible for a box;
        - ``"ignored"``: ``(B, N)`` bool, would be responsible for a crowd box only;
        - ``"index"``: ``(B, N)`` int32, the box's row in `boxes` (-1 where not positive);
        - ``"boxes"``: ``(B, N, 4)`` float32, the box (zeros where not positive);
        - ``"classes"``: ``(B, N)`` int32, its class (-1 where not positive).
    """
    anchors = ops.convert_to_tensor(anchors, "float32")
    boxes, classes, ignore = _with_padding_row(
        ops.cast(boxes, "float32"), ops.cast(classes, "int32"), ops.cast(ignore, "bool")
    )
    slots = _grid_slots(boxes, feature_size, anchors, stride)  # (B, M + 1)
    height, width = (ops.cast(v, "int32") for v in feature_size)
    predictions = ops.arange(height * width * anchors.shape[0], dtype="int32")
    hits = ops.equal(slots[:, None, :], predictions[None, :, None])  # (B, N, M + 1)
    labelled = classes >= 0
    real = ops.logical_and(labelled, ops.logical_not(ignore))
    crowd = ops.logical_and(labelled, ignore)
    rows = ops.arange(ops.shape(classes)[1], dtype="int32")
    chosen = ops.max(
        ops.where(ops.logical_and(hits, real[:, None, :]), rows[None, None, :], 0), axis=-1
    )  # (B, N): the last real box of each prediction; 0 (the padding row): none
    positive = chosen > 0
    crowded = ops.any(ops.logical_and(hits, crowd[:, None, :]), axis=-1)
    return {
        "positive": positive,
        "ignored": ops.logical_and(crowded, ops.logical_not(positive)),
        "index": chosen - 1,
        BOXES: ops.take_along_axis(boxes, chosen[..., None], axis=1),
        CLASSES: ops.take_along_axis(classes, chosen, axis=1),
    }


# --------------------------------------------------------------------- detector


def _single_level(maps: Any, key: str = "") -> Any:
    """The one map of a single-level output given as a list (the detectors' convention)
    or as the map itself."""
    if not isinstance(maps, (list, tuple)):
        return maps
    if len(maps) != 1:
        raise ValueError(f"A YOLOv2 network has one output level, got {len(maps)} {key!r} maps.")
    return maps[0]


def _check_weight(value: Any, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"`{argument}` must be a non-negative number, got {value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package="kerasseg")
class YOLOv2(Detector):
    """YOLOv2: a grid of cells, each predicting objectness, box and classes per prior.

    Built by `yolov2`; the arguments below are the training settings.

    Args:
        network: Functional model, images ``(B, H, W, 3)`` in 0..255 -> ``{"boxes":
            [(B, H/s, W/s, A * 4)], "objectness": [(B, H/s, W/s, A)], "classes":
            [(B, H/s, W/s, A * C)]}`` (one level; channel ``a * k + c`` for prior ``a``).
        num_classes: Object classes ``C``.
        anchors: ``(A, 2)`` prior ``(width, height)`` in pixels.
        decoder: The `DetectionDecoder` (``box_encoding="xyxy"``, ``activation="none"``) or
            its config.
        stride: The grid's stride in pixels.
        ignore_iou: IoU with a ground-truth box above which a non-responsible prediction
            gets no objectness loss.
        rescore: Objectness target of a responsible prediction: the IoU of its box with its
            object (True) or 1.
        object_weight: Weight of the responsible predictions' objectness loss.
        noobject_weight: Weight of the other predictions' objectness loss.
        box_loss_weight: Weight of the coordinate loss.
        class_loss_weight: Weight of the class loss.
        **kwargs: `keras.Model` arguments.
    """

    LOSS_PARTS = ("objectness_loss", "box_loss", "class_loss")

    def __init__(
        self,
        network: keras.Model,
        num_classes: int,
        anchors: Any = VOC_ANCHORS,
        decoder: DetectionDecoder | dict | None = None,
        stride: int = STRIDE,
        ignore_iou: float = IGNORE_IOU,
        rescore: bool = True,
        object_weight: float = OBJECT_WEIGHT,
        noobject_weight: float = NOOBJECT_WEIGHT,
        box_loss_weight: float = BOX_WEIGHT,
        class_loss_weight: float = CLASS_WEIGHT,
        **kwargs: Any,
    ):
        if decoder is None:
            decoder = DetectionDecoder(
                num_classes, box_encoding="xyxy", activation="none", name="decoder"
            )
        super().__init__(network, num_classes, decoder=decoder, **kwargs)
        if (self.decoder.box_encoding, self.decoder.activation) != ("xyxy", "none"):
            raise ValueError(
                "YOLOv2 decodes its own boxes and scores: `decoder` must have "
                "box_encoding='xyxy' and activation='none', got "
                f"{self.decoder.box_encoding!r} and {self.decoder.activation!r}."
            )
        self.anchors = check_anchors(anchors)
        self.stride = check_positive_int(stride, "stride")
        if (
            isinstance(ignore_iou, bool)
            or not isinstance(ignore_iou, (int, float))
            or not 0 <= ignore_iou <= 1
        ):
            raise ValueError(f"`ignore_iou` must be a number in [0, 1], got {ignore_iou!r}.")
        self.ignore_iou = float(ignore_iou)
        self.rescore = bool(rescore)
        self.object_weight = _check_weight(object_weight, "object_weight")
        self.noobject_weight = _check_weight(noobject_weight, "noobject_weight")
        self.box_loss_weight = _check_weight(box_loss_weight, "box_loss_weight")
        self.class_loss_weight = _check_weight(class_loss_weight, "class_loss_weight")
        #: The priors placed on the cell centres: the predictions' order and their boxes
        #: at ``t = 0``.
        self.anchor_generator = AnchorGenerator([self.anchors], strides=[self.stride], offset=0.5)
        self._check_network_outputs()

    def _check_network_outputs(self) -> None:
        outputs = self.network.output
        expected = {BOXES: 4, OBJECTNESS: 1, CLASSES: self.num_classes}
        if not isinstance(outputs, Mapping) or set(outputs) != set(expected):
            got = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
            raise ValueError(
                "A YOLOv2 network must output {'boxes': [map], 'objectness': [map], "
                f"'classes': [map]}} (one level); got {got}."
            )
        num_anchors = len(self.anchors)
        for key, per_anchor in expected.items():
            channels = _single_level(outputs[key], key).shape[-1]
            if channels != num_anchors * per_anchor:
                raise ValueError(
                    f"The network's {key!r} map must have {num_anchors} anchors x {per_anchor} "
                    f"= {num_anchors * per_anchor} channels (num_classes={self.num_classes}, "
                    f"{num_anchors} anchors), got {channels}."
                )

    # ------------------------------------------------------------------ outputs

    def grid_outputs(self, outputs: Mapping[str, Any]) -> tuple[Any, Any, Any, tuple]:
        """The raw outputs flattened to ``N = H W A`` predictions in ``(row, column,
        prior)`` order: ``(B, N, 4)`` box outputs, ``(B, N)`` objectness logits, ``(B, N,
        C)`` class logits, and the grid size ``(H, W)``."""

        def flat(key: str, per_prediction: int) -> Any:
            value = ops.cast(_single_level(outputs[key]), "float32")
            return ops.reshape(value, (ops.shape(value)[0], -1, per_prediction))

        shape = ops.shape(_single_level(outputs[BOXES]))
        return (
            flat(BOXES, 4),
            flat(OBJECTNESS, 1)[..., 0],
            flat(CLASSES, self.num_classes),
            (shape[1], shape[2]),
        )

    def priors(self, images: Any, feature_size: tuple) -> Any:
        """``(N, 4)`` xyxy priors (anchor shapes centred on the cells) for this batch."""
        shape = ops.shape(images)
        return self.anchor_generator.per_level((shape[1], shape[2]), [feature_size])[0]

    def decode(self, outputs: Any, images: Any) -> dict[str, Any]:
        box_outputs, objectness, class_logits, size = self.grid_outputs(outputs)
        boxes = decode_grid_boxes(box_outputs, self.priors(images, size), self.stride)
        scores = ops.sigmoid(objectness)[..., None] * ops.softmax(class_logits, axis=-1)
        shape = ops.shape(images)
        return self.decoder([boxes], [scores], None, image_shape=(shape[1], shape[2]))

    # --------------------------------------------------------------------- loss

    def _negatives(self, pred_boxes: Any, targets: DetectionTargets, assigned: dict) -> Any:
        """``(B, N)``: predictions pushed towards objectness 0 (neither responsible, nor
        on a crowd box's slot, nor overlapping any ground-truth box by > `ignore_iou`)."""
        labelled = targets[CLASSES] >= 0  # crowd boxes count too
        iou = box_ops.pairwise_iou(ops.stop_gradient(pred_boxes), targets[BOXES])  # (B, N, M)
        iou = ops.where(labelled[:, None, :], iou, 0.0)
        overlapping = ops.any(iou > self.ignore_iou, axis=-1)
        counted = ops.logical_not(ops.logical_or(assigned["positive"], assigned["ignored"]))
        return ops.logical_and(counted, ops.logical_not(overlapping))

    def _box_errors(self, box_outputs: Any, priors: Any, assigned: dict, image_area: Any) -> Any:
        """``(B, N)`` scaled squared errors of the offsets and log sizes (any prediction;
        the loss keeps the responsible ones)."""
        positive = assigned["positive"]
        prior_centres, prior_sizes = _centres_and_sizes(priors)
        # Non-responsible predictions get their prior as target: finite, masked out later.
        matched = ops.where(positive[..., None], assigned[BOXES], priors[None])
        centres, sizes = _centres_and_sizes(matched)
        cells = prior_centres / self.stride - 0.5  # (N, 2): column, row
        target_offsets = ops.clip(centres / self.stride - cells, 0.0, 1.0)
        target_log_sizes = ops.log(sizes / prior_sizes)
        offsets_error = ops.square(ops.sigmoid(box_outputs[..., :2]) - target_offsets)
        sizes_error = ops.square(box_outputs[..., 2:] - target_log_sizes)
        scale = 2.0 - sizes[..., 0] * sizes[..., 1] / image_area
        return (ops.sum(offsets_error, axis=-1) + ops.sum(sizes_error, axis=-1)) * scale

    def _objectness_errors(
        self, objectness: Any, pred_boxes: Any, targets: DetectionTargets, assigned: dict
    ) -> Any:
        """``(B, N)`` weighted BCE of the objectness logits: towards the IoU with the object
        (or 1) where responsible, towards 0 where negative, 0 elsewhere."""
        if self.rescore:
            target = ops.stop_gradient(box_ops.elementwise_iou(pred_boxes, assigned[BOXES]))
        else:
            target = ops.ones_like(objectness)
        # The binary cross-entropy: a sigmoid focal loss without focusing and weighting.
        positive_bce = box_losses.sigmoid_focal_loss(target, objectness, None, 0.0)
        negative_bce = box_losses.sigmoid_focal_loss(
            ops.zeros_like(objectness), objectness, None, 0.0
        )
        positive = ops.cast(assigned["positive"], "float32")
        negative = ops.cast(self._negatives(pred_boxes, targets, assigned), "float32")
        return (
            self.object_weight * positive_bce * positive
            + self.noobject_weight * negative_bce * negative
        )

    @staticmethod
    def _class_errors(class_logits: Any, assigned: dict) -> Any:
        """``(B, N)`` softmax cross-entropy with the assigned class (any prediction; the
        loss keeps the responsible ones)."""
        log_probabilities = ops.log_softmax(class_logits, axis=-1)
        labels = ops.maximum(assigned[CLASSES], 0)[..., None]
        return -ops.take_along_axis(log_probabilities, labels, axis=-1)[..., 0]

    def detection_loss(
        self, images: Any, targets: DetectionTargets, outputs: Any
    ) -> dict[str, Any]:
        box_outputs, objectness, class_logits, size = self.grid_outputs(outputs)
        priors = self.priors(images, size)
        pred_boxes = decode_grid_boxes(box_outputs, priors, self.stride)
        assigned = assign_grid_targets(
            targets[BOXES], targets[CLASSES], targets["ignore"], size, self.anchors, self.stride
        )
        positive = ops.cast(assigned["positive"], "float32")
        shape = ops.shape(images)
        batch = ops.cast(shape[0], "float32")
        image_area = ops.cast(shape[1], "float32") * ops.cast(shape[2], "float32")
        objectness_errors = self._objectness_errors(objectness, pred_boxes, targets, assigned)
        box_errors = self._box_errors(box_outputs, priors, assigned, image_area)
        class_errors = self._class_errors(class_logits, assigned)
        return {
            "objectness_loss": ops.sum(objectness_errors) / batch,
            "box_loss": self.box_loss_weight * ops.sum(box_errors * positive) / batch,
            "class_loss": self.class_loss_weight * ops.sum(class_errors * positive) / batch,
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            anchors=self.anchors.tolist(),
            stride=self.stride,
            ignore_iou=self.ignore_iou,
            rescore=self.rescore,
            object_weight=self.object_weight,
            noobject_weight=self.noobject_weight,
            box_loss_weight=self.box_loss_weight,
            class_loss_weight=self.class_loss_weight,
        )
        return config


# ---------------------------------------------------------------------- builders


def _darknet_backbone(
    input_shape: tuple[int | None, int | None, int], width: float, depth: float
) -> tuple[Any, Any, Any]:
    """``(inputs, stride-16 feature, stride-32 feature)`` of a CSP-Darknet on images in
    0..255 (divided by 255 inside the model)."""
    config = CSPDarknetConfig(float(width), float(depth))
    reason = "YOLOv2 halves the size 5 times"
    check_input_shape(input_shape, INPUT_MULTIPLE, reason)
    inputs = keras.Input(shape=input_shape, name="image")
    x = DivisibleSizeCheck(INPUT_MULTIPLE, reason=reason, name="size_check")(inputs)
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    _, stride16, stride32 = csp_darknet(x, config)
    return inputs, stride16, stride32


def _backbone(
    backbone: str,
    input_shape: tuple[int | None, int | None, int],
    width: float | None,
    depth: float | None,
    encoder_weights: str | os.PathLike | None,
    encoder_trainable: bool,
) -> tuple[Any, Any, Any]:
    """``(inputs, stride-16 feature, stride-32 feature)`` of the backbone; images in
    0..255 (CSP-Darknet divides them by 255, the encoders normalise them their way)."""
    if backbone == CSPDARKNET:
        if encoder_weights is not None or not encoder_trainable:
            raise ValueError(
                "`encoder_weights` and `encoder_trainable` apply to kerasseg encoders; "
                f"backbone={CSPDARKNET!r} got encoder_weights={encoder_weights!r}, "
                f"encoder_trainable={encoder_trainable!r}."
            )
        defaults = VARIANTS["cspdarknet_n"]
        width = defaults["width"] if width is None else width
        depth = defaults["depth"] if depth is None else depth
        return _darknet_backbone(input_shape, width, depth)
    if width is not None or depth is not None:
        raise ValueError(
            f"`width` and `depth` apply to backbone={CSPDARKNET!r} only, got "
            f"backbone={backbone!r} with width={width!r}, depth={depth!r}."
        )
    inputs, features = encoder_features(
        backbone, input_shape, weights=encoder_weights, trainable=encoder_trainable
    )
    return inputs, features[-2], features[-1]


def yolov2_head(
    stride16: Any,
    stride32: Any,
    num_anchors: int,
    num_classes: int,
    *,
    channels: int,
    passthrough_channels: int,
    name: str = "head",
) -> dict[str, list[Any]]:
    """YOLOv2's detection layers (``yolo-voc.cfg`` after Darknet-19) on a backbone.

    Args:
        stride16: ``(B, H/16, W/16, C4)`` backbone feature.
        stride32: ``(B, H/32, W/32, C5)`` backbone feature.
        num_anchors: Priors per cell ``A``.
        num_classes: Object classes ``C``.
        channels: Width of the three 3x3 conv-BN-SiLU blocks (YOLOv2: 1024).
        passthrough_channels: Width of the passthrough's 1x1 projection before the 2x2
            space-to-depth (YOLOv2: 64, so 256 channels join).
        name: Layer name prefix.

    Returns:
        ``{"boxes": [(B, H/32, W/32, A * 4)], "objectness": [(B, H/32, W/32, A)],
        "classes": [(B, H/32, W/32, A * C)]}``; objectness starts at `PRIOR_PROBABILITY`.
    """
    x = conv_bn_silu(stride32, channels, 3, name=f"{name}_conv1")
    x = conv_bn_silu(x, channels, 3, name=f"{name}_conv2")
    passthrough = conv_bn_silu(stride16, passthrough_channels, 1, name=f"{name}_passthrough")
    passthrough = SpaceToDepth(PASSTHROUGH_BLOCK, name=f"{name}_reorg")(passthrough)
    x = layers.Concatenate(name=f"{name}_concat")([passthrough, x])
    x = conv_bn_silu(x, channels, 3, name=f"{name}_conv3")

    def predictor(outputs: int, bias: float, role: str) -> Any:
        return layers.Conv2D(
            num_anchors * outputs,
            1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=HEAD_STDDEV),
            bias_initializer=keras.initializers.Constant(bias),
            name=f"{name}_{role}_predictor",
        )(x)

    return {
        BOXES: [predictor(4, 0.0, "box")],
        OBJECTNESS: [predictor(1, prior_bias(PRIOR_PROBABILITY), "objectness")],
        CLASSES: [predictor(num_classes, 0.0, "class")],
    }


def yolov2(
    backbone: str = CSPDARKNET,
    *,
    num_classes: int = 20,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    width: float | None = None,
    depth: float | None = None,
    encoder_weights: str | os.PathLike | None = None,
    encoder_trainable: bool = True,
    anchors: Any = VOC_ANCHORS,
    head_channels: int = 256,
    passthrough_channels: int = 32,
    rescore: bool = True,
    score_threshold: float = 0.005,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
    pre_nms_top_k: int | None = 1000,
    name: str | None = None,
) -> YOLOv2:
    """YOLOv2 on a CSP-Darknet or kerasseg-encoder backbone.

    Args:
        backbone: ``"cspdarknet"`` (`kerasseg.detection.darknet`) or a `kerasseg.encoders`
            name (``"resnet18"``...).
        num_classes: Object classes (20: VOC, whose priors are the default).
        input_shape: ``(H, W, 3)``, None for any size; static sizes must be multiples of 32.
            Images are RGB in 0..255.
        width: CSP-Darknet width multiple (default 0.25, the ``n`` size); cspdarknet only.
        depth: CSP-Darknet depth multiple (default 0.33); cspdarknet only.
        encoder_weights: An encoder backbone's weights (see `kerasseg.encoders.get`).
        encoder_trainable: False freezes an encoder backbone.
        anchors: ``(A, 2)`` prior ``(width, height)`` in pixels of the training input size
            (default YOLOv2's VOC priors for 416 x 416; fit your own with
            `kerasseg.detection.anchor_fitting.fit_anchors`).
        head_channels: Width of the head's 3x3 blocks.
        passthrough_channels: Width of the passthrough projection.
        rescore: Objectness target IoU (True) or 1, see `YOLOv2`.
        score_threshold: ``predict``'s minimum score (0.005: darknet's evaluation).
        iou_threshold: ``predict``'s NMS IoU (0.45: darknet's).
        max_detections: Detections per image returned by ``predict``.
        pre_nms_top_k: Candidates entering NMS.
        name: Model name; default ``yolov2_<backbone>``.

    Returns:
        A `YOLOv2`: ``predict`` returns the padded detections dict, ``fit`` takes the padded
        ground truth.

    Raises:
        ValueError: for bad anchors, widths or class counts, an unknown encoder, `width` /
            `depth` with an encoder, or a static size that is not a multiple of 32.
    """
    check_positive_int(num_classes, "num_classes")
    check_positive_int(head_channels, "head_channels")
    check_positive_int(passthrough_channels, "passthrough_channels")
    anchors = check_anchors(anchors)
    name = name or f"yolov2_{backbone}"
    inputs, stride16, stride32 = _backbone(
        backbone, tuple(input_shape), width, depth, encoder_weights, encoder_trainable
    )
    outputs = yolov2_head(
        stride16,
        stride32,
        len(anchors),
        num_classes,
        channels=head_channels,
        passthrough_channels=passthrough_channels,
    )
    network = keras.Model(inputs, outputs, name=f"{name}_network")
    decoder = DetectionDecoder(
        num_classes,
        box_encoding="xyxy",
        activation="none",
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
        pre_nms_top_k=pre_nms_top_k,
        name="decoder",
    )
    return YOLOv2(
        network, num_classes, anchors=anchors, decoder=decoder, rescore=rescore, name=name
    )


def _register(variant: str, config: dict[str, Any]) -> Any:
    config = dict(config)
    backbone = config.pop("backbone")
    size = f" (width x{config['width']}, depth x{config['depth']})" if "width" in config else ""
    return register_detector_variant(
        f"yolov2_{variant}",
        yolov2,
        {**config, "name": f"yolov2_{variant}"},
        args=(backbone,),
        doc=(
            f"YOLOv2 on a {backbone} backbone{size}, {config['head_channels']}-channel head.\n\n"
            f"``yolov2({backbone!r}, **kwargs)``; see `yolov2`."
        ),
        family="yolov2",
        encoder=None if backbone == CSPDARKNET else backbone,
        input_multiple=INPUT_MULTIPLE,
        default_classes=20,
    )


for _variant_name, _config in VARIANTS.items():
    globals()[f"yolov2_{_variant_name}"] = _register(_variant_name, _config)
