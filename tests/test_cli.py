"""The `kerasseg` command line, end to end on tiny synthetic data."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

import kerasseg
from kerasseg.cli import _parse_indices, _parse_mask_values, main
from kerasseg.segmentation.inference import predict_padded
from tests.support import cli_error

TINY = [
    "--epochs",
    "2",
    "--steps-per-epoch",
    "2",
    "--size",
    "32",
    "--batch-size",
    "2",
    "--filters",
    "4",
    "--quiet",
]


def test_demo_on_synthetic_data_writes_all_outputs(tmp_path, capsys):
    output = tmp_path / "demo"
    assert (
        main(["demo", "--synthetic", "--only", "segmentation", "--output", str(output), *TINY]) == 0
    )
    printed = capsys.readouterr().out
    assert "synthetic shapes set" in printed
    assert "epoch 1/2: validation Dice (shapes)" in printed and "epoch 2/2" in printed
    for name in ("model.keras", "history.csv", "history.json", "results.json"):
        assert (output / name).is_file(), name
    assert len(list((output / "overlays").glob("*.png"))) == 6
    results = json.loads((output / "results.json").read_text())
    assert set(results["validation"]) == {"dice", "jaccard", "cosine"}
    assert all(0.0 <= v <= 1.0 for v in results["validation"].values())
    history = json.loads((output / "history.json").read_text())
    assert len(history["val_dice"]) == 2
    # The saved model is self-contained and its scores reproduce from the files.
    model = keras.models.load_model(output / "model.keras")
    folder = kerasseg.data.SegmentationFolder(
        output / "synthetic-data" / "images",
        output / "synthetic-data" / "masks",
        channels=1,
        mask_values={0: 0, 255: 1},
    )
    images, masks = folder.load(range(24, 30))
    dice = kerasseg.metrics.Dice()
    dice.update_state(masks, model.predict(images, verbose=0))
    assert float(dice.result()) == pytest.approx(results["validation"]["dice"], abs=1e-6)
    overlay = np.asarray(Image.open(next((output / "overlays").glob("*.png"))))
    assert overlay.shape == (256, 3 * 256 + 8, 3)


def test_demo_rejects_a_data_folder_without_images_and_masks(tmp_path, capsys):
    with cli_error(capsys, "must contain images/ and masks/"):
        main(["demo", "--data", str(tmp_path), "--output", str(tmp_path / "o"), *TINY])


def _write_folder(root, count=6, size=32):
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for index in range(count):
        image = rng.integers(0, 256, (size, size), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"{index}.png")
        Image.fromarray(np.where(image > 128, 255, 0).astype(np.uint8)).save(
            root / "masks" / f"{index}.png"
        )


def test_train_evaluate_predict_on_a_folder(tmp_path, capsys):
    _write_folder(tmp_path)
    folder_args = [
        "--images",
        str(tmp_path / "images"),
        "--masks",
        str(tmp_path / "masks"),
        "--mask-values",
        "0:0,255:1",
        "--channels",
        "1",
    ]
    run = tmp_path / "run"
    assert main(["train", *folder_args, "--output", str(run), "--val-indices", "4-5", *TINY]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["validation_images"] == ["4", "5"]
    assert results["train_images"] == ["0", "1", "2", "3"]
    capsys.readouterr()

    scores_file = tmp_path / "scores.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(run / "model.keras"),
                *folder_args,
                "--indices",
                "4-5",
                "--json",
                str(scores_file),
            ]
        )
        == 0
    )
    scores = json.loads(scores_file.read_text())
    assert scores["dice"] == pytest.approx(results["validation"]["dice"], abs=1e-6)

    # predict pads a size that is not a multiple of 16 and writes masks of the input size.
    new = tmp_path / "new"
    new.mkdir()
    Image.fromarray(np.full((30, 20), 200, np.uint8)).save(new / "odd.png")
    assert (
        main(
            [
                "predict",
                "--model",
                str(run / "model.keras"),
                "--images",
                str(new),
                "--output",
                str(tmp_path / "pred"),
            ]
        )
        == 0
    )
    mask = np.asarray(Image.open(tmp_path / "pred" / "odd.png"))
    assert mask.shape == (30, 20) and set(np.unique(mask)) <= {0, 255}
    assert "255 = the model's class (probability > 0.5), 0 = background" in capsys.readouterr().out
    # predict folds the batch norms; the masks are those of the saved model as it is.
    model = keras.models.load_model(run / "model.keras")
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    image = np.full((1, 30, 20, 1), 200, np.float32)
    expected = np.where(predict_padded(model, image)[0, ..., 0] > 0.5, 255, 0)
    np.testing.assert_array_equal(mask, expected)


def test_user_errors_are_one_line_and_nothing_is_written(tmp_path, capsys):
    """An unreadable image stops `predict` before it writes anything; a missing model is
    one ``kerasseg: error:`` line (exit status 2); ``--debug`` shows the traceback."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(images / "good.png")
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 1)])
    model.save(tmp_path / "model.keras")
    output = tmp_path / "out"
    argv = ["predict", "--model", str(tmp_path / "model.keras"), "--images", str(images)]
    with cli_error(capsys, r"--images: 1 unreadable image file\(s\), nothing written: broken.png"):
        main([*argv, "--output", str(output)])
    assert not output.exists()
    missing = ["evaluate", "--model", str(tmp_path / "none.keras"), "--images", "i", "--masks", "m"]
    with cli_error(capsys, r"--model .*none.keras: no such file"):
        main(missing)
    with pytest.raises(SystemExit, match="no such file"):  # the exception itself
        main([*missing, "--debug"])
    with pytest.raises(FileNotFoundError):  # an OSError from inside a command, with --debug
        main(["--debug", "zoo", "train", str(tmp_path / "nothing.yml")])
    with cli_error(capsys, r"nothing.yml"):  # the same error, without: one line
        main(["zoo", "train", str(tmp_path / "nothing.yml")])


def test_binary_masks_without_mask_values_stop_before_training(tmp_path, capsys):
    _write_folder(tmp_path)  # masks of 0 and 255
    argv = ["train", "--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks")]
    with cli_error(capsys, r"values are \[0, 255\]\).*--mask-values 0:0,255:1"):
        main([*argv, "--channels", "1", "--output", str(tmp_path / "run"), *TINY])
    assert not (tmp_path / "run").exists()


def test_zoo_commands(capsys):
    assert main(["zoo", "list", "un*"]) == 0
    assert capsys.readouterr().out.startswith("unet ")
    assert main(["zoo", "info", "unet"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "segmentation"


def test_argument_parsers():
    assert _parse_mask_values("0:1,255:0") == {0: 1, 255: 0}
    assert _parse_indices("0,3,5-7", 10, "--indices") == [0, 3, 5, 6, 7]
    with pytest.raises(SystemExit, match=r"indices \[12\] are outside 0..9"):
        _parse_indices("12", 10, "--indices")
    with pytest.raises(
        SystemExit,
        match=r"error: --val-indices must be indices like '0-23', '0,3,5-7' or a list, got "
        r"'3-x'\.",
    ):
        _parse_indices("3-x", 10, "--val-indices")
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="--mask-values must look like"):
        _parse_mask_values("0=1")


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: kerasseg" in capsys.readouterr().out
