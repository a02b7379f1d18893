"""Weight initialisers for kerasseg layers (registered, so saved models reload them by name)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from kerasseg.utils.checks import check_positive_int


def bilinear_kernel(size: int) -> np.ndarray:
    """The 1-D factors of the classic bilinear upsampling filter of length `size`.

    For a transposed convolution of stride $f$ and kernel $2f$ ("same" padding, i.e. $f/2$
    cropped on each side), the 2-D filter ``outer(k, k)`` reproduces bilinear interpolation
    with half-pixel centres (``align_corners=False``) away from the borders:
    $k_i = 1 - |i - c| / s$ with $s = \\lceil size / 2 \\rceil$ and $c = s - 1$ for an odd
    size, $s - 1/2$ for an even one (the filter of Long, Shelhamer & Darrell's FCN code).

    Args:
        size: Kernel length (>= 1).

    Returns:
        (size,) float64 weights.
    """
    check_positive_int(size, "size")
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1.0 - np.abs(np.arange(size) - center) / factor


@keras.saving.register_keras_serializable(package="kerasseg")
class BilinearKernel(keras.initializers.Initializer):
    """Initialises a `Conv2DTranspose` kernel to per-channel bilinear interpolation.

    The kernel shape is (kh, kw, out_channels, in_channels) (Keras' transposed-convolution
    layout). Channel c is upsampled into output channel c with the 2-D bilinear filter
    ``outer(bilinear_kernel(kh), bilinear_kernel(kw))``; every cross-channel weight is 0.
    With ``kernel_size = 2 * stride`` and ``padding="same"`` the layer then equals
    ``UpSampling2D(stride, interpolation="bilinear")`` except within ``stride / 2`` pixels
    of the border, where the transposed convolution sees zeros instead of repeated edge
    values. This is how FCN (Long et al., 2015) initialises its learned upsampling.

    Example:
        ```python
        up = keras.layers.Conv2DTranspose(
            21, 16, strides=8, padding="same", use_bias=False,
            kernel_initializer=kerasseg.layers.BilinearKernel(),
        )
        ```
    """

    def __call__(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        if len(shape) != 4 or shape[2] != shape[3]:
            raise ValueError(
                "BilinearKernel initialises Conv2DTranspose kernels of shape "
                "(kh, kw, channels, channels) (same input and output channels), got shape "
                f"{tuple(shape)}."
            )
        kh, kw, channels, _ = (int(s) for s in shape)
        kernel = np.zeros((kh, kw, channels, channels), dtype="float64")
        kernel[:, :, np.arange(channels), np.arange(channels)] = np.outer(
            bilinear_kernel(kh), bilinear_kernel(kw)
        )[:, :, None]
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or keras.config.floatx())

    def get_config(self) -> dict:
        return {}
