"""Real data: short, seeded trainings on the ISBI 2012 membranes (24 train / 6 validation).

Each model trains from scratch (no pretrained weights can be downloaded in tests) on random
128x128 crops and is validated on the six held-out 512x512 slices. The thresholds are the
stated targets of these short runs (about a minute each on 2 cores), set below the scores
measured with these seeds (U-Net 0.77, TernausNet 0.58, FPN 0.50) to leave room for other
CPUs' arithmetic; predicting "membrane" everywhere scores about 0.33. FPN predicts at a
quarter of the resolution, which costs it most on thin membranes, and its ResNet34 learns
slowest from scratch.
"""

import json

import keras
import pytest

from kerasseg.data.masks import SegmentationFolder
from kerasseg.training import TrainConfig, evaluate_arrays, train_segmentation
from kerasseg.zoo.recipe_training import build_training_model
from tests.support import require_shared_data

CASES = {
    # model: (builder overrides, epochs, steps per epoch, learning rate, minimum validation Dice)
    "unet": ({"filters": 16}, 3, 20, 2e-3, 0.70),
    "unet11": ({}, 2, 12, 3e-4, 0.50),
    "fpn_resnet34": ({}, 3, 20, 3e-4, 0.42),
}


@pytest.fixture(scope="module")
def isbi():
    data = require_shared_data("isbi2012-membrane")
    folder = SegmentationFolder(
        data / "images", data / "masks", channels=1, mask_values={0: 1, 255: 0}
    )
    assert len(folder) == 30
    return folder


@pytest.mark.integration
@pytest.mark.parametrize("model", list(CASES))
def test_short_training_on_isbi_membranes(model, isbi, tmp_path):
    overrides, epochs, steps, learning_rate, min_dice = CASES[model]
    config = TrainConfig(
        model=model,
        model_kwargs=overrides,
        epochs=epochs,
        steps_per_epoch=steps,
        batch_size=8,
        crop_size=128,
        learning_rate=learning_rate,
        seed=0,
    )
    results = train_segmentation(
        build_training_model(config, isbi.channels),
        isbi,
        train_indices=range(24),
        val_indices=range(24, 30),
        config=config,
        output_dir=tmp_path,
        verbose=0,
    )
    history = json.loads((tmp_path / "history.json").read_text())
    dice = results["validation"]["dice"]
    assert dice >= min_dice, history["val_dice"]
    assert history["val_dice"][-1] > history["val_dice"][0]
    images, masks = isbi.load(range(24, 30))
    fraction = masks.mean()
    assert 0.15 < fraction < 0.25
    assert dice > 2 * fraction / (1 + fraction) + 0.08  # above the trivial model's 0.33
    # The scores reproduce from the saved model.
    scores, _ = evaluate_arrays(keras.models.load_model(tmp_path / "model.keras"), images, masks, 1)
    assert scores["dice"] == pytest.approx(dice, abs=1e-6)
