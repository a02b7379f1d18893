"""Registry of model builders and the zoo's front door: `register_model`, `get`,
`list_models`, `info`, `download`.

Names are data: `<arch>_<encoder>` (``fpn_resnet34``), optionally followed by ``.<tag>`` for a
set of task weights (``unet11.isbi2012``). A builder is a function
``builder(*, num_classes, input_shape, **overrides) -> keras.Model`` decorated with
`register_model`; the modules holding builders are imported the first time the registry is
read, so importing the zoo stays cheap. What is known about a model's weights (URLs, hashes,
licences, recipes, metrics) is in the metafiles (`kerasseg.zoo.metafiles`); the weights
themselves are fetched, converted and cached by `kerasseg.zoo.weights`.

Builders that nest an encoder accept ``encoder_weights`` (a path `kerasseg.encoders.get`
reads); that is how ``weights="imagenet"`` reaches them (see `kerasseg.zoo.weights`).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import logging
import os
from pathlib import Path
from typing import Any

from kerasseg.registry import (  # noqa: F401  (re-exported: the zoo is their public home)
    _REGISTRY,
    TASKS,
    Builder,
    ModelEntry,
    register_model,
    split_name,
)

logger = logging.getLogger(__name__)

# Modules whose import registers builders. The zoo sits above the architectures in the
# dependency order, so it may import them; they only ever import `kerasseg.registry`.
_BUILDER_MODULES = ("kerasseg.segmentation", "kerasseg.detection")

_builders_loaded = False


def _load_builders() -> None:
    global _builders_loaded
    if _builders_loaded:
        return
    for module in _BUILDER_MODULES:
        importlib.import_module(module)
    _builders_loaded = True


# --------------------------------------------------------------------------------------------
# Names


def registered(name: str) -> ModelEntry | None:
    """The registered entry of an architecture name, or None."""
    _load_builders()
    return _REGISTRY.get(name)


def list_registered(pattern: str = "*") -> list[str]:
    """Registered architecture names matching a wildcard (no tags), sorted."""
    _load_builders()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def infer_encoder(name: str) -> str | None:
    """The encoder a ``<arch>_<encoder>`` name ends with, if it is a known encoder."""
    from kerasseg import encoders

    for encoder in sorted(encoders.list_encoders(), key=len, reverse=True):
        if name.endswith(f"_{encoder}"):
            return encoder
    return None


def _index():
    from kerasseg.zoo import metafiles

    return metafiles.load_index()


def model_card(arch: str, index: Any = None) -> Any:
    """The `~kerasseg.zoo.metafiles.ModelCard` of a registered model, completed from its
    registration.

    A model no metafile lists gets an empty card; ``"imagenet"`` means its encoder's
    ImageNet weights where a metafile lists them (unless the entry maps encoder weights
    itself); a ``default_weights`` left unset becomes ``"imagenet"`` when there are such
    weights, else None (random initialisation). `index` defaults to the loaded one.
    """
    from kerasseg.zoo import metafiles

    entry = _entry(arch)
    index = index or _index()
    card = index.model(arch) or metafiles.ModelCard(name=arch, family=entry.family)
    encoder_weights = dict(card.encoder_weights)
    if not encoder_weights and entry.encoder and index.imagenet_for(entry.encoder):
        encoder_weights = {"imagenet": f"{entry.encoder}.imagenet"}
    default = card.default_weights
    if default == metafiles.AUTO:
        default = "imagenet" if "imagenet" in encoder_weights else None
    return dataclasses.replace(card, encoder_weights=encoder_weights, default_weights=default)


def known_tags(arch: str, trained: list[str] | None = None) -> dict[str, str]:
    """Tags of `arch`: ``{tag: "metafile" | "trained"}`` (metafile tags first)."""
    from kerasseg.zoo import weights as zw

    card = _index().model(arch)
    tags = dict.fromkeys(card.weights if card else {}, "metafile")
    for name in zw.trained_names() if trained is None else trained:
        model, tag = split_name(name)
        if model == arch and tag and tag not in tags:
            tags[tag] = "trained"
    return tags


def _all_names() -> list[str]:
    from kerasseg.zoo import weights as zw

    trained = zw.trained_names()
    names = list(_REGISTRY)
    for arch in _REGISTRY:
        names += [f"{arch}.{tag}" for tag in known_tags(arch, trained)]
    return names


def _entry(arch: str, full_name: str | None = None) -> ModelEntry:
    _load_builders()
    if arch in _REGISTRY:
        return _REGISTRY[arch]
    name = full_name or arch
    close = difflib.get_close_matches(name, _all_names(), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown model name {name!r}.{hint} `kerasseg.zoo.list_models()` lists the "
        f"{len(_REGISTRY)} registered models and their weight tags."
    )


def resolve(name: str) -> tuple[ModelEntry, Any, str | None]:
    """``(entry, metafile card or None, tag or None)`` of a name; unknown names and tags raise."""
    arch, tag = split_name(name)
    entry = _entry(arch, name)
    card = model_card(arch)
    if tag is not None:
        tags = known_tags(arch)
        if tag not in tags:
            raise ValueError(
                f"Model {arch!r} has no weights tagged {tag!r}. Available weight sets: "
                f"{sorted(tags) or 'none'}"
                + (
                    f" (and {sorted(card.encoder_weights)} for the encoder)"
                    if card.encoder_weights
                    else ""
                )
                + (
                    f"; converted weights, passed as `weights=`: {sorted(card.converted_weights)}"
                    if card.converted_weights
                    else ""
                )
                + ". Your own: write a recipe and run `kerasseg zoo train RECIPE.yml`."
            )
    return entry, card, tag


def encoder_weights_name(arch: str, key: str = "imagenet") -> str:
    """The encoder weights (``"resnet34.imagenet"``) that ``weights=key`` means for `arch`."""
    card = model_card(arch)
    if key not in card.encoder_weights:
        encoder = _entry(arch).encoder
        reason = (
            "it nests no encoder"
            if encoder is None
            else f"no metafile lists {key!r} weights for its encoder {encoder!r}"
        )
        raise ValueError(
            f"Model {arch!r} has no {key!r} encoder weights: {reason}. Its encoder weights: "
            f"{sorted(card.encoder_weights) or 'none'}."
        )
    return card.encoder_weights[key]


# --------------------------------------------------------------------------------------------
# Which weights a call means


@dataclasses.dataclass(frozen=True)
class _Choice:
    kind: str  # "none" | "encoder" | "converted" | "tag" | "file"
    value: str | None = None


def _choose(weights: Any, arch: str, tag: str | None, card: Any) -> _Choice:
    if weights is None:
        return _Choice("none")
    if isinstance(weights, str) and weights == "default":
        if tag is not None:
            return _Choice("tag", tag)
        default = card.default_weights
        if default is None:
            return _Choice("none")
        if default in card.converted_weights:
            return _Choice("converted", default)
        return (
            _Choice("encoder", default)
            if default in card.encoder_weights
            else _Choice("tag", default)
        )
    if isinstance(weights, str) and weights in card.encoder_weights:
        return _Choice("encoder", weights)
    if isinstance(weights, str) and weights in card.converted_weights:
        return _Choice("converted", weights)
    if isinstance(weights, str) and weights == "imagenet":
        encoder_weights_name(arch, "imagenet")  # raises, naming why
    if isinstance(weights, str) and "/" not in weights and weights in known_tags(arch):
        if tag is not None and weights != tag:
            raise ValueError(
                f"`weights`={weights!r} contradicts the tag in the name {arch}.{tag!r}."
            )
        return _Choice("tag", weights)
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            f"`weights` must be 'default', None, 'imagenet', a weight tag or a file path; got "
            f"{type(weights).__name__}."
        )
    path = os.fspath(weights)
    if not os.path.isfile(path):
        options = ["'default'", "None"] + [repr(k) for k in card.encoder_weights]
        options += [repr(k) for k in card.converted_weights]
        options += [repr(t) for t in known_tags(arch)]
        raise ValueError(
            f"`weights` must be one of {', '.join(options)} or the path of a .weights.h5 file; "
            f"{path!r} is none of these (no such file)."
        )
    return _Choice("file", path)


def _tag_recipe(arch: str, tag: str, card: Any):
    """The recipe describing a tag's weights: the trained copy's own, else the metafile's."""
    from kerasseg.zoo import recipes
    from kerasseg.zoo import weights as zw

    name = f"{arch}.{tag}"
    cached = zw.trained_dir(name) / zw.TRAINED_RECIPE
    if cached.is_file():
        return recipes.parse_recipe(cached.read_text(encoding="utf-8"), cached)
    return recipes.load_recipe(card.weights[tag].recipe)


def _tag_weights_path(arch: str, tag: str, card: Any, progress: bool = True) -> Path:
    """Task weights: a trained copy in the cache if there is one, else the hosted file."""
    from kerasseg.zoo import remote as dl
    from kerasseg.zoo import weights as zw

    name = f"{arch}.{tag}"
    hosted = card.weights.get(tag)
    status, detail = zw.check_trained(name)
    if status == "ok" or hosted is None or hosted.file is None:
        return zw.trained_weights_path(name, recipe=hosted.recipe if hosted else None)
    if status == "corrupt":
        logger.warning(
            "Trained weights of %s are corrupt (%s); using the hosted ones.", name, detail
        )
    return dl.fetch(
        hosted.file,
        what=f"The weights of {name} ({hosted.file.url})",
        command=f"kerasseg zoo download {name}",
        progress=progress,
    )


# --------------------------------------------------------------------------------------------
# Public API


def list_models(
    pattern: str = "*", pretrained: bool | None = None, task: str | None = None
) -> list[str]:
    """Names `get` accepts: the registered models and their weight tags, sorted.

    Args:
        pattern: Shell-style wildcard on the name, e.g. ``"unet*"``, ``"*_resnet34"`` or
            ``"*.isbi2012"``.
        pretrained: True: only names whose default weights are pretrained (ImageNet encoder
            or task weights; every tagged name); False: only names that default to random
            initialisation; None: all.
        task: ``"segmentation"`` or ``"detection"`` to filter by task; None for all.

    Returns:
        Matching names. Tagged names (``unet11.isbi2012``) are listed whether or not their
        weights are available yet: `info` tells.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS} or None, got {task!r}.")
    from kerasseg.zoo import weights as zw

    _load_builders()
    trained = zw.trained_names()
    names = []
    for entry in _REGISTRY.values():
        if task is not None and entry.task != task:
            continue
        card = model_card(entry.name)
        candidates = [(entry.name, card.default_weights is not None)]
        candidates += [(f"{entry.name}.{t}", True) for t in known_tags(entry.name, trained)]
        for name, has_pretrained in candidates:
            if fnmatch.fnmatchcase(name, pattern) and pretrained in (None, has_pretrained):
                names.append(name)
    return sorted(names)


def _presence(path: Path, record: Path | None = None) -> tuple[str, str]:
    """``("present" | "missing", detail)`` without hashing (the recorded SHA-256, if any)."""
    if not path.is_file():
        return "missing", str(path)
    from kerasseg.zoo import weights as zw

    recorded = (zw.read_json(record) or {}).get("sha256") if record else None
    return "present", f"recorded sha256 {recorded}" if recorded else "not re-hashed"


def _downloaded_and_converted(
    weights: Any, converted: Any, verify: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cache state of a fetched file and of its converted Keras weights."""
    from kerasseg.zoo import remote as dl
    from kerasseg.zoo import weights as zw

    if verify:
        download_status, download_detail = dl.check_cached(weights.file)
        converted_status, converted_detail = zw.check_converted(weights, converted)
    else:
        download_status, download_detail = _presence(weights.file.cache_path())
        converted_status, converted_detail = _presence(
            converted, converted.with_name(converted.name + zw.RECORD_SUFFIX)
        )
    download = {
        "path": str(weights.file.cache_path()),
        "status": download_status,
        "detail": download_detail,
    }
    return download, {
        "path": str(converted),
        "status": converted_status,
        "detail": converted_detail,
    }


def _fetched_weights_info(weights: Any, download: dict, converted: dict) -> dict[str, Any]:
    """What encoder and converted weights entries share: file, licence, data, cache."""
    return {
        "name": weights.name,
        "url": weights.file.url,
        "sha256": weights.file.sha256,
        "sha256_prefix": weights.file.sha256_prefix,
        "hash_check": weights.file.hash_check,
        "size_bytes": weights.file.size_bytes,
        "size_mb": weights.file.size_mb,
        "licence": weights.licence,
        "licence_note": weights.licence_note,
        "source": weights.source,
        "dataset": weights.dataset,
        "classes": list(weights.classes) if weights.classes is not None else None,
        "preprocessing": weights.preprocessing,
        "metrics": list(weights.metrics),
        "cache": {"download": download, "converted": converted},
        "metafile": str(weights.metafile),
    }


def _encoder_weights_info(weights: Any, in_channels: int, verify: bool) -> dict[str, Any]:
    from kerasseg.zoo import weights as zw

    download, converted = _downloaded_and_converted(
        weights, zw.converted_path(weights, in_channels), verify
    )
    converted["in_channels"] = in_channels
    info = _fetched_weights_info(weights, download, converted)
    return {"kind": "encoder", "encoder": weights.encoder, **info}


def _converted_weights_info(weights: Any, verify: bool) -> dict[str, Any]:
    from kerasseg.zoo import weights as zw

    download, converted = _downloaded_and_converted(weights, zw.converted_path(weights), verify)
    info = _fetched_weights_info(weights, download, converted)
    return {
        "kind": "converted",
        "format": weights.format,
        "num_classes": weights.num_classes,
        **info,
    }


def _task_weights_info(arch: str, tag: str, card: Any, verify: bool) -> dict[str, Any]:
    from kerasseg.zoo import weights as zw

    name = f"{arch}.{tag}"
    hosted = card.weights.get(tag)
    info_: dict[str, Any] = {"kind": "task", "name": name}
    if hosted is not None:
        file = hosted.file
        info_.update(
            {
                "recipe": str(hosted.recipe),
                "url": file.url if file else None,
                "sha256": file.sha256 if file else None,
                "sha256_prefix": file.sha256_prefix if file else None,
                "hash_check": file.hash_check if file else None,
                "size_bytes": file.size_bytes if file else None,
                "hosted": file is not None,
                "licence": hosted.licence,
                "licence_note": hosted.licence_note,
                "dataset": hosted.dataset,
                "classes": list(hosted.classes),
                "preprocessing": hosted.preprocessing,
                "metrics": list(hosted.metrics),
                "metafile": str(hosted.metafile),
            }
        )
    else:
        info_.update(
            {
                "hosted": False,
                "metafile": None,
                "metrics": [],
                "licence": "yours: trained on this machine from your recipe",
            }
        )
    directory = zw.trained_dir(name)
    status, detail = (
        zw.check_trained(name)
        if verify
        else _presence(directory / zw.TRAINED_WEIGHTS, directory / zw.TRAINED_RECORD)
    )
    record = zw.trained_record(name) or {}
    trained: dict[str, Any] = {
        "path": str(zw.trained_dir(name) / zw.TRAINED_WEIGHTS),
        "status": status,
        "detail": detail,
    }
    if record:
        trained.update(
            {
                "metrics": record.get("metrics", []),
                "recipe_sha256": record.get("recipe_sha256"),
                "created": record.get("created"),
                "versions": {k: record.get(k) for k in ("kerasseg", "keras", "backend")},
            }
        )
        if hosted is not None and hosted.recipe.is_file():
            from kerasseg.zoo import recipes

            zoo_recipe = recipes.load_recipe(hosted.recipe)
            trained["matches_zoo_recipe"] = zoo_recipe.sha256 == record.get("recipe_sha256")
    info_["trained"] = trained
    try:
        recipe = _tag_recipe(arch, tag, card)
        info_["num_classes"] = recipe.num_classes
        info_["input_shape"] = list(recipe.input_shape)
        info_["model_kwargs"] = recipe.model_kwargs
        info_["init"] = recipe.init
    except (OSError, ValueError) as error:
        info_["recipe_error"] = str(error)
    if not info_["hosted"] and status not in ("ok", "present"):
        info_["how_to_get"] = f"kerasseg zoo train {name}"
    return info_


def info(name: str, *, count_params: bool = False, verify: bool = False) -> dict[str, Any]:
    """Describes a model (and its weights) without building it.

    Args:
        name: A name from `list_models` (with or without tag).
        count_params: When the zoo's generated counts (``params.yml``) lack the model,
            build it (random init, default configuration) to count its parameters.
        verify: Re-hash the cached files to report ``"ok"`` / ``"corrupt"`` / ``"missing"``;
            by default the cache state is only ``"present"`` / ``"missing"`` (hashing large
            checkpoints takes time; every file is hashed anyway before it is used).

    Returns:
        A JSON-serialisable dict: ``name``, ``model``, ``tag``, ``task``, ``description``,
        ``builder`` (dotted path), ``default_num_classes``, ``default_input_shape``,
        ``input`` (shape and the divisor static sizes need), ``params`` (for the default
        configuration, from ``params.yml``; None when not recorded) and ``params_source``,
        ``encoder``, ``default_weights``, ``weights`` (per weight set: URL, SHA-256 or the
        publisher's prefix and how it is checked, size, licence, source, data set, classes,
        preprocessing, published metrics, the cache state; for task weights also the recipe
        and, when trained here, the measured metrics), ``metrics`` (all of them, each with
        the weight set it belongs to), ``licence`` (of the default weights) and
        ``metafile``.
    """
    entry, card, tag = resolve(name)
    arch = entry.name
    num_classes, input_shape = entry.default_num_classes, entry.default_input_shape
    index = _index()
    weights: dict[str, Any] = {}
    for key, weights_name in card.encoder_weights.items():
        weights[key] = _encoder_weights_info(
            index.encoder_weights[weights_name], int(input_shape[2] or 3), verify
        )
    if not tag:
        for key, converted in card.converted_weights.items():
            weights[key] = _converted_weights_info(converted, verify)
    tags = known_tags(arch)
    for other in [tag] if tag else list(tags):
        weights[other] = _task_weights_info(arch, other, card, verify)
    default = tag or card.default_weights
    if tag and "num_classes" in weights[tag]:
        num_classes, input_shape = weights[tag]["num_classes"], tuple(weights[tag]["input_shape"])

    family = index.families.get(entry.family)
    recorded = index.params.get(arch)
    params, params_source = (
        (recorded, "params.yml (count_params() with the defaults, generated)")
        if recorded
        else (None, "not recorded in params.yml")
    )
    if params is None and count_params:
        params = int(get(arch, weights=None).count_params())
        params_source = "counted now (built with the defaults, random init)"

    metrics = []
    for data in weights.values():
        for record in data.get("metrics", []):
            metrics.append({"weights": data["name"], **record})
        for record in (data.get("trained") or {}).get("metrics", []):
            metrics.append({"weights": data["name"], **record})
    return {
        "name": name,
        "model": arch,
        "tag": tag,
        "task": entry.task,
        "description": entry.description,
        "builder": f"{entry.builder.__module__}.{entry.builder.__qualname__}",
        "default_num_classes": num_classes,
        "default_input_shape": list(input_shape),
        "input": {
            "shape": list(input_shape),
            "divisible_by": entry.input_multiple,
            "range": "0..255 (the model normalises its input itself)",
        },
        "params": params,
        "params_source": params_source,
        "encoder": entry.encoder,
        "default_weights": default,
        "weights": weights,
        "metrics": metrics,
        "licence": weights[default]["licence"] if default in weights else None,
        "family": entry.family,
        "metafile": _metafile_of(card, family),
        "paper": dict(family.paper) if family else {},
    }


def _metafile_of(card: Any, family: Any) -> str | None:
    """The metafile listing the model, else the one describing its family, else None."""
    path = card.metafile or (family.metafile if family else None)
    return str(path) if path else None


def get(
    name: str,
    *,
    weights: str | os.PathLike | None = "default",
    num_classes: int | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> Any:
    """Builds a model, with weights.

    Args:
        name: ``<arch>_<encoder>`` or ``<arch>_<encoder>.<tag>`` (see `list_models`).
        weights: ``"default"`` (the metafile's default: the ImageNet encoder weights, or the
            tag's task weights; random initialisation for a model without any),
            ``None`` (random initialisation), ``"imagenet"`` (only the encoder's weights,
            converted from torchvision's checkpoint on first use), a key of the model's
            converted weights (the whole model's, published by a third party and converted
            on first use, e.g. ``"coco"`` for ``retinanet_resnet50`` and ``ssd300_vgg16``:
            torchvision's COCO detectors), a tag (the whole model's task weights, as
            ``"<arch>.<tag>"``), or the path of a ``.weights.h5`` file saved from the same
            architecture and configuration.
        num_classes: Output classes; default: the tag's recipe's, or the converted weights',
            else the registered default. Task and converted weights only load with the
            number they were trained with.
        input_shape: (H, W, C) with None for any size; default: the tag's recipe's (its
            data's channels), else the registered default. Other channel counts than 3 get
            ImageNet weights adapted to them (see `kerasseg.zoo.convert.adapt_input_conv`).
        progress: Progress bar while downloading.
        **overrides: Further keyword arguments for the builder (e.g. ``depth=3``).

    Returns:
        An uncompiled `keras.Model` taking images in 0..255.

    Raises:
        ValueError: unknown name or tag (with suggestions), unavailable or incompatible weights.
        kerasseg.zoo.remote.WeightsNotAvailableError: the weights are not cached and cannot
            be fetched (offline, or task weights that must be trained with
            ``kerasseg zoo train``); the message says where it looked and what to run.
        kerasseg.zoo.remote.DownloadError: a transfer failed or did not match its hash.
    """
    from kerasseg.zoo import weights as zw

    entry, card, tag = resolve(name)
    arch = entry.name
    choice = _choose(weights, arch, tag, card)
    config_tag = tag or (choice.value if choice.kind == "tag" else None)
    model_kwargs: dict[str, Any] = {}
    base_classes, base_shape = entry.default_num_classes, tuple(entry.default_input_shape)
    if config_tag is not None:
        recipe = _tag_recipe(arch, config_tag, card)
        base_classes, base_shape, model_kwargs = (
            recipe.num_classes,
            recipe.input_shape,
            dict(recipe.model_kwargs),
        )
    converted = card.converted_weights.get(choice.value) if choice.kind == "converted" else None
    if converted is not None:
        base_classes = converted.num_classes
    classes = base_classes if num_classes is None else num_classes
    shape = base_shape if input_shape is None else tuple(input_shape)
    if converted is not None and (classes != base_classes or shape[-1] != 3):
        raise ValueError(
            f"The {converted.name} weights have num_classes={base_classes} and take RGB "
            f"images (3 channels); got num_classes={classes}, input_shape={shape}. Load them "
            f"as published (then replace the head), or use weights='imagenet'/None."
        )
    if converted is not None and overrides.get("encoder_weights") is not None:
        raise ValueError(
            f"`encoder_weights` and `weights`={choice.value!r} both set the encoder's "
            f"weights; pass one of them."
        )
    if choice.kind == "tag" and (classes != base_classes or shape[-1] != base_shape[-1]):
        raise ValueError(
            f"The {arch}.{choice.value} weights were trained with num_classes={base_classes} and "
            f"{base_shape[-1]} input channels; got num_classes={classes}, input_shape={shape}. "
            f"Load them as trained (then replace the head), or use weights='imagenet'/None."
        )
    model_kwargs.update(overrides)
    if choice.kind == "encoder":
        if model_kwargs.get("encoder_weights") is not None:
            raise ValueError(
                f"`encoder_weights` and `weights`={choice.value!r} both set the encoder's "
                f"weights; pass one of them."
            )
        channels = int(shape[-1])
        command = f"kerasseg zoo download {name}" + (
            f" --in-channels {channels}" if channels != 3 else ""
        )
        model_kwargs["encoder_weights"] = str(
            zw.encoder_weights_path(
                encoder_weights_name(arch, choice.value),
                in_channels=channels,
                progress=progress,
                command=command,
            )
        )
    model = entry.builder(num_classes=classes, input_shape=shape, **model_kwargs)
    if choice.kind in ("tag", "file", "converted"):
        if converted is not None:
            path = zw.converted_weights_path(converted, progress=progress)
        elif choice.kind == "tag":
            path = _tag_weights_path(arch, choice.value, card, progress)
        else:
            path = Path(choice.value)
        try:
            model.load_weights(path)
        except Exception as error:  # Keras raises several types for incompatible files.
            raise ValueError(
                f"Could not load weights file {str(path)!r} into {name!r}: {error}"
            ) from error
        logger.info("Loaded weights for %s from %s", name, path)
    return model


def download(name: str, *, in_channels: int | None = None, progress: bool = True) -> list[Path]:
    """Fetches (and converts) what ``get(name)`` loads by default, so it works offline later.

    Args:
        name: A model name (its default weights), a tagged name (its task weights), encoder
            weights (``"resnet34.imagenet"``) or a model's converted weights
            (``"retinanet_resnet50.coco"``).
        in_channels: For ImageNet encoder weights: the input channels to convert for; default
            the model's default input channels (3 for encoder weights names).
        progress: Progress bar.

    Returns:
        The cached files (empty when the model has no pretrained weights).
    """
    from kerasseg.zoo import weights as zw

    index = _index()
    if name in index.encoder_weights:
        return [zw.encoder_weights_path(name, in_channels=in_channels or 3, progress=progress)]
    converted = index.converted(name)
    if converted is not None:
        return [zw.converted_weights_path(converted, progress=progress)]
    entry, card, tag = resolve(name)
    choice = _choose("default", entry.name, tag, card)
    if choice.kind == "none":
        logger.info("%s has no pretrained weights: nothing to download.", name)
        return []
    if choice.kind == "converted":
        return [zw.converted_weights_path(card.converted_weights[choice.value], progress=progress)]
    if choice.kind == "encoder":
        channels = in_channels or int(entry.default_input_shape[-1] or 3)
        return [
            zw.encoder_weights_path(
                encoder_weights_name(entry.name, choice.value),
                in_channels=channels,
                progress=progress,
            )
        ]
    return [_tag_weights_path(entry.name, choice.value, card, progress)]
