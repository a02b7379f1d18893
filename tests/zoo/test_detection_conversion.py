"""torchvision's COCO detectors -> kerasseg (`kerasseg.zoo.convert_detection`), exactly.

The references are torchvision's ``retinanet_resnet50_fpn`` (its ResNet-50 batch norms made
``FrozenBatchNorm2d``, as in the COCO checkpoint) and ``ssd300_vgg16``, with every weight and
batch-norm statistic drawn at random (the real checkpoints are not downloaded in tests) and
the class and box predictors rescaled so that the scores spread over (0, 1) and a few hundred
detections pass the thresholds. Both models see the same real BCCD image; torchvision runs
its whole forward (its transform set so that it does not resize), kerasseg its network and
decoder. Compared: the raw head outputs per level (scaled error max|a - b| / max|b|) and the
detections after decoding and NMS (boxes, classes, scores), up to the order of near-equal
scores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging

import numpy as np
import pytest
from PIL import Image

from kerasseg import zoo
from kerasseg.zoo import convert, metafiles
from kerasseg.zoo import weights as zw
from kerasseg.zoo.remote import RemoteFile
from tests.encoders.reference import randomise_conv_and_batch_norm
from tests.support import require_module, require_shared_data
from tests.zoo.support import LocalServer

logger = logging.getLogger(__name__)

#: Parity bounds: raw outputs (scaled error), boxes (pixels), scores.
RAW_ERROR = 1e-4
BOX_ERROR = 2e-3
SCORE_ERROR = 1e-4
#: Postprocessing of the RetinaNet comparison: torchvision's defaults, its 300 detections.
RETINANET_POSTPROCESS = {
    "score_threshold": 0.05,
    "iou_threshold": 0.5,
    "max_detections": 300,
    "pre_nms_top_k": 1000,
}
#: SSD: torchvision keeps the best `topk_candidates` boxes per class, kerasseg the best
#: `pre_nms_top_k` (box, class) pairs per level; with neither bound binding (torchvision's at
#: all 8732 boxes, kerasseg's above the candidates of any level, asserted below) both keep
#: every candidate above the threshold and agree.
SSD_POSTPROCESS = {
    "score_threshold": 0.2,
    "iou_threshold": 0.45,
    "max_detections": 200,
    "pre_nms_top_k": 5000,
}
SSD_BOXES = 8732
#: torchvision's SSD300 normalisation (its std is 1 / 255: 0..255 values less the mean).
SSD_MEAN = (0.48235, 0.45882, 0.40784)


def _bccd_image(size: tuple[int, int], crop: slice | None = None) -> np.ndarray:
    """The first BCCD image resized to ``size`` (width, height): (1, H, W, 3) in 0..255."""
    root = require_shared_data("bccd")
    path = sorted((root / "BCCD" / "JPEGImages").glob("*.jpg"))[0]
    with Image.open(path) as picture:
        rgb = np.asarray(picture.convert("RGB").resize(size, Image.BILINEAR), "float32")
    return (rgb if crop is None else rgb[crop])[None]


def _nchw(image: np.ndarray, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)):
    torch = require_module("torch")
    x = (image[0] / 255.0 - np.asarray(mean, "float32")) / np.asarray(std, "float32")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), "float32"))[None]


def _randomise(model, generator, batch_norm_input=None) -> None:
    """Convolutions He-normal, biases N(0, 0.1^2), BN gamma U(0.5, 1.5), beta N(0, 0.1^2),
    BN statistics those of `batch_norm_input` then shifted by N(0, 0.3^2) stds and scaled by
    U(0.5, 2) (see tests/encoders/reference.py)."""

    def statistics_batch(normal) -> None:
        model.backbone.body.train()
        model.backbone.body(batch_norm_input)

    randomise_conv_and_batch_norm(model.modules(), generator, statistics_batch)
    model.eval()


def _freeze_batch_norms(module) -> None:
    """Replaces every BatchNorm2d by torchvision's FrozenBatchNorm2d (the COCO models')."""
    torch = require_module("torch")
    ops = require_module("torchvision.ops")
    for name, child in module.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            frozen = ops.FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for buffer in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, buffer).copy_(getattr(child, buffer).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batch_norms(child)


def _rescale(predictor, raw, generator, low: float, high: float | None) -> None:
    """Rescales a predictor conv from its bias-free outputs `raw` on the calibration image:
    with `high`, the largest output goes to `high` and the 99.9 % quantile to `low`; else the
    outputs get standard deviation `low` and a N(0, (low / 2)^2) bias."""
    torch = require_module("torch")
    if high is None:
        scale, bias = (
            low / raw.std(),
            low / 2 * torch.randn(predictor.bias.shape, generator=generator),
        )
    else:
        sample = raw[torch.randperm(raw.numel(), generator=generator)[:100_000]]
        top, quantile = raw.max(), torch.quantile(sample, 0.999)
        scale = (high - low) / (top - quantile)
        bias = high - scale * top + 0.5 * torch.randn(predictor.bias.shape, generator=generator)
    predictor.weight.mul_(scale)
    predictor.bias.copy_(bias)


def _random_retinanet():
    """torchvision's retinanet_resnet50_fpn (91 classes) with random, calibrated weights."""
    torch = require_module("torch")
    detection = require_module("torchvision.models.detection")
    with torch.device("meta"):
        model = detection.retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=91
        )
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    small = _nchw(_bccd_image((128, 96)), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    _randomise(model, generator, small)
    _freeze_batch_norms(model.backbone.body)
    with torch.no_grad():
        features = list(model.backbone(small).values())
        for head, predictor, low, high in (
            (model.head.classification_head, model.head.classification_head.cls_logits, -2.2, 1.5),
            (model.head.regression_head, model.head.regression_head.bbox_reg, 0.1, None),
        ):
            raw = torch.cat(
                [
                    (predictor(head.conv(f)) - predictor.bias[:, None, None]).flatten()
                    for f in features
                ]
            )
            _rescale(predictor, raw, generator, low, high)
    return model


def _random_ssd():
    """torchvision's ssd300_vgg16 (91 columns: background + 90) with random, calibrated
    weights; the background column's bias raised by 3 so that it often wins."""
    torch = require_module("torch")
    detection = require_module("torchvision.models.detection")
    with torch.device("meta"):
        model = detection.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=91)
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    _randomise(model, generator)
    with torch.no_grad():
        model.backbone.scale_weight.copy_(10 + 20 * torch.rand(512, generator=generator))
        image = _bccd_image((300, 300))
        features = list(model.backbone(_nchw(image, SSD_MEAN, (1 / 255,) * 3)).values())
        heads = model.head
        for modules, std in (
            (heads.classification_head.module_list, 2.0),
            (heads.regression_head.module_list, 0.2),
        ):
            for feature, module in zip(features, modules):
                raw = (module(feature) - module.bias[:, None, None]).flatten()
                _rescale(module, raw, generator, std, None)
        for module in heads.classification_head.module_list:
            module.bias.view(-1, 91)[:, 0] += 3.0
    return model


def _torchvision_outputs(model, image: np.ndarray, postprocess: dict) -> tuple[dict, dict]:
    """torchvision's whole forward on `image` (1, H, W, 3) in 0..255, without resizing.

    Returns:
        The head's raw outputs (``cls_logits`` (N, K), ``bbox_regression`` (N, 4), all
        levels concatenated) and the detections (``boxes``, ``labels``, ``scores``).
    """
    torch = require_module("torch")
    height, width = image.shape[1:3]
    model.transform.min_size = (min(height, width),)
    model.transform.max_size = max(height, width)
    model.score_thresh = postprocess["score_threshold"]
    model.nms_thresh = postprocess["iou_threshold"]
    model.detections_per_img = postprocess["max_detections"]
    captured: dict = {}
    hooks = [
        model.backbone.register_forward_pre_hook(lambda m, args: captured.update(input=args[0])),
        model.head.register_forward_hook(lambda m, args, output: captured.update(output)),
    ]
    try:
        with torch.no_grad():
            (detections,) = model([_nchw(image)[0]])
    finally:
        for hook in hooks:
            hook.remove()
    assert tuple(captured["input"].shape) == (1, 3, height, width)  # not resized, not padded
    raw = {k: captured[k][0].numpy() for k in ("cls_logits", "bbox_regression")}
    return raw, {k: v.numpy() for k, v in detections.items()}


def _kerasseg_outputs(model, image: np.ndarray) -> tuple[list, list, dict]:
    """Per level the ``(N_l, 4)`` box and ``(N_l, K)`` class outputs, and the detections
    (``predict``'s: the decoder on the network's outputs)."""
    raw = model.network(image, training=False)
    boxes, classes, _ = model.level_outputs(raw)
    detections = {k: np.asarray(v)[0] for k, v in model.decode(raw, image).items()}
    return [np.asarray(b)[0] for b in boxes], [np.asarray(c)[0] for c in classes], detections


def _scaled_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def _compare_raw(boxes, classes, reference: dict) -> list[tuple[float, float]]:
    """Scaled errors (boxes, classes) per level; the reference split at the level sizes."""
    errors, start = [], 0
    for box_level, class_level in zip(boxes, classes):
        end = start + len(box_level)
        errors.append(
            (
                _scaled_error(box_level, reference["bbox_regression"][start:end]),
                _scaled_error(class_level, reference["cls_logits"][start:end]),
            )
        )
        start = end
    assert start == len(reference["cls_logits"])
    return errors


def _compare_detections(ours: dict, theirs: dict, label_offset: int) -> tuple[float, float]:
    """Asserts the same detections (class, box, score), in the same order up to swaps of
    near-equal scores; returns the largest box and score differences."""
    count = int(ours["num_detections"])
    boxes, classes, scores = ours["boxes"][:count], ours["classes"][:count], ours["scores"][:count]
    labels = theirs["labels"] - label_offset
    assert count == len(theirs["boxes"]) >= 100
    assert np.all(classes[:10] == labels[:10])  # the best ten: exactly the same order
    box_error = score_error = 0.0
    for i in range(count):
        same = (classes == labels[i]) & (
            np.abs(boxes - theirs["boxes"][i]).max(axis=1) <= BOX_ERROR
        )
        candidates = np.flatnonzero(same)
        assert candidates.size, f"torchvision's detection {i} ({labels[i]}, {theirs['boxes'][i]})"
        j = candidates[np.argmin(np.abs(scores[candidates] - theirs["scores"][i]))]
        assert abs(i - j) <= 2  # a swap of near-equal scores at most
        box_error = max(box_error, float(np.abs(boxes[j] - theirs["boxes"][i]).max()))
        score_error = max(score_error, float(abs(scores[j] - theirs["scores"][i])))
    assert score_error <= SCORE_ERROR
    return box_error, score_error


# --------------------------------------------------------------------------------------------
# Parity


@pytest.fixture(scope="module")
def retinanet_pair():
    """(torchvision model, its state dict as the COCO checkpoint has it, kerasseg model)."""
    reference = _random_retinanet()
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    assert not [k for k in state if k.endswith("num_batches_tracked")]  # FrozenBatchNorm2d
    model = convert.convert_torchvision_detector(
        "retinanet_resnet50", state, **RETINANET_POSTPROCESS
    )
    return reference, state, model


@pytest.mark.parity
def test_retinanet_resnet50_gives_torchvisions_outputs_and_detections(retinanet_pair):
    reference, _, model = retinanet_pair
    assert model.num_classes == 91
    # 256 x 384: multiples of 128, where torchvision's P6/P7 anchor strides are 64 and 128.
    image = _bccd_image((384, 288), crop=slice(16, 272))
    reference.topk_candidates = RETINANET_POSTPROCESS["pre_nms_top_k"]
    raw, detections = _torchvision_outputs(reference, image, RETINANET_POSTPROCESS)
    boxes, classes, ours = _kerasseg_outputs(model, image)
    errors = _compare_raw(boxes, classes, raw)
    assert len(errors) == 5 and max(max(e) for e in errors) <= RAW_ERROR, errors
    box_error, score_error = _compare_detections(ours, detections, label_offset=0)
    logger.info(
        "retinanet raw %s; detections: boxes %.2e px, scores %.2e", errors, box_error, score_error
    )


@pytest.mark.parity
def test_ssd300_vgg16_gives_torchvisions_outputs_and_detections():
    reference = _random_ssd()
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    model = convert.convert_torchvision_detector("ssd300_vgg16", state, **SSD_POSTPROCESS)
    assert model.num_classes == 90  # the 91 softmax columns less the background
    image = _bccd_image((300, 300))
    reference.topk_candidates = SSD_BOXES  # every box of every class: not binding
    raw, detections = _torchvision_outputs(reference, image, SSD_POSTPROCESS)
    boxes, classes, ours = _kerasseg_outputs(model, image)
    errors = _compare_raw(boxes, classes, raw)
    assert len(errors) == 6 and max(max(e) for e in errors) <= RAW_ERROR, errors
    # Neither top-k bound binds: kerasseg's per-level bound is above every level's candidates.
    for logits in classes:
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        candidates = int((probabilities[:, 1:] > SSD_POSTPROCESS["score_threshold"]).sum())
        assert candidates <= SSD_POSTPROCESS["pre_nms_top_k"]
    # kerasseg class c is torchvision's label c + 1.
    box_error, score_error = _compare_detections(ours, detections, label_offset=1)
    logger.info(
        "ssd raw %s; detections: boxes %.2e px, scores %.2e", errors, box_error, score_error
    )


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parity
@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda s: s.pop("backbone.fpn.layer_blocks.1.0.bias"),
            r"source tensors missing for target weights \(1\):\n    "
            r"backbone.fpn.layer_blocks.1.0.bias -> fpn_output4/bias \(256,\)",
        ),
        (
            lambda s: s.update({"backbone.body.layer2.0.conv2.weight": np.zeros((128, 64, 3, 3))}),
            r"shape mismatches \(1\):\n    resnet50/layer2_0_conv2/kernel: expected "
            r"\(3, 3, 128, 128\) \(HWIO\), got backbone.body.layer2.0.conv2.weight "
            r"\(128, 64, 3, 3\) \(OIHW\)",
        ),
        (
            lambda s: s.update({"head.extra.weight": np.zeros(3)}),
            r"unused source tensors \(1\):\n    head.extra.weight \(3,\)",
        ),
        (
            lambda s: s.update(
                {
                    "head.classification_head.cls_logits.weight": np.zeros((9 * 81, 256, 3, 3)),
                    "head.classification_head.cls_logits.bias": np.zeros(9 * 81),
                }
            ),
            r"class_head_predictor/kernel: expected \(3, 3, 256, 819\) \(HWIO\), got "
            r"head.classification_head.cls_logits.weight \(729, 256, 3, 3\)(.|\n)*"
            r"The checkpoint has 81 classes; the model has num_classes=91: build it with "
            r"num_classes=81",
        ),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_named_and_nothing_is_written(
    retinanet_pair, edit, expected
):
    _, state, model = retinanet_pair
    broken = dict(state)
    edit(broken)
    before = [w.numpy() for w in model.network.get_layer("class_head_predictor").weights]
    with pytest.raises(convert.ConversionError, match=expected):
        convert.load_torchvision_detector(model, broken)
    after = [w.numpy() for w in model.network.get_layer("class_head_predictor").weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_unknown_architectures_and_foreign_checkpoints_are_named():
    with pytest.raises(ValueError, match=r"No torchvision conversion for detector 'ssd_resnet18'"):
        convert.detector_layer_map("ssd_resnet18")
    with pytest.raises(convert.ConversionError, match=r"no 'head.classification_head.cls_logits"):
        convert.torchvision_num_classes("retinanet_resnet50", {"conv1.weight": np.zeros(1)})
    odd = {"head.classification_head.module_list.0.weight": np.zeros((10, 512, 3, 3))}
    with pytest.raises(convert.ConversionError, match=r"10 output channels, expected a multiple"):
        convert.torchvision_num_classes("ssd300_vgg16", odd)
    ssd = {"head.classification_head.module_list.0.weight": np.zeros((4 * 91, 512, 3, 3))}
    assert convert.torchvision_num_classes("ssd300_vgg16", ssd) == 90


@pytest.mark.parity
@pytest.mark.parametrize(
    "name, builder", [("retinanet_resnet50", "retinanet_resnet50_fpn"), ("ssd300_vgg16", None)]
)
def test_the_layer_maps_cover_every_torchvision_tensor(name, builder):
    torch = require_module("torch")
    detection = require_module("torchvision.models.detection")
    with torch.device("meta"):
        reference = getattr(detection, builder or name)(
            weights=None, weights_backbone=None, num_classes=91
        )
    mapped = {theirs for _, theirs in convert.detector_layer_map(name)}
    for tensor in reference.state_dict():
        module = tensor.rpartition(".")[0]
        assert tensor in mapped or module in mapped or tensor.endswith("num_batches_tracked")


# --------------------------------------------------------------------------------------------
# The zoo: weights="coco"


@pytest.mark.parity
def test_zoo_coco_weights_are_fetched_verified_converted_once_and_loaded(
    retinanet_pair, tmp_path, monkeypatch, isolated_zoo
):
    """The zoo's ``converted_weights.coco`` of retinanet_resnet50, pointed at the random
    checkpoint served from 127.0.0.1 (the real file is not downloaded in tests)."""
    torch = require_module("torch")
    reference, state, converted = retinanet_pair
    buffer = io.BytesIO()
    torch.save(reference.state_dict(), buffer)
    body = buffer.getvalue()
    index = metafiles.load_index()
    card = index.models["retinanet_resnet50"]
    published = card.converted_weights["coco"]
    assert published.file.sha256_prefix == "eeacb38b" and published.num_classes == 91
    with LocalServer() as server:
        server.files["/models/retinanet-random.pth"] = body
        served = dataclasses.replace(
            published,
            file=RemoteFile(
                url=server.url("/models/retinanet-random.pth"),
                sha256=hashlib.sha256(body).hexdigest(),
                size_bytes=len(body),
            ),
        )
        card = dataclasses.replace(card, converted_weights={"coco": served})
        patched = dataclasses.replace(index, models={**index.models, card.name: card})
        monkeypatch.setattr(metafiles, "load_index", lambda: patched)

        with pytest.raises(
            ValueError, match=r"retinanet_resnet50.coco weights have num_classes=91"
        ):
            zoo.get("retinanet_resnet50", weights="coco", num_classes=80)
        model = zoo.get("retinanet_resnet50", weights="coco", progress=False)
        assert server.requests == ["/models/retinanet-random.pth"]
        again = zoo.download("retinanet_resnet50.coco", progress=False)
        assert server.requests == ["/models/retinanet-random.pth"]  # converted once
    assert model.num_classes == 91
    for name in ("class_head_predictor", "fpn_p7"):
        for ours, theirs in zip(
            model.network.get_layer(name).weights, converted.network.get_layer(name).weights
        ):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    nested = model.network.get_layer("resnet50").get_layer("layer4_2_bn3")
    np.testing.assert_array_equal(
        nested.moving_variance.numpy(), state["backbone.body.layer4.2.bn3.running_var"]
    )
    record = json.loads((again[0].parent / (again[0].name + zw.RECORD_SUFFIX)).read_text())
    assert record["weights"] == "retinanet_resnet50.coco" and record["num_classes"] == 91
    assert "retinanet_resnet50 (91 classes): 301/301 source tensors" in record["conversion"]
    info = zoo.info("retinanet_resnet50")["weights"]["coco"]
    assert info["kind"] == "converted" and info["cache"]["converted"]["status"] == "present"
