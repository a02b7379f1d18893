"""Real data: short, seeded trainings on the ISBI 2012 membranes (24 train / 6 validation).

Each model trains from scratch (no pretrained weights can be downloaded in tests) on random
128x128 crops and is validated on the six held-out 512x512 slices. A model passes only when
its validation Dice beats, by `MARGIN`, the best no-learning rule: one global intensity
threshold (after an optional 1-pixel Gaussian blur) chosen on the training slices
(`tests.integration.baselines.threshold_baseline`, computed here on the same split).
"""

import json

import keras
import pytest

from kerasseg.data.masks import SegmentationFolder
from kerasseg.training import TrainConfig, evaluate_arrays, train_segmentation
from kerasseg.zoo.recipe_training import build_training_model
from tests.integration.baselines import threshold_baseline
from tests.support import require_shared_data

#: How much better than the no-learning baseline a trained model must be (validation Dice).
MARGIN = 0.05

CASES = {
    # model: (builder overrides, epochs, steps per epoch, learning rate). TernausNet and FPN
    # need 180-400 steps (8-6 minutes here) to pass the baseline: their zoo recipes
    # (unet11.isbi2012, fpn_resnet34.isbi2012) are those runs, with the measured scores.
    "unet": ({"filters": 16}, 2, 20, 2e-3),  # 0.72 measured (baseline 0.61)
}


@pytest.fixture(scope="module")
def isbi():
    data = require_shared_data("isbi2012-membrane")
    folder = SegmentationFolder(
        data / "images", data / "masks", channels=1, mask_values={0: 1, 255: 0}
    )
    assert len(folder) == 30
    return folder


@pytest.fixture(scope="module")
def baseline(isbi):
    """The validation Dice of the best global threshold chosen on slices 0-23."""
    dice, rule = threshold_baseline(*isbi.load(range(24)), *isbi.load(range(24, 30)))
    # Membranes are the dark pixels; the rule must have found that, and be a real baseline.
    assert rule["darker"] and 0.5 < dice < 0.7, (dice, rule)
    return dice


@pytest.mark.integration
@pytest.mark.parametrize("model", list(CASES))
def test_short_training_on_isbi_membranes(model, isbi, baseline, tmp_path):
    overrides, epochs, steps, learning_rate = CASES[model]
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
    assert dice >= baseline + MARGIN, (dice, baseline, history["val_dice"])
    assert history["val_dice"][-1] > history["val_dice"][0]
    images, masks = isbi.load(range(24, 30))
    fraction = masks.mean()
    assert 0.15 < fraction < 0.25
    assert dice > 2 * fraction / (1 + fraction) + 0.08  # above the trivial model's 0.33
    # The scores reproduce from the saved model.
    scores, _ = evaluate_arrays(keras.models.load_model(tmp_path / "model.keras"), images, masks, 1)
    assert scores["dice"] == pytest.approx(dice, abs=1e-6)
