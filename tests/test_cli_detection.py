"""The `kerasseg` command line with detectors, end to end on a tiny synthetic VOC folder."""

import json

import numpy as np
import pytest
from PIL import Image

from kerasseg.cli import main
from kerasseg.cli_detection import DEMO_DETECTOR, coco_results, model_task
from kerasseg.data.synthetic import synthetic_box_class_names, write_synthetic_voc
from kerasseg.metrics.detection.coco import STAT_NAMES
from tests.support import cli_error

SIZE = 64
TINY = [
    "--epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--batch-size",
    "2",
    "--size",
    str(SIZE),
    "--quiet",
]
CLASSES = sorted(synthetic_box_class_names(2))  # as load_voc discovers them
COCO_STATS = set(STAT_NAMES)  # every number of the COCO summary


def check_scores(scores, images):
    assert scores["images"] == images
    assert set(scores["coco"]) == COCO_STATS
    values = [*scores["coco"].values(), scores["voc07_map"]]
    assert all(v is None or -1.0 <= v <= 1.0 for v in values)
    assert set(scores["per_class"]) == set(CLASSES)
    for entry in scores["per_class"].values():
        assert set(entry) == {"ap", "ap50", "voc07_ap", "ground_truth"}


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    """6 train, 2 val and 2 test images of 96x80 (not square: letterboxed)."""
    root = tmp_path_factory.mktemp("voc")
    return write_synthetic_voc(root, {"train": 6, "val": 2, "test": 2}, (80, 96), seed=1)


@pytest.fixture(scope="module")
def trained(voc, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    argv = ["train", "--model", "yolov2_cspdarknet_n", "--voc", str(voc), "--val-split", "val"]
    assert main([*argv, "--output", str(run), *TINY]) == 0
    return run


def test_train_writes_the_model_its_info_and_the_validation_map(trained, voc):
    for name in ("model.keras", "detection.json", "history.csv", "history.json", "results.json"):
        assert (trained / name).is_file(), name
    info = json.loads((trained / "detection.json").read_text())
    assert info["class_names"] == CLASSES and info["category_ids"] == [1, 2]
    assert info["image_size"] == [SIZE, SIZE] and info["letterbox"] is True
    results = json.loads((trained / "results.json").read_text())
    assert results["train_images"] == 6 and results["validation_images"] == 2
    assert results["steps"] == 2 and results["config"]["model"] == "yolov2_cspdarknet_n"
    check_scores(results["validation"], 2)
    history = json.loads((trained / "history.json").read_text())
    assert len(history["loss"]) == 1 and "val_map" in history  # the mAP callback ran


def test_evaluate_prints_the_coco_table_and_reproduces_the_validation_scores(
    trained, voc, tmp_path, capsys
):
    capsys.readouterr()
    scores_file = tmp_path / "scores.json"
    argv = ["evaluate", "--model", str(trained / "model.keras"), "--voc", str(voc)]
    assert main([*argv, "--split", "val", "--json", str(scores_file)]) == 0
    printed = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in printed
    assert printed.count("Average Recall") == 6 and "VOC2007 11-point" in printed
    scores = json.loads(scores_file.read_text())
    check_scores(scores, 2)
    assert scores == json.loads((trained / "results.json").read_text())["validation"]


def test_predict_draws_boxes_and_writes_coco_results(trained, voc, tmp_path, capsys):
    images = voc / "JPEGImages"
    output = tmp_path / "pred"
    argv = ["predict", "--model", str(trained / "model.keras"), "--images", str(images)]
    assert (
        main([*argv, "--output", str(output), "--score-threshold", "0", "--min-score", "0.001"])
        == 0
    )
    inputs = sorted(images.glob("*.png"))
    for path in inputs:
        picture = np.asarray(Image.open(output / path.name))
        assert picture.shape == (80, 96, 3)
    results = json.loads((output / "detections.json").read_text())
    assert isinstance(results, list) and results, "a fresh RetinaNet detects something"
    stems = {p.stem for p in inputs}
    for entry in results:
        assert set(entry) == {"image_id", "category_id", "bbox", "score"}
        assert entry["image_id"] in stems and entry["category_id"] in (1, 2)
        x, y, w, h = entry["bbox"]
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0
        assert x + w <= 96 + 1e-3 and y + h <= 80 + 1e-3
        assert 0 <= entry["score"] <= 1
    # Boxes were drawn: a prediction picture differs from its input.
    drawn = np.asarray(Image.open(output / inputs[0].name)).astype(int)
    original = np.asarray(Image.open(inputs[0])).astype(int)
    assert np.abs(drawn - original).sum() > 0


def test_coco_results_converts_xyxy_to_xywh_with_category_ids():
    found = [
        {
            "boxes": np.array([[10, 20, 40, 60]], np.float32),
            "classes": np.array([1]),
            "scores": np.array([0.75], np.float32),
        },
        {"boxes": np.zeros((0, 4)), "classes": np.zeros(0), "scores": np.zeros(0)},
    ]
    assert coco_results(found, [7, 8], [3, 9]) == [
        {"image_id": 7, "category_id": 9, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.75}
    ]


def test_demo_detection_part_on_synthetic_boxes(tmp_path, capsys):
    output = tmp_path / "demo"
    argv = ["demo", "--only", "detection", "--synthetic", "--output", str(output), "--quiet"]
    tiny = ["--detection-epochs", "1", "--detection-steps-per-epoch", "1"]
    assert main([*argv, *tiny, "--detection-batch-size", "2", "--detection-size", "64"]) == 0
    printed = capsys.readouterr().out
    assert "synthetic rectangles and ellipses" in printed and "Test (synthetic boxes" in printed
    directory = output / "detection"
    for name in ("model.keras", "detection.json", "results.json", "detections.json"):
        assert (directory / name).is_file(), name
    picture = np.asarray(Image.open(directory / "detections.png"))
    assert picture.shape[1] == 2 * 256 + 8 and picture.shape[0] >= 3 * 256
    summary = json.loads((output / "results.json").read_text())["detection"]
    assert summary["model"] == DEMO_DETECTOR and summary["data"] == "synthetic boxes"
    assert summary["test"]["images"] == 24


def test_task_comes_from_the_zoo_and_unknown_names_get_suggestions(capsys):
    assert model_task("retinanet_resnet18") == "detection"
    assert model_task("unet") == "segmentation"
    with cli_error(
        capsys,
        r"--model: Unknown model name 'retinanet_resnet19'.*"
        r"Did you mean 'retinanet_resnet18'",
    ):
        main(["train", "--model", "retinanet_resnet19", "--voc", "x", "--output", "o"])


def test_argument_errors_name_the_argument(tmp_path, voc, capsys):
    out = ["--output", str(tmp_path / "o")]
    with cli_error(capsys, r"a detector needs annotations: --voc ROOT .* got neither"):
        main(["train", "--model", "retinanet_resnet18", *out])
    with cli_error(capsys, r"got both"):
        main(["train", "--model", "ssd_resnet18", "--voc", str(voc), "--coco", "a.json", *out])
    with cli_error(capsys, r"the COCO file a.json needs --images"):
        main(["train", "--model", "retinanet_resnet18", "--coco", "a.json", *out])
    with cli_error(capsys, r"COCO annotation file .*missing.json not found"):
        main(
            [
                "train",
                "--model",
                "retinanet_resnet18",
                "--coco",
                str(tmp_path / "missing.json"),
                "--images",
                str(tmp_path),
                *out,
            ]
        )
    with cli_error(capsys, r"VOC folder .*Annotations not found"):
        main(["train", "--model", "retinanet_resnet18", "--voc", str(tmp_path), *out])
    with cli_error(capsys, r"Split file .*nope.txt not found. Available splits.*--split all"):
        main(["train", "--model", "retinanet_resnet18", "--voc", str(voc), "--split", "nope", *out])
    with cli_error(
        capsys,
        r"--size must be a positive multiple of 32 for "
        r"retinanet_resnet18; got 100",
    ):
        main(["train", "--model", "retinanet_resnet18", "--voc", str(voc), "--size", "100", *out])
    with cli_error(capsys, r"--masks is for segmentation models"):
        main(["train", "--model", "retinanet_resnet18", "--voc", str(voc), "--masks", "m", *out])
    with cli_error(capsys, r"a segmentation model needs --images and --masks"):
        main(["train", "--model", "unet", *out])
    with cli_error(capsys, r"--voc/--coco annotations are for detectors"):
        main(["train", "--model", "unet", "--images", "i", "--masks", "m", "--voc", "v", *out])
    with cli_error(capsys, r"--model .*nothing.keras: no such file"):
        main(["evaluate", "--model", str(tmp_path / "nothing.keras"), "--voc", str(voc)])
