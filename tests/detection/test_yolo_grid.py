"""YOLOv2, the grid detector: assignment and loss against loop-by-loop NumPy references of
the paper's rules, decoding, passthrough layer, training, predict format and errors."""

import math
import re

import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.detection.detector import check_targets
from kerasseg.detection.postprocess import DetectionDecoder
from kerasseg.detection.yolo import (
    IGNORE_IOU,
    VOC_ANCHORS,
    WH_CLIP,
    SpaceToDepth,
    YOLOv2,
    assign_grid_targets,
    decode_grid_boxes,
    yolov2,
)
from tests.detection.support import (
    assert_finite_losses_and_gradients,
    assert_padded_detections,
    synthetic_batch,
)

NUM_CLASSES = 3
STRIDE = 32
#: Priors of similar shapes, so that boxes land on all of them and predictions of several
#: priors overlap the same object.
ANCHORS = np.array([[16.0, 16.0], [28.0, 20.0], [20.0, 28.0]], "float32")
#: A small but complete YOLOv2: CSP-Darknet n, 16-channel head.
TINY = {"head_channels": 16, "passthrough_channels": 8, "anchors": ANCHORS}


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _iou(a, b):
    """IoU of two xyxy boxes, written out."""
    w = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    h = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def reference_assignment(boxes, classes, ignore, grid, anchors, stride):
    """The paper's rules, one box at a time: the cell holding the centre, the prior of best
    centred-shape IoU (the first on ties); a later box overwrites an earlier one on the same
    cell and prior (darknet's loop); crowd boxes only mark their slot."""
    height, width = grid
    owners, crowded = [], []
    for b in range(len(boxes)):
        owner, crowd = {}, set()
        for m in range(len(boxes[b])):
            x1, y1, x2, y2 = (float(v) for v in boxes[b, m])
            if classes[b, m] < 0 or x2 <= x1 or y2 <= y1:
                continue
            column = min(max(math.floor((x1 + x2) / 2 / stride), 0), width - 1)
            row = min(max(math.floor((y1 + y2) / 2 / stride), 0), height - 1)
            best, best_iou = 0, -1.0
            for a, (aw, ah) in enumerate(anchors):
                iou = _iou((0, 0, x2 - x1, y2 - y1), (0, 0, aw, ah))
                if iou > best_iou:
                    best, best_iou = a, iou
            slot = (row, column, best)
            if ignore[b, m]:
                crowd.add(slot)
            else:
                owner[slot] = m
        owners.append(owner)
        crowded.append(crowd - set(owner))
    return owners, crowded


def reference_loss(raw, boxes, classes, ignore, anchors, image_hw, rescore):
    """YOLOv2's loss written out prediction by prediction (see the module docstring of
    `kerasseg.detection.yolo`), with its default weights; also counts the predictions the
    IoU > 0.6 rule leaves out."""
    box_maps, object_maps, class_maps = raw["boxes"][0], raw["objectness"][0], raw["classes"][0]
    batch, height, width = box_maps.shape[:3]
    owners, crowded = reference_assignment(boxes, classes, ignore, (height, width), anchors, STRIDE)
    image_area = image_hw[0] * image_hw[1]
    objectness = box = cls = 0.0
    left_out = 0
    for b in range(batch):
        labelled = [m for m in range(len(boxes[b])) if classes[b, m] >= 0]
        for i in range(height):
            for j in range(width):
                for a, (aw, ah) in enumerate(anchors):
                    tx, ty, tw, th = (float(v) for v in box_maps[b, i, j, 4 * a : 4 * a + 4])
                    logit = float(object_maps[b, i, j, a])
                    logits = class_maps[b, i, j, NUM_CLASSES * a : NUM_CLASSES * (a + 1)]
                    cx, cy = (j + _sigmoid(tx)) * STRIDE, (i + _sigmoid(ty)) * STRIDE
                    w = aw * math.exp(min(tw, WH_CLIP))
                    h = ah * math.exp(min(th, WH_CLIP))
                    pred = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                    p = _sigmoid(logit)
                    slot = (i, j, a)
                    if slot in owners[b]:
                        m = owners[b][slot]
                        g = [float(v) for v in boxes[b, m]]
                        target = _iou(pred, g) if rescore else 1.0
                        objectness += 5.0 * -(target * math.log(p) + (1 - target) * math.log(1 - p))
                        gw, gh = g[2] - g[0], g[3] - g[1]
                        ox = min(max((g[0] + g[2]) / 2 / STRIDE - j, 0.0), 1.0)
                        oy = min(max((g[1] + g[3]) / 2 / STRIDE - i, 0.0), 1.0)
                        scale = 2.0 - gw * gh / image_area
                        box += scale * (
                            (_sigmoid(tx) - ox) ** 2
                            + (_sigmoid(ty) - oy) ** 2
                            + (tw - math.log(gw / aw)) ** 2
                            + (th - math.log(gh / ah)) ** 2
                        )
                        log_z = math.log(np.exp(logits.astype("float64")).sum())
                        cls += log_z - float(logits[classes[b, m]])
                    elif slot not in crowded[b]:
                        best = max([_iou(pred, boxes[b, m]) for m in labelled], default=0.0)
                        if best > IGNORE_IOU:
                            left_out += 1
                        else:
                            objectness += -math.log(1 - p)
    parts = {
        "objectness_loss": objectness / batch,
        "box_loss": box / batch,
        "class_loss": cls / batch,
    }
    return parts, left_out


def random_targets(rng, batch, max_boxes, image_hw, grid):
    """Boxes near the priors' shapes centred anywhere (crowd flags, padding, a box without
    area, two boxes on one cell and prior, an image without boxes)."""
    boxes = np.zeros((batch, max_boxes, 4), "float32")
    classes = np.full((batch, max_boxes), -1, "int32")
    crowd = np.zeros((batch, max_boxes), bool)
    for b in range(1, batch):
        n = rng.integers(max_boxes // 2, max_boxes + 1)
        for m in range(n):
            w, h = ANCHORS[rng.integers(len(ANCHORS))] * rng.uniform(0.7, 1.4, 2)
            cx, cy = rng.uniform(0, image_hw[1]), rng.uniform(0, image_hw[0])
            boxes[b, m] = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            classes[b, m] = rng.integers(NUM_CLASSES)
            crowd[b, m] = rng.uniform() < 0.15
        boxes[b, 1] = boxes[b, 0]  # same cell and prior as box 0, another class
        classes[b, 1] = (classes[b, 0] + 1) % NUM_CLASSES
        crowd[b, :2] = False
    boxes[1, -1], classes[1, -1] = [30, 30, 30, 50], 0  # no area
    return {"boxes": boxes, "classes": classes, "iscrowd": crowd}


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    return yolov2(num_classes=NUM_CLASSES, **TINY)


def test_assignment_matches_a_loop_reference_of_the_papers_rules():
    rng = np.random.default_rng(0)
    image_hw, grid = (96, 128), (3, 4)
    y = random_targets(rng, batch=4, max_boxes=12, image_hw=image_hw, grid=grid)
    targets = check_targets(y, NUM_CLASSES)
    got = assign_grid_targets(
        targets["boxes"], targets["classes"], targets["ignore"], grid, ANCHORS, STRIDE
    )
    got = {k: keras.ops.convert_to_numpy(v) for k, v in got.items()}
    owners, crowded = reference_assignment(
        y["boxes"], np.asarray(targets["classes"]), y["iscrowd"], grid, ANCHORS, STRIDE
    )
    n = grid[0] * grid[1] * len(ANCHORS)
    assert got["positive"].shape == got["index"].shape == (4, n)
    assert got["boxes"].shape == (4, n, 4)
    for b in range(4):
        expected_index = np.full(n, -1)
        expected_ignored = np.zeros(n, bool)
        for (i, j, a), m in owners[b].items():
            expected_index[(i * grid[1] + j) * len(ANCHORS) + a] = m
        for i, j, a in crowded[b]:
            expected_ignored[(i * grid[1] + j) * len(ANCHORS) + a] = True
        np.testing.assert_array_equal(got["index"][b], expected_index)
        np.testing.assert_array_equal(got["positive"][b], expected_index >= 0)
        np.testing.assert_array_equal(got["ignored"][b], expected_ignored)
        positive = expected_index >= 0
        np.testing.assert_array_equal(
            got["boxes"][b][positive], y["boxes"][b][expected_index[positive]]
        )
        np.testing.assert_array_equal(
            got["classes"][b][positive], y["classes"][b][expected_index[positive]]
        )
        np.testing.assert_array_equal(got["classes"][b][~positive], -1)
    # The case the rules must decide: box 1 shares box 0's cell and prior; the last one wins.
    assert all(0 not in owner.values() for owner in owners[1:])
    assert sum(1 in owner.values() for owner in owners[1:]) >= 2
    assert sum(len(c) for c in crowded) > 0 and not got["positive"][0].any()


def _logit(p):
    p = min(max(p, 1e-3), 1 - 1e-3)
    return math.log(p / (1 - p))


def _copy_objects_to_other_priors(raw, y, classes):
    """Makes one free prior of each responsible cell predict the cell's object exactly, so
    that the rule leaving out predictions of IoU > 0.6 has work to do."""
    box_maps = raw["boxes"][0]
    owners, crowded = reference_assignment(
        y["boxes"], classes, y["iscrowd"], box_maps.shape[1:3], ANCHORS, STRIDE
    )
    for b, owner in enumerate(owners):
        for (i, j, _), m in owner.items():
            free = [
                p
                for p in range(len(ANCHORS))
                if (i, j, p) not in owner and (i, j, p) not in crowded[b]
            ]
            if not free:
                continue
            x1, y1, x2, y2 = (float(v) for v in y["boxes"][b, m])
            aw, ah = ANCHORS[free[0]]
            box_maps[b, i, j, 4 * free[0] : 4 * free[0] + 4] = [
                _logit((x1 + x2) / 2 / STRIDE - j),
                _logit((y1 + y2) / 2 / STRIDE - i),
                math.log((x2 - x1) / aw),
                math.log((y2 - y1) / ah),
            ]


@pytest.mark.parametrize("rescore", [True, False])
def test_loss_matches_a_loop_reference(tiny, rescore):
    model = tiny if rescore else YOLOv2(tiny.network, NUM_CLASSES, anchors=ANCHORS, rescore=False)
    rng = np.random.default_rng(1)
    image_hw = (96, 128)
    images = np.zeros((3, *image_hw, 3), "float32")
    raw = {
        key: [rng.normal(0, 0.7, m.shape).astype("float32") for m in maps]
        for key, maps in tiny.compute_output_spec(keras.KerasTensor(images.shape)).items()
    }
    y = random_targets(rng, batch=3, max_boxes=10, image_hw=image_hw, grid=(3, 4))
    targets = check_targets(y, NUM_CLASSES)
    _copy_objects_to_other_priors(raw, y, np.asarray(targets["classes"]))
    got = model.detection_loss(images, targets, raw)
    expected, left_out = reference_loss(
        raw, y["boxes"], np.asarray(targets["classes"]), y["iscrowd"], ANCHORS, image_hw, rescore
    )
    assert left_out > 0  # the IoU > 0.6 rule was exercised
    for part, value in expected.items():
        np.testing.assert_allclose(float(got[part]), value, rtol=1e-4, err_msg=part)


def test_decoding_hand_worked_and_extreme_outputs_finite():
    priors = np.array([[0, 0, 16, 16], [32, 8, 64, 24]], "float32")  # cells (0, 0), (0, 1)
    t = np.array([[[0, 0, 0, 0], [1e4, -1e4, math.log(2), 1e4]]], "float32")
    boxes = keras.ops.convert_to_numpy(decode_grid_boxes(t, priors, 32))
    np.testing.assert_allclose(boxes[0, 0], priors[0])  # t = 0: the prior
    # sigma -> 1, 0: the cell's right edge x = 64 and top edge y = 0; w doubled, h clipped.
    h = 16 * math.exp(WH_CLIP)
    np.testing.assert_allclose(boxes[0, 1], [64 - 32, -h / 2, 64 + 32, h / 2], rtol=1e-5)


def test_predictions_are_in_row_column_prior_order(tiny):
    images = np.zeros((1, 64, 96, 3), "float32")
    priors = keras.ops.convert_to_numpy(tiny.priors(images, (2, 3)))
    assert priors.shape == (2 * 3 * 3, 4)
    # Prediction (i W + j) A + a: prior a centred on cell (i, j).
    i, j, a = 1, 2, 1
    n = (i * 3 + j) * 3 + a
    w, h = ANCHORS[a]
    centre = ((j + 0.5) * STRIDE, (i + 0.5) * STRIDE)
    np.testing.assert_allclose(
        priors[n], [centre[0] - w / 2, centre[1] - h / 2, centre[0] + w / 2, centre[1] + h / 2]
    )


def test_space_to_depth_is_tensorflows_and_traces_with_unknown_sizes():
    import tensorflow as tf

    x = np.random.default_rng(0).normal(size=(2, 4, 6, 3)).astype("float32")
    layer = SpaceToDepth(2)
    np.testing.assert_array_equal(np.asarray(layer(x)), tf.nn.space_to_depth(x, 2).numpy())
    traced = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 3])])
    np.testing.assert_array_equal(traced(x).numpy(), tf.nn.space_to_depth(x, 2).numpy())
    assert layer.compute_output_shape((None, None, 6, 3)) == (None, None, 3, 12)
    assert SpaceToDepth.from_config(layer.get_config()).block_size == 2
    with pytest.raises(ValueError, match="a width that is a multiple of block_size=2, got 5"):
        layer(np.zeros((1, 4, 5, 3), "float32"))


def test_loss_traced_with_unknown_batch_size_and_boxes_equals_the_eager_loss(tiny):
    import tensorflow as tf

    images = np.zeros((2, 96, 64, 3), "float32")
    y = random_targets(np.random.default_rng(4), 2, 5, image_hw=(96, 64), grid=(3, 2))
    y = {"boxes": y["boxes"], "classes": y["classes"]}
    raw = tiny(images)
    signature = [
        tf.TensorSpec([None, None, None, 3]),
        {"boxes": tf.TensorSpec([None, None, 4]), "classes": tf.TensorSpec([None, None], tf.int32)},
        {key: [tf.TensorSpec([None, None, None, maps[0].shape[-1]])] for key, maps in raw.items()},
    ]
    traced = tf.function(tiny.compute_loss, input_signature=signature)
    eager = tiny.compute_loss(images, y, raw)
    np.testing.assert_allclose(float(traced(images, y, raw)), float(eager), rtol=1e-5)


def test_loss_and_gradients_finite_on_empty_and_degenerate_targets(tiny):
    images = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    empty = assert_finite_losses_and_gradients(tiny, images)
    assert empty["box_loss"] == empty["class_loss"] == 0.0 and empty["objectness_loss"] > 0


@pytest.fixture(scope="module")
def trained():
    """A tiny YOLOv2 (objectness target 1: a fixed objective) after a few steps of fit."""
    keras.utils.set_random_seed(0)
    model = kerasseg.zoo.get(
        "yolov2_cspdarknet_n", weights=None, num_classes=NUM_CLASSES, rescore=False, **TINY
    )
    # Eagerly: five steps cost less than tracing the train step (the traced loss is
    # checked on its own below).
    model.compile(optimizer=keras.optimizers.Adam(1e-2), run_eagerly=True)
    images, targets = synthetic_batch(size=64)
    history = model.fit(images, targets, epochs=5, batch_size=4, verbose=0)
    return model, images, history.history


def test_fit_on_raw_padded_boxes_reduces_the_loss_and_logs_its_parts(trained):
    model, _, history = trained
    assert isinstance(model, YOLOv2) and not model.rescore
    assert set(history) == {"loss", "objectness_loss", "box_loss", "class_loss"}
    assert history["loss"][-1] < 0.92 * history["loss"][0], history["loss"]
    for part in ("box_loss", "class_loss"):
        assert history[part][-1] < 0.8 * history[part][0], (part, history[part])
    parts = np.add(history["objectness_loss"], history["box_loss"]) + history["class_loss"]
    np.testing.assert_allclose(parts, history["loss"], rtol=1e-5)


def test_predict_format_and_thresholds_on_a_loaded_model(trained, tmp_path):
    model, images, _ = trained
    model.score_threshold = 0.0
    path = tmp_path / "yolov2.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is YOLOv2 and loaded.score_threshold == 0.0 and not loaded.rescore
    np.testing.assert_array_equal(loaded.anchors, ANCHORS)
    for got, expected in zip(loaded(images)["classes"], model(images)["classes"]):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    before = loaded.predict(images, verbose=0)
    assert_padded_detections(before, 4, NUM_CLASSES, (64, 64))
    assert before["num_detections"].min() > 0
    # Scores: objectness times a class probability, below 1.
    assert before["scores"].max() < 1.0
    loaded.score_threshold, loaded.max_detections = 0.999, 7
    after = loaded.predict(images, verbose=0)
    assert after["boxes"].shape == (4, 7, 4) and after["num_detections"].sum() == 0


def test_builds_for_one_and_many_classes_at_any_multiple_of_32():
    for classes, backbone in ((1, "cspdarknet"), (5, "resnet18")):
        with keras.StatelessScope():  # the graph only
            model = yolov2(backbone, num_classes=classes, head_channels=16, passthrough_channels=8)
        raw = model.compute_output_spec(keras.KerasTensor((2, 96, 64, 3)))
        shapes = {key: [tuple(m.shape) for m in maps] for key, maps in raw.items()}
        assert shapes == {
            "boxes": [(2, 3, 2, 20)],
            "objectness": [(2, 3, 2, 5)],
            "classes": [(2, 3, 2, 5 * classes)],
        }
        np.testing.assert_allclose(model.anchors, np.array(VOC_ANCHORS, "float32"))
        assert model.decoder.box_encoding == "xyxy" and model.decoder.activation == "none"


def test_registered_variants():
    names = [n for n in kerasseg.zoo.list_models("yolov2_*") if "." not in n]
    assert names == ["yolov2_cspdarknet_n", "yolov2_cspdarknet_s", "yolov2_resnet18"]
    for name in names:
        entry = kerasseg.zoo.registry.registered(name)
        assert entry.family == "yolov2" and entry.task == "detection"
        assert entry.input_multiple == 32 and entry.default_num_classes == 20
    assert kerasseg.zoo.registry.registered("yolov2_resnet18").encoder == "resnet18"


def test_errors_name_the_argument(tiny):
    cases = [
        (lambda: yolov2(anchors=[10, 20]), "`anchors` must have shape (A, 2)"),
        (lambda: yolov2(anchors=[[10, 0]]), "`anchors` must hold positive, finite widths"),
        (lambda: yolov2(num_classes=0), "`num_classes` must be a positive integer"),
        (lambda: yolov2("resnet18", width=0.5), "`width` and `depth` apply to backbone="),
        (lambda: yolov2(encoder_weights="x.h5"), "`encoder_weights` and `encoder_trainable`"),
        (lambda: yolov2(input_shape=(100, 96, 3)), "Input height 100 is not divisible by 32"),
        (
            lambda: YOLOv2(tiny.network, NUM_CLASSES + 1, anchors=ANCHORS),
            "'classes' map must have 3 anchors x 4 = 12 channels (num_classes=4, 3 anchors), got 9",
        ),
        (
            lambda: YOLOv2(tiny.network, NUM_CLASSES, anchors=ANCHORS[:2]),
            "'boxes' map must have 2 anchors x 4 = 8 channels",
        ),
        (
            lambda: YOLOv2(
                tiny.network, NUM_CLASSES, ANCHORS, decoder=DetectionDecoder(NUM_CLASSES)
            ),
            "box_encoding='xyxy' and activation='none', got 'deltas' and 'sigmoid'",
        ),
        (
            lambda: YOLOv2(tiny.network, NUM_CLASSES, ANCHORS, ignore_iou=1.5),
            "`ignore_iou` must be a number in [0, 1], got 1.5",
        ),
    ]
    for build, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            build()
