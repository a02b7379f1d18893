"""SSD (Liu et al., 2016, "SSD: Single Shot MultiBox Detector"): ``ssd300_vgg16``, ``ssd_<backbone>``.

Default boxes relative to the image size (`kerasseg.detection.anchors.AnchorGenerator.ssd`)
on six feature maps, one 3x3 box convolution and one 3x3 class convolution per map (not
shared), softmax classification with a background class (column 0), SSD matching (every
object takes its best default box, then every box with IoU >= 0.5) and the MultiBox loss:
smooth L1 on the positives' deltas (variances 0.1, 0.1, 0.2, 0.2) plus cross-entropy on the
positives and the hardest negatives (3 per positive), both divided by the number of
positives in the batch.

``ssd300_vgg16`` is torchvision's ``ssd300_vgg16`` layer for layer (`TORCHVISION_LAYERS`
maps its parameter names to ours), with its default boxes, preprocessing, initialisation,
loss and postprocessing settings; ``ssd_resnet18`` / ``ssd_resnet34`` are light variants
on ResNet features at strides 8, 16 and 32 for any input size that is a multiple of 32.
Differences from torchvision: images must already be 300x300 (torchvision resizes them
inside the model); ``predict`` keeps the best candidates per level, not per class, before
NMS (`kerasseg.detection.postprocess`); crowd boxes are ignored in the loss.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from kerasseg.detection import losses as box_losses
from kerasseg.detection.anchors import AnchorGenerator
from kerasseg.detection.boxes import BoxCoder
from kerasseg.detection.detector import AnchorDetector, DetectionTargets
from kerasseg.detection.format import BOXES, CLASSES
from kerasseg.detection.matching import SSDMatcher, assign_targets, topk_hard_negatives
from kerasseg.detection.necks import conv
from kerasseg.detection.postprocess import DetectionDecoder
from kerasseg.detection.variants import register_detector_variant
from kerasseg.encoders.build import get as get_encoder
from kerasseg.encoders.features import ENCODER_STRIDE, encoder_features
from kerasseg.encoders.specs import spec as encoder_spec
from kerasseg.encoders.vgg import VGG_BLOCKS, vgg_block
from kerasseg.layers.normalization import L2Normalization
from kerasseg.registry import register_model
from kerasseg.utils.checks import check_positive_int

__all__ = [
    "SSD",
    "SSD300_INPUT_SHAPE",
    "TORCHVISION_LAYERS",
    "ssd",
    "ssd300_anchors",
    "ssd300_vgg16",
    "ssd_anchors",
]

#: torchvision's settings: matching IoU, negatives per positive ((1 - 0.25) / 0.25), the box
#: coder weights (10, 10, 5, 5) = 1 / variances (0.1, 0.1, 0.2, 0.2), smooth L1's beta.
FOREGROUND_IOU = 0.5
NEGATIVE_RATIO = 3.0
BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
SMOOTH_L1_BETA = 1.0
#: torchvision's postprocessing defaults (score, NMS IoU, detections, candidates).
POSTPROCESS = {
    "score_threshold": 0.01,
    "iou_threshold": 0.45,
    "max_detections": 200,
    "pre_nms_top_k": 400,
}
#: Default-box aspect ratios besides 1 on the six levels (SSD300 and the ResNet variants).
ASPECT_RATIOS = ([2], [2, 3], [2, 3], [2, 3], [2], [2])

#: SSD300: its fixed input, default-box scales and steps, the Caffe VGG preprocessing
#: (mean subtracted from 0..255 images, no scaling), the L2 norm's initial scale, and the
#: (1x1 channels, 3x3 channels, 3x3 stride) of the extra blocks conv8 ... conv11.
SSD300_INPUT_SHAPE = (300, 300, 3)
SSD300_SCALES = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
SSD300_STEPS = (8, 16, 32, 64, 100, 300)
SSD300_MEAN = (0.48235, 0.45882, 0.40784)
L2_NORM_SCALE = 20.0
SSD300_EXTRAS = ((256, 512, 2), (128, 256, 2), (128, 256, 1), (128, 256, 1))

#: The ResNet variants: backbone features at strides 8, 16, 32, then stride-2 extra blocks
#: (1x1 to half the channels, 3x3 stride 2 to these) up to stride 256.
BACKBONE_LEVELS = slice(2, 5)
RESNET_STRIDES = (8, 16, 32, 64, 128, 256)
VARIANTS = {
    "resnet18": {"extra_channels": (512, 256, 256)},
    "resnet34": {"extra_channels": (512, 256, 256)},
}

#: torchvision ``ssd300_vgg16`` parameter -> our layer (weights of the same shapes once
#: kernels go from OIHW to HWIO): ``features.N`` / ``extra.N`` of ``backbone``, the heads'
#: ``module_list.N`` of ``head``.
TORCHVISION_LAYERS = {
    **{
        f"backbone.features.{index}": f"block{b}_conv{i}"
        for index, (b, i) in zip(
            (0, 2, 5, 7, 10, 12, 14, 17, 19, 21),
            ((1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (3, 3), (4, 1), (4, 2), (4, 3)),
        )
    },
    "backbone.scale_weight": "conv4_3_norm",
    "backbone.extra.0.1": "block5_conv1",
    "backbone.extra.0.3": "block5_conv2",
    "backbone.extra.0.5": "block5_conv3",
    "backbone.extra.0.7.1": "fc6",
    "backbone.extra.0.7.3": "fc7",
    **{
        f"backbone.extra.{k}.{index}": f"conv{k + 7}_{part}"
        for k in range(1, 5)
        for index, part in ((0, 1), (2, 2))
    },
    **{f"head.regression_head.module_list.{level}": f"box_head{level}" for level in range(6)},
    **{f"head.classification_head.module_list.{level}": f"class_head{level}" for level in range(6)},
}


def ssd300_anchors() -> AnchorGenerator:
    """torchvision's SSD300 default boxes: 4, 6, 6, 6, 4, 4 per location on the 38, 19, 10,
    5, 3, 1 maps of a 300x300 image (8732 boxes), scales `SSD300_SCALES`, steps
    `SSD300_STEPS`, widths and heights clipped to at most the image's."""
    return AnchorGenerator.ssd(ASPECT_RATIOS, scales=SSD300_SCALES, strides=SSD300_STEPS)


def ssd_anchors() -> AnchorGenerator:
    """The ResNet variants' default boxes: scales 0.15 ... 0.9 (then 1), strides
    `RESNET_STRIDES`, the aspect ratios of SSD300."""
    return AnchorGenerator.ssd(ASPECT_RATIOS, strides=RESNET_STRIDES)


def _check_number(value: Any, argument: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{argument}` must be a number >= {minimum:g}, got {value!r}.")
    if not minimum <= float(value) < math.inf:
        raise ValueError(f"`{argument}` must be a finite number >= {minimum:g}, got {value!r}.")
    return float(value)


@keras.saving.register_keras_serializable(package="kerasseg")
class SSD(AnchorDetector):
    """SSD: softmax classification with a background class and box regression at every
    default box, trained with the MultiBox loss (see the module docstring).

    Built by `ssd300_vgg16` and `ssd`. The network's class outputs have ``num_classes + 1``
    columns per default box, column 0 the background.

    Args:
        network: The functional network (see `AnchorDetector`).
        num_classes: Object classes, without the background.
        anchor_generator: The default boxes (`AnchorGenerator`, or its config).
        box_coder: Default: torchvision's SSD coder, weights (10, 10, 5, 5).
        decoder: A softmax `DetectionDecoder` (or its config); default one with
            torchvision's SSD postprocessing settings.
        foreground_iou: IoU with an object from which a default box is positive.
        negative_ratio: Hard negatives kept per positive in the classification loss.
        box_loss_weight: Weight of the box loss against the classification loss.
        **kwargs: `keras.Model` arguments.
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
        negative_ratio: float = NEGATIVE_RATIO,
        box_loss_weight: float = 1.0,
        **kwargs: Any,
    ):
        num_classes = check_positive_int(num_classes, "num_classes")
        if isinstance(box_coder, dict):
            box_coder = BoxCoder.from_config(box_coder)
        box_coder = box_coder or BoxCoder.from_weights(BOX_CODER_WEIGHTS)
        if isinstance(decoder, dict):
            decoder = keras.saving.deserialize_keras_object(decoder)
        if decoder is None:
            decoder = DetectionDecoder(
                num_classes,
                box_coder=box_coder,
                activation="softmax",
                name="decoder",
                **POSTPROCESS,
            )
        if decoder.activation != "softmax":
            raise ValueError(
                "SSD classifies with a softmax over the background and the classes: `decoder` "
                f"must have activation='softmax', got {decoder.activation!r}."
            )
        super().__init__(network, num_classes, anchor_generator, box_coder, decoder, **kwargs)
        outputs = self.network.output[CLASSES]
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        anchors = self.anchor_generator.num_anchors_per_location()
        for level, (class_map, count) in enumerate(zip(outputs, anchors)):
            if class_map.shape[-1] != count * (num_classes + 1):
                raise ValueError(
                    f"SSD's class outputs need num_classes + 1 = {num_classes + 1} columns (the "
                    f"background first) per default box: {count * (num_classes + 1)} channels "
                    f"at level {level}, got {class_map.shape[-1]}."
                )
        self.matcher = SSDMatcher(foreground_iou)
        self.negative_ratio = _check_number(negative_ratio, "negative_ratio")
        self.box_loss_weight = _check_number(box_loss_weight, "box_loss_weight")

    def detection_loss(
        self, images: Any, targets: DetectionTargets, outputs: Any
    ) -> dict[str, Any]:
        box_outputs, class_outputs, anchors = self.flat_outputs(images, outputs)
        assigned = assign_targets(
            self.matcher, anchors, targets["boxes"], targets["classes"], targets["ignore"]
        )
        positive = assigned["positive"]
        # torchvision: both losses are sums over the batch divided by all its positives.
        normaliser = ops.maximum(ops.sum(assigned["num_positives"]), 1.0)

        # Cross-entropy against class + 1 on positives, the background (0) elsewhere.
        labels = ops.where(positive, assigned[CLASSES] + 1, 0)
        log_probabilities = ops.log_softmax(ops.cast(class_outputs, "float32"), axis=-1)
        cross_entropy = -ops.take_along_axis(log_probabilities, labels[..., None], axis=-1)[..., 0]
        hard_negatives = topk_hard_negatives(
            ops.stop_gradient(cross_entropy), positive, assigned["negative"], self.negative_ratio
        )
        counted = ops.cast(ops.logical_or(positive, hard_negatives), "float32")

        # Unmatched boxes regress onto themselves (zero deltas) so that nothing non-finite
        # enters the graph, even where it is masked out.
        matched = ops.where(positive[..., None], assigned[BOXES], anchors[None])
        deltas = self.box_coder.encode(matched, anchors)
        smooth_l1 = box_losses.smooth_l1_loss(
            deltas, ops.cast(box_outputs, "float32"), beta=SMOOTH_L1_BETA
        )
        regression = ops.sum(smooth_l1, axis=-1) * ops.cast(positive, "float32")
        return {
            "class_loss": ops.sum(cross_entropy * counted) / normaliser,
            "box_loss": self.box_loss_weight * ops.sum(regression) / normaliser,
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            foreground_iou=self.matcher.threshold,
            negative_ratio=self.negative_ratio,
            box_loss_weight=self.box_loss_weight,
        )
        return config


# ------------------------------------------------------------------------------ builders


def _heads(
    levels: Sequence[Any], anchors: AnchorGenerator, num_classes: int
) -> dict[str, list[Any]]:
    """torchvision's ``SSDHead``: per level, a 3x3 box conv and a 3x3 class conv (xavier
    uniform weights, zero bias), not shared between levels."""
    outputs: dict[str, list[Any]] = {BOXES: [], CLASSES: []}
    for level, (x, count) in enumerate(zip(levels, anchors.num_anchors_per_location())):
        for key, columns, name in (
            (BOXES, 4, "box_head"),
            (CLASSES, num_classes + 1, "class_head"),
        ):
            outputs[key].append(
                layers.Conv2D(
                    count * columns,
                    3,
                    padding="same",
                    kernel_initializer="glorot_uniform",
                    name=f"{name}{level}",
                )(x)
            )
    return outputs


def _detector(
    inputs: Any,
    levels: Sequence[Any],
    anchors: AnchorGenerator,
    num_classes: int,
    name: str,
    postprocess: dict[str, Any],
) -> SSD:
    network = keras.Model(inputs, _heads(levels, anchors, num_classes), name=f"{name}_network")
    box_coder = BoxCoder.from_weights(BOX_CODER_WEIGHTS)
    decoder = DetectionDecoder(
        num_classes, box_coder=box_coder, activation="softmax", name="decoder", **postprocess
    )
    return SSD(network, num_classes, anchors, box_coder=box_coder, decoder=decoder, name=name)


def _relu_conv(x: Any, filters: int, kernel_size: int, name: str, **kwargs: Any) -> Any:
    """Conv2D (xavier uniform, zero bias: torchvision's SSD extras) + ReLU."""
    x = layers.Conv2D(
        filters, kernel_size, kernel_initializer="glorot_uniform", name=name, **kwargs
    )(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _fold_ssd_preprocessing(kernel: np.ndarray, bias: np.ndarray) -> list[np.ndarray]:
    """Adapts the first conv of an ImageNet VGG (inputs ``(x / 255 - mean) / std``) to
    SSD300's inputs ``x - 255 * SSD300_MEAN``; exact but for the zero padding at the border."""
    spec = encoder_spec("vgg16")
    std = np.asarray(spec.std, "float64")
    scale = 1.0 / (255.0 * std)  # per input channel
    shift = (np.asarray(SSD300_MEAN) - np.asarray(spec.mean)) / std
    kernel = kernel.astype("float64")
    folded_bias = bias + np.einsum("hwio,i->o", kernel, shift)
    return [(kernel * scale[None, None, :, None]).astype("float32"), folded_bias.astype("float32")]


def _load_vgg16_weights(network: keras.Model, weights: str | os.PathLike) -> None:
    """Copies the convolutions of `kerasseg.encoders` VGG-16 weights (a ``.weights.h5`` of
    the encoder, or torchvision's checkpoint) into SSD300's blocks 1-5."""
    encoder = get_encoder("vgg16", weights=weights)
    for block, channels in enumerate(VGG_BLOCKS["vgg16"], start=1):
        for index in range(1, len(channels) + 1):
            name = f"block{block}_conv{index}"
            values = encoder.get_layer(name).get_weights()
            if name == "block1_conv1":
                values = _fold_ssd_preprocessing(*values)
            network.get_layer(name).set_weights(values)


@register_model("ssd300_vgg16", family="ssd", task="detection", encoder="vgg16", input_multiple=300)
def ssd300_vgg16(
    *,
    num_classes: int = 80,
    input_shape: tuple[int | None, int | None, int] = SSD300_INPUT_SHAPE,
    encoder_weights: str | os.PathLike | None = None,
    encoder_trainable: bool = True,
    score_threshold: float = POSTPROCESS["score_threshold"],
    iou_threshold: float = POSTPROCESS["iou_threshold"],
    max_detections: int = POSTPROCESS["max_detections"],
    pre_nms_top_k: int = POSTPROCESS["pre_nms_top_k"],
    name: str = "ssd300_vgg16",
) -> SSD:
    """SSD300 on VGG-16 (torchvision's ``ssd300_vgg16`` layout), 300x300 inputs.

    VGG-16's convolutions up to conv5_3 (pool3 in ceil mode: 300 -> 150 -> 75 -> 38), the
    L2-normalised, rescaled conv4_3 (38x38), pool5 3x3 stride 1, the dilated conv6 and conv7
    (19x19), and the extra blocks conv8_2 ... conv11_2 (10, 5, 3, 1), each map with its own
    box and class convolution. Layer names and torchvision's: `TORCHVISION_LAYERS`.

    Args:
        num_classes: Object classes; the class outputs add the background (torchvision's
            COCO model: ``num_classes=90``, its 91 columns).
        input_shape: Must be ``(300, 300, 3)``: resize images to 300x300 first.
        encoder_weights: None, or VGG-16 ImageNet weights for blocks 1-5 (a
            ``kerasseg.encoders`` ``.weights.h5`` file or torchvision's checkpoint, as
            ``kerasseg.zoo.get(..., weights="imagenet")`` passes them); their input
            normalisation is folded into conv1_1 for SSD's preprocessing.
        encoder_trainable: False freezes the VGG convolutions (blocks 1-5).
        score_threshold: ``predict``'s minimum score (torchvision's 0.01).
        iou_threshold: ``predict``'s NMS IoU (0.45).
        max_detections: Detections per image returned by ``predict`` (200).
        pre_nms_top_k: Candidates per level entering NMS (400).
        name: Model name.

    Returns:
        An `SSD` taking ``(B, 300, 300, 3)`` images in 0..255: ``predict`` returns the padded
        detections dict, ``fit`` takes the padded ground truth in pixels.
    """
    check_positive_int(num_classes, "num_classes")
    if tuple(input_shape) != SSD300_INPUT_SHAPE:
        raise ValueError(
            f"`input_shape` must be {SSD300_INPUT_SHAPE}: SSD300 takes 300x300 RGB images "
            f"(resize them first); got {input_shape!r}."
        )
    anchors = ssd300_anchors()
    inputs = keras.Input(shape=SSD300_INPUT_SHAPE, name="image")
    # torchvision: (x / 255 - mean) / (1 / 255), i.e. the mean subtracted from 0..255 images.
    x = layers.Normalization(
        mean=[255.0 * m for m in SSD300_MEAN], variance=[1.0] * 3, name="normalize"
    )(inputs)
    vgg = VGG_BLOCKS["vgg16"]
    for block in (1, 2, 3):
        x = vgg_block(x, block, vgg[block - 1], batch_norm=False)
        if block == 3:  # ceil mode: the ReLU output is >= 0, so zero padding is exact
            x = layers.ZeroPadding2D(((0, 1), (0, 1)), name="block3_pool_pad")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    conv4_3 = vgg_block(x, 4, vgg[3], batch_norm=False)
    levels = [L2Normalization(L2_NORM_SCALE, name="conv4_3_norm")(conv4_3)]
    x = layers.MaxPooling2D(2, strides=2, name="block4_pool")(conv4_3)
    x = vgg_block(x, 5, vgg[4], batch_norm=False)
    x = layers.MaxPooling2D(3, strides=1, padding="same", name="block5_pool")(x)
    x = _relu_conv(x, 1024, 3, "fc6", padding="same", dilation_rate=6)
    x = _relu_conv(x, 1024, 1, "fc7")
    levels.append(x)
    for k, (reduced, filters, stride) in enumerate(SSD300_EXTRAS, start=8):
        x = _relu_conv(x, reduced, 1, f"conv{k}_1")
        if stride == 2:
            x = conv(filters, 3, strides=2, name=f"conv{k}_2", kernel_initializer="glorot_uniform")(
                x
            )
            x = layers.ReLU(name=f"conv{k}_2_relu")(x)
        else:
            x = _relu_conv(x, filters, 3, f"conv{k}_2", padding="valid")
        levels.append(x)
    postprocess = {
        "score_threshold": score_threshold,
        "iou_threshold": iou_threshold,
        "max_detections": max_detections,
        "pre_nms_top_k": pre_nms_top_k,
    }
    model = _detector(inputs, levels, anchors, num_classes, name, postprocess)
    if encoder_weights is not None:
        _load_vgg16_weights(model.network, encoder_weights)
    if not encoder_trainable:
        for layer in model.network.layers:
            if layer.name.startswith("block"):
                layer.trainable = False
    return model


def ssd(
    encoder: str,
    *,
    num_classes: int = 80,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    encoder_weights: str | os.PathLike | None = None,
    encoder_trainable: bool = True,
    extra_channels: Sequence[int] = (512, 256, 256),
    score_threshold: float = POSTPROCESS["score_threshold"],
    iou_threshold: float = POSTPROCESS["iou_threshold"],
    max_detections: int = POSTPROCESS["max_detections"],
    pre_nms_top_k: int = POSTPROCESS["pre_nms_top_k"],
    name: str | None = None,
) -> SSD:
    """SSD on a ResNet backbone: features at strides 8, 16, 32 and three extra levels.

    Each extra level is a 1x1 convolution to half its channels and a 3x3 stride-2
    convolution (PyTorch's symmetric padding), each with a ReLU, up to stride 256; the six
    levels get SSD's default boxes (`ssd_anchors`) and their own box and class convolutions.

    Args:
        encoder: The backbone, a `kerasseg.encoders` ResNet name (``"resnet18"``, ...).
        num_classes: Object classes; the class outputs add the background.
        input_shape: ``(H, W, 3)``, None for any size; static sizes must be multiples of 32.
        encoder_weights: Passed to `kerasseg.encoders.get`: None or a weights file
            (``kerasseg.zoo.get(..., weights="imagenet")`` passes the ImageNet ones).
        encoder_trainable: False freezes the backbone (batch norm included).
        extra_channels: Output channels of the three extra levels.
        score_threshold: ``predict``'s minimum score.
        iou_threshold: ``predict``'s NMS IoU.
        max_detections: Detections per image returned by ``predict``.
        pre_nms_top_k: Candidates per level entering NMS.
        name: Model name; default ``ssd_<encoder>``.

    Returns:
        An `SSD` (see `ssd300_vgg16`).
    """
    check_positive_int(num_classes, "num_classes")
    extra_channels = tuple(extra_channels)
    extras = len(RESNET_STRIDES) - 3
    if len(extra_channels) != extras:
        raise ValueError(
            f"`extra_channels` must give the channels of the {extras} extra levels, got "
            f"{extra_channels!r}."
        )
    for channels in extra_channels:
        check_positive_int(channels, "extra_channels")
    name = name or f"ssd_{encoder}"
    anchors = ssd_anchors()
    inputs, features = encoder_features(
        encoder, tuple(input_shape), weights=encoder_weights, trainable=encoder_trainable
    )
    levels = list(features[BACKBONE_LEVELS])
    x = levels[-1]
    for k, filters in enumerate(extra_channels, start=1):
        x = _relu_conv(x, max(filters // 2, 1), 1, f"extra{k}_reduce")
        x = conv(filters, 3, strides=2, name=f"extra{k}", kernel_initializer="glorot_uniform")(x)
        x = layers.ReLU(name=f"extra{k}_relu")(x)
        levels.append(x)
    postprocess = {
        "score_threshold": score_threshold,
        "iou_threshold": iou_threshold,
        "max_detections": max_detections,
        "pre_nms_top_k": pre_nms_top_k,
    }
    return _detector(inputs, levels, anchors, num_classes, name, postprocess)


for _backbone, _config in VARIANTS.items():
    globals()[f"ssd_{_backbone}"] = register_detector_variant(
        f"ssd_{_backbone}",
        ssd,
        _config,
        args=(_backbone,),
        doc=(
            f"SSD on a {_backbone} backbone (strides 8 ... 256, extra levels of "
            f"{_config['extra_channels']} channels).\n\n``ssd({_backbone!r}, **kwargs)``; see "
            "`ssd`."
        ),
        family="ssd",
        encoder=_backbone,
        input_multiple=ENCODER_STRIDE,
    )
