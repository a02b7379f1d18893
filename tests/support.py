"""Helpers for tests that need optional references or the shared real data.

In CI (``KERASSEG_REQUIRE_REFERENCES=1``, set by ``.ci/run``) a missing reference or data set
is a failure; elsewhere (a user's clone without the `parity` extra or without
``../shared/data``) the test is skipped with the reason.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def references_required() -> bool:
    return os.environ.get("KERASSEG_REQUIRE_REFERENCES") == "1"


def _unavailable(reason: str) -> None:
    if references_required():
        pytest.fail(f"{reason} (required because KERASSEG_REQUIRE_REFERENCES=1)")
    pytest.skip(reason)


def require_module(name: str) -> ModuleType:
    """Imports an optional reference implementation, or skips/fails the test."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        _unavailable(f"reference {name!r} is not installed ({error}); install the `parity` extra")
        raise  # unreachable: skip/fail raise


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository (or ``$KERASSEG_SHARED_DATA``)."""
    return Path(os.environ.get("KERASSEG_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def require_shared_data(subdir: str) -> Path:
    """The path of a shared data set, or skips/fails the test when it is absent."""
    path = shared_data_dir() / subdir
    if not path.is_dir():
        _unavailable(f"shared data {path} is absent (a clone without ../shared/data)")
    return path
