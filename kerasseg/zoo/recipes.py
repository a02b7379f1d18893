"""Training recipes: the exact configuration behind each set of task weights.

A recipe is a YAML file (``zoo/recipes/<model>.<tag>.yml``)::

    name: unet11.isbi2012          # <registered model>.<tag>: where the weights go
    description: ...               # optional
    model:
      num_classes: 1               # kerasseg.training.TrainConfig.num_classes
      init: imagenet               # initial weights: imagenet (the encoder's) or null
      kwargs: {}                   # further builder arguments (TrainConfig.model_kwargs)
    data:
      dataset: ISBI 2012 membranes # name for the metrics record
      path: isbi2012-membrane      # absolute, or relative to the data root (see data_roots)
      images: images               # sub-folders of `path`
      masks: masks
      channels: 1                  # 1 (grayscale) or 3 (RGB): the model's input channels
      mask_values: {0: 1, 255: 0}  # raw mask value -> class id (null: values are class ids)
      classes: [membrane]          # names of the predicted classes
      train: 0-23                  # indices (in natural file order): "0-23", "0,3,5-7" or a list
      val: 24-29
    train:                         # the other TrainConfig fields
      epochs: 40
      steps_per_epoch: 50
      batch_size: 8
      crop_size: 256
      learning_rate: 0.0003
      seed: 0

A detection recipe says ``task: detection`` and names the splits of a VOC folder::

    name: yolov8_n.bccd
    task: detection
    model: {num_classes: 3, init: null, kwargs: {}}
    data:
      dataset: BCCD
      format: voc                  # a VOC folder (JPEGImages/, Annotations/, ImageSets/Main/)
      path: bccd/BCCD
      classes: [Platelets, RBC, WBC]  # class ids in this order
      train: train                 # ImageSets/Main/<split>.txt
      val: val
      test: test                   # optional: scored once after training
    train:                         # kerasseg.training.DetectionTrainConfig fields
      epochs: 30
      image_size: 320

`kerasseg.zoo.recipe_training.train` runs it with `kerasseg.training.train_segmentation`
(or `train_detection`) and stores the result in the
cache (``$KERASSEG_HOME/trained/<name>/``: the weights, a record with their SHA-256 and the
validation metrics, the recipe used, and the run's outputs), where ``kerasseg.zoo.get(name)``
finds it.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml

from kerasseg.zoo import metafiles
from kerasseg.zoo.metafiles import key_problems

logger = logging.getLogger(__name__)

ENV_DATA = "KERASSEG_DATA"
_NAME = re.compile(r"^[A-Za-z0-9_]+\.[a-z0-9][a-z0-9_-]*$")
_CONFIG_KEYS = {"model", "model_kwargs", "num_classes"}  # TrainConfig fields set from `model`


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The `data` section of a recipe (see the module docstring)."""

    dataset: str
    path: str
    images: str
    masks: str
    channels: int
    mask_values: dict[int, int] | None
    classes: tuple[str, ...]
    train: tuple[int, ...]
    val: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class DetectionDataSpec:
    """The `data` section of a detection recipe (see the module docstring)."""

    dataset: str
    path: str
    format: str
    classes: tuple[str, ...]
    train: str
    val: str
    test: str | None


#: Tasks a recipe can train; detection data formats.
TASKS = ("segmentation", "detection")
DETECTION_FORMATS = ("voc",)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A parsed recipe.

    Attributes:
        name: ``<model>.<tag>``.
        description: Free text.
        num_classes: Output classes.
        init: Initial weights: None (random) or ``"imagenet"``.
        model_kwargs: Further builder arguments.
        data: Where the data is and how it is split.
        train: The remaining `kerasseg.training.TrainConfig` (or, for detection,
            `kerasseg.training.DetectionTrainConfig`) fields.
        text: The YAML as written (stored with the trained weights; hashed).
        path: The file it was read from, if any.
    """

    name: str
    description: str
    num_classes: int
    init: str | None
    model_kwargs: dict[str, Any]
    data: DataSpec | DetectionDataSpec
    train: dict[str, Any]
    text: str
    path: Path | None = None
    task: str = "segmentation"

    @property
    def model(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def input_shape(self) -> tuple[None, None, int]:
        return (None, None, getattr(self.data, "channels", 3))

    def train_config(self, **extra_model_kwargs: Any):
        """The `kerasseg.training.TrainConfig` (`DetectionTrainConfig`) this recipe stands for."""
        from kerasseg.training import DetectionTrainConfig, TrainConfig

        if self.task == "detection":
            return DetectionTrainConfig(
                model=self.model,
                model_kwargs={**self.model_kwargs, **extra_model_kwargs},
                num_classes=self.num_classes,
                **self.train,
            )
        return TrainConfig(
            model=self.model,
            model_kwargs={**self.model_kwargs, **extra_model_kwargs},
            num_classes=self.num_classes,
            **self.train,
        )


def parse_indices(value: Any, where: str) -> tuple[int, ...]:
    """``"0-23"``, ``"0,3,5-7"``, an int or a list of ints -> indices (ranges inclusive)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return tuple(value)
    if isinstance(value, str):
        indices: list[int] = []
        try:
            for part in value.replace(" ", "").split(","):
                if "-" in part:
                    start, end = part.split("-")
                    indices.extend(range(int(start), int(end) + 1))
                else:
                    indices.append(int(part))
        except ValueError:
            pass
        else:
            if indices:
                return tuple(indices)
    raise ValueError(f"{where} must be indices like '0-23', '0,3,5-7' or a list, got {value!r}.")


def _check_keys(data: Any, required: set[str], optional: set[str], where: str) -> dict:
    problems = key_problems(data, required, optional, where)
    if problems:
        raise ValueError("; ".join(problems) + ".")
    return data


def parse_recipe(text: str, path: Path | None = None) -> Recipe:
    """Parses and checks a recipe's YAML (see the module docstring)."""
    where = f"Recipe {path}" if path else "Recipe"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{where} is not valid YAML: {error}") from error
    _check_keys(data, {"name", "model", "data", "train"}, {"description", "task"}, where)
    task = data.get("task") or "segmentation"
    if task not in TASKS:
        raise ValueError(f"{where}: `task` must be one of {TASKS}, got {task!r}.")
    name = data["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{where}: `name` must be '<model>.<tag>', got {name!r}.")
    model = _check_keys(data["model"], {"num_classes"}, {"init", "kwargs"}, f"{where}: model")
    num_classes = model["num_classes"]
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(
            f"{where}: model.num_classes must be a positive integer, got {num_classes!r}."
        )
    init = model.get("init")
    if init not in (None, "imagenet"):
        raise ValueError(f"{where}: model.init must be 'imagenet' or null, got {init!r}.")
    kwargs = model.get("kwargs") or {}
    if not isinstance(kwargs, dict) or "encoder_weights" in kwargs:
        raise ValueError(
            f"{where}: model.kwargs must be a mapping of builder arguments (encoder weights go "
            f"in model.init), got {kwargs!r}."
        )
    if task == "detection":
        spec = _detection_data(data["data"], num_classes, where)
        return _finish(data, where, name, num_classes, init, kwargs, spec, text, path, task)
    raw = _check_keys(
        data["data"],
        {"path", "channels", "train", "val"},
        {"dataset", "images", "masks", "mask_values", "classes"},
        f"{where}: data",
    )
    if raw["channels"] not in (1, 3):
        raise ValueError(f"{where}: data.channels must be 1 or 3, got {raw['channels']!r}.")
    mask_values = raw.get("mask_values")
    if mask_values is not None and not (
        isinstance(mask_values, dict)
        and all(isinstance(k, int) and isinstance(v, int) for k, v in mask_values.items())
    ):
        raise ValueError(f"{where}: data.mask_values must map ints to ints, got {mask_values!r}.")
    classes = raw.get("classes") or []
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{where}: data.classes must be a list of names, got {classes!r}.")
    spec = DataSpec(
        dataset=str(raw.get("dataset") or raw["path"]),
        path=str(raw["path"]),
        images=str(raw.get("images") or "images"),
        masks=str(raw.get("masks") or "masks"),
        channels=raw["channels"],
        mask_values=mask_values,
        classes=tuple(classes),
        train=parse_indices(raw["train"], f"{where}: data.train"),
        val=parse_indices(raw["val"], f"{where}: data.val"),
    )
    if set(spec.train) & set(spec.val):
        overlap = sorted(set(spec.train) & set(spec.val))
        raise ValueError(f"{where}: data.train and data.val overlap: {overlap}.")
    return _finish(data, where, name, num_classes, init, kwargs, spec, text, path, task)


def _detection_data(raw: Any, num_classes: int, where: str) -> DetectionDataSpec:
    raw = _check_keys(
        raw, {"path", "format", "classes", "train", "val"}, {"dataset", "test"}, f"{where}: data"
    )
    if raw["format"] not in DETECTION_FORMATS:
        raise ValueError(
            f"{where}: data.format must be one of {DETECTION_FORMATS}, got {raw['format']!r}."
        )
    classes = raw["classes"]
    if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise ValueError(f"{where}: data.classes must be a list of names, got {classes!r}.")
    if len(classes) != num_classes:
        raise ValueError(
            f"{where}: data.classes names {len(classes)} classes but model.num_classes is "
            f"{num_classes}."
        )
    splits = {key: raw.get(key) for key in ("train", "val", "test")}
    for key, value in splits.items():
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: data.{key} must be a split name, got {value!r}.")
    if len({v for v in splits.values() if v}) != len([v for v in splits.values() if v]):
        raise ValueError(f"{where}: data.train, data.val and data.test must differ: {splits}.")
    return DetectionDataSpec(
        dataset=str(raw.get("dataset") or raw["path"]),
        path=str(raw["path"]),
        format=raw["format"],
        classes=tuple(classes),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
    )


def _finish(
    data: dict,
    where: str,
    name: str,
    num_classes: int,
    init: str | None,
    kwargs: dict,
    spec: DataSpec | DetectionDataSpec,
    text: str,
    path: Path | None,
    task: str,
) -> Recipe:
    """The `train` section checked against the task's config fields, and the recipe."""
    from kerasseg.training import DetectionTrainConfig, TrainConfig

    config = DetectionTrainConfig if task == "detection" else TrainConfig
    allowed = {f.name for f in dataclasses.fields(config)} - _CONFIG_KEYS - {"weights"}
    train = _check_keys(data["train"], set(), allowed, f"{where}: train")
    return Recipe(
        name=name,
        description=str(data.get("description") or ""),
        num_classes=num_classes,
        init=init,
        model_kwargs=dict(kwargs),
        data=spec,
        train=dict(train),
        text=text,
        path=path,
        task=task,
    )


def known_recipes() -> dict[str, Path]:
    """Recipes the metafiles name, plus ``recipes/*.yml`` beside every index, by name."""
    index = metafiles.load_index()
    found: dict[str, Path] = {}
    for root in index.roots:
        for path in sorted((root / "recipes").glob("*.yml")) if (root / "recipes").is_dir() else []:
            found.setdefault(path.stem, path)
    for card in index.models.values():
        for weights in card.weights.values():
            found[weights.name] = weights.recipe
    return found


def load_recipe(name_or_path: str | os.PathLike) -> Recipe:
    """A recipe by name (``"unet11.isbi2012"``) or from a YAML file path."""
    text_value = os.fspath(name_or_path)
    path = Path(text_value).expanduser()
    if path.is_file() or text_value.endswith((".yml", ".yaml")) or os.sep in text_value:
        if not path.is_file():
            raise FileNotFoundError(f"Recipe file {str(path)!r} does not exist.")
    else:
        known = known_recipes()
        if text_value not in known:
            close = difflib.get_close_matches(text_value, list(known), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"No recipe named {text_value!r}.{hint} Known recipes: {sorted(known) or 'none'}; "
                f"or pass the path of a recipe file."
            )
        path = known[text_value]
    return parse_recipe(path.read_text(encoding="utf-8"), path)


def data_roots(data_root: str | os.PathLike | None = None) -> list[Path]:
    """Where a recipe's relative ``data.path`` is looked up, in order: `data_root`,
    ``$KERASSEG_DATA``, ``../shared/data`` from the working directory, and ``../shared/data``
    beside a source checkout."""
    roots = []
    if data_root is not None:
        roots.append(Path(data_root).expanduser())
    if os.environ.get(ENV_DATA):
        roots.append(Path(os.environ[ENV_DATA]).expanduser())
    roots.append(Path.cwd().parent / "shared" / "data")
    roots.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    return roots


def resolve_data(recipe: Recipe, data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding the recipe's images and masks (a detection recipe: its VOC
    folder)."""
    spec = recipe.data
    candidates = (
        [Path(spec.path).expanduser()]
        if Path(spec.path).expanduser().is_absolute()
        else [root / spec.path for root in data_roots(data_root)]
    )
    if isinstance(spec, DetectionDataSpec):
        parts = ("JPEGImages", "Annotations")
    else:
        parts = (spec.images, spec.masks)
    for folder in candidates:
        if all((folder / part).is_dir() for part in parts):
            return folder
    looked = "\n".join(f"  {c}" for c in candidates)
    raise FileNotFoundError(
        f"The data of recipe {recipe.name!r} ({spec.dataset}: {spec.path}/{{{','.join(parts)}}}) "
        f"was not found. Looked in:\n{looked}\nPass --data-root DIR (the folder holding "
        f"{spec.path!r}) or set {ENV_DATA}."
    )


__all__ = [
    "DETECTION_FORMATS",
    "TASKS",
    "DataSpec",
    "DetectionDataSpec",
    "Recipe",
    "data_roots",
    "known_recipes",
    "load_recipe",
    "parse_indices",
    "parse_recipe",
    "resolve_data",
]
