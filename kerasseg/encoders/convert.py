"""Conversion of torchvision ImageNet checkpoints to kerasseg encoders, exactly.

```python
from kerasseg.zoo import convert   # this module and the converting builders of encoders.build
encoder = convert.convert_torchvision("resnet34", "resnet34-b627a593.pth")   # or a state dict
convert.save_weights(encoder, "resnet34.weights.h5")
```

A torchvision state dict (tensor name -> array) is mapped onto the encoder's layers by an
explicit table (`torchvision_layer_map`): convolution kernels go from PyTorch's
(out, in, kh, kw) to Keras' (kh, kw, in, out), batch norm's ``weight``, ``bias``,
``running_mean``, ``running_var`` become ``gamma``, ``beta``, ``moving_mean``,
``moving_variance``. The transfer is all-or-nothing and checked for coverage: every source
tensor is used exactly once, except those skipped by rule (``*.num_batches_tracked``, which
Keras does not keep, and the ImageNet classifier head, ``fc.*`` for ResNet and
``classifier.*`` for VGG); every target weight is set; every shape matches. Otherwise a
`ConversionError` names the unused source tensors, the unset targets and the shape
mismatches (with both shapes), and the model is left untouched.

Input channels other than 3 (the first convolution's kernel, see `adapt_input_conv`):

* 1 channel: the RGB kernel summed over its input channels. A gray image g then gives what
  the RGB network gives on g replicated to three channels, up to the input normalisation:
  the 1-channel model normalises with the mean of the ImageNet means and stds (see
  `kerasseg.encoders.normalization`), so it equals the RGB network fed that normalised gray
  value in all three channels.
* k channels: timm's ``adapt_input_conv`` rule: the RGB kernel repeated over the k inputs
  (input i takes RGB channel ``i % 3``) and scaled by ``3 / k``, so an RGB image repeated
  k / 3 times gives the RGB network's output exactly when 3 divides k.

The zoo downloads the official checkpoints and calls `convert_torchvision`; this module
never downloads anything.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from kerasseg.encoders.resnet import RESNET_LAYERS, has_downsample
from kerasseg.encoders.specs import list_encoders, spec
from kerasseg.encoders.torch_checkpoint import floats_as_float32, read_torch_checkpoint
from kerasseg.encoders.vgg import vgg_config
from kerasseg.utils.files import atomic_path

logger = logging.getLogger(__name__)

StateDictSource = Mapping[str, Any] | str | os.PathLike

#: Source tensors skipped by rule, per encoder family: (name prefixes, name suffixes).
SKIP_RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "vgg": (("classifier.",), ("num_batches_tracked",)),
    "resnet": (("fc.",), ("num_batches_tracked",)),
}

_BN_SOURCES = (
    ("gamma", "weight"),
    ("beta", "bias"),
    ("moving_mean", "running_mean"),
    ("moving_variance", "running_var"),
)

_MAX_LISTED = 25  # names listed per kind of problem in an error message


class ConversionError(ValueError):
    """A state dict does not fit an encoder; the message lists every problem found."""


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What a conversion did.

    Attributes:
        encoder: Encoder name.
        source_tensors: Tensors in the state dict.
        converted_tensors: Source tensors written into the model (each exactly once).
        skipped: Names of the source tensors skipped by rule (`SKIP_RULES`).
        target_layers: Keras layers written.
        target_weights: Keras variables written (all of the target layers' variables).
        parameters: Scalars written (trainable and batch-norm statistics).
        input_conv: How the first convolution's kernel was treated (``"copied"``, or the
            adaptation rule applied for another input channel count).
    """

    encoder: str
    source_tensors: int
    converted_tensors: int
    skipped: tuple[str, ...]
    target_layers: int
    target_weights: int
    parameters: int
    input_conv: str

    def __str__(self) -> str:
        return (
            f"{self.encoder}: {self.converted_tensors}/{self.source_tensors} source tensors "
            f"-> {self.target_weights} weights of {self.target_layers} layers "
            f"({self.parameters:,} values); {len(self.skipped)} skipped by rule; "
            f"input conv {self.input_conv}"
        )


# --------------------------------------------------------------------------------------------
# Reading state dicts


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; no need to import torch for this
        value = value.detach().cpu()
        if value.is_floating_point():  # NumPy has no bfloat16
            value = value.float()
        value = value.numpy()
    try:
        return np.asarray(value)
    except Exception as error:
        raise ConversionError(
            f"State dict entry {name!r} is not an array or tensor: {type(value).__name__}."
        ) from error


def read_state_dict(source: StateDictSource) -> dict[str, np.ndarray]:
    """Reads a state dict into ``{name: numpy array}``.

    Args:
        source: A mapping of name -> torch tensor or array-like, or the path of a ``.pth`` /
            ``.pt`` file saved with ``torch.save`` (read without PyTorch by the restricted
            unpickler of `kerasseg.encoders.torch_checkpoint`, which refuses anything but
            tensors; floating-point tensors become float32) or a ``.npz`` file of the same
            names. A checkpoint that wraps the state dict under ``"state_dict"`` or
            ``"model"`` is unwrapped, and a ``module.`` prefix (from ``DataParallel``) on
            every name is dropped.

    Returns:
        The tensors as NumPy arrays, by name.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"State dict file {path!r} does not exist.")
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as archive:
                source = {key: archive[key] for key in archive.files}
        elif path.endswith((".pth", ".pt")):
            # No PyTorch needed; as torch tensors do in `_to_numpy`, floats become float32.
            source = floats_as_float32(read_torch_checkpoint(path))
        else:
            raise ValueError(
                f"State dict file {path!r} must be a PyTorch checkpoint (.pth, .pt) or a NumPy "
                f"archive (.npz)."
            )
    if not isinstance(source, Mapping):
        raise TypeError(
            f"A state dict must be a mapping of tensor names to tensors, or a file path; got "
            f"{type(source).__name__}."
        )
    for key in ("state_dict", "model"):
        if isinstance(source.get(key), Mapping):
            source = source[key]
            break
    names = list(source)
    if names and all(str(n).startswith("module.") for n in names):
        source = {str(n)[len("module.") :]: v for n, v in source.items()}
    return {str(name): _to_numpy(str(name), value) for name, value in source.items()}


# --------------------------------------------------------------------------------------------
# The name mapping


def torchvision_layer_map(name: str) -> list[tuple[str, str]]:
    """Keras layer name -> torchvision module path, for every weight-carrying layer.

    The first entry is the input convolution.

    Example: ``("layer2_0_downsample_0", "layer2.0.downsample.0")`` for ResNets,
    ``("block3_conv2", "features.8")`` for VGG11 without batch norm.
    """
    family = spec(name).family
    pairs: list[tuple[str, str]] = []
    if family == "vgg":
        blocks, batch_norm = vgg_config(name)
        index = 0  # position in torchvision's `features` Sequential
        for b, block in enumerate(blocks, start=1):
            for i in range(1, len(block) + 1):
                pairs.append((f"block{b}_conv{i}", f"features.{index}"))
                if batch_norm:
                    pairs.append((f"block{b}_bn{i}", f"features.{index + 1}"))
                index += 3 if batch_norm else 2  # conv, (bn,) relu
            index += 1  # max-pool
        return pairs
    if family == "resnet":
        block, counts = RESNET_LAYERS[name]
        pairs += [("conv1", "conv1"), ("bn1", "bn1")]
        convs = 2 if block == "basic" else 3
        for stage, count in enumerate(counts, start=1):
            for index in range(count):
                keras_prefix, torch_prefix = f"layer{stage}_{index}", f"layer{stage}.{index}"
                for j in range(1, convs + 1):
                    pairs.append((f"{keras_prefix}_conv{j}", f"{torch_prefix}.conv{j}"))
                    pairs.append((f"{keras_prefix}_bn{j}", f"{torch_prefix}.bn{j}"))
                if has_downsample(block, stage, index):
                    for k in (0, 1):
                        pairs.append(
                            (f"{keras_prefix}_downsample_{k}", f"{torch_prefix}.downsample.{k}")
                        )
        return pairs
    raise ValueError(f"No torchvision mapping for encoder family {family!r} ({name!r}).")


def adapt_input_conv(kernel: np.ndarray, in_channels: int) -> tuple[np.ndarray, str]:
    """Adapts a PyTorch first-convolution kernel (out, 3, kh, kw) to `in_channels` inputs.

    Rules (timm's ``adapt_input_conv``): 3 -> unchanged; 1 -> summed over the input channels;
    k -> input i takes RGB channel ``i % 3`` and everything is scaled by ``3 / k``.

    Returns:
        The (out, in_channels, kh, kw) kernel and a description of the rule applied.
    """
    source_in = kernel.shape[1]
    if source_in == in_channels:
        return kernel, "copied"
    if source_in != 3:
        raise ConversionError(
            f"Cannot adapt an input convolution with {source_in} input channels to "
            f"{in_channels}: only 3-channel (RGB) kernels are adapted."
        )
    if in_channels == 1:
        return kernel.sum(axis=1, keepdims=True), "summed over its 3 input channels (3 -> 1)"
    repeats = -(-in_channels // 3)
    adapted = np.tile(kernel, (1, repeats, 1, 1))[:, :in_channels] * (3.0 / in_channels)
    return adapted, f"repeated over {in_channels} inputs and scaled by 3/{in_channels}"


# --------------------------------------------------------------------------------------------
# The transfer


def _skipped_by_rule(family: str, name: str) -> bool:
    prefixes, suffixes = SKIP_RULES[family]
    return name.startswith(prefixes) or name.endswith(suffixes)


def _targets(layer: keras.layers.Layer, torch_prefix: str) -> list[tuple[Any, str, str]]:
    """(variable, source name, transform) for every weight of a Conv2D/BatchNormalization."""
    if isinstance(layer, keras.layers.Conv2D):
        targets = [(layer.kernel, f"{torch_prefix}.weight", "oihw_to_hwio")]
        if layer.use_bias:
            targets.append((layer.bias, f"{torch_prefix}.bias", "copy"))
        return targets
    if isinstance(layer, keras.layers.BatchNormalization):
        return [
            (getattr(layer, attribute), f"{torch_prefix}.{source}", "copy")
            for attribute, source in _BN_SOURCES
            if getattr(layer, attribute, None) is not None
        ]
    raise ConversionError(
        f"Layer {layer.name!r} is a {type(layer).__name__}; only Conv2D and "
        f"BatchNormalization layers are converted."
    )


def _listed(title: str, items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "\n".join(f"    {i}" for i in shown) + more


def _source_tensor(
    state: Mapping[str, np.ndarray],
    source_name: str,
    target: str,
    uses: dict[str, int],
    problems: dict[str, list[str]],
) -> np.ndarray | None:
    """The state dict's tensor `source_name` for one Keras weight, counted as used.

    Args:
        state: The state dict.
        source_name: The tensor's name in `state`.
        target: The Keras weight it is for, as the messages name it (path and shape).
        uses: How often each source tensor has been taken; updated.
        problems: The conversion's problem lists; a missing tensor is added to
            ``"source tensors missing for target weights"``.

    Returns:
        The tensor, or None when `state` lacks it.
    """
    if source_name not in state:
        problems["source tensors missing for target weights"].append(f"{source_name} -> {target}")
        return None
    uses[source_name] = uses.get(source_name, 0) + 1
    return state[source_name]


def _coverage_problems(
    state: Mapping[str, np.ndarray],
    uses: Mapping[str, int],
    skipped: tuple[str, ...],
    writes: list[tuple[Any, np.ndarray]],
    weights: list[Any] | None,
) -> dict[str, list[str]]:
    """What a conversion leaves out or takes twice, once every weight has found its source.

    Args:
        state: The state dict.
        uses: How often each source tensor was taken.
        skipped: Unused source tensors left out on purpose (by rule); not problems.
        writes: The ``(Keras variable, value)`` pairs to write.
        weights: Keras weights that must all be written, or None not to check.

    Returns:
        The lists ``"unused source tensors"``, ``"source tensors used more than once"``
        and, with `weights`, ``"unset target weights"`` (empty lists included).
    """
    problems = {
        "unused source tensors": [
            f"{n} {state[n].shape}" for n in state if n not in uses and n not in skipped
        ],
        "source tensors used more than once": [n for n, c in uses.items() if c > 1],
    }
    if weights is not None:
        written = {id(v) for v, _ in writes}
        problems["unset target weights"] = [
            f"{v.path} {tuple(v.shape)}" for v in weights if id(v) not in written
        ]
    return problems


def load_torchvision_weights(
    model: keras.Model,
    source: StateDictSource,
    *,
    encoder: str | None = None,
    require_all_weights: bool = True,
) -> ConversionReport:
    """Writes a torchvision state dict into an encoder built by `kerasseg.encoders.get`.

    Args:
        model: The encoder (or a model that contains its layers under the same names). For
            a model that nests the encoder as a sub-model, pass that sub-model
            (``model.get_layer(encoder_name)``).
        source: The state dict, or the path of a ``.pth``/``.pt``/``.npz`` file (see
            `read_state_dict`).
        encoder: Encoder name; default ``model.name``.
        require_all_weights: Also require that every weight of `model` is set (true for a
            bare encoder; pass False when `model` has other layers, e.g. a decoder).

    Returns:
        A `ConversionReport`.

    Raises:
        ConversionError: listing unused source tensors, unset target weights, missing source
            tensors and shape mismatches. Nothing is written in that case.
    """
    name = encoder or model.name
    if name not in list_encoders():
        raise ValueError(
            f"Unknown encoder {name!r} (from "
            f"{'`encoder`' if encoder else 'the model name'}); pass `encoder=` one of "
            f"{list_encoders()}."
        )
    family = spec(name).family
    state = read_state_dict(source)
    pairs = torchvision_layer_map(name)

    problems: dict[str, list[str]] = {
        "missing target layers": [],
        "source tensors missing for target weights": [],
        "shape mismatches": [],
        "unused source tensors": [],
        "unset target weights": [],
    }
    uses: dict[str, int] = {}
    writes: list[tuple[Any, np.ndarray]] = []
    input_conv = "copied"
    layers_written = 0
    for position, (layer_name, torch_prefix) in enumerate(pairs):
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            problems["missing target layers"].append(f"{layer_name} (for {torch_prefix}.*)")
            continue
        layers_written += 1
        for variable, source_name, transform in _targets(layer, torch_prefix):
            target = f"{variable.path} {tuple(variable.shape)}"
            value = _source_tensor(state, source_name, target, uses, problems)
            if value is None:
                continue
            if transform == "oihw_to_hwio":
                if value.ndim != 4:
                    problems["shape mismatches"].append(
                        f"{source_name} {value.shape} is not a 4-D (out, in, kh, kw) kernel; "
                        f"{variable.path} is {tuple(variable.shape)}"
                    )
                    continue
                if position == 0 and value.shape[1] != variable.shape[2]:
                    try:
                        value, input_conv = adapt_input_conv(value, int(variable.shape[2]))
                    except ConversionError as error:
                        problems["shape mismatches"].append(f"{source_name}: {error}")
                        continue
                value = np.transpose(value, (2, 3, 1, 0))
            if tuple(value.shape) != tuple(variable.shape):
                problems["shape mismatches"].append(
                    f"{source_name} {tuple(state[source_name].shape)} (as Keras "
                    f"{tuple(value.shape)}) != {variable.path} {tuple(variable.shape)}"
                )
                continue
            writes.append((variable, value))

    skipped = tuple(n for n in state if n not in uses and _skipped_by_rule(family, n))
    weights = model.weights if require_all_weights else None
    problems.update(_coverage_problems(state, uses, skipped, writes, weights))
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        hint = ""
        if "missing target layers" in problems:
            hint = (
                f"\n  (If `model` nests the encoder as a sub-model, pass that sub-model, "
                f"e.g. model.get_layer({name!r}).)"
            )
        raise ConversionError(
            f"The state dict does not fit encoder {name!r} ({len(state)} source tensors, "
            f"{len(pairs)} target layers); nothing was written:\n"
            + "\n".join(_listed(title, items) for title, items in problems.items())
            + hint
        )

    for variable, value in writes:
        variable.assign(value.astype(variable.dtype))
    report = ConversionReport(
        encoder=name,
        source_tensors=len(state),
        converted_tensors=len(uses),
        skipped=skipped,
        target_layers=layers_written,
        target_weights=len(writes),
        parameters=int(sum(value.size for _, value in writes)),
        input_conv=input_conv,
    )
    logger.info("Converted %s", report)
    return report


def save_weights(model: keras.Model, path: str | os.PathLike) -> pathlib.Path:
    """Saves `model`'s weights as a Keras ``.weights.h5`` file, atomically.

    The file loads with ``kerasseg.encoders.get(name, weights=path)`` (same encoder and input
    channels) or ``model.load_weights(path)``.

    Returns:
        The path written.
    """
    path = pathlib.Path(path)
    suffix = ".weights.h5"
    if not path.name.endswith(suffix):
        raise ValueError(f"`path` must end with {suffix!r} (Keras' rule), got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=suffix) as partial:
        model.save_weights(partial)
    return path
