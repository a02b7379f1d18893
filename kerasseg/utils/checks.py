"""Argument checks shared across the package; each error names the argument, what was
expected and what came."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_int(value: Any, argument: str, minimum: int = 1) -> int:
    """`value` if it is an integer (not a bool) >= `minimum`, else a ValueError.

    The message says "a positive integer" for ``minimum=1``, else "an integer >= minimum".
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{argument}` must be {expected}, got {value!r}.")
    return value


def check_positive_int(value: Any, argument: str) -> int:
    """`value` if it is an integer >= 1 (see `check_int`)."""
    return check_int(value, argument, 1)


def check_rate(value: Any, argument: str) -> float:
    """`value` as a float if it is a number in [0, 1) (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"`{argument}` must be a number in [0, 1), got {value!r}.")
    return float(value)


def check_choice(value: Any, choices: Sequence[Any], argument: str) -> Any:
    """`value` if it is one of `choices`."""
    if value not in choices:
        raise ValueError(f"`{argument}` must be one of {tuple(choices)}, got {value!r}.")
    return value


__all__ = ["check_choice", "check_int", "check_positive_int", "check_rate"]
