"""Detectors on the command line: ``train``, ``evaluate``, ``predict`` and the demo's part.

`kerasseg.cli` hands a command here when its model is a detector (the zoo entry's task is
``"detection"``, or the loaded ``.keras`` file is a `kerasseg.detection.Detector`). The data
is a PASCAL VOC folder (``--voc ROOT`` with ``--split``) or a COCO instances file
(``--coco FILE.json`` with ``--images DIR``). The engine is in `kerasseg.training`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: The detector the demo trains (any zoo detector name; the demo uses nothing else of it).
DEMO_DETECTOR = "yolov8_n"
#: The demo's detection data: BCCD blood cells (VOC layout), in ../shared/data/bccd/BCCD.
DEMO_DETECTION_DATA = Path("bccd") / "BCCD"
#: Environment variable naming another VOC folder (with trainval/test splits) for the demo.
DEMO_DETECTION_ENV = "KERASSEG_DEMO_DETECTION_DATA"
#: The demo's detector training: 8 epochs of 25 batches of 8 images at 256x256, with the
#: augmentation of the BCCD recipes (scale jitter, flips both ways, colour jitter) and a
#: 4-image mosaic for half of the images (YOLOv8-n at 320 px, 250 steps: COCO AP 0.417 ->
#: 0.469, the small platelets' VOC07 AP 0.01 -> 0.55).
DEMO_DETECTION = {"epochs": 8, "steps": 25, "batch_size": 8, "size": 256, "learning_rate": 2e-3}
DEMO_AUGMENTATION = {
    "scale_range": (0.75, 1.25),
    "flip_vertical": True,
    "colour": True,
    "mosaic": 0.5,
}
#: Test images shown in the demo's picture of detections.
DEMO_PICTURE_IMAGES = 3
#: Detections drawn by ``predict`` and in the demo's picture score at least this.
DRAW_SCORE_THRESHOLD = 0.3


def fail(message: str) -> SystemExit:
    """The `SystemExit` every argument error raises: ``error: <message>``."""
    return SystemExit(f"error: {message}")


def model_task(name: str) -> str:
    """The task (``"segmentation"`` or ``"detection"``) of a zoo model name.

    Raises:
        SystemExit: for an unknown name, with the zoo's did-you-mean suggestions.
    """
    from kerasseg.zoo import registry

    try:
        entry, _, _ = registry.resolve(name)
    except ValueError as error:
        raise fail(f"--model: {error}") from None
    return entry.task


def model_input_multiple(name: str) -> int | None:
    """The stride input sizes of a zoo model must be a multiple of (None: any size)."""
    from kerasseg.zoo import registry

    return registry.resolve(name)[0].input_multiple


# Arguments ------------------------------------------------------------------------------


def add_data_options(parser: argparse.ArgumentParser, *, split: str | None) -> None:
    """``--voc`` / ``--split`` / ``--coco`` (the images of COCO come from ``--images``)."""
    group = parser.add_argument_group("detection data (a detector model)")
    group.add_argument(
        "--voc", default=None, metavar="ROOT", help="PASCAL VOC folder (JPEGImages/, Annotations/)"
    )
    group.add_argument(
        "--split",
        default=split,
        help=f"VOC ImageSets/Main/<split>.txt; 'all': every XML (default: {split})",
    )
    group.add_argument(
        "--coco",
        default=None,
        metavar="FILE",
        help="COCO instances JSON; its file_names are read from --images",
    )


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The detector-only options of ``kerasseg train``."""
    group = parser.add_argument_group("detector training")
    group.add_argument(
        "--val-split",
        default=None,
        help="VOC split to validate on (default: hold out --val-fraction of the images)",
    )
    group.add_argument("--val-coco", default=None, metavar="FILE", help="COCO JSON to validate on")
    group.add_argument(
        "--val-images", default=None, help="images of --val-coco (default: --images)"
    )
    group.add_argument(
        "--max-boxes", type=int, default=None, help="boxes per image (default: the data's most)"
    )
    group.add_argument(
        "--letterbox",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the aspect ratio and pad to --size (default), or stretch",
    )
    group.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    group.add_argument(
        "--map-every",
        type=int,
        default=1,
        help="validation mAP every N epochs during training; 0: only at the end (default: 1)",
    )
    group.add_argument(
        "--weights",
        default=None,
        choices=("imagenet",),
        help="start from the backbone's ImageNet weights (default: random initialisation)",
    )


def check_size(size: int, model: str) -> None:
    """--size must be positive and a multiple of the model's stride."""
    multiple = model_input_multiple(model)
    if size <= 0 or (multiple and size % multiple):
        expected = f"a positive multiple of {multiple}" if multiple else "positive"
        raise fail(f"--size must be {expected} for {model}; got {size}.")


def _voc_split(split: str | None) -> str | None:
    return None if split in (None, "", "all") else split


def open_annotations(
    voc: str | None,
    split: str | None,
    coco: str | None,
    images: str | None,
    class_names: Sequence[str] | None = None,
) -> Any:
    """Loads the detection data named by the arguments.

    Args:
        voc: ``--voc`` root, or None.
        split: ``--split`` name (``"all"`` or None: every XML file).
        coco: ``--coco`` JSON, or None.
        images: ``--images``: the folder of the COCO file's images.
        class_names: Classes in id order (those the model was trained with), or None.

    Returns:
        `kerasseg.data.DetectionAnnotations`.

    Raises:
        SystemExit: for missing, conflicting or unreadable arguments.
    """
    from kerasseg.data import load_coco, load_voc

    if (voc is None) == (coco is None):
        got = "both" if voc is not None else "neither"
        raise fail(
            "a detector needs annotations: --voc ROOT (a VOC folder with JPEGImages/ and "
            f"Annotations/) or --coco FILE.json with --images DIR; got {got}."
        )
    try:
        if voc is not None:
            return load_voc(voc, _voc_split(split), class_names)
        if images is None:
            raise fail(f"the COCO file {coco} needs --images, the folder of its images.")
        return load_coco(coco, images, class_names)
    except (FileNotFoundError, ValueError) as error:
        message = str(error).replace("pass split=None", "pass --split all")
        raise fail(message) from None


def _hold_out(annotations: Any, fraction: float) -> tuple[Any, Any | None]:
    """Splits off the last `fraction` of the images for validation (None if 0)."""
    if not 0.0 <= fraction < 1.0:
        raise fail(f"--val-fraction must be in [0, 1); got {fraction}.")
    count = round(len(annotations) * fraction)
    if count == 0:
        return annotations, None
    if count >= len(annotations):
        raise fail(f"no training images left after holding out {count} for validation.")
    head, tail = annotations.records[:-count], annotations.records[-count:]
    return (
        dataclasses.replace(annotations, records=head),
        dataclasses.replace(annotations, records=tail),
    )


def _validation_data(args: argparse.Namespace, train: Any) -> tuple[Any, Any | None]:
    """The (train, validation) annotations: a VOC split, a COCO file or a held-out part."""
    if args.val_split is not None and args.val_coco is not None:
        raise fail("give --val-split (VOC) or --val-coco (COCO), not both.")
    if args.val_split is not None:
        if args.voc is None:
            raise fail("--val-split names a VOC split; it needs --voc.")
        return train, open_annotations(args.voc, args.val_split, None, None, train.class_names)
    if args.val_coco is not None:
        images = args.val_images or args.images
        return train, open_annotations(None, None, args.val_coco, images, train.class_names)
    return _hold_out(train, args.val_fraction)


def config_from_args(args: argparse.Namespace, num_classes: int) -> Any:
    """A `kerasseg.training.DetectionTrainConfig` from ``kerasseg train``'s arguments."""
    from kerasseg.training import DetectionTrainConfig

    if args.filters is not None:
        raise fail(f"--filters sets a U-Net's width; {args.model} is a detector.")
    if args.max_boxes is not None and args.max_boxes < 1:
        raise fail(f"--max-boxes must be a positive integer; got {args.max_boxes}.")
    if args.map_every < 0:
        raise fail(f"--map-every must be 0 or a positive integer; got {args.map_every}.")
    check_size(args.size, args.model)
    return DetectionTrainConfig(
        model=args.model,
        weights=args.weights,
        num_classes=num_classes,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        image_size=args.size,
        letterbox=args.letterbox,
        max_boxes=args.max_boxes,
        flip=not args.no_flip,
        learning_rate=args.learning_rate,
        map_every=args.map_every,
        seed=args.seed,
    )


# Commands -------------------------------------------------------------------------------


def report_scores(scores: dict[str, Any], what: str) -> str:
    """One line: COCO AP, AP50 and VOC07 mAP of a `kerasseg.training.detection_scores`."""

    def show(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    coco = scores["coco"]
    return (
        f"{what} ({scores['images']} images): COCO AP {show(coco['map'])}, "
        f"AP50 {show(coco['map50'])}, VOC07 mAP {show(scores['voc07_map'])}"
    )


def cmd_train(args: argparse.Namespace) -> int:
    """``kerasseg train --model <detector>``."""
    from kerasseg.training import train_detection
    from kerasseg.zoo.recipe_training import build_detector

    if args.masks is not None:
        raise fail(f"--masks is for segmentation models; {args.model} is a detector.")
    train = open_annotations(args.voc, args.split, args.coco, args.images)
    train, val = _validation_data(args, train)
    config = config_from_args(args, train.num_classes)
    if len(train) < config.batch_size:
        raise fail(f"--batch-size {config.batch_size} exceeds the {len(train)} training images.")
    from kerasseg.zoo import WeightsNotAvailableError

    try:
        model = build_detector(config)
    except WeightsNotAvailableError as error:
        raise fail(f"--weights {config.weights}: {error}") from None
    results = train_detection(
        model,
        train,
        val,
        config=config,
        output_dir=args.output,
        report=print,
        verbose=0 if args.quiet else "auto",
    )
    output = Path(args.output)
    if "validation" in results:
        print("\n" + report_scores(results["validation"], "Validation"))
    print(
        f"Outputs in {output.resolve()}: model.keras, detection.json, history.csv, "
        f"history.json, results.json  (trained {results['train_seconds']:.0f} s)"
    )
    return 0


def load_detection_info(model_path: str | os.PathLike) -> dict[str, Any]:
    """The `kerasseg.training.DETECTION_INFO_FILE` beside a model ({} when absent)."""
    from kerasseg.training import DETECTION_INFO_FILE

    path = Path(model_path).parent / DETECTION_INFO_FILE
    if not path.is_file():
        logger.warning(
            "%s not found: class names are taken from the data, category ids are 1..K and "
            "images are letterboxed.",
            path,
        )
        return {}
    return json.loads(path.read_text())


def _check_classes(model: Any, annotations: Any) -> None:
    if annotations.num_classes != model.num_classes:
        raise fail(
            f"the model detects {model.num_classes} classes but the data has "
            f"{annotations.num_classes} ({annotations.class_names})."
        )


def cmd_evaluate(args: argparse.Namespace, model: Any) -> int:
    """``kerasseg evaluate`` of a detector: the COCO table and the VOC2007 mAP."""
    from kerasseg.training import evaluate_detection

    info = load_detection_info(args.model)
    annotations = open_annotations(
        args.voc, args.split, args.coco, args.images, info.get("class_names")
    )
    _check_classes(model, annotations)
    scores, coco, voc07, _ = evaluate_detection(
        model, annotations, letterbox=info.get("letterbox", True)
    )
    print(f"COCO protocol ({scores['images']} images, boxes in original pixels):\n{coco}\n")
    print(f"{voc07}\n")
    print(report_scores(scores, "Summary"))
    if args.json:
        Path(args.json).write_text(json.dumps(scores, indent=2))
    return 0


def coco_results(
    detections: Sequence[dict[str, np.ndarray]],
    image_ids: Sequence[Any],
    category_ids: Sequence[int],
) -> list[dict[str, Any]]:
    """Detections as a COCO results list: ``[{image_id, category_id, bbox, score}]``.

    Args:
        detections: Per image ``{"boxes" xyxy pixels, "classes", "scores"}``.
        image_ids: The image id of each entry.
        category_ids: The COCO category id of each class id.

    Returns:
        One dict per detection, ``bbox`` as ``[x, y, width, height]`` in pixels.
    """
    results = []
    for image_id, found in zip(image_ids, detections):
        for box, class_id, score in zip(found["boxes"], found["classes"], found["scores"]):
            x1, y1, x2, y2 = (round(float(v), 2) for v in box)
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(category_ids[int(class_id)]),
                    "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                    "score": round(float(score), 5),
                }
            )
    return results


def _coco_image_ids(path: str | None) -> dict[str, Any]:
    """File name -> image id of a COCO JSON (empty without one)."""
    if path is None:
        return {}
    try:
        images = json.loads(Path(path).read_text())["images"]
        return {Path(image["file_name"]).name: image["id"] for image in images}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise fail(f"--coco {path}: cannot read its image ids ({error!r}).") from None


def draw_detections(
    image: np.ndarray,
    found: dict[str, np.ndarray],
    class_names: Sequence[str] | None,
    score_threshold: float = DRAW_SCORE_THRESHOLD,
) -> np.ndarray:
    """An (H, W, 3) uint8 picture of an image's detections with names and scores."""
    from kerasseg.visualize import draw_boxes

    return draw_boxes(
        image,
        found["boxes"],
        found["classes"],
        found["scores"],
        class_names,
        score_threshold=score_threshold,
    )


def cmd_predict(args: argparse.Namespace, model: Any) -> int:
    """``kerasseg predict`` with a detector: pictures with boxes and a COCO results JSON."""
    from kerasseg.data.masks import IMAGE_EXTENSIONS
    from kerasseg.training import detect, read_rgb
    from kerasseg.visualize import save_png

    if args.min_score is not None:
        if not 0.0 <= args.min_score < 1.0:
            raise fail(f"--min-score must be in [0, 1); got {args.min_score}.")
        model.score_threshold = args.min_score
    info = load_detection_info(args.model)
    names = info.get("class_names")
    category_ids = info.get("category_ids") or list(range(1, model.num_classes + 1))
    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise fail(f"--images {args.images}: no images found ({', '.join(IMAGE_EXTENSIONS)}).")
    ids_by_name = _coco_image_ids(args.coco)
    check_readable(files)  # before anything is written
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    results = []
    for start in range(0, len(files), args.batch_size):
        chunk = files[start : start + args.batch_size]
        images = [read_rgb(path) for path in chunk]
        found = detect(model, images, letterbox=info.get("letterbox", True))
        for path, image, detections in zip(chunk, images, found):
            picture = draw_detections(image, detections, names, args.score_threshold)
            save_png(picture, str(output / f"{path.stem}.png"))
        image_ids = [ids_by_name.get(path.name, path.stem) for path in chunk]
        results += coco_results(found, image_ids, category_ids)
    (output / "detections.json").write_text(json.dumps(results))
    print(
        f"Wrote {len(files)} pictures (boxes scoring >= {args.score_threshold}) and "
        f"detections.json ({len(results)} detections, COCO results format) to {output.resolve()}"
    )
    return 0


def check_readable(files: Sequence[Path]) -> None:
    """Checks that PIL can open every image, so that ``predict`` writes all or nothing.

    Raises:
        SystemExit: naming the unreadable files (the first three) and how many there are.
    """
    from PIL import Image

    unreadable = []
    for path in files:
        try:
            with Image.open(path) as image:
                image.verify()
        except (OSError, SyntaxError) as error:  # PIL's UnidentifiedImageError is an OSError
            unreadable.append(f"{path.name} ({error})")
    if unreadable:
        more = f"; and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        raise fail(
            f"--images: {len(unreadable)} unreadable image file(s), nothing written: "
            + "; ".join(unreadable[:3])
            + more
        )


# Demo -----------------------------------------------------------------------------------


def find_demo_data() -> Path | None:
    """BCCD's VOC folder: ${KERASSEG_DEMO_DETECTION_DATA}, else ../shared/data/bccd/BCCD."""
    candidates = []
    if os.environ.get(DEMO_DETECTION_ENV):
        candidates.append(Path(os.environ[DEMO_DETECTION_ENV]))
    candidates.append(Path.cwd().parent / "shared" / "data" / DEMO_DETECTION_DATA)
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / DEMO_DETECTION_DATA)
    for path in candidates:
        if (path / "Annotations").is_dir() and (path / "ImageSets" / "Main" / "test.txt").is_file():
            return path
    return None


def add_demo_options(parser: argparse.ArgumentParser) -> None:
    """The demo's detection options."""
    group = parser.add_argument_group("detection part of the demo")
    group.add_argument(
        "--only",
        choices=("segmentation", "detection"),
        default=None,
        help="run one part of the demo (default: both)",
    )
    group.add_argument(
        "--detector", default=DEMO_DETECTOR, help=f"zoo detector (default: {DEMO_DETECTOR})"
    )
    defaults = DEMO_DETECTION
    for option, key, kind in (
        ("--detection-epochs", "epochs", int),
        ("--detection-steps-per-epoch", "steps", int),
        ("--detection-batch-size", "batch_size", int),
        ("--detection-size", "size", int),
    ):
        group.add_argument(
            option, type=kind, default=defaults[key], help=f"default: {defaults[key]}"
        )


def _demo_data(args: argparse.Namespace, output: Path) -> tuple[Path, str, Callable[[], None]]:
    """The VOC folder of the demo, its description, and a function announcing it."""
    from kerasseg.data.synthetic import write_synthetic_voc

    root = None if args.synthetic else find_demo_data()
    if root is not None:
        return (
            root,
            "BCCD",
            lambda: print(
                f"\nDetection: BCCD blood cells from {root}: training {args.detector} on the "
                "trainval split, testing on the test split."
            ),
        )
    folder = output / "synthetic-detection"
    write_synthetic_voc(folder, {"trainval": 96, "test": 24}, (256, 256), num_classes=2)
    return (
        folder,
        "synthetic boxes",
        lambda: print(
            f"\nDetection: BCCD (../shared/data/bccd/BCCD) was not found or --synthetic was "
            f"given: training {args.detector} on synthetic rectangles and ellipses written to "
            f"{folder} (96 trainval / 24 test images)."
        ),
    )


def demo_picture(
    annotations: Any, detections: Sequence[dict[str, np.ndarray]], count: int
) -> np.ndarray:
    """Rows of ground truth (left) and detections (right) for the first `count` images."""
    from kerasseg.training import read_rgb
    from kerasseg.visualize import draw_boxes

    rows = []
    for record, found in list(zip(annotations.records, detections))[:count]:
        image = read_rgb(record.image_path)
        truth = draw_boxes(image, record.boxes, record.classes, None, annotations.class_names)
        predicted = draw_detections(image, found, annotations.class_names)
        gap = np.full((image.shape[0], 8, 3), 255, np.uint8)
        rows.append(np.concatenate([truth, gap, predicted], axis=1))
    width = max(row.shape[1] for row in rows)
    padded = [
        np.pad(row, ((0, 8), (0, width - row.shape[1]), (0, 0)), constant_values=255)
        for row in rows
    ]
    return np.concatenate([_titles(width, rows[0].shape[1] // 2), *padded], axis=0)


def _titles(width: int, half: int) -> np.ndarray:
    """A white strip naming the two columns of `demo_picture`."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, 20), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    draw.text((4, 4), "ground truth", fill=(0, 0, 0))
    draw.text((half + 8, 4), f"detections (score >= {DRAW_SCORE_THRESHOLD})", fill=(0, 0, 0))
    return np.asarray(strip, np.uint8)


def run_demo(args: argparse.Namespace, output: Path) -> dict[str, Any]:
    """Trains the demo detector, tests it, writes ``output/detection/``; returns its summary."""
    from kerasseg.data import load_voc
    from kerasseg.training import DetectionTrainConfig, evaluate_detection, train_detection
    from kerasseg.visualize import save_png
    from kerasseg.zoo.recipe_training import build_detector

    if model_task(args.detector) != "detection":
        raise fail(
            f"--detector {args.detector} is not a detector (see `kerasseg zoo list --task detection`)."
        )
    check_size(args.detection_size, args.detector)
    root, what, announce = _demo_data(args, output)
    announce()
    train = load_voc(root, "trainval")
    test = load_voc(root, "test", train.class_names)
    config = DetectionTrainConfig(
        model=args.detector,
        num_classes=train.num_classes,
        epochs=args.detection_epochs,
        steps_per_epoch=args.detection_steps_per_epoch,
        batch_size=min(args.detection_batch_size, len(train)),
        image_size=args.detection_size,
        learning_rate=DEMO_DETECTION["learning_rate"],
        map_every=0,
        seed=args.seed,
        **DEMO_AUGMENTATION,
    )
    directory = output / "detection"
    trained = train_detection(
        build_detector(config),
        train,
        None,
        config=config,
        output_dir=directory,
        report=print,
        verbose=0 if args.quiet else "auto",
    )
    import keras

    model = keras.models.load_model(directory / "model.keras")  # what a user gets back
    scores, coco, voc07, detections = evaluate_detection(model, test, letterbox=config.letterbox)
    save_png(demo_picture(test, detections, DEMO_PICTURE_IMAGES), str(directory / "detections.png"))
    ids = [record.image_id for record in test.records]
    category_ids = list(range(1, test.num_classes + 1))
    (directory / "detections.json").write_text(
        json.dumps(coco_results(detections, ids, category_ids))
    )
    summary = {
        "model": args.detector,
        "data": what,
        "test": scores,
        "train_images": trained["train_images"],
        "train_seconds": trained["train_seconds"],
        "seconds_per_step": trained["seconds_per_step"],
        "config": trained["config"],
    }
    trained["test"] = scores
    (directory / "results.json").write_text(json.dumps(trained, indent=2))
    print(f"\nTest, COCO protocol:\n{coco}\n\n{voc07}\n")
    print(report_scores(scores, f"Test ({what})"))
    print(
        f"Outputs in {directory.resolve()}: model.keras, detection.json, results.json, "
        "detections.json (COCO results), detections.png (ground truth | detections)"
    )
    return summary
