"""RetinaNet (Lin et al., 2017, "Focal Loss for Dense Object Detection"): ``retinanet_<backbone>``.

A ResNet backbone, the detection FPN P3-P7 (`kerasseg.detection.necks.feature_pyramid`),
9 anchors per location (3 sizes x 3 aspect ratios) and two conv-tower heads shared by all
levels (`kerasseg.detection.heads.conv_tower_head`), trained with the sigmoid focal loss
normalised by the number of positive anchors and an L1 (or smooth L1, or GIoU) box loss.
The layout, the anchors, the matching (IoU >= 0.5 foreground, < 0.4 background, each
object's best anchors kept) and the postprocessing are torchvision's
``retinanet_resnet50_fpn``, so its weights convert layer for layer.
"""

from __future__ import annotations

import os
from typing import Any

import keras
from keras import ops

from kerasseg.detection import losses as box_losses
from kerasseg.detection.anchors import AnchorGenerator
from kerasseg.detection.boxes import BoxCoder
from kerasseg.detection.detector import AnchorDetector, DetectionTargets
from kerasseg.detection.format import BOXES, CLASSES
from kerasseg.detection.heads import conv_tower_head
from kerasseg.detection.matching import IoUMatcher, assign_targets
from kerasseg.detection.necks import feature_pyramid
from kerasseg.detection.postprocess import DetectionDecoder
from kerasseg.detection.variants import register_detector_variant
from kerasseg.encoders.features import ENCODER_STRIDE, encoder_features
from kerasseg.utils.checks import check_choice, check_positive_int

__all__ = ["BOX_LOSSES", "RetinaNet", "retinanet", "retinanet_anchors"]

#: The paper's (and torchvision's) settings.
PRIOR_PROBABILITY = 0.01
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
FOREGROUND_IOU = 0.5
BACKGROUND_IOU = 0.4
#: Box regression losses: on the encoded deltas (``"l1"``, torchvision's default, and
#: ``"smooth_l1"``) or on the decoded boxes (``"giou"``).
BOX_LOSSES = ("l1", "smooth_l1", "giou")
#: Pyramid levels P3-P7: backbone features at strides 8, 16, 32, then two extra levels.
BACKBONE_LEVELS = slice(2, 5)
EXTRA_LEVELS = 2

#: Per variant: backbone and the width of the pyramid and heads. ResNet-50 is the paper's
#: model; ResNet-18/34 with 128 channels are for CPU budgets.
VARIANTS = {
    "resnet18": {"channels": 128},
    "resnet34": {"channels": 128},
    "resnet50": {"channels": 256},
}


def retinanet_anchors() -> AnchorGenerator:
    """torchvision's RetinaNet anchors: sizes ``int(s * 2**(k/3))`` for ``s`` = 32 ... 512
    on P3-P7 (strides 8 ... 128), ratios 0.5, 1, 2, rounded base anchors."""
    sizes = [tuple(int(s * 2 ** (k / 3)) for k in range(3)) for s in (32, 64, 128, 256, 512)]
    return AnchorGenerator.from_sizes(
        sizes, aspect_ratios=(0.5, 1.0, 2.0), strides=[8, 16, 32, 64, 128], round_base_anchors=True
    )


@keras.saving.register_keras_serializable(package="kerasseg")
class RetinaNet(AnchorDetector):
    """RetinaNet: focal-loss classification and box regression at every anchor.

    Built by `retinanet`; the arguments below are the training settings (the network,
    anchors, coder and decoder are those of `AnchorDetector`).

    Args:
        foreground_iou: IoU from which an anchor is matched to an object.
        background_iou: IoU below which an anchor is background; in between it is ignored.
        focal_alpha: Focal loss weight of the positives (None: no weighting).
        focal_gamma: Focal loss focusing exponent.
        box_loss: One of `BOX_LOSSES`.
        box_loss_weight: Weight of the box loss against the classification loss.
    """

    LOSS_PARTS = ("class_loss", "box_loss")

    def __init__(
        self,
        network: keras.Model,
        num_classes: int,
        anchor_generator: AnchorGenerator | dict,
        box_coder: BoxCoder | dict | None = None,
        decoder: DetectionDecoder | dict | None = None,
        foreground_iou: float = FOREGROUND_IOU,
        background_iou: float = BACKGROUND_IOU,
        focal_alpha: float | None = FOCAL_ALPHA,
        focal_gamma: float = FOCAL_GAMMA,
        box_loss: str = "l1",
        box_loss_weight: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(network, num_classes, anchor_generator, box_coder, decoder, **kwargs)
        self.matcher = IoUMatcher(foreground_iou, background_iou, allow_low_quality_matches=True)
        self.focal_alpha = None if focal_alpha is None else float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.box_loss = check_choice(box_loss, BOX_LOSSES, "box_loss")
        self.box_loss_weight = float(box_loss_weight)

    def detection_loss(
        self, images: Any, targets: DetectionTargets, outputs: Any
    ) -> dict[str, Any]:
        box_outputs, class_outputs, anchors = self.flat_outputs(images, outputs)
        assigned = assign_targets(
            self.matcher, anchors, targets["boxes"], targets["classes"], targets["ignore"]
        )
        positive = assigned["positive"]
        counted = ops.logical_or(positive, assigned["negative"])  # not ignored
        # torchvision: each image's loss is divided by its positives, then averaged.
        normaliser = ops.maximum(assigned["num_positives"], 1.0)

        labels = ops.one_hot(ops.maximum(assigned[CLASSES], 0), self.num_classes)
        labels = labels * ops.cast(positive, "float32")[..., None]
        focal = box_losses.sigmoid_focal_loss(
            labels, ops.cast(class_outputs, "float32"), self.focal_alpha, self.focal_gamma
        )
        focal = ops.sum(focal * ops.cast(counted, "float32")[..., None], axis=(1, 2))

        # Unmatched anchors regress onto themselves (zero deltas) so that nothing non-finite
        # enters the graph, even where it is masked out.
        matched = ops.where(positive[..., None], assigned[BOXES], anchors[None])
        box_outputs = ops.cast(box_outputs, "float32")
        if self.box_loss == "giou":
            per_anchor = box_losses.giou_loss(matched, self.box_coder.decode(box_outputs, anchors))
        else:
            deltas = self.box_coder.encode(matched, anchors)
            if self.box_loss == "l1":
                per_anchor = ops.sum(box_losses.l1_loss(deltas, box_outputs), axis=-1)
            else:
                per_anchor = ops.sum(box_losses.smooth_l1_loss(deltas, box_outputs), axis=-1)
        regression = ops.sum(per_anchor * ops.cast(positive, "float32"), axis=1)
        return {
            "class_loss": ops.mean(focal / normaliser),
            "box_loss": self.box_loss_weight * ops.mean(regression / normaliser),
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            foreground_iou=self.matcher.high_threshold,
            background_iou=self.matcher.low_threshold,
            focal_alpha=self.focal_alpha,
            focal_gamma=self.focal_gamma,
            box_loss=self.box_loss,
            box_loss_weight=self.box_loss_weight,
        )
        return config


def retinanet(
    encoder: str,
    *,
    num_classes: int = 80,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    encoder_weights: str | os.PathLike | None = None,
    encoder_trainable: bool = True,
    channels: int = 256,
    head_convs: int = 4,
    head_norm: str | None = None,
    box_loss: str = "l1",
    score_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    pre_nms_top_k: int = 1000,
    name: str | None = None,
) -> RetinaNet:
    """RetinaNet on a ResNet backbone (torchvision's ``retinanet_resnet50_fpn`` layout).

    Args:
        encoder: The backbone, a `kerasseg.encoders` name (``"resnet18"``, ``"resnet50"``...).
        num_classes: Object classes (no background class).
        input_shape: ``(H, W, 3)``, None for any size; static sizes must be multiples of 32.
        encoder_weights: Passed to `kerasseg.encoders.get`: None or a weights file
            (``kerasseg.zoo.get(..., weights="imagenet")`` passes the ImageNet ones).
        encoder_trainable: False freezes the backbone (batch norm included).
        channels: Channels of the pyramid levels and of the head convolutions.
        head_convs: 3x3 convolutions in each head before its predictor.
        head_norm: None (the paper's) or ``"group"`` normalisation in the heads.
        box_loss: One of `BOX_LOSSES`.
        score_threshold: ``predict``'s minimum score (0.05: torchvision's evaluation setting).
        iou_threshold: ``predict``'s NMS IoU.
        max_detections: Detections per image returned by ``predict``.
        pre_nms_top_k: Candidates per level entering NMS.
        name: Model name; default ``retinanet_<encoder>``.

    Returns:
        A `RetinaNet`: ``predict`` returns the padded detections dict, ``fit`` takes the
        padded ground truth.
    """
    check_positive_int(num_classes, "num_classes")
    check_positive_int(channels, "channels")
    name = name or f"retinanet_{encoder}"
    anchor_generator = retinanet_anchors()
    num_anchors = anchor_generator.num_anchors_per_location()[0]
    inputs, features = encoder_features(
        encoder, tuple(input_shape), weights=encoder_weights, trainable=encoder_trainable
    )
    levels = feature_pyramid(
        features[BACKBONE_LEVELS], channels, extra_levels=EXTRA_LEVELS, extra_from="p5"
    )
    head = {"convs": head_convs, "channels": channels, "norm": head_norm}
    outputs = {
        BOXES: conv_tower_head(levels, 4, num_anchors, name="box_head", **head),
        CLASSES: conv_tower_head(
            levels,
            num_classes,
            num_anchors,
            prior_probability=PRIOR_PROBABILITY,
            name="class_head",
            **head,
        ),
    }
    network = keras.Model(inputs, outputs, name=f"{name}_network")
    box_coder = BoxCoder()
    decoder = DetectionDecoder(
        num_classes,
        box_coder=box_coder,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
        pre_nms_top_k=pre_nms_top_k,
        name="decoder",
    )
    return RetinaNet(
        network,
        num_classes,
        anchor_generator,
        box_coder=box_coder,
        decoder=decoder,
        box_loss=box_loss,
        name=name,
    )


for _backbone, _config in VARIANTS.items():
    globals()[f"retinanet_{_backbone}"] = register_detector_variant(
        f"retinanet_{_backbone}",
        retinanet,
        _config,
        args=(_backbone,),
        doc=(
            f"RetinaNet on a {_backbone} backbone ({_config['channels']}-channel FPN P3-P7 and "
            f"heads).\n\n``retinanet({_backbone!r}, **kwargs)``; see `retinanet`."
        ),
        family="retinanet",
        encoder=_backbone,
        input_multiple=ENCODER_STRIDE,
    )
