"""Argument checks shared by the segmentation builders (errors name argument, expectation, value)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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


def check_positive_int(value: Any, argument: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{argument}` must be a positive integer, got {value!r}.")
    return value


def check_rate(value: Any, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"`{argument}` must be a number in [0, 1), got {value!r}.")
    return float(value)


def check_choice(value: Any, choices: Sequence[Any], argument: str) -> Any:
    if value not in choices:
        raise ValueError(f"`{argument}` must be one of {tuple(choices)}, got {value!r}.")
    return value
