"""The zoo's metafiles: reading, validating and looking up ``zoo/model-index.yml``.

The metafiles are the zoo's source of truth for everything that is data rather than code:
which weights exist for which model, where they are published, their hash, size, licence,
preprocessing and classes, the recipe that trained them and the metrics measured. The
builders are code, registered with `kerasseg.registry.register_model`; a metafile entry
names a registered model, and `kerasseg.zoo.verify.check_against_registry` insists that it
exists, in the metafile's family, and that its encoder weights fit its encoder.

Where they are read from:

1. The packaged index: ``kerasseg/zoo/index/`` in an installed wheel (the top-level ``zoo/``
   folder of the source tree is shipped there, see ``setup.py``), else ``zoo/`` beside the
   ``kerasseg`` package (a source checkout or an editable install).
2. Extra indexes from ``$KERASSEG_ZOO_INDEX``: paths separated by ``os.pathsep``, each a
   ``model-index.yml``, a folder holding one, or a single metafile. Tests and users add models
   this way without touching the package. Names must stay unique across all of them.

What code knows is not repeated here: a model's builder, task, encoder, default classes
and input shape, and the multiple its input sizes need, come from its registration
(`kerasseg.registry.register_model`). A model needs a metafile entry only for what code
cannot know: its weights. Parameter counts are generated data (``params.yml`` beside the
index, written by ``kerasseg zoo params --write`` and checked by the tests).

Schema (version 2). ``model-index.yml``::

    schema: 2
    metafiles: [metafiles/encoders.yml, metafiles/unet.yml]   # relative to the index

A metafile (one per family: the ``family`` of the registered models it describes)::

    family: unet                   # the file's stem
    title: U-Net (Ronneberger et al., 2015)      # optional
    paper: {title: ..., url: ...}                # optional
    encoder_weights:               # optional: pretrained encoder weights
      - name: resnet34.imagenet    # <encoder>.<tag>
        encoder: resnet34          # a kerasseg.encoders name
        format: torchvision        # converted by kerasseg.encoders.convert
        file: {url: ..., sha256: <64 hex> | sha256_prefix: <8+ hex>, size_mb | size_bytes}
        licence: BSD-3-Clause      # required on every weights entry
        licence_note, source, dataset, classes, preprocessing   # optional, free text
        metrics: [{dataset, values: {name: number}, source, split?, task?, recipe?, date?}]
    models:                        # optional: only models with weights of their own
      - name: unet11               # a registered name
        encoder_weights: {imagenet: vgg11.imagenet}   # optional; that is the default
        default_weights: imagenet  # optional; default: imagenet where the encoder has it
        converted_weights:         # optional: a third party's whole-model checkpoints,
          coco:                    #   converted on first use; name "<model>.<key>"
            format: torchvision    # converted by kerasseg.zoo.convert_detection
            file: {url: ..., sha256_prefix: ..., size_mb: ...}
            num_classes: 91        # the model's num_classes for these weights
            licence: BSD-3-Clause
            licence_note, source, dataset, preprocessing   # optional, free text
            classes: [...]         # optional: class names by kerasseg class id
            metrics: [...]         # published metrics, as for encoder weights
        weights:                   # task weights, by tag: name "<model>.<tag>"
          isbi2012:
            recipe: recipes/unet11.isbi2012.yml   # relative to the index; required
            file: null             # or {url, sha256, size_bytes} once hosted
            licence: ..., dataset: ..., classes: [...], preprocessing: ...
            metrics: []            # only numbers a real run produced

Quote hashes in YAML (``sha256_prefix: "19584684"`` would otherwise be read as a number).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kerasseg.zoo.remote import RemoteFile

ENV_INDEX = "KERASSEG_ZOO_INDEX"
INDEX_FILE = "model-index.yml"
SCHEMA_VERSION = 2
#: File of generated parameter counts beside ``model-index.yml`` (``kerasseg zoo params``).
PARAMS_FILE = "params.yml"
#: ``default_weights`` of a model entry that does not set it: ImageNet where its encoder
#: has such weights, else random initialisation (resolved by `kerasseg.zoo.registry`).
AUTO = "auto"

_MODEL_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_TAG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class MetafileError(ValueError):
    """A metafile or the index is malformed; the message lists every problem found."""


@dataclasses.dataclass(frozen=True)
class EncoderWeights:
    """Pretrained weights of an encoder, published by a third party and converted here.

    Attributes:
        name: ``<encoder>.<tag>``, e.g. ``"resnet34.imagenet"``.
        encoder: The `kerasseg.encoders` name.
        format: How the file is converted: ``"torchvision"`` (`kerasseg.zoo.convert`).
        file: The published file.
        licence: Licence of the weights (SPDX identifier where there is one).
        licence_note: Further terms (e.g. the training data's).
        source: Who publishes them, and under which name.
        dataset: The data they were trained on.
        classes: What the original head predicted (not converted).
        preprocessing: What the encoder expects (it normalises its input itself).
        metrics: Published metrics (dicts, see the module docstring).
        metafile: The metafile that lists them.
    """

    name: str
    encoder: str
    format: str
    file: RemoteFile
    licence: str
    licence_note: str = ""
    source: str = ""
    dataset: str = ""
    classes: str = ""
    preprocessing: str = ""
    metrics: tuple[dict, ...] = ()
    metafile: Path | None = None


@dataclasses.dataclass(frozen=True)
class TaskWeights:
    """Weights of a whole model trained for a task, addressed as ``<model>.<tag>``.

    Attributes:
        model: The registered model name.
        tag: The tag, e.g. ``"isbi2012"``.
        recipe: Absolute path of the recipe that trains them.
        file: The published file, or None while they are not hosted (then ``kerasseg zoo
            train`` makes them).
        licence, licence_note, dataset, classes, preprocessing: As for `EncoderWeights`.
        metrics: Metrics of a real run of the recipe (empty until there is one).
        metafile: The metafile that lists them.
    """

    model: str
    tag: str
    recipe: Path
    file: RemoteFile | None
    licence: str
    licence_note: str = ""
    dataset: str = ""
    classes: tuple[str, ...] = ()
    preprocessing: str = ""
    metrics: tuple[dict, ...] = ()
    metafile: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.model}.{self.tag}"


@dataclasses.dataclass(frozen=True)
class ConvertedWeights:
    """A whole model's weights published by a third party, converted here on first use.

    Attributes:
        model: The registered model name.
        key: What ``weights=`` names them by, e.g. ``"coco"``.
        format: How the file is converted: ``"torchvision"``
            (`kerasseg.zoo.convert_detection`).
        file: The published file.
        num_classes: The model's ``num_classes`` for these weights.
        licence, licence_note, source, dataset, preprocessing: As for `EncoderWeights`.
        classes: Class names by kerasseg class id (empty: not listed).
        metrics: Published metrics (dicts, see the module docstring).
        metafile: The metafile that lists them.
    """

    model: str
    key: str
    format: str
    file: RemoteFile
    num_classes: int
    licence: str
    licence_note: str = ""
    source: str = ""
    dataset: str = ""
    preprocessing: str = ""
    classes: tuple[str, ...] = ()
    metrics: tuple[dict, ...] = ()
    metafile: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.model}.{self.key}"


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What the metafiles say about a model (see the module docstring for the fields).

    Attributes:
        name: The registered model name.
        family: The metafile's family.
        encoder_weights: ``{key: encoder weights name}`` that ``weights=key`` loads;
            empty: the encoder's ImageNet weights, where listed, as ``"imagenet"``.
        default_weights: What ``weights="default"`` loads: None, a key of
            `encoder_weights`, a tag of `weights`, or `AUTO`.
        weights: Task weights by tag.
        metafile: The metafile holding the entry; None for a model no metafile lists.
        converted_weights: Third-party whole-model weights by key (``"coco"``).
    """

    name: str
    family: str
    encoder_weights: Mapping[str, str] = dataclasses.field(default_factory=dict)
    default_weights: str | None = AUTO
    weights: Mapping[str, TaskWeights] = dataclasses.field(default_factory=dict)
    metafile: Path | None = None
    converted_weights: Mapping[str, ConvertedWeights] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Family:
    """A metafile's family-wide fields: ``title``, ``paper`` (title, url) and its path."""

    name: str
    title: str = ""
    paper: Mapping[str, str] = dataclasses.field(default_factory=dict)
    metafile: Path | None = None


@dataclasses.dataclass(frozen=True)
class Index:
    """Every metafile read: models and encoder weights by name."""

    models: Mapping[str, ModelCard]
    encoder_weights: Mapping[str, EncoderWeights]
    metafiles: tuple[Path, ...]
    roots: tuple[Path, ...]
    families: Mapping[str, Family] = dataclasses.field(default_factory=dict)
    params: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def model(self, name: str) -> ModelCard | None:
        return self.models.get(name)

    def imagenet_for(self, encoder: str) -> EncoderWeights | None:
        return self.encoder_weights.get(f"{encoder}.imagenet")

    def converted(self, name: str) -> ConvertedWeights | None:
        """Converted whole-model weights by name (``"retinanet_resnet50.coco"``), or None."""
        model, _, key = name.partition(".")
        card = self.models.get(model)
        return card.converted_weights.get(key) if card is not None else None


# --------------------------------------------------------------------------------------------
# Locating the index


def packaged_root() -> Path:
    """The folder holding the packaged ``model-index.yml`` (wheel or source tree)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "index", here.parents[1] / "zoo"):
        if (candidate / INDEX_FILE).is_file():
            return candidate
    raise MetafileError(
        f"The zoo's {INDEX_FILE} was found neither in the package ({here / 'index'}) nor in the "
        f"source tree ({here.parents[1] / 'zoo'}); the installation is incomplete."
    )


def extra_sources() -> list[Path]:
    """The paths in ``$KERASSEG_ZOO_INDEX`` (empty when unset)."""
    value = os.environ.get(ENV_INDEX, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def load_index() -> Index:
    """The packaged index plus those of ``$KERASSEG_ZOO_INDEX``, validated (cached per value
    of the variable and the files' modification times; `clear_cache` forgets it)."""
    sources = [packaged_root(), *extra_sources()]
    stamps = []
    for source in sources:
        for path in [source] if source.is_file() else [source / INDEX_FILE]:
            stamps.append((str(path), path.stat().st_mtime_ns if path.exists() else None))
    return _load_index(tuple(str(s) for s in sources), tuple(stamps))


def clear_cache() -> None:
    _load_index.cache_clear()


@functools.lru_cache(maxsize=8)
def _load_index(sources: tuple[str, ...], _stamps: tuple) -> Index:
    return read_index([Path(s) for s in sources])


def read_index(sources: list[Path]) -> Index:
    """Reads and validates the given indexes (``model-index.yml`` files, folders holding one,
    or single metafiles), without the packaged one and without caching.

    Raises:
        MetafileError: listing every problem found.
    """
    problems: list[str] = []
    metafiles: list[tuple[Path, Path]] = []  # (metafile, root)
    roots = []
    params: dict[str, int] = {}
    for source in sources:
        if source.is_dir():
            source = source / INDEX_FILE
        if not source.is_file():
            problems.append(f"{source}: no such file (from {ENV_INDEX} or the package)")
            continue
        data = _read_yaml(source, problems)
        if data is None:
            continue
        if isinstance(data, dict) and "metafiles" in data:
            roots.append(source.parent)
            _check_keys(data, {"schema", "metafiles"}, {"description"}, str(source), problems)
            if data.get("schema") != SCHEMA_VERSION:
                problems.append(
                    f"{source}: `schema` must be {SCHEMA_VERSION}, got {data.get('schema')!r}"
                    + (_SCHEMA_1_HINT if data.get("schema") == 1 else "")
                )
            params.update(_read_params(source.parent / PARAMS_FILE, problems))
            listed = data.get("metafiles")
            if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
                problems.append(f"{source}: `metafiles` must be a list of relative paths")
                continue
            metafiles += [(source.parent / p, source.parent) for p in listed]
        else:  # a single metafile
            roots.append(source.parent)
            metafiles.append((source, source.parent))

    models: dict[str, ModelCard] = {}
    encoder_weights: dict[str, EncoderWeights] = {}
    families: dict[str, Family] = {}
    for path, root in metafiles:
        data = _read_yaml(path, problems) if path.is_file() else None
        if not path.is_file():
            problems.append(f"{path}: listed in an index but does not exist")
        if data is None:
            continue
        for item in _parse_metafile(data, path, root, problems):
            table: dict[str, Any] = (
                models
                if isinstance(item, ModelCard)
                else families
                if isinstance(item, Family)
                else encoder_weights
            )
            kind = type(item).__name__
            if item.name in table:
                problems.append(
                    f"{path}: {kind} {item.name!r} is already defined in "
                    f"{table[item.name].metafile}"
                )
            else:
                table[item.name] = item
    for card in models.values():
        for key, weights_name in card.encoder_weights.items():
            if weights_name not in encoder_weights:
                problems.append(
                    f"{card.metafile}: model {card.name!r}: encoder_weights.{key} names "
                    f"{weights_name!r}, which no metafile defines"
                )
        # "imagenet" is valid without a mapping: it means the encoder's ImageNet weights.
        choices = {*card.weights, *card.encoder_weights, *card.converted_weights}
        allowed = (None, AUTO, "imagenet", *choices)
        if card.default_weights not in allowed:
            problems.append(
                f"{card.metafile}: model {card.name!r}: default_weights "
                f"{card.default_weights!r} is none of its weights "
                f"({sorted({'imagenet', *choices})})"
            )
    if problems:
        raise MetafileError("Invalid zoo metafiles:\n" + "\n".join(f"  {p}" for p in problems))
    return Index(
        models,
        encoder_weights,
        tuple(p for p, _ in metafiles),
        tuple(roots),
        families=families,
        params=params,
    )


_SCHEMA_1_HINT = (
    " (schema 1 metafiles restated code: drop each model's `builder`, `task`, `encoder`, "
    "`defaults`, `input` and `params`, keep only entries with weights, and set `schema: 2`)"
)


def _read_params(path: Path, problems: list[str]) -> dict[str, int]:
    """The generated parameter counts (``{model: count}``); empty when there is no file."""
    if not path.is_file():
        return {}
    data = _read_yaml(path, problems)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0
        for k, v in data.items()
    ):
        problems.append(f"{path}: must map model names to positive parameter counts")
        return {}
    return dict(data)


# --------------------------------------------------------------------------------------------
# Parsing and schema checks


def _read_yaml(path: Path, problems: list[str]) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        problems.append(f"{path}: cannot be read as YAML: {error}")
        return None


def key_problems(data: Any, required: set[str], optional: set[str], where: str) -> list[str]:
    """What is wrong with the keys of a YAML mapping (empty: nothing), each naming `where`."""
    if not isinstance(data, dict):
        return [f"{where}: must be a mapping, got {type(data).__name__}"]
    problems = []
    missing = sorted(required - set(data))
    unknown = sorted(set(data) - required - optional)
    if missing:
        problems.append(f"{where}: missing required keys {missing}")
    if unknown:
        problems.append(f"{where}: unknown keys {unknown} (allowed: {sorted(required | optional)})")
    return problems


def _check_keys(
    data: Any, required: set[str], optional: set[str], where: str, problems: list[str]
) -> bool:
    """Adds the key problems of `data` to `problems`; True when no required key is missing."""
    found = key_problems(data, required, optional, where)
    problems += found
    return isinstance(data, dict) and not (required - set(data))


def _text(data: dict, key: str, where: str, problems: list[str], required: bool = False) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: `{key}` must be a non-empty string, got {value!r}")
        return ""
    return value.strip()


def _file(data: Any, where: str, problems: list[str]) -> RemoteFile | None:
    if not _check_keys(
        data,
        {"url"},
        {"sha256", "sha256_prefix", "size_bytes", "size_mb"},
        f"{where}.file",
        problems,
    ):
        return None
    for key in ("sha256", "sha256_prefix"):
        if key in data and not isinstance(data[key], str):
            problems.append(
                f"{where}.file: `{key}` must be a quoted string of hex digits, got "
                f"{data[key]!r} ({type(data[key]).__name__}; quote it in YAML)"
            )
            return None
    size_bytes, size_mb = data.get("size_bytes"), data.get("size_mb")
    if size_bytes is not None and (not isinstance(size_bytes, int) or size_bytes <= 0):
        problems.append(
            f"{where}.file: `size_bytes` must be a positive integer, got {size_bytes!r}"
        )
    if size_mb is not None and (not isinstance(size_mb, (int, float)) or size_mb <= 0):
        problems.append(f"{where}.file: `size_mb` must be a positive number, got {size_mb!r}")
    try:
        return RemoteFile(
            url=data["url"],
            sha256=data.get("sha256"),
            sha256_prefix=data.get("sha256_prefix"),
            size_bytes=size_bytes,
            size_mb=size_mb,
        )
    except ValueError as error:
        problems.append(f"{where}.file: {error}")
        return None


def _metrics(data: Any, where: str, problems: list[str]) -> tuple[dict, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        problems.append(f"{where}: `metrics` must be a list, got {type(data).__name__}")
        return ()
    records = []
    for i, record in enumerate(data):
        here = f"{where}.metrics[{i}]"
        if not _check_keys(
            record,
            {"dataset", "values", "source"},
            {"split", "task", "recipe", "date", "notes"},
            here,
            problems,
        ):
            continue
        values = record["values"]
        if (
            not isinstance(values, dict)
            or not values
            or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                for k, v in values.items()
            )
        ):
            problems.append(f"{here}: `values` must map metric names to numbers, got {values!r}")
            continue
        records.append(dict(record))
    return tuple(records)


_WEIGHTS_TEXT = ("licence_note", "source", "dataset", "preprocessing")


def _encoder_weights(data: Any, where: str, path: Path, problems: list[str]):
    required = {"name", "encoder", "format", "file", "licence"}
    optional = {*_WEIGHTS_TEXT, "classes", "metrics"}
    complete = _check_keys(data, required, optional, where, problems)
    if not isinstance(data, dict):
        return None
    name, encoder = data.get("name"), data.get("encoder")
    if (
        not isinstance(name, str)
        or not isinstance(encoder, str)
        or not name.startswith(f"{encoder}.")
        or not _TAG.match(name[len(encoder) + 1 :])
    ):
        problems.append(
            f"{where}: `name` must be '<encoder>.<tag>' for encoder {encoder!r}, got {name!r}"
        )
        complete = False
    if data.get("format") != "torchvision":
        problems.append(f"{where}: `format` must be 'torchvision', got {data.get('format')!r}")
    file = _file(data["file"], where, problems) if "file" in data else None
    licence = _text(data, "licence", where, problems, required=True) if "licence" in data else ""
    if not complete:
        return None
    texts = {k: _text(data, k, where, problems) for k in _WEIGHTS_TEXT}
    classes = _text(data, "classes", where, problems)
    metrics = _metrics(data.get("metrics"), where, problems)
    if file is None or not licence:
        return None
    return EncoderWeights(
        name=name,
        encoder=encoder,
        format=data["format"],
        file=file,
        licence=licence,
        classes=classes,
        metrics=metrics,
        metafile=path,
        **texts,
    )


def _class_names(data: dict, where: str, problems: list[str]) -> list[str]:
    """The entry's ``classes`` list of class names; empty when absent or invalid.

    Args:
        data: The weights entry.
        where: Where the entry is, for the message.
        problems: Receives the problem of an invalid list.

    Returns:
        The class names.
    """
    classes = data.get("classes") or []
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        problems.append(f"{where}: `classes` must be a list of class names, got {classes!r}")
        return []
    return classes


def _task_weights(
    model: str, tag: Any, data: Any, where: str, path: Path, root: Path, problems: list[str]
):
    if not isinstance(tag, str) or not _TAG.match(tag):
        problems.append(f"{where}: tag {tag!r} must match {_TAG.pattern}")
        return None
    where = f"{where}.{tag}"
    required = {"recipe", "licence"}
    optional = {*_WEIGHTS_TEXT, "file", "classes", "metrics"} - {"source"}
    complete = _check_keys(data, required, optional, where, problems)
    if not isinstance(data, dict):
        return None
    recipe = root / str(data.get("recipe"))
    if "recipe" in data and not recipe.is_file():
        problems.append(f"{where}: recipe {recipe} does not exist")
    file = None if data.get("file") is None else _file(data["file"], where, problems)
    classes = _class_names(data, where, problems)
    licence = _text(data, "licence", where, problems, required=True) if "licence" in data else ""
    texts = {k: _text(data, k, where, problems) for k in _WEIGHTS_TEXT if k != "source"}
    metrics = _metrics(data.get("metrics"), where, problems)
    if not complete:
        return None
    return TaskWeights(
        model=model,
        tag=tag,
        recipe=recipe,
        file=file,
        licence=licence,
        classes=tuple(classes),
        metrics=metrics,
        metafile=path,
        **texts,
    )


#: Formats of converted whole-model weights (see `ConvertedWeights`).
CONVERTED_FORMATS = ("torchvision",)


def _converted_weights(
    model: str, key: Any, data: Any, where: str, path: Path, problems: list[str]
) -> ConvertedWeights | None:
    if not isinstance(key, str) or not _TAG.match(key):
        problems.append(f"{where}: key {key!r} must match {_TAG.pattern}")
        return None
    where = f"{where}.{key}"
    required = {"format", "file", "num_classes", "licence"}
    optional = {*_WEIGHTS_TEXT, "classes", "metrics"}
    complete = _check_keys(data, required, optional, where, problems)
    if not isinstance(data, dict):
        return None
    if "format" in data and data["format"] not in CONVERTED_FORMATS:
        problems.append(
            f"{where}: `format` must be one of {list(CONVERTED_FORMATS)}, got {data['format']!r}"
        )
        complete = False
    num_classes = data.get("num_classes")
    if "num_classes" in data and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        problems.append(f"{where}: `num_classes` must be a positive integer, got {num_classes!r}")
        complete = False
    file = _file(data["file"], where, problems) if "file" in data else None
    licence = _text(data, "licence", where, problems, required=True) if "licence" in data else ""
    classes = _class_names(data, where, problems)
    if classes and isinstance(num_classes, int) and len(classes) != num_classes:
        problems.append(
            f"{where}: `classes` must name the {num_classes} classes (num_classes), got "
            f"{len(classes)} names"
        )
    texts = {k: _text(data, k, where, problems) for k in _WEIGHTS_TEXT}
    metrics = _metrics(data.get("metrics"), where, problems)
    if not complete or file is None or not licence:
        return None
    return ConvertedWeights(
        model=model,
        key=key,
        format=data["format"],
        file=file,
        num_classes=num_classes,
        licence=licence,
        classes=tuple(classes),
        metrics=metrics,
        metafile=path,
        **texts,
    )


def _model(data: Any, where: str, family: str, path: Path, root: Path, problems: list[str]):
    optional = {"encoder_weights", "default_weights", "weights", "converted_weights"}
    if not _check_keys(data, {"name"}, optional, where, problems):
        return None
    name = data["name"]
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        problems.append(f"{where}: `name` must match {_MODEL_NAME.pattern}, got {name!r}")
        return None
    where = f"{where} ({name})"
    encoder_weights = data.get("encoder_weights") or {}
    if not (
        isinstance(encoder_weights, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in encoder_weights.items())
    ):
        problems.append(
            f"{where}: `encoder_weights` must map weight names to encoder weights names, "
            f"got {encoder_weights!r}"
        )
        encoder_weights = {}
    default_weights = data.get("default_weights", AUTO)
    if default_weights is not None and not isinstance(default_weights, str):
        problems.append(
            f"{where}: `default_weights` must be a name or null, got {default_weights!r}"
        )
        default_weights = None
    weights = {}
    raw_weights = data.get("weights") or {}
    if not isinstance(raw_weights, dict):
        problems.append(f"{where}: `weights` must map tags to weights entries")
        raw_weights = {}
    for tag, entry in raw_weights.items():
        parsed = _task_weights(name, tag, entry, f"{where}.weights", path, root, problems)
        if parsed is not None:
            weights[tag] = parsed
    converted = {}
    raw_converted = data.get("converted_weights") or {}
    if not isinstance(raw_converted, dict):
        problems.append(f"{where}: `converted_weights` must map keys to weights entries")
        raw_converted = {}
    for key, entry in raw_converted.items():
        parsed = _converted_weights(name, key, entry, f"{where}.converted_weights", path, problems)
        if parsed is not None:
            converted[key] = parsed
    for reserved in ("imagenet", AUTO):
        if reserved in weights or reserved in converted:
            problems.append(f"{where}: the tag {reserved!r} is reserved")
    for key in sorted(set(converted) & (set(weights) | set(encoder_weights))):
        problems.append(
            f"{where}: {key!r} names both converted weights and task or encoder weights"
        )
    return ModelCard(
        name=name,
        family=family,
        encoder_weights=dict(encoder_weights),
        default_weights=default_weights,
        weights=weights,
        metafile=path,
        converted_weights=converted,
    )


def _parse_metafile(data: Any, path: Path, root: Path, problems: list[str]) -> list[Any]:
    where = str(path)
    if not _check_keys(
        data,
        {"family"},
        {"title", "description", "paper", "models", "encoder_weights"},
        where,
        problems,
    ):
        return []
    family = data["family"]
    if family != path.stem:
        problems.append(f"{where}: `family` must be the file's stem {path.stem!r}, got {family!r}")
    paper = data.get("paper") or {}
    if not isinstance(paper, dict):
        problems.append(f"{where}: `paper` must be a mapping (title, url)")
        paper = {}
    items: list[Any] = [
        Family(str(family), title=str(data.get("title") or ""), paper=dict(paper), metafile=path)
    ]
    for key in ("encoder_weights", "models"):
        entries = data.get(key) or []
        if not isinstance(entries, list):
            problems.append(f"{where}: `{key}` must be a list")
            continue
        for i, entry in enumerate(entries):
            here = f"{where}: {key}[{i}]"
            item = (
                _model(entry, here, family, path, root, problems)
                if key == "models"
                else _encoder_weights(entry, here, path, problems)
            )
            if item is not None:
                items.append(item)
    return items
