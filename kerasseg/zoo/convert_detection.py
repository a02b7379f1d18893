"""Conversion of torchvision's COCO detectors to kerasseg detectors, exactly.

```python
from kerasseg.zoo import convert
model = convert.convert_torchvision_detector(
    "retinanet_resnet50", "retinanet_resnet50_fpn_coco-eeacb38b.pth"
)  # or a state dict; kerasseg.zoo.get("retinanet_resnet50", weights="coco") does this once
```

Two torchvision models have a kerasseg twin laid out layer for layer (`TORCHVISION_DETECTORS`):

| kerasseg | torchvision | class outputs |
|---|---|---|
| ``retinanet_resnet50`` | ``retinanet_resnet50_fpn`` | sigmoid, ``num_classes`` columns |
| ``ssd300_vgg16`` | ``ssd300_vgg16`` | softmax, ``num_classes + 1`` (background first) |

The transfer is `kerasseg.encoders.convert`'s, applied to a whole detector: an explicit table
(`detector_layer_map`) names, for every weight-carrying Keras layer, the torchvision module
it takes; convolution kernels go from (out, in, kh, kw) to (kh, kw, in, out); batch norm
(torchvision's ``FrozenBatchNorm2d`` in the COCO checkpoints, ``BatchNorm2d`` in an untrained
model: the same four tensors, and the same epsilon 1e-5 as the Keras layers) gives gamma,
beta and the moving statistics; SSD's ``backbone.scale_weight`` is the L2Normalization's
``scale``. Every source tensor must be used exactly once (``*.num_batches_tracked`` is
skipped), every Keras weight set and every shape equal; otherwise a `ConversionError` names
each unused tensor, unset weight and mismatch (layer, expected and found shape) and nothing is
written. No channel needs reordering: both heads lay a level's outputs out anchor-major,
channel ``a * K + k`` for anchor ``a`` and column ``k`` (torchvision views its
``(N, A * K, H, W)`` as ``(N, A, K, H, W)`` and moves ``A, K`` last), and the anchors come in
torchvision's order (`kerasseg.detection.anchors`).

Class ids of the COCO checkpoints (torchvision's labels are COCO category ids 1..90, with
gaps, and 0 for the background):

* ``retinanet_resnet50`` (``num_classes=91``): the 91 sigmoid columns are taken as they are,
  so kerasseg class ``c`` *is* torchvision's label and COCO category id ``c``; column 0 was
  never trained as positive (no object has label 0), and neither were the unused ids.
* ``ssd300_vgg16`` (``num_classes=90``): softmax column 0 is the background in both, so
  kerasseg class ``c`` is torchvision's label ``c + 1``, COCO category id ``c + 1``.

Preprocessing is in the models: both take RGB images in 0..255 (RetinaNet normalises with the
ImageNet mean and std inside its encoder, SSD subtracts ``255 * mean``), which is what
torchvision's ``GeneralizedRCNNTransform`` computes on 0..1 images. What it also does, and
kerasseg does not, is resizing: torchvision rescales RetinaNet's images to a shorter side of
800 (at most 1333) and pads them to multiples of 32, and SSD's to 300x300. Resize first to
give both the same input. For RetinaNet, sides that are multiples of 128 also give exactly
torchvision's anchors: torchvision's P6/P7 strides are ``size // feature_size``, which is 64
and 128 only then (kerasseg uses the nominal strides on every multiple of 32).

Decoding agrees for RetinaNet at the same settings (both keep the best ``pre_nms_top_k``
candidates above the score threshold per level, then class-aware NMS). torchvision's SSD
keeps the best ``topk_candidates`` (400) boxes per *class* instead of per level: both select
every candidate above ``score_threshold`` when neither bound binds, e.g. torchvision's
``topk_candidates`` at all 8732 boxes and kerasseg's ``pre_nms_top_k`` above any level's
number of candidates; at the defaults their lowest-scoring detections can differ.

This module never downloads anything: ``kerasseg.zoo.get(..., weights="coco")`` fetches the
checkpoint, checks its hash and calls `convert_torchvision_detector_file` once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from kerasseg.detection import retinanet as retinanet_module
from kerasseg.detection import ssd as ssd_module
from kerasseg.detection.retinanet import retinanet_anchors
from kerasseg.encoders.convert import (
    ConversionError,
    StateDictSource,
    _coverage_problems,
    _listed,
    _source_tensor,
    _targets,
    read_state_dict,
    save_weights,
    torchvision_layer_map,
)
from kerasseg.layers.normalization import L2Normalization

logger = logging.getLogger(__name__)

__all__ = [
    "TORCHVISION_DETECTORS",
    "DetectorConversionReport",
    "DetectorSpec",
    "convert_torchvision_detector",
    "convert_torchvision_detector_file",
    "detector_layer_map",
    "load_torchvision_detector",
    "torchvision_num_classes",
]

#: Source tensors skipped by rule (torch's batch-norm step counter; FrozenBatchNorm2d has none).
SKIPPED_SUFFIXES = ("num_batches_tracked",)


@dataclasses.dataclass(frozen=True)
class DetectorSpec:
    """A kerasseg detector with a torchvision twin.

    Attributes:
        name: The registered kerasseg model.
        torchvision_name: The builder in ``torchvision.models.detection``.
        class_tensor: The torchvision tensor whose first dimension is ``anchors * columns``
            of the first level's class output.
        anchors: Anchors per location of that level.
        background_column: 1 when the class outputs have a background column that
            ``num_classes`` does not count (softmax), else 0.
        build: ``build(num_classes=..., **kwargs)`` -> the kerasseg detector.
    """

    name: str
    torchvision_name: str
    class_tensor: str
    anchors: int
    background_column: int
    build: Callable[..., keras.Model]


def _retinanet_resnet50(**kwargs: Any) -> keras.Model:
    return retinanet_module.retinanet_resnet50(**kwargs)


TORCHVISION_DETECTORS: dict[str, DetectorSpec] = {
    "retinanet_resnet50": DetectorSpec(
        name="retinanet_resnet50",
        torchvision_name="retinanet_resnet50_fpn",
        class_tensor="head.classification_head.cls_logits.weight",
        anchors=retinanet_anchors().num_anchors_per_location()[0],
        background_column=0,
        build=_retinanet_resnet50,
    ),
    "ssd300_vgg16": DetectorSpec(
        name="ssd300_vgg16",
        torchvision_name="ssd300_vgg16",
        class_tensor="head.classification_head.module_list.0.weight",
        anchors=ssd_module.ssd300_anchors().num_anchors_per_location()[0],
        background_column=1,
        build=ssd_module.ssd300_vgg16,
    ),
}


def _spec(architecture: str) -> DetectorSpec:
    if architecture not in TORCHVISION_DETECTORS:
        raise ValueError(
            f"No torchvision conversion for detector {architecture!r}: `architecture` must be "
            f"one of {sorted(TORCHVISION_DETECTORS)}."
        )
    return TORCHVISION_DETECTORS[architecture]


@dataclasses.dataclass(frozen=True)
class DetectorConversionReport:
    """What a detector conversion did.

    Attributes:
        model: The kerasseg architecture (``"retinanet_resnet50"``).
        num_classes: The detector's classes (without a softmax background).
        source_tensors: Tensors in the state dict.
        converted_tensors: Source tensors written into the model (each exactly once).
        skipped: Names of the source tensors skipped by rule (`SKIPPED_SUFFIXES`).
        target_layers: Keras layers written.
        target_weights: Keras variables written (every variable of the network).
        parameters: Scalars written (trainable and batch-norm statistics).
    """

    model: str
    num_classes: int
    source_tensors: int
    converted_tensors: int
    skipped: tuple[str, ...]
    target_layers: int
    target_weights: int
    parameters: int

    def __str__(self) -> str:
        return (
            f"{self.model} ({self.num_classes} classes): {self.converted_tensors}/"
            f"{self.source_tensors} source tensors -> {self.target_weights} weights of "
            f"{self.target_layers} layers ({self.parameters:,} values); {len(self.skipped)} "
            f"skipped by rule"
        )


# --------------------------------------------------------------------------------------------
# The name mapping


def detector_layer_map(architecture: str) -> list[tuple[str, str]]:
    """Keras layer path -> torchvision module path, for every weight-carrying layer.

    A path ``"resnet50/layer2_0_conv1"`` names a layer of the network's nested encoder
    ``resnet50``. SSD's ``conv4_3_norm`` maps to the tensor ``backbone.scale_weight`` itself
    (torchvision keeps it on the backbone, not in a module).

    Example: ``("fpn_lateral3", "backbone.fpn.inner_blocks.0.0")``,
    ``("class_head_predictor", "head.classification_head.cls_logits")``,
    ``("fc6", "backbone.extra.0.7.1")``.
    """
    _spec(architecture)
    if architecture == "ssd300_vgg16":
        return [(keras_name, torch) for torch, keras_name in ssd_module.TORCHVISION_LAYERS.items()]
    pairs = [
        (f"resnet50/{keras_name}", f"backbone.body.{torch}")
        for keras_name, torch in torchvision_layer_map("resnet50")
    ]
    for i, level in enumerate(range(3, 6)):
        pairs.append((f"fpn_lateral{level}", f"backbone.fpn.inner_blocks.{i}.0"))
        pairs.append((f"fpn_output{level}", f"backbone.fpn.layer_blocks.{i}.0"))
    pairs += [
        ("fpn_p6", "backbone.fpn.extra_blocks.p6"),
        ("fpn_p7", "backbone.fpn.extra_blocks.p7"),
    ]
    for ours, theirs, predictor in (
        ("class_head", "classification_head", "cls_logits"),
        ("box_head", "regression_head", "bbox_reg"),
    ):
        pairs += [(f"{ours}_conv{i}", f"head.{theirs}.conv.{i}.0") for i in range(4)]
        pairs.append((f"{ours}_predictor", f"head.{theirs}.{predictor}"))
    return pairs


def torchvision_num_classes(architecture: str, source: StateDictSource) -> int:
    """The kerasseg ``num_classes`` a torchvision checkpoint of `architecture` needs.

    Args:
        architecture: A key of `TORCHVISION_DETECTORS`.
        source: The state dict or its file (see `read_state_dict`).

    Returns:
        The columns of the class outputs, less SSD's background: 91 for torchvision's COCO
        RetinaNet, 90 for its COCO SSD300.

    Raises:
        ConversionError: the class predictor's tensor is missing or has a shape that no
            number of classes explains.
    """
    spec = _spec(architecture)
    state = read_state_dict(source)
    if spec.class_tensor not in state:
        raise ConversionError(
            f"The state dict has no {spec.class_tensor!r}: it is not a torchvision "
            f"{spec.torchvision_name} checkpoint (which kerasseg's {architecture} converts)."
        )
    channels = int(state[spec.class_tensor].shape[0])
    columns, remainder = divmod(channels, spec.anchors)
    if remainder or columns <= spec.background_column:
        raise ConversionError(
            f"{spec.class_tensor} has {channels} output channels, expected a multiple of the "
            f"{spec.anchors} anchors per location of {architecture}."
        )
    return columns - spec.background_column


# --------------------------------------------------------------------------------------------
# The transfer


def _network(model: keras.Model) -> keras.Model:
    """The functional network of a detector (the model itself if it is one)."""
    return getattr(model, "network", model)


def _layer(network: keras.Model, path: str) -> keras.layers.Layer:
    layer: Any = network
    for part in path.split("/"):
        layer = layer.get_layer(part)
    return layer


def _layer_targets(layer: keras.layers.Layer, torch_path: str) -> list[tuple[Any, str, str]]:
    if isinstance(layer, L2Normalization):
        return [(layer.scale, torch_path, "copy")]
    return _targets(layer, torch_path)


def load_torchvision_detector(
    model: keras.Model, source: StateDictSource, *, architecture: str | None = None
) -> DetectorConversionReport:
    """Writes a torchvision detector's state dict into its kerasseg twin.

    Args:
        model: The detector (or its ``network``), e.g. from
            ``kerasseg.zoo.get("retinanet_resnet50", weights=None, num_classes=91)``.
        source: The state dict, or the path of a ``.pth``/``.pt``/``.npz`` file (see
            `read_state_dict`).
        architecture: A key of `TORCHVISION_DETECTORS`; default ``model.name``.

    Returns:
        A `DetectorConversionReport` (also logged at INFO level).

    Raises:
        ValueError: for an architecture without a torchvision twin.
        ConversionError: listing missing layers, missing and unused source tensors and
            shape mismatches (Keras weight, expected shape, the source's shape). Nothing is
            written in that case.
    """
    name = architecture or model.name
    if architecture is None and name not in TORCHVISION_DETECTORS:
        raise ValueError(
            f"The model is named {name!r}, which has no torchvision conversion: pass "
            f"`architecture=` one of {sorted(TORCHVISION_DETECTORS)}."
        )
    spec = _spec(name)
    network = _network(model)
    state = read_state_dict(source)
    pairs = detector_layer_map(name)

    problems: dict[str, list[str]] = {
        "missing target layers": [],
        "source tensors missing for target weights": [],
        "shape mismatches": [],
    }
    uses: dict[str, int] = {}
    writes: list[tuple[Any, np.ndarray]] = []
    for layer_path, torch_path in pairs:
        try:
            layer = _layer(network, layer_path)
        except (ValueError, AttributeError):  # no such layer; a nested one in a non-model
            problems["missing target layers"].append(f"{layer_path} (for {torch_path})")
            continue
        for variable, source_name, transform in _layer_targets(layer, torch_path):
            target = f"{layer_path}/{variable.name} {tuple(variable.shape)}"
            value = _source_tensor(state, source_name, target, uses, problems)
            if value is None:
                continue
            if transform == "oihw_to_hwio" and value.ndim == 4:
                value = np.transpose(value, (2, 3, 1, 0))
            if tuple(value.shape) != tuple(variable.shape):
                problems["shape mismatches"].append(
                    f"{layer_path}/{variable.name}: expected {tuple(variable.shape)}"
                    f"{' (HWIO)' if transform == 'oihw_to_hwio' else ''}, got {source_name} "
                    f"{tuple(state[source_name].shape)}"
                    f"{' (OIHW)' if state[source_name].ndim == 4 else ''}"
                )
                continue
            writes.append((variable, value))

    skipped = tuple(n for n in state if n not in uses and n.endswith(SKIPPED_SUFFIXES))
    problems.update(_coverage_problems(state, uses, skipped, writes, network.weights))
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        raise ConversionError(
            f"The state dict does not fit detector {name!r} (torchvision's "
            f"{spec.torchvision_name}: {len(state)} source tensors, {len(pairs)} target "
            f"layers); nothing was written:\n"
            + "\n".join(_listed(title, items) for title, items in problems.items())
            + _classes_hint(spec, state, model)
        )

    for variable, value in writes:
        variable.assign(value.astype(variable.dtype))
    report = DetectorConversionReport(
        model=name,
        num_classes=int(getattr(model, "num_classes", 0) or 0)
        or torchvision_num_classes(name, state),
        source_tensors=len(state),
        converted_tensors=len(uses),
        skipped=skipped,
        target_layers=len(pairs),
        target_weights=len(writes),
        parameters=int(sum(value.size for _, value in writes)),
    )
    logger.info("Converted %s", report)
    return report


def _classes_hint(spec: DetectorSpec, state: dict[str, np.ndarray], model: keras.Model) -> str:
    """A hint when the checkpoint has another number of classes than `model`."""
    try:
        needed = torchvision_num_classes(spec.name, state)
    except ConversionError:
        return ""
    have = getattr(model, "num_classes", None)
    if have is None or have == needed:
        return ""
    return (
        f"\n  (The checkpoint has {needed} classes"
        f"{' besides the background' if spec.background_column else ''}; the model has "
        f"num_classes={have}: build it with num_classes={needed}.)"
    )


def convert_torchvision_detector(
    architecture: str, source: StateDictSource, **kwargs: Any
) -> keras.Model:
    """Builds kerasseg detector `architecture` for a torchvision checkpoint and loads it.

    Args:
        architecture: A key of `TORCHVISION_DETECTORS` (``"retinanet_resnet50"``,
            ``"ssd300_vgg16"``).
        source: The state dict or its file (see `read_state_dict`).
        **kwargs: Builder arguments (``input_shape``, ``score_threshold``, ...);
            ``num_classes`` defaults to the checkpoint's (`torchvision_num_classes`).

    Returns:
        The detector with the converted weights.
    """
    spec = _spec(architecture)
    state = read_state_dict(source)
    kwargs.setdefault("num_classes", torchvision_num_classes(architecture, state))
    model = spec.build(**kwargs)
    load_torchvision_detector(model, state, architecture=architecture)
    return model


def convert_torchvision_detector_file(
    architecture: str, source: StateDictSource, destination: str | os.PathLike
) -> DetectorConversionReport:
    """Converts a torchvision checkpoint to a ``.weights.h5`` file of `architecture`.

    The file loads into ``kerasseg.zoo.get(architecture, weights=None,
    num_classes=<the checkpoint's>)`` (any input size) with ``model.load_weights``.

    Returns:
        The `DetectorConversionReport`.
    """
    spec = _spec(architecture)
    state = read_state_dict(source)
    model = spec.build(num_classes=torchvision_num_classes(architecture, state))
    report = load_torchvision_detector(model, state, architecture=architecture)
    save_weights(model, pathlib.Path(destination))
    return report
