"""Real data: a short, seeded U-Net training on the ISBI 2012 membranes (24 train / 6 val)."""

import json

import pytest

from kerasseg.data.masks import SegmentationFolder
from kerasseg.training import TrainConfig, evaluate_arrays, train_segmentation
from tests.support import require_shared_data

# Stated threshold for this short run (3 x 20 steps of 8 crops of 128x128, about a minute
# on 2 cores). Predicting "membrane" everywhere scores 0.33 on these slices; the demo's
# full budget reaches about 0.80.
MIN_VALIDATION_DICE = 0.70


@pytest.mark.integration
def test_short_unet_training_on_isbi_membranes(tmp_path):
    data = require_shared_data("isbi2012-membrane")
    folder = SegmentationFolder(data / "images", data / "masks", channels=1, mask_values={0: 1, 255: 0})
    assert len(folder) == 30
    config = TrainConfig(
        model_kwargs={"filters": 16},
        epochs=3,
        steps_per_epoch=20,
        batch_size=8,
        crop_size=128,
        learning_rate=2e-3,
        seed=0,
    )
    results = train_segmentation(
        folder, train_indices=range(24), val_indices=range(24, 30), config=config, output_dir=tmp_path, verbose=0
    )
    history = json.loads((tmp_path / "history.json").read_text())
    assert results["validation"]["dice"] >= MIN_VALIDATION_DICE, history["val_dice"]
    assert history["val_dice"][-1] > history["val_dice"][0]
    # The membrane fraction of the validation slices, and the score of the trivial model.
    images, masks = folder.load(range(24, 30))
    fraction = masks.mean()
    assert 0.15 < fraction < 0.25
    assert results["validation"]["dice"] > 2 * fraction / (1 + fraction) + 0.3
    # Scores reproduce from the saved model.
    import keras

    scores, _ = evaluate_arrays(keras.models.load_model(tmp_path / "model.keras"), images, masks, 1)
    assert scores["dice"] == pytest.approx(results["validation"]["dice"], abs=1e-6)
