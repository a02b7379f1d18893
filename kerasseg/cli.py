"""The ``kerasseg`` command: demo, train, evaluate, predict, zoo.

Run ``kerasseg <command> --help`` for the options of each command. ``train``,
``evaluate`` and ``predict`` handle segmentation models (folders of images and masks) and
detectors (VOC or COCO annotations, see `kerasseg.cli_detection`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

DEMO_DATA_NAME = "isbi2012-membrane"
# ISBI 2012 masks: 255 = cell interior, 0 = membrane; the membrane is the class of interest.
ISBI_MASK_VALUES = {0: 1, 255: 0}


def _find_demo_data() -> Path | None:
    """The ISBI membrane folder: $KERASSEG_DEMO_DATA, else ../shared/data beside the repo/cwd."""
    candidates = []
    if os.environ.get("KERASSEG_DEMO_DATA"):
        candidates.append(Path(os.environ["KERASSEG_DEMO_DATA"]))
    candidates.append(Path.cwd().parent / "shared" / "data" / DEMO_DATA_NAME)
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / DEMO_DATA_NAME)
    for path in candidates:
        if (path / "images").is_dir() and (path / "masks").is_dir():
            return path
    return None


def _parse_mask_values(text: str | None) -> dict[int, int] | None:
    """``"0:1,255:0"`` -> ``{0: 1, 255: 0}``."""
    if not text:
        return None
    mapping = {}
    for item in text.split(","):
        try:
            raw, class_id = item.split(":")
            mapping[int(raw)] = int(class_id)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--mask-values must look like '0:0,255:1' (raw:class pairs); got {text!r}."
            ) from None
    return mapping


def _parse_indices(text: str | None, count: int, option: str) -> list[int] | None:
    """``"24-29"`` or ``"0,3,5-7"`` -> list of ints (inclusive ranges), all below `count`."""
    if not text:
        return None
    from kerasseg.zoo.recipes import parse_indices

    try:
        indices = list(parse_indices(text, option))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise SystemExit(f"error: indices {bad} are outside 0..{count - 1}.")
    return indices


def _add_training_options(
    parser: argparse.ArgumentParser,
    *,
    epochs: int,
    steps: int,
    batch_size: int,
    size: int,
    learning_rate: float,
) -> None:
    parser.add_argument("--model", default="unet", help="zoo model name (default: unet)")
    parser.add_argument("--filters", type=int, default=None, help="U-Net width (first level)")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"default: {epochs}")
    parser.add_argument("--steps-per-epoch", type=int, default=steps, help=f"default: {steps}")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"default: {batch_size}")
    parser.add_argument(
        "--size",
        type=int,
        default=size,
        help=f"side of the training crops; detectors: of the input (default: {size})",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=learning_rate,
        help=f"Adam, cosine-decayed (default: {learning_rate})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of initialisation, crops and shuffling"
    )
    parser.add_argument("--quiet", action="store_true", help="no Keras progress bar")


def _config_from_args(args: argparse.Namespace, num_classes: int):
    from kerasseg.training import TrainConfig

    model_kwargs = {}
    if args.filters is not None:
        model_kwargs["filters"] = args.filters
    return TrainConfig(
        model=args.model,
        model_kwargs=model_kwargs,
        num_classes=num_classes,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        crop_size=args.size,
        learning_rate=args.learning_rate,
        seed=args.seed,
    )


def _report_results(results: dict, output: Path) -> None:
    scores = results["validation"]
    print(
        f"\nValidation on {len(results['validation_images'])} held-out images: "
        f"Dice {scores['dice']:.4f}, Jaccard {scores['jaccard']:.4f}, "
        f"cosine {scores['cosine']:.4f}  (trained {results['train_seconds']:.0f} s)"
    )
    print(
        f"Outputs in {output.resolve()}: model.keras, history.csv, history.json, "
        "results.json, overlays/"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from kerasseg import cli_detection

    output = Path(args.output)
    results_file = output / "results.json"
    results = {}
    if args.only != "detection":
        results = _demo_segmentation(args, output)
    elif results_file.is_file():  # keep an earlier run's segmentation results
        results = json.loads(results_file.read_text())
    if args.only != "segmentation":
        results["detection"] = cli_detection.run_demo(args, output)
        # The demo's results file holds both parts (the segmentation's, plus "detection").
        results_file.write_text(json.dumps(results, indent=2))
    return 0


def _demo_segmentation(args: argparse.Namespace, output: Path) -> dict:
    """The segmentation part of the demo: U-Net on ISBI 2012 (or synthetic shapes)."""
    from kerasseg.training import train_segmentation
    from kerasseg.zoo.recipe_training import build_training_model

    if args.synthetic:
        data = None
    elif args.data:
        data = Path(args.data)
        if not ((data / "images").is_dir() and (data / "masks").is_dir()):
            raise SystemExit(f"error: --data {data} must contain images/ and masks/ folders.")
    else:
        data = _find_demo_data()
    if data is not None:
        from kerasseg.data.masks import SegmentationFolder

        folder = SegmentationFolder(
            data / "images", data / "masks", channels=1, mask_values=ISBI_MASK_VALUES
        )
        if len(folder) != 30:
            print(f"note: expected the 30 ISBI 2012 slices, found {len(folder)}")
        split = round(len(folder) * 0.8)
        train_indices, val_indices = list(range(split)), list(range(split, len(folder)))
        print(
            f"ISBI 2012 membranes from {data}: training on slices {train_indices[0]}-"
            f"{train_indices[-1]}, validating on {val_indices[0]}-{val_indices[-1]} (by index). "
            "Class of interest: membrane (mask value 0)."
        )
        what = "membrane"
    else:
        folder = _synthetic_folder(output / "synthetic-data")
        train_indices, val_indices = list(range(24)), list(range(24, 30))
        print(
            "The ISBI 2012 data (../shared/data/isbi2012-membrane) was not found: training on "
            f"a synthetic shapes set written to {output / 'synthetic-data'} instead "
            "(24 train / 6 validation images). Set KERASSEG_DEMO_DATA to use the real data."
        )
        what = "shapes"
    config = _config_from_args(args, num_classes=1)
    if args.filters is None and config.model == "unet":
        config.model_kwargs["filters"] = 16
    results = train_segmentation(
        build_training_model(config, folder.channels),
        folder,
        train_indices=train_indices,
        val_indices=val_indices,
        config=config,
        output_dir=output,
        what=what,
        report=print,
        verbose=0 if args.quiet else "auto",
    )
    _report_results(results, output)
    return results


def _synthetic_folder(directory: Path):
    """Writes 30 synthetic 256x256 grayscale images and masks as PNG and opens them."""
    from PIL import Image

    from kerasseg.data.masks import SegmentationFolder
    from kerasseg.data.synthetic import synthetic_shapes

    images, masks = synthetic_shapes(30, (256, 256), channels=1, seed=0)
    for sub in ("images", "masks"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    for index, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image[..., 0].round().astype("uint8")).save(
            directory / "images" / f"{index}.png"
        )
        Image.fromarray((mask[..., 0] * 255).astype("uint8")).save(
            directory / "masks" / f"{index}.png"
        )
    return SegmentationFolder(
        directory / "images", directory / "masks", channels=1, mask_values={0: 0, 255: 1}
    )


def _open_folder(args: argparse.Namespace):
    from kerasseg.data.masks import SegmentationFolder

    missing = [f"--{name}" for name in ("images", "masks") if getattr(args, name) is None]
    if missing:
        raise SystemExit(
            f"error: a segmentation model needs {' and '.join(missing)} (folders of images "
            "and of masks with the same file stems); detectors take --voc or --coco instead."
        )
    if getattr(args, "voc", None) is not None or getattr(args, "coco", None) is not None:
        raise SystemExit(
            "error: --voc/--coco annotations are for detectors; this is a segmentation model."
        )
    folder = SegmentationFolder(
        args.images,
        args.masks,
        channels=args.channels,
        mask_values=_parse_mask_values(args.mask_values),
        num_classes=args.num_classes,
    )
    folder.check_masks()  # every mask's values, before training or scoring starts
    return folder


def cmd_train(args: argparse.Namespace) -> int:
    from kerasseg import cli_detection

    if cli_detection.model_task(args.model) == "detection":
        return cli_detection.cmd_train(args)
    from kerasseg.training import train_segmentation
    from kerasseg.zoo.recipe_training import build_training_model

    folder = _open_folder(args)
    val = _parse_indices(args.val_indices, len(folder), "--val-indices")
    if val is None:
        count = max(1, round(len(folder) * args.val_fraction))
        val = list(range(len(folder) - count, len(folder)))
    train = [i for i in range(len(folder)) if i not in set(val)]
    if not train:
        raise SystemExit("error: no training images left after the validation split.")
    config = _config_from_args(args, args.num_classes)
    results = train_segmentation(
        build_training_model(config, folder.channels),
        folder,
        train_indices=train,
        val_indices=val,
        config=config,
        output_dir=args.output,
        report=print,
        verbose=0 if args.quiet else "auto",
    )
    _report_results(results, Path(args.output))
    return 0


def _load_model(path: str):
    """A saved ``.keras`` model (kerasseg's classes registered), or a clear error."""
    from kerasseg.saving import ModelFileError, load_model

    if not Path(path).is_file() and not Path(path).is_dir():
        raise SystemExit(f"error: --model {path}: no such file (expected a .keras model).")
    try:
        return load_model(path)
    except ModelFileError as error:
        raise SystemExit(f"error: --model {error}") from error


def _is_detector(model) -> bool:
    from kerasseg.detection import Detector

    return isinstance(model, Detector)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from kerasseg import cli_detection
    from kerasseg.training import evaluate_arrays

    model = _load_model(args.model)
    if _is_detector(model):
        return cli_detection.cmd_evaluate(args, model)
    folder = _open_folder(args)
    images, masks = folder.load(_parse_indices(args.indices, len(folder), "--indices"))
    scores, _ = evaluate_arrays(model, images, masks, args.num_classes)
    print(json.dumps({"images": len(images), **scores}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(scores, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from kerasseg import cli_detection
    from kerasseg.data.masks import IMAGE_EXTENSIONS, read_image
    from kerasseg.layers import fold_batch_norm
    from kerasseg.segmentation.inference import predict_padded

    if not Path(args.images).is_dir():
        raise SystemExit(f"error: --images {args.images}: not a folder.")
    model = _load_model(args.model)
    if _is_detector(model):
        return cli_detection.cmd_predict(args, model)
    try:
        model = fold_batch_norm(model)  # same masks, faster (see kerasseg.layers.folding)
    except TypeError:
        logger.info("%s is a subclassed model; predicting without batch-norm folding.", args.model)
    channels = model.input_shape[-1]
    files = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise SystemExit(f"error: no images in {args.images}.")
    cli_detection.check_readable(files)  # before anything is written
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    binary = model.output_shape[-1] == 1
    for path in files:
        prediction = predict_padded(model, read_image(path, channels)[None])[0]
        if binary:
            mask = np.where(prediction[..., 0] > args.threshold, 255, 0).astype("uint8")
        else:
            mask = np.argmax(prediction, axis=-1).astype("uint8")
        Image.fromarray(mask).save(output / f"{path.stem}.png")
    meaning = (
        f"255 = the model's class (probability > {args.threshold}), 0 = background"
        if binary
        else f"pixel value = class index 0..{model.output_shape[-1] - 1}"
    )
    print(f"Wrote {len(files)} masks to {output.resolve()} ({meaning}).")
    return 0


def _zoo_weights_column(zoo, name: str) -> str:
    """What ``get(name)`` loads by default, for ``kerasseg zoo list``."""
    data = zoo.info(name)
    default = data["default_weights"]
    if default is None:
        return "random init"
    weights = data["weights"].get(default, {})
    if weights.get("kind") == "encoder":
        state = weights["cache"]["converted"]["status"]
        return f"{default} ({'cached' if state == 'present' else 'download'})"
    trained = weights["trained"]["status"] == "present"
    if weights.get("hosted") and not trained:
        return f"{default} (download)"
    return f"{default} ({'trained' if trained else 'zoo train'})"


def cmd_zoo(args: argparse.Namespace) -> int:
    from kerasseg import zoo

    if args.zoo_command == "list":
        names = zoo.list_models(args.pattern, pretrained=args.pretrained, task=args.task)
        for name in names:
            description = zoo.info(name)["description"]
            print(f"{name:28s} {_zoo_weights_column(zoo, name):26s} {description}")
        if not names:
            print(f"no model matches {args.pattern!r}", file=sys.stderr)
    elif args.zoo_command == "info":
        print(
            json.dumps(
                zoo.info(args.name, count_params=args.count_params, verify=args.verify),
                indent=2,
                default=str,
            )
        )
    elif args.zoo_command == "download":
        for name in args.names:
            paths = zoo.download(name, in_channels=args.in_channels, progress=not args.quiet)
            for path in paths:
                print(f"{name}: {path}")
            if not paths:
                print(f"{name}: no pretrained weights to download")
    elif args.zoo_command == "train":
        from kerasseg.zoo import recipe_training

        record = recipe_training.train(
            args.recipe,
            data_root=args.data_root,
            report=print,
            verbose=0 if args.quiet else "auto",
            progress=not args.quiet,
        )
        metrics = record["metrics"][0]
        values = ", ".join(f"{k} {v:.4f}" for k, v in metrics["values"].items())
        print(f"\n{record['name']}: {metrics['split']}: {values}")
        from kerasseg.zoo import weights as zw

        print(
            f"Weights, record and recipe in {zw.trained_dir(record['name'])}; "
            f"kerasseg.zoo.get({record['name']!r}) loads them."
        )
    elif args.zoo_command == "params":
        from kerasseg.zoo import verify

        if args.write:
            path = verify.write_params(pattern=args.pattern)
            print(f"Wrote {path}")
        else:
            for name in zoo.list_models(args.pattern):
                if "." not in name:
                    print(f"{name:28s} {verify.count_params(name):>12,}")
    elif args.zoo_command == "verify":
        from kerasseg.zoo import remote, verify
        from kerasseg.zoo import weights as zw

        failed = False
        if args.metafiles:
            problems = verify.check_against_registry()
            for problem in problems:
                print(f"METAFILE  {problem}")
            print(f"metafiles: {len(problems)} problem(s)")
            failed = bool(problems)
        entries = verify.verify_cache(args.names or None)
        for entry in entries:
            print(
                f"{entry.status.upper():8s} {entry.kind:10s} {entry.name:28s} {entry.path}"
                + (f"  ({entry.detail})" if entry.status == "corrupt" else "")
            )
        counts = {s: sum(e.status == s for e in entries) for s in ("ok", "corrupt", "missing")}
        print(
            f"cache {remote.home()}: {counts['ok']} ok, {counts['corrupt']} corrupt, "
            f"{counts['missing']} missing (a corrupt file is replaced when next used)"
        )
        failed = failed or counts["corrupt"] > 0
        return 1 if failed else 0
    return 0


DEBUG_HELP = "on an error, show the Python traceback instead of the one-line message"
#: What a user's mistake raises (a missing file, a bad value, a missing optional package):
#: reported as one ``kerasseg: error: ...`` line with exit status 2, as argparse does.
USER_ERRORS = (ValueError, OSError, ImportError)


def _add_to_every_command(parser: argparse.ArgumentParser, *names: str, **options) -> None:
    """Adds the option to every subcommand's parser, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in set(action.choices.values()):
                command.add_argument(*names, **options)
                _add_to_every_command(command, *names, **options)


def _error_line(error: BaseException) -> str:
    """The one-line message of a user error (without the ``error:`` prefix of our own)."""
    message = error.code if isinstance(error, SystemExit) else str(error)
    message = message or type(error).__name__
    return " ".join(str(message).removeprefix("error: ").split())


def build_parser() -> argparse.ArgumentParser:
    from kerasseg import cli_detection

    parser = argparse.ArgumentParser(prog="kerasseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser(
        "demo",
        help="train U-Net on the ISBI 2012 membranes and a detector on BCCD (or synthetic data)",
    )
    demo.add_argument(
        "--output", default="kerasseg-demo", help="output folder (default: kerasseg-demo)"
    )
    demo.add_argument(
        "--data",
        default=None,
        help="ISBI folder with images/ and masks/ (default: ../shared/data/isbi2012-membrane)",
    )
    demo.add_argument(
        "--synthetic",
        action="store_true",
        help="use the synthetic shapes and boxes even if the ISBI and BCCD data are there",
    )
    # The demo's budget: 500 steps of 8 crops of 128x128, a few minutes on 2 cores.
    _add_training_options(demo, epochs=20, steps=25, batch_size=8, size=128, learning_rate=2e-3)
    cli_detection.add_demo_options(demo)
    demo.set_defaults(func=cmd_demo)

    def folder_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--images", default=None, help="folder of images (with --coco: the COCO images)"
        )
        p.add_argument(
            "--masks", default=None, help="segmentation: masks with the images' file stems"
        )
        p.add_argument("--mask-values", default=None, help="raw:class mapping, e.g. '0:0,255:1'")
        p.add_argument(
            "--channels", type=int, default=3, choices=(1, 3), help="1 = grayscale, 3 = RGB"
        )
        p.add_argument("--num-classes", type=int, default=1, help="1 = binary (default)")

    train = sub.add_parser(
        "train", help="train a zoo model on images and masks, or a detector on VOC/COCO boxes"
    )
    folder_options(train)
    cli_detection.add_data_options(train, split="train")
    train.add_argument(
        "--output", required=True, help="folder for model.keras, history and results"
    )
    train.add_argument(
        "--val-indices", default=None, help="e.g. '24-29'; default: the last --val-fraction"
    )
    train.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="segmentation: share of the images kept for validation (without --val-indices)",
    )
    _add_training_options(train, epochs=10, steps=50, batch_size=4, size=256, learning_rate=1e-3)
    cli_detection.add_training_options(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser(
        "evaluate", help="Dice/Jaccard/cosine of a saved model, or a detector's COCO/VOC mAP"
    )
    evaluate.add_argument("--model", required=True, help="a .keras file")
    folder_options(evaluate)
    cli_detection.add_data_options(evaluate, split="test")
    evaluate.add_argument("--indices", default=None, help="subset, e.g. '24-29'")
    evaluate.add_argument("--json", default=None, help="also write the scores to this file")
    evaluate.set_defaults(func=cmd_evaluate)

    predict = sub.add_parser(
        "predict", help="write predicted masks, or pictures of detections and their JSON"
    )
    predict.add_argument("--model", required=True, help="a .keras file")
    predict.add_argument("--images", required=True, help="folder of images to predict")
    predict.add_argument(
        "--output",
        required=True,
        help="folder for one PNG mask per image (binary: 255 = the model's class, 0 = "
        "background; several classes: the class index), or a detector's pictures and JSON",
    )
    predict.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="segmentation, binary: probability above which a pixel is the class (255)",
    )
    predict.add_argument(
        "--score-threshold",
        type=float,
        default=cli_detection.DRAW_SCORE_THRESHOLD,
        help="detector: boxes drawn score at least this (the JSON has all)",
    )
    predict.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="detector: lowest score kept at all (default: the model's own, e.g. 0.05)",
    )
    predict.add_argument(
        "--coco", default=None, metavar="FILE", help="detector: take image ids from this JSON"
    )
    predict.add_argument("--batch-size", type=int, default=8, help="detector: images per batch")
    predict.set_defaults(func=cmd_predict)

    zoo = sub.add_parser(
        "zoo", help="the model zoo: list, describe, download, train and verify weights"
    )
    zoo_sub = zoo.add_subparsers(dest="zoo_command", required=True)
    zoo_list = zoo_sub.add_parser("list", help="models and their weight tags")
    zoo_list.add_argument("pattern", nargs="?", default="*", help="wildcard, e.g. 'fpn_*'")
    zoo_list.add_argument(
        "--task", default=None, choices=("segmentation", "detection"), help="only this task"
    )
    pretrained = zoo_list.add_mutually_exclusive_group()
    pretrained.add_argument(
        "--pretrained",
        dest="pretrained",
        action="store_true",
        default=None,
        help="only names with pretrained default weights",
    )
    pretrained.add_argument(
        "--no-pretrained", dest="pretrained", action="store_false", help="only names without"
    )
    zoo_info = zoo_sub.add_parser("info", help="a model's weights, licence, metrics (JSON)")
    zoo_info.add_argument("name")
    zoo_info.add_argument(
        "--count-params",
        action="store_true",
        help="build the model to count parameters the metafile does not record",
    )
    zoo_info.add_argument(
        "--verify",
        action="store_true",
        help="re-hash the cached files (default: report presence only)",
    )
    zoo_download = zoo_sub.add_parser(
        "download", help="fetch (and convert) default weights into $KERASSEG_HOME"
    )
    zoo_download.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="model, model.tag or encoder weights (resnet34.imagenet)",
    )
    zoo_download.add_argument(
        "--in-channels",
        type=int,
        default=None,
        help="convert ImageNet weights for this many input channels",
    )
    zoo_download.add_argument("--quiet", action="store_true", help="no progress bar")
    zoo_train = zoo_sub.add_parser(
        "train", help="run a training recipe; the weights go to the cache under its name"
    )
    zoo_train.add_argument(
        "recipe",
        metavar="NAME_OR_RECIPE",
        help="recipe name (unet11.isbi2012) or a recipe .yml file",
    )
    zoo_train.add_argument(
        "--data-root",
        default=None,
        help="folder holding the recipe's data (default: $KERASSEG_DATA, ../shared/data)",
    )
    zoo_train.add_argument("--quiet", action="store_true", help="no Keras progress bar")
    zoo_params = zoo_sub.add_parser(
        "params", help="count parameters (builds each model); --write updates zoo/params.yml"
    )
    zoo_params.add_argument("pattern", nargs="?", default="*", help="wildcard on the name")
    zoo_params.add_argument(
        "--write", action="store_true", help="write the counts into the zoo's params.yml"
    )
    zoo_verify = zoo_sub.add_parser(
        "verify", help="re-hash cached weights: OK / CORRUPT / MISSING (exit 1 if corrupt)"
    )
    zoo_verify.add_argument("names", nargs="*", metavar="NAME", help="default: everything")
    zoo_verify.add_argument(
        "--metafiles",
        action="store_true",
        help="also check the metafiles against the registered builders",
    )
    zoo.set_defaults(func=cmd_zoo)
    # Every command takes --debug after its name too; SUPPRESS keeps the top-level value.
    _add_to_every_command(
        parser, "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from kerasseg import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (SystemExit, *USER_ERRORS) as error:
        # A SystemExit without a message is an exit status, not an error.
        message_less = isinstance(error, SystemExit) and not isinstance(error.code, str)
        if args.debug or message_less:
            raise
        parser.exit(2, f"kerasseg: error: {_error_line(error)}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
