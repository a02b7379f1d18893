"""Detection pictures: boxes drawn on images, precision-recall plots."""

from __future__ import annotations

import numpy as np
import pytest

from kerasseg.metrics.detection import evaluate
from kerasseg.visualize import class_color, draw_boxes, plot_pr_curves
from tests.metrics.detection_cases import make_coco_case


def test_draw_boxes_paints_outlines_in_class_colours():
    image = np.full((60, 80), 128, np.uint8)
    boxes = np.array([[10, 20, 40, 50], [50, 5, 75, 30], [0, 0, 5, 5]], float)
    out = draw_boxes(
        image,
        boxes,
        [0, 2, -1],
        scores=[0.9, 0.4, 0.99],
        class_names=["cat", "dog", "bird"],
        line_width=2,
    )
    assert out.dtype == np.uint8 and out.shape == (60, 80, 3)
    # The left edge of box 0 (below its label) and the bottom edge of box 1.
    assert tuple(out[40, 10]) == class_color(0)
    assert tuple(out[30, 60]) == class_color(2)
    # Inside the boxes, away from labels: untouched grey; the padding box (-1) is not drawn.
    assert tuple(out[45, 25]) == (128, 128, 128)
    assert tuple(out[2, 2]) == (128, 128, 128)
    # The label of box 0 sits above it, filled with the class colour.
    assert np.any(np.all(out[8:20, 10:40] == class_color(0), axis=-1))


def test_draw_boxes_score_threshold_and_errors():
    image = np.zeros((30, 30, 3), np.uint8)
    out = draw_boxes(image, [[5, 5, 25, 25]], [1], scores=[0.2], score_threshold=0.5)
    assert not out.any()
    with pytest.raises(ValueError, match=r"`classes` must have one entry per box \(1\); got 2"):
        draw_boxes(image, [[5, 5, 25, 25]], [1, 2])
    with pytest.raises(ValueError, match=r"`scores` must have one entry per box \(1\); got 2"):
        draw_boxes(image, [[5, 5, 25, 25]], [1], scores=[0.1, 0.2])


@pytest.mark.parametrize("protocol", ["coco", "voc"])
def test_plot_pr_curves_draws_one_line_per_class_with_ground_truth(protocol):
    ground_truth, results = make_coco_case(2, num_images=12, quality=0.8)
    result = evaluate(ground_truth, results, protocol=protocol, progress=False)
    figure = plot_pr_curves(result)
    ax = figure.axes[0]
    with_gt = [c for c, n in zip(result.class_ids, result.num_ground_truth) if n > 0]
    assert len(ax.lines) == len(with_gt)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("class") and "AP" in labels[0]
    _x, y = ax.lines[0].get_data()
    assert np.all((0 <= np.asarray(y)) & (np.asarray(y) <= 1))
    one = plot_pr_curves(result, class_ids=[with_gt[0]], title="one")
    assert len(one.axes[0].lines) == 1 and one.axes[0].get_title() == "one"
