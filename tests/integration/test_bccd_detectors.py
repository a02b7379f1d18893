"""One detector of each family overfits four real BCCD images (blood cells, VOC XML):
trained with ``compile(optimizer)`` + ``fit`` on the raw padded boxes, it must find them
again (VOC07 AP50 on those images) — well above the 0 of an untrained detector.

The thresholds sit below what each family measured at these settings (in brackets in
`FAMILIES`). Batch norm follows the batch statistics faster than the detectors' defaults
(momentum 0.5) so that ``predict``'s running statistics are usable after a few dozen steps.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import kerasseg
from kerasseg.data import load_voc
from kerasseg.metrics.detection.evaluator import evaluate
from tests.detection.support import assert_padded_detections
from tests.support import require_shared_data

SIZE = (192, 256)  # BCCD's 480 x 640, letterboxed
#: name, builder arguments, fit steps, Adam learning rate, AP50 threshold [measured].
FAMILIES = [
    ("yolov8_n", {}, 40, 2e-3, 0.45),  # [0.63]
    ("yolov2_cspdarknet_n", {}, 30, 3e-3, 0.45),  # [0.67]
    ("ssd_resnet18", {}, 40, 1e-3, 0.45),  # [0.63]
    ("retinanet_resnet18", {"channels": 64, "head_convs": 2}, 40, 1e-3, 0.3),  # [0.44]
]


@pytest.fixture(scope="module")
def bccd_batch():
    root = require_shared_data("bccd") / "BCCD"
    annotations = load_voc(root, "train")
    assert annotations.class_names == ["Platelets", "RBC", "WBC"]
    dataset = annotations.to_dataset(image_size=SIZE, letterbox=True, batch_size=4, max_boxes=40)
    images, targets = next(iter(dataset))
    targets = {key: np.asarray(targets[key]) for key in ("boxes", "classes")}
    assert (targets["classes"] >= 0).sum() > 50  # dozens of cells to find
    return np.asarray(images), targets


@pytest.mark.parametrize("name, kwargs, steps, learning_rate, threshold", FAMILIES)
def test_detector_overfits_four_bccd_images(
    bccd_batch, name, kwargs, steps, learning_rate, threshold
):
    images, targets = bccd_batch
    keras.utils.set_random_seed(0)
    model = kerasseg.zoo.get(name, weights=None, num_classes=3, **kwargs)
    for layer in model.network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    history = model.fit(images, targets, epochs=steps, batch_size=4, verbose=0).history
    # fit logs the loss and its parts, which sum to it.
    assert set(history) == {"loss", *model.LOSS_PARTS}
    parts = np.sum([history[part] for part in model.LOSS_PARTS], axis=0)
    np.testing.assert_allclose(parts, history["loss"], rtol=1e-4)
    # It falls (YOLOv8's first rises: it is divided by the sum of the target scores, which
    # grow as the predictions align with the objects).
    assert np.all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < 0.7 * max(history["loss"]), history["loss"]
    model.score_threshold = 0.001
    detections = model.predict(images, verbose=0)
    assert_padded_detections(
        detections, 4, 3, SIZE, max_detections=model.max_detections, score_threshold=0.001
    )
    ap50 = evaluate(targets, detections, "voc07", num_classes=3).map
    print(f"{name}: VOC07 AP50 {ap50:.3f} after {steps} steps")
    assert ap50 > threshold
