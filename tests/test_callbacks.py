"""MeanAveragePrecisionCallback inside a real ``model.fit`` (the acceptance test)."""

from __future__ import annotations

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasseg.callbacks import MeanAveragePrecisionCallback
from kerasseg.metrics.detection import evaluate
from tests import detection_models as dm

NUM_VAL = 6
# Detection quality per epoch (0 = perfect): better, best, then worse and worse.
QUALITY = [2, 0, 3, 4, 5, 6, 7, 8]


class SwapDetections(keras.callbacks.Callback):
    """Before each epoch, loads that epoch's detections into the model's lookup table."""

    def __init__(self, tables):
        super().__init__()
        self.tables = tables

    def on_epoch_begin(self, epoch, logs=None):
        dm.set_detections(self.model, self.tables[epoch])


def _fit(callbacks, epochs, val_width=8):
    model = dm.lookup_model(NUM_VAL, width=val_width)
    model.compile(optimizer="sgd", loss={"dummy": "mse"})
    x = np.arange(NUM_VAL, dtype=np.int32)[:, None]
    return model, model.fit(
        x,
        {"dummy": np.zeros((NUM_VAL, 1), np.float32)},
        epochs=epochs,
        batch_size=3,
        verbose=0,
        callbacks=callbacks,
    )


def test_logged_map_drives_history_csv_and_early_stopping(tmp_path):
    gt = dm.ground_truth(NUM_VAL)
    tables = [dm.detections(gt, q) for q in QUALITY]
    expected = [
        evaluate(gt, dm.unpack(t), num_classes=dm.NUM_CLASSES, progress=False) for t in tables
    ]
    maps = [r.map for r in expected]
    assert maps[1] == pytest.approx(1.0) and maps[1] > maps[0] > maps[2] > maps[3]

    x_val = np.arange(NUM_VAL, dtype=np.int32)[:, None]
    map_callback = MeanAveragePrecisionCallback(
        (x_val, gt),
        protocol="coco",
        num_classes=dm.NUM_CLASSES,
        batch_size=4,
        pr_curve_dir=tmp_path / "pr",
    )
    csv_path = tmp_path / "log.csv"
    _, history = _fit(
        [
            SwapDetections(tables),
            map_callback,
            keras.callbacks.EarlyStopping(monitor="val_map", mode="max", patience=2),
            keras.callbacks.CSVLogger(str(csv_path)),
        ],
        epochs=len(QUALITY),
    )
    # Best at epoch 1, no improvement at epochs 2 and 3 -> stops after 4 of 8 epochs.
    assert history.epoch == [0, 1, 2, 3]
    np.testing.assert_array_equal(history.history["val_map"], maps[:4])
    for key, index in (("val_map50", 1), ("val_map75", 2), ("val_mar100", 8)):
        np.testing.assert_array_equal(history.history[key], [r.stats[index] for r in expected[:4]])
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["val_map"]) for row in rows] == maps[:4]
    assert sorted(p.name for p in (tmp_path / "pr").iterdir()) == [
        f"pr_curves_epoch{e:03d}.png" for e in range(1, 5)
    ]
    assert map_callback.last_result.map == maps[3]


def test_every_and_dataset_input_and_voc():
    gt = dm.ground_truth(NUM_VAL, seed=3)
    tables = [dm.detections(gt, q, seed=5) for q in QUALITY[:5]]
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.arange(NUM_VAL, dtype=np.int32)[:, None], gt)
    ).batch(4)
    callback = MeanAveragePrecisionCallback(
        dataset,
        every=2,
        protocol="voc07",
        num_classes=dm.NUM_CLASSES,
        log_per_class=True,
        class_names=["cat", "dog", "bird"],
        prefix="v_",
    )
    _, history = _fit([SwapDetections(tables), callback], epochs=5)
    # Evaluated after epochs 2 and 4 and after the last one (5): indices 1, 3, 4.
    expected = {
        e: evaluate(
            gt, dm.unpack(tables[e]), protocol="voc07", num_classes=dm.NUM_CLASSES, progress=False
        )
        for e in (1, 3, 4)
    }
    # History appends a key's value for each epoch that logged it.
    assert history.history["v_map"] == [expected[e].map for e in (1, 3, 4)]
    assert len(history.history["loss"]) == 5
    assert history.history["v_ap_dog"] == [expected[e].per_class_ap[1] for e in (1, 3, 4)]


def test_predict_fn_and_packed_output():
    gt = dm.ground_truth(4, seed=9)
    table = dm.detections(gt, 1, seed=2)
    model = dm.packed_model(4)
    dm.set_detections(model, table)
    calls = []

    def predict(m, images):
        calls.append(len(images))
        return m.predict_on_batch(images)  # packed (B, N, 6)

    callback = MeanAveragePrecisionCallback(
        (np.arange(4, dtype=np.int32)[:, None], gt),
        predict_fn=predict,
        batch_size=3,
        num_classes=dm.NUM_CLASSES,
    )
    callback.set_model(model)
    result = callback.evaluate()
    assert calls == [3, 1]
    direct = evaluate(gt, dm.unpack(table), num_classes=dm.NUM_CLASSES, progress=False)
    assert result.map == direct.map


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`every` must be a positive integer; got 0"):
        MeanAveragePrecisionCallback(None, every=0)
    with pytest.raises(
        ValueError, match=r"`protocol` must be one of \(.coco., .voc07., .voc.\); got .voc2012."
    ):
        MeanAveragePrecisionCallback(None, protocol="voc2012")
    callback = MeanAveragePrecisionCallback([(np.zeros((1, 1)), "not ground truth")])
    callback.set_model(dm.packed_model(1))
    with pytest.raises(ValueError, match="ground truth in `val_data`"):
        callback.evaluate()
