"""Encoder descriptions: what an encoder outputs, known without building it.

Decoders size their layers from an `EncoderSpec` (channels per stride) and only then build
the encoder, so the spec is the whole contract between the two.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch

#: torchvision's ImageNet normalisation, for images scaled to 0..1 (RGB order).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Strides of the features every encoder returns, in output order.
STRIDES = (2, 4, 8, 16, 32)


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """Static description of an encoder.

    Attributes:
        name: Encoder name, e.g. ``"resnet34"`` (also torchvision's model name).
        family: ``"vgg"`` or ``"resnet"``.
        channels: Channels of the features at strides 2, 4, 8, 16, 32, in that order.
        stride_1_channels: Channels of the full-resolution (stride 1) feature, or None when
            the encoder has none (its first layer already downsamples, as in ResNet).
        mean: Per-channel mean of the RGB input normalisation, for images in 0..1.
        std: Per-channel standard deviation of the input normalisation, for images in 0..1.
        torchvision_url: The official torchvision ImageNet checkpoint (``IMAGENET1K_V1``)
            that the layers are designed to load exactly.
    """

    name: str
    family: str
    channels: tuple[int, int, int, int, int]
    stride_1_channels: int | None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    torchvision_url: str = ""

    @property
    def has_stride_1(self) -> bool:
        """Whether the encoder can also return a full-resolution (stride 1) feature."""
        return self.stride_1_channels is not None

    def feature_channels(self, include_stride_1: bool = False) -> tuple[int, ...]:
        """Channels of the features `get` returns, in output order.

        Args:
            include_stride_1: Prepend the stride-1 feature's channels (VGG only).
        """
        if include_stride_1:
            return (self._stride_1_channels(),) + self.channels
        return self.channels

    def feature_strides(self, include_stride_1: bool = False) -> tuple[int, ...]:
        """Strides of the features `get` returns, in output order: (1,) 2, 4, 8, 16, 32."""
        if include_stride_1:
            self._stride_1_channels()
            return (1,) + STRIDES
        return STRIDES

    def _stride_1_channels(self) -> int:
        if self.stride_1_channels is None:
            raise ValueError(
                f"Encoder {self.name!r} has no stride-1 feature (`include_stride_1=True` was "
                f"requested): its first layer is a stride-2 convolution, so nothing in it works "
                f"at full resolution. Decoders on {self.family} encoders upsample the stride-2 "
                f"feature to full resolution without a skip connection."
            )
        return self.stride_1_channels


_SPECS: dict[str, EncoderSpec] = {}


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    """Adds `spec` to the table read by `spec`, `list_encoders` and `get` (names are unique)."""
    if spec.name in _SPECS:
        raise ValueError(f"An encoder named {spec.name!r} is already registered.")
    _SPECS[spec.name] = spec
    return spec


def spec(name: str) -> EncoderSpec:
    """The `EncoderSpec` of encoder `name`.

    Raises:
        ValueError: for an unknown name, suggesting close matches.
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be an encoder name (str), got {type(name).__name__}.")
    try:
        return _SPECS[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name, list(_SPECS), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown encoder {name!r}.{hint} Available encoders: {', '.join(sorted(_SPECS))}."
    )


def list_encoders(pattern: str = "*") -> list[str]:
    """Names of the available encoders matching a shell-style wildcard, sorted."""
    return sorted(n for n in _SPECS if fnmatch.fnmatchcase(n, pattern))


def feature_channels(name: str, include_stride_1: bool = False) -> tuple[int, ...]:
    """Channels of encoder `name`'s features at strides (1,) 2, 4, 8, 16, 32, without building it.

    Example: ``feature_channels("resnet50") == (64, 256, 512, 1024, 2048)``.
    """
    return spec(name).feature_channels(include_stride_1)


def feature_strides(name: str, include_stride_1: bool = False) -> tuple[int, ...]:
    """Strides of encoder `name`'s features, in output order."""
    return spec(name).feature_strides(include_stride_1)
