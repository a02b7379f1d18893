"""Argument checks shared by the segmentation builders (errors name argument, expectation, value)."""

from __future__ import annotations

from typing import Any

from kerasseg.utils.checks import (  # noqa: F401  (re-exported for the builders)
    check_choice,
    check_int,
    check_positive_int,
    check_rate,
)


def check_model_input_shape(input_shape: Any) -> tuple[int | None, int | None, int]:
    """Validates (H, W, C) with None for any size and a known channel count."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3:
        raise ValueError(
            f"`input_shape` must be (height, width, channels) with None for any size, got "
            f"{input_shape!r}."
        )
    channels = shape[2]
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(
            f"`input_shape` needs a known, positive channel count, got {input_shape!r}."
        )
    return shape
