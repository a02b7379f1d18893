"""Weights in the cache: converted ImageNet encoders, trained task weights, verification.

Cache layout under ``$KERASSEG_HOME`` (default ``~/.cache/kerasseg``)::

    downloads/resnet34-b627a593.pth                  as published (see kerasseg.zoo.remote)
    converted/resnet34-b627a593.weights.h5           Keras weights converted from it
    converted/resnet34-b627a593.weights.h5.record.json   its SHA-256, size and source
    converted/resnet34-b627a593.in1.weights.h5       the same for 1 input channel (grayscale)
    trained/unet11.isbi2012/model.weights.h5         written by `kerasseg zoo train`
    trained/unet11.isbi2012/record.json              its SHA-256, metrics, versions
    trained/unet11.isbi2012/recipe.yml               the recipe that produced it
    trained/unet11.isbi2012/run/                     the training run (history, model.keras)

ImageNet encoder weights are converted once: the published torchvision checkpoint is fetched
(verified against its published hash prefix), converted with `kerasseg.zoo.convert` (which
reads the checkpoint without PyTorch, with a restricted unpickler that refuses anything but
tensors) and saved as ``.weights.h5``; the converted file's own SHA-256 is recorded beside
it, so a damaged converted file is noticed (a warning), deleted and converted again.
Converted whole-model weights (a metafile's
``converted_weights``, e.g. torchvision's COCO detectors) take the same path
(`converted_weights_path`), into ``converted/retinanet_resnet50_fpn_coco-eeacb38b.weights.h5``.

**Builder convention for encoder weights.** A builder whose model nests an encoder takes an
``encoder_weights`` argument (None or the path of a file that `kerasseg.encoders.get` reads)
and passes it on to ``kerasseg.encoders.get(..., weights=encoder_weights)``. The zoo resolves
``weights="imagenet"`` to the converted file for the model's input channel count and calls the
builder with ``encoder_weights=<path>``; whole-model weights (a tag) are loaded afterwards
with ``model.load_weights``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kerasseg.utils.checks import check_positive_int
from kerasseg.utils.files import atomic_path
from kerasseg.zoo import metafiles
from kerasseg.zoo import remote as dl
from kerasseg.zoo.metafiles import ConvertedWeights, EncoderWeights

logger = logging.getLogger(__name__)

CONVERTED = "converted"
TRAINED = "trained"
RECORD_SUFFIX = ".record.json"
TRAINED_WEIGHTS = "model.weights.h5"
TRAINED_RECORD = "record.json"
TRAINED_RECIPE = "recipe.yml"


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One file of the cache and its state, as `kerasseg.zoo.verify.verify_cache` reports it.

    Attributes:
        kind: ``"download"``, ``"converted"`` or ``"trained"``.
        name: What it holds (``"resnet34.imagenet"``, ``"unet11.isbi2012"``).
        path: Where it is (or would be).
        status: ``"ok"``, ``"corrupt"`` or ``"missing"``.
        detail: The hash found, or what is wrong.
    """

    kind: str
    name: str
    path: Path
    status: str
    detail: str


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def versions() -> dict[str, str]:
    import keras

    from kerasseg import __version__

    return {"kerasseg": __version__, "keras": keras.__version__, "backend": keras.backend.backend()}


# --------------------------------------------------------------------------------------------
# Files with a recorded hash (converted and trained weights)


def write_json_atomic(path: Path, data: dict) -> None:
    with atomic_path(path) as partial:
        partial.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_recorded(path: Path, record_path: Path) -> tuple[str, str]:
    """``("ok" | "corrupt" | "missing", detail)`` of a file against the SHA-256 in its record."""
    if not path.is_file():
        return "missing", str(path)
    record = read_json(record_path)
    if record is None or not isinstance(record.get("sha256"), str):
        return "corrupt", f"its record {record_path} is missing or unreadable"
    digest = dl.sha256_file(path)
    if digest != record["sha256"]:
        return "corrupt", (
            f"sha256 {digest} does not match the recorded {record['sha256']} "
            f"({path.stat().st_size} bytes, recorded {record.get('size_bytes')})"
        )
    return "ok", f"sha256 {digest}"


def file_record(path: Path) -> dict[str, Any]:
    return {"sha256": dl.sha256_file(path), "size_bytes": path.stat().st_size}


# --------------------------------------------------------------------------------------------
# ImageNet (and other pretrained) encoder weights


def find_encoder_weights(name: str) -> EncoderWeights:
    """Encoder weights by name (``"resnet34.imagenet"``) or encoder (``"resnet34"``)."""
    index = metafiles.load_index()
    found = index.encoder_weights.get(name) or index.imagenet_for(name)
    if found is None:
        raise ValueError(
            f"No encoder weights named {name!r}; the metafiles define "
            f"{sorted(index.encoder_weights)}."
        )
    return found


def converted_path(weights: EncoderWeights | ConvertedWeights, in_channels: int = 3) -> Path:
    stem = weights.file.filename.rsplit(".", 1)[0]
    suffix = "" if in_channels == 3 else f".in{in_channels}"
    return dl.home() / CONVERTED / f"{stem}{suffix}.weights.h5"


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def check_converted(weights: EncoderWeights | ConvertedWeights, path: Path) -> tuple[str, str]:
    status, detail = check_recorded(path, _record_path(path))
    if status == "ok":
        record = read_json(_record_path(path)) or {}
        source = str(record.get("source_sha256", ""))
        if record.get("source_url") != weights.file.url or not weights.file.matches(source):
            return "corrupt", (
                f"converted from {record.get('source_url')} (sha256 {source or '?'}), not from "
                f"the metafile's {weights.file.url} ({weights.file.expected_hash})"
            )
    return status, detail


def encoder_weights_path(
    name: str, *, in_channels: int = 3, progress: bool = True, command: str | None = None
) -> Path:
    """The converted ``.weights.h5`` of encoder weights, fetching and converting if needed.

    Args:
        name: Encoder weights name (``"resnet34.imagenet"``) or encoder name (its ImageNet
            weights).
        in_channels: The encoder's input channels; other than 3, the first convolution is
            adapted (`kerasseg.zoo.convert.adapt_input_conv`) and cached separately.
        progress: Progress bar while downloading.
        command: The command quoted by the offline error (default: download these weights).

    Returns:
        The path of a verified file that ``kerasseg.encoders.get(encoder, weights=path,
        in_channels=in_channels)`` loads.
    """
    weights = find_encoder_weights(name)
    check_positive_int(in_channels, "in_channels")

    def convert(checkpoint: Path, path: Path) -> Any:
        from kerasseg.encoders.build import convert_torchvision_file

        return convert_torchvision_file(weights.encoder, checkpoint, path, in_channels=in_channels)

    return _converted_once(
        weights,
        converted_path(weights, in_channels),
        convert,
        what=f"The {weights.name} weights of encoder {weights.encoder} ({weights.file.url})",
        command=command or f"kerasseg zoo download {weights.name}",
        progress=progress,
        record={"encoder": weights.encoder, "in_channels": in_channels},
    )


def converted_weights_path(
    weights: ConvertedWeights, *, progress: bool = True, command: str | None = None
) -> Path:
    """The converted ``.weights.h5`` of a model's converted weights (``weights="coco"``),
    fetching and converting them if needed, like `encoder_weights_path`.

    Args:
        weights: The metafile entry (`kerasseg.zoo.metafiles.ConvertedWeights`).
        progress: Progress bar while downloading.
        command: The command quoted by the offline error (default: download these weights).

    Returns:
        The path of a verified file that ``model.load_weights`` reads into the model built
        with ``num_classes=weights.num_classes``.
    """

    def convert(checkpoint: Path, path: Path) -> Any:
        from kerasseg.zoo.convert_detection import convert_torchvision_detector_file

        return convert_torchvision_detector_file(weights.model, checkpoint, path)

    return _converted_once(
        weights,
        converted_path(weights),
        convert,
        what=f"The {weights.name} weights ({weights.file.url})",
        command=command or f"kerasseg zoo download {weights.name}",
        progress=progress,
        record={"model": weights.model, "num_classes": weights.num_classes},
    )


def _converted_once(
    weights: EncoderWeights | ConvertedWeights,
    path: Path,
    convert: Callable[[Path, Path], Any],
    *,
    what: str,
    command: str,
    progress: bool,
    record: dict[str, Any],
) -> Path:
    """`path` if it holds a verified conversion of `weights`' file; else fetches the file,
    converts it with ``convert(checkpoint, path)`` (which returns a report) and records the
    result's SHA-256 and source beside it."""
    status, detail = check_converted(weights, path)
    if status == "ok":
        logger.debug("Using converted %s (%s)", path, detail)
        return path
    if status == "corrupt":
        logger.warning(
            "Cached converted weights %s are corrupt or stale (%s); converting them again.",
            path,
            detail,
        )
        path.unlink()
    checkpoint = dl.fetch(
        weights.file,
        what=what,
        command=command,
        progress=progress,
        also_looked=[(path, "converted Keras weights")],
    )
    report = convert(checkpoint, path)
    write_json_atomic(
        _record_path(path),
        {
            **file_record(path),
            "weights": weights.name,
            **record,
            "source_url": weights.file.url,
            "source_sha256": dl.sha256_file(checkpoint),
            "conversion": str(report),
            "created": now(),
            **versions(),
        },
    )
    logger.info("Converted %s to %s (%s)", checkpoint, path, report)
    return path


# --------------------------------------------------------------------------------------------
# Trained task weights


def trained_dir(name: str) -> Path:
    return dl.home() / TRAINED / name


def trained_record(name: str) -> dict | None:
    """The record of a trained ``<model>.<tag>`` in the cache, if it is there and valid JSON."""
    return read_json(trained_dir(name) / TRAINED_RECORD)


def check_trained(name: str) -> tuple[str, str]:
    directory = trained_dir(name)
    return check_recorded(directory / TRAINED_WEIGHTS, directory / TRAINED_RECORD)


def trained_names() -> list[str]:
    """Names with a trained entry (weights and record) in the cache, sorted."""
    root = dl.home() / TRAINED
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / TRAINED_RECORD).is_file()
    )


def trained_weights_path(name: str, *, recipe: Path | None = None) -> Path:
    """The verified trained weights of ``<model>.<tag>``.

    Raises:
        WeightsNotAvailableError: not trained here (or the file is damaged), with the
            ``kerasseg zoo train`` command that makes them.
    """
    directory = trained_dir(name)
    status, detail = check_trained(name)
    if status == "ok":
        return directory / TRAINED_WEIGHTS
    if status == "corrupt":
        logger.warning(
            "Trained weights of %s in %s are corrupt (%s); not using them.", name, directory, detail
        )
    recipe_note = f" (recipe: {recipe})" if recipe else ""
    state = (
        f"the trained copy is corrupt: {detail}"
        if status == "corrupt"
        else "they were not trained on this machine"
    )
    raise dl.WeightsNotAvailableError(
        f"No usable weights for {name!r}: they are not hosted anywhere (no metafile lists a "
        f"URL for them) and {state}.\nLooked for:\n  {directory / TRAINED_WEIGHTS}\n"
        f"Environment:\n{dl.environment_summary()}\n"
        f"Train them with:\n  kerasseg zoo train {name}{recipe_note}"
    )
