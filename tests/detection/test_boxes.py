"""Box geometry: hand-worked values, torchvision parity (live), both implementations."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasseg.detection import boxes as kboxes
from kerasseg.detection import boxes_np
from tests.support import require_module


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


# Both implementations must give the same answers; each test runs on both.
IMPLEMENTATIONS = {
    "keras": lambda name: lambda *a, **k: _np(getattr(kboxes, name)(*a, **k)),
    "numpy": lambda name: getattr(boxes_np, name),
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def impl(request):
    return lambda name: IMPLEMENTATIONS[request.param](name)


def random_boxes(rng, shape, max_coord=100.0, max_size=40.0):
    corner = rng.uniform(0, max_coord, shape + (2,))
    size = rng.uniform(0.5, max_size, shape + (2,))
    return np.concatenate([corner, corner + size], axis=-1).astype(np.float32)


# ------------------------------------------------------------------ hand-worked values


def test_format_conversions_hand_worked(impl):
    convert = impl("convert_format")
    box = np.array([10.0, 20.0, 30.0, 60.0])  # x 10..30, y 20..60
    np.testing.assert_allclose(convert(box, "xyxy", "xywh"), [10, 20, 20, 40])
    np.testing.assert_allclose(convert(box, "xyxy", "cxcywh"), [20, 40, 20, 40])
    np.testing.assert_allclose(convert(box, "xyxy", "center_xywh"), [20, 40, 20, 40])
    np.testing.assert_allclose(convert(box, "xyxy", "yxyx"), [20, 10, 60, 30])
    # image 100 high, 200 wide
    np.testing.assert_allclose(
        convert(box, "xyxy", "rel_xyxy", image_shape=(100, 200)), [0.05, 0.2, 0.15, 0.6]
    )
    np.testing.assert_allclose(
        convert([0.05, 0.2, 0.1, 0.4], "rel_xywh", "xyxy", image_shape=(100, 200)), [10, 20, 30, 60]
    )
    np.testing.assert_allclose(
        convert([0.1, 0.4, 0.1, 0.4], "rel_cxcywh", "yxyx", image_shape=(100, 200)),
        [20, 10, 60, 30],
    )


def test_relative_conversion_per_image_sizes(impl):
    convert = impl("convert_format")
    boxes = np.array([[[10.0, 10, 20, 20]], [[10.0, 10, 20, 20]]])  # (2, 1, 4)
    sizes = np.array([[100.0, 200.0], [50.0, 40.0]])  # (B, 2) = (height, width)
    rel = convert(boxes, "xyxy", "rel_xyxy", image_shape=sizes)
    np.testing.assert_allclose(rel[0, 0], [0.05, 0.1, 0.1, 0.2])
    np.testing.assert_allclose(rel[1, 0], [0.25, 0.2, 0.5, 0.4])
    np.testing.assert_allclose(convert(rel, "rel_xyxy", "xyxy", image_shape=sizes), boxes)


def test_iou_and_giou_hand_worked(impl):
    a = np.array([[0.0, 0, 2, 2], [0, 0, 1, 1]])
    b = np.array([[1.0, 1, 3, 3], [2, 2, 3, 3], [0, 0, 2, 2]])
    iou = impl("pairwise_iou")(a, b)
    # [0,0,2,2] vs [1,1,3,3]: intersection 1, union 4 + 4 - 1 = 7; enclosing 3x3 = 9.
    # [0,0,2,2] vs [2,2,3,3] and [0,0,1,1] vs [1,1,3,3]: touching corners, union 5.
    # [0,0,1,1] vs [2,2,3,3]: disjoint, union 2, enclosing 9.
    # [0,0,1,1] vs [0,0,2,2]: intersection 1, union 4, enclosing = the larger box.
    expected_iou = [[1 / 7, 0, 1], [0, 0, 1 / 4]]
    np.testing.assert_allclose(iou, expected_iou, rtol=1e-6, atol=1e-7)
    giou = impl("pairwise_giou")(a, b)
    expected_giou = [[1 / 7 - 2 / 9, -4 / 9, 1], [-4 / 9, -7 / 9, 1 / 4]]
    np.testing.assert_allclose(giou, expected_giou, rtol=1e-6)
    np.testing.assert_allclose(impl("elementwise_iou")(a, b[:2]), [1 / 7, 0], rtol=1e-6)
    np.testing.assert_allclose(
        impl("elementwise_giou")(a, b[:2]), [1 / 7 - 2 / 9, -7 / 9], rtol=1e-6
    )


def test_degenerate_boxes_give_zero_not_nan(impl):
    point = np.array([[5.0, 5, 5, 5]])
    np.testing.assert_array_equal(impl("pairwise_iou")(point, point), [[0.0]])
    np.testing.assert_array_equal(impl("pairwise_giou")(point, point), [[0.0]])
    np.testing.assert_array_equal(impl("area")(np.array([[0.0, 0, 2, 3], [3, 3, 1, 1]])), [6, 0])


def test_clip_and_validity(impl):
    boxes = np.array([[-5.0, -5, 10, 10], [50, 20, 300, 90], [250, 0, 260, 10], [1, 1, 1, 5]])
    clipped = impl("clip_to_image")(boxes, (80, 200))  # height 80, width 200
    np.testing.assert_allclose(
        clipped, [[0, 0, 10, 10], [50, 20, 200, 80], [200, 0, 200, 10], [1, 1, 1, 5]]
    )
    valid = impl("is_valid")(clipped)
    np.testing.assert_array_equal(np.asarray(valid, bool), [True, True, False, False])
    np.testing.assert_array_equal(
        np.asarray(
            impl("is_valid")(np.array([[0, 0, 3, 3], [0, 0, np.nan, 3]]), min_size=2.5), bool
        ),
        [True, False],
    )
    # per-image bounds for a batch
    batch = np.array([[[-1.0, -1, 150, 150]], [[-1.0, -1, 150, 150]]])
    per_image = impl("clip_to_image")(batch, np.array([[100.0, 120.0], [50.0, 60.0]]))
    np.testing.assert_allclose(per_image[:, 0], [[0, 0, 120, 100], [0, 0, 60, 50]])


def test_encode_hand_worked_and_clip(impl):
    anchor = np.array([0.0, 0, 10, 20])  # centre (5, 10), w 10, h 20
    box = np.array([5.0, 10, 25, 30])  # centre (15, 20), w 20, h 20
    deltas = impl("encode")(box, anchor, variances=(0.1, 0.1, 0.2, 0.2))
    np.testing.assert_allclose(
        deltas, [(15 - 5) / 10 / 0.1, (20 - 10) / 20 / 0.1, math.log(2) / 0.2, 0.0], rtol=1e-6
    )
    np.testing.assert_allclose(
        impl("decode")(deltas, anchor, variances=(0.1, 0.1, 0.2, 0.2)), box, rtol=1e-5
    )
    # An absurd size delta is clipped to log(1000/16): the box is 62.5x its anchor.
    wild = impl("decode")(np.array([0.0, 0, 50, 50]), anchor)
    np.testing.assert_allclose(wild[2] - wild[0], 10 * 1000 / 16, rtol=1e-5)
    assert np.all(np.isfinite(impl("decode")(np.array([0.0, 0, 1e4, -1e4]), anchor)))
    unclipped = impl("decode")(np.array([0.0, 0, 5, 0]), anchor, clip=None)
    np.testing.assert_allclose(unclipped[2] - unclipped[0], 10 * math.exp(5), rtol=1e-5)


def test_round_trip_batched(impl):
    rng = np.random.default_rng(3)
    anchors = random_boxes(rng, (50,))
    gt = random_boxes(rng, (2, 50))
    for variances in [(1.0, 1.0, 1.0, 1.0), (0.1, 0.1, 0.2, 0.2)]:
        deltas = impl("encode")(gt, anchors, variances=variances)
        assert deltas.shape == (2, 50, 4)
        np.testing.assert_allclose(
            impl("decode")(deltas, anchors, variances=variances), gt, atol=2e-3
        )


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="Unknown box format 'xyhw'"):
        kboxes.convert_format(np.zeros((1, 4)), "xyhw", "xyxy")
    with pytest.raises(
        ValueError, match=r"`image_shape` \(height, width\) is required to convert relative boxes"
    ):
        boxes_np.convert_format(np.zeros((1, 4)), "rel_xyxy", "xyxy")
    with pytest.raises(ValueError, match=r"`boxes1` must have shape \(..., 4\)"):
        kboxes.pairwise_iou(np.zeros((3, 5)), np.zeros((3, 4)))
    with pytest.raises(
        ValueError,
        match=r"`variances` must be 4 positive numbers \(vx, vy, vw, vh\), got \(0\.1, 0\.1, 0\.2\)",
    ):
        boxes_np.encode(np.zeros((1, 4)), np.ones((1, 4)), variances=(0.1, 0.1, 0.2))
    with pytest.raises(
        ValueError,
        match=r"`detections`.*x_max >= x_min.*box \(1,\) is \[5\.0, 5\.0, 2\.0, 9\.0\].*'xywh'",
    ):
        boxes_np.check_boxes([[0, 0, 1, 1], [5, 5, 2, 9]], name="detections")
    with pytest.raises(
        ValueError,
        match=r"`boxes` has a non-finite box at index \(0,\): \[0\.0, 0\.0, inf, 1\.0\]\.",
    ):
        boxes_np.check_boxes([[0, 0, np.inf, 1]])
    assert boxes_np.check_boxes([[0, 0, 0, 1]]).dtype == np.float64


def test_keras_ops_run_in_a_traced_graph_with_dynamic_shapes():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("graph tracing check is TensorFlow-specific")
    spec = tf.TensorSpec((None, None, 4), tf.float32)

    @tf.function(input_signature=[spec, spec])
    def fn(a, b):
        return kboxes.pairwise_giou(a, b), kboxes.decode(kboxes.encode(a, b), b)

    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, (2, 7)), random_boxes(rng, (2, 7))
    giou, round_trip = fn(a, b)
    assert giou.shape == (2, 7, 7)
    np.testing.assert_allclose(giou.numpy(), boxes_np.pairwise_giou(a, b), atol=1e-5)
    np.testing.assert_allclose(round_trip.numpy(), a, atol=1e-3)


# ------------------------------------------------------------------ torchvision parity


@pytest.mark.parity
def test_parity_with_torchvision_ops(impl):
    torch = require_module("torch")
    tv_ops = require_module("torchvision.ops")
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, (40,)), random_boxes(rng, (30,))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_allclose(
        impl("pairwise_iou")(a, b), tv_ops.box_iou(ta, tb).numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        impl("pairwise_giou")(a, b), tv_ops.generalized_box_iou(ta, tb).numpy(), atol=1e-6
    )
    np.testing.assert_allclose(impl("area")(a), tv_ops.box_area(ta).numpy(), rtol=1e-5)
    for src in ("xyxy", "xywh", "cxcywh"):
        for dst in ("xyxy", "xywh", "cxcywh"):
            source = tv_ops.box_convert(ta, "xyxy", src).numpy()
            expected = tv_ops.box_convert(torch.from_numpy(source), src, dst).numpy()
            np.testing.assert_allclose(
                impl("convert_format")(source, src, dst), expected, atol=1e-4
            )
    np.testing.assert_allclose(
        impl("clip_to_image")(a * 1.5 - 20, (90, 110)),
        tv_ops.clip_boxes_to_image(torch.from_numpy(a * 1.5 - 20), (90, 110)).numpy(),
        atol=1e-5,
    )


@pytest.mark.parity
def test_batched_pairwise_equals_per_image_torchvision(impl):
    torch = require_module("torch")
    tv_ops = require_module("torchvision.ops")
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, (3, 11)), random_boxes(rng, (3, 9))
    iou = impl("pairwise_iou")(a, b)
    giou = impl("pairwise_giou")(a, b)
    assert iou.shape == (3, 11, 9)
    for i in range(3):
        ta, tb = torch.from_numpy(a[i]), torch.from_numpy(b[i])
        np.testing.assert_allclose(iou[i], tv_ops.box_iou(ta, tb).numpy(), atol=1e-6)
        np.testing.assert_allclose(giou[i], tv_ops.generalized_box_iou(ta, tb).numpy(), atol=1e-6)


@pytest.mark.parity
def test_box_coder_parity_with_torchvision(impl):
    torch = require_module("torch")
    tv_utils = require_module("torchvision.models.detection._utils")
    rng = np.random.default_rng(2)
    anchors, gt = random_boxes(rng, (64,)), random_boxes(rng, (64,))
    coder = tv_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    expected = coder.encode_single(torch.from_numpy(gt), torch.from_numpy(anchors)).numpy()
    variances = (0.1, 0.1, 0.2, 0.2)
    deltas = impl("encode")(gt, anchors, variances=variances)
    np.testing.assert_allclose(deltas, expected, rtol=1e-4, atol=1e-4)
    # Decode random (and some wild, clipped) deltas.
    raw = rng.normal(0, 2, (64, 4)).astype(np.float32)
    raw[:5, 2:] = 80.0
    expected_boxes = coder.decode_single(torch.from_numpy(raw), torch.from_numpy(anchors)).numpy()
    np.testing.assert_allclose(
        impl("decode")(raw, anchors, variances=variances), expected_boxes, rtol=1e-4, atol=1e-2
    )
    # The class form agrees too.
    keras_coder = kboxes.BoxCoder.from_weights((10.0, 10.0, 5.0, 5.0))
    np.testing.assert_allclose(_np(keras_coder.encode(gt, anchors)), expected, rtol=1e-4, atol=1e-4)
    restored = kboxes.BoxCoder.from_config(keras_coder.get_config())
    np.testing.assert_allclose(
        _np(restored.decode(raw, anchors)), expected_boxes, rtol=1e-4, atol=1e-2
    )
