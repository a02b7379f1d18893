"""Input normalisation of the encoders, as standard (serializable) Keras layers.

Encoders take images in 0..255 and normalise them like torchvision does after its
``ToTensor`` (which scales to 0..1): ``(x / 255 - mean) / std`` per channel.

Channel counts other than 3 (see `channel_statistics`):

* 1 channel (grayscale, e.g. electron microscopy): the mean of the three ImageNet means and
  the mean of the three standard deviations (0.449, 0.226).
* k channels: channel i uses the statistics of RGB channel ``i % 3``, matching the way the
  converter repeats the first convolution's RGB kernels over k input channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from keras import layers

from kerasseg.utils.checks import check_positive_int


def channel_statistics(
    in_channels: int, mean: Sequence[float], std: Sequence[float]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation (0..1 scale) for `in_channels` inputs.

    Args:
        in_channels: Input channels (>= 1).
        mean: The RGB means.
        std: The RGB standard deviations.

    Returns:
        ``(means, stds)`` with `in_channels` entries each.
    """
    check_positive_int(in_channels, "in_channels")
    if in_channels == 1:
        return (float(np.mean(mean)),), (float(np.mean(std)),)
    n = len(mean)
    return (
        tuple(float(mean[i % n]) for i in range(in_channels)),
        tuple(float(std[i % n]) for i in range(in_channels)),
    )


def input_normalization(
    in_channels: int, mean: Sequence[float], std: Sequence[float], name: str = "normalize"
) -> layers.Layer:
    """A layer mapping (B, H, W, in_channels) images in 0..255 to ``(x / 255 - mean) / std``.

    It is a built-in `keras.layers.Normalization` with the statistics rescaled to 0..255
    (mean ``255 * mean``, variance ``(255 * std) ** 2``), so saved models need no custom
    objects and the statistics are constants, not weights.
    """
    means, stds = channel_statistics(in_channels, mean, std)
    return layers.Normalization(
        axis=-1,
        mean=[255.0 * m for m in means],
        variance=[(255.0 * s) ** 2 for s in stds],
        name=name,
    )
