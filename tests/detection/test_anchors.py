"""Anchor generation: hand-worked grids, torchvision parity (AnchorGenerator, SSD boxes)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from kerasseg.detection.anchors import AnchorGenerator
from tests.support import require_module


def test_single_level_grid_hand_worked():
    gen = AnchorGenerator.from_sizes([16], aspect_ratios=[1.0], strides=[16])
    anchors = gen.numpy((32, 48))  # feature map 2 x 3
    # (y, x) order: row 0 = x 0, 16, 32; row 1 the same shifted by 16 in y.
    centres = [(0, 0), (16, 0), (32, 0), (0, 16), (16, 16), (32, 16)]
    expected = [[cx - 8, cy - 8, cx + 8, cy + 8] for cx, cy in centres]
    np.testing.assert_allclose(anchors, expected)
    centred = AnchorGenerator.from_sizes([16], aspect_ratios=[1.0], strides=[16], offset=0.5)
    np.testing.assert_allclose(centred.numpy((32, 48)), np.asarray(expected) + 8)


def test_anchor_order_ratio_major_then_size():
    gen = AnchorGenerator.from_sizes([[8, 16]], aspect_ratios=[0.25, 1.0], strides=[32])
    base = gen.base_anchors(0)
    # ratio 0.25 (h/w): w = s/0.5, h = s*0.5 ; sizes 8 then 16; then ratio 1.
    expected_wh = [(16, 4), (32, 8), (8, 8), (16, 16)]
    np.testing.assert_allclose(base, [[-w / 2, -h / 2, w / 2, h / 2] for w, h in expected_wh])
    anchors = gen.numpy((64, 64))  # 2x2 grid x 4 anchors, (y, x, anchor)
    assert anchors.shape == (16, 4)
    np.testing.assert_allclose(anchors[4:8], base + [32, 0, 32, 0])  # cell (y=0, x=1)
    np.testing.assert_allclose(anchors[8:12], base + [0, 32, 0, 32])  # cell (y=1, x=0)


def test_multi_level_order_and_counts():
    gen = AnchorGenerator.retinanet()
    assert gen.num_anchors_per_location() == [9] * 5
    assert gen.feature_sizes((100, 130)) == [(13, 17), (7, 9), (4, 5), (2, 3), (1, 2)]
    levels = gen.per_level((100, 130))
    sizes = [13 * 17, 7 * 9, 4 * 5, 2 * 3, 1 * 2]
    assert [int(level.shape[0]) for level in levels] == [9 * s for s in sizes]
    all_anchors = keras.ops.convert_to_numpy(gen((100, 130)))
    np.testing.assert_allclose(all_anchors[: 9 * sizes[0]], keras.ops.convert_to_numpy(levels[0]))
    # P3: base size 32 x scales (1, 2^(1/3), 2^(2/3)) x 3 ratios; the ratio keeps the area.
    areas = (all_anchors[:9, 2] - all_anchors[:9, 0]) * (all_anchors[:9, 3] - all_anchors[:9, 1])
    np.testing.assert_allclose(
        np.sort(areas),
        np.sort(np.repeat([32**2, 32**2 * 2 ** (2 / 3), 32**2 * 2 ** (4 / 3)], 3)),
        rtol=1e-5,
    )


def test_config_round_trip_and_errors():
    gen = AnchorGenerator.ssd([[2], [2, 3]], strides=[8, 16])
    restored = AnchorGenerator.from_config(gen.get_config())
    np.testing.assert_allclose(restored.numpy((64, 96)), gen.numpy((64, 96)))
    with pytest.raises(ValueError, match="`strides` must have one entry per level"):
        AnchorGenerator.from_sizes([32, 64], strides=[8])
    with pytest.raises(ValueError, match="`aspect_ratios` must be one sequence for all levels"):
        AnchorGenerator.from_sizes([32, 64], aspect_ratios=[[1.0], [1.0], [2.0]])
    with pytest.raises(
        ValueError, match=r"This generator has no `strides`; pass `feature_sizes` explicitly\."
    ):
        AnchorGenerator([[(4, 4)]])((32, 32))
    with pytest.raises(ValueError, match=r"`shapes\[0\]` must be positive"):
        AnchorGenerator([[(4, 0)]])


def test_dynamic_image_size_in_a_traced_graph():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow-specific tracing check")
    import tensorflow as tf

    gen = AnchorGenerator.from_sizes([32, 64], strides=[8, 16], offset=0.5)

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3))])
    def anchors_for(images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        feature_sizes = [(-(-height // s), -(-width // s)) for s in (8, 16)]  # ceil
        return gen((height, width), feature_sizes)

    traced = anchors_for(tf.zeros((1, 40, 56, 3)))
    np.testing.assert_allclose(traced.numpy(), gen.numpy((40, 56)))


@pytest.mark.parity
@pytest.mark.parametrize(
    "sizes, ratios, strides",
    [
        # RetinaNet (torchvision.models.detection.retinanet): truncated 2^(k/3) sizes.
        (
            tuple(
                (x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3)))
                for x in [32, 64, 128, 256, 512]
            ),
            ((0.5, 1.0, 2.0),) * 5,
            (8, 16, 32, 64, 128),
        ),
        # Faster R-CNN with FPN.
        (((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5, (4, 8, 16, 32, 64)),
    ],
)
def test_parity_with_torchvision_anchor_generator(sizes, ratios, strides):
    torch = require_module("torch")
    anchor_utils = require_module("torchvision.models.detection.anchor_utils")
    image_list_mod = require_module("torchvision.models.detection.image_list")
    height, width = 256, 384
    feature_sizes = [(height // s, width // s) for s in strides]
    reference = anchor_utils.AnchorGenerator(sizes, ratios)
    images = image_list_mod.ImageList(torch.zeros(1, 3, height, width), [(height, width)])
    features = [torch.zeros(1, 1, h, w) for h, w in feature_sizes]
    expected = reference(images, features)[0].numpy()

    ours = AnchorGenerator.from_sizes(sizes, ratios, strides=strides, round_base_anchors=True)
    assert ours.num_anchors_per_location() == reference.num_anchors_per_location()
    np.testing.assert_allclose(ours.numpy((height, width)), expected, atol=1e-4)
    # Without torchvision's rounding the anchors differ by at most half a pixel.
    unrounded = AnchorGenerator.from_sizes(sizes, ratios, strides=strides).numpy((height, width))
    assert 0 < np.abs(unrounded - expected).max() <= 0.5 + 1e-4


@pytest.mark.parity
@pytest.mark.parametrize("use_steps", [True, False])
def test_parity_with_torchvision_ssd_default_boxes(use_steps):
    torch = require_module("torch")
    anchor_utils = require_module("torchvision.models.detection.anchor_utils")
    image_list_mod = require_module("torchvision.models.detection.image_list")
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    if use_steps:  # SSD300 VGG16, torchvision's configuration
        height = width = 300
        grid = [38, 19, 10, 5, 3, 1]
        feature_sizes = [(g, g) for g in grid]
        steps = [8, 16, 32, 64, 100, 300]
        kwargs = {"scales": [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], "steps": steps}
    else:  # non-square image, scales from min/max ratio, strides from the grid
        height, width = 120, 200
        feature_sizes = [(15, 25), (8, 13), (4, 7), (2, 4), (1, 2), (1, 1)]
        steps = None
        kwargs = {"min_ratio": 0.2, "max_ratio": 0.95}
    reference = anchor_utils.DefaultBoxGenerator(ratios, **kwargs)
    images = image_list_mod.ImageList(torch.zeros(1, 3, height, width), [(height, width)])
    features = [torch.zeros(1, 1, h, w) for h, w in feature_sizes]
    expected = reference(images, features)[0].numpy()

    ours = AnchorGenerator.ssd(
        ratios,
        scales=kwargs.get("scales"),
        min_ratio=kwargs.get("min_ratio", 0.15),
        max_ratio=kwargs.get("max_ratio", 0.9),
        strides=steps,
    )
    assert ours.num_anchors_per_location() == reference.num_anchors_per_location()
    np.testing.assert_allclose(ours.numpy((height, width), feature_sizes), expected, atol=2e-3)
    assert math.isclose(
        float(expected.shape[0]),
        sum(h * w * a for (h, w), a in zip(feature_sizes, ours.num_anchors_per_location())),
    )
