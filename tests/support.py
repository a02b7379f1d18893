"""Helpers for tests that need optional references or the shared real data.

In CI (``KERASSEG_REQUIRE_REFERENCES=1``, set by ``.ci/run``) a missing reference or data set
is a failure; elsewhere (a user's clone without the `parity` extra or without
``../shared/data``) the test is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
from collections.abc import Iterator
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


_FRESH_PRELUDE = """\
import json, os, sys
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
inputs = dict(np.load(sys.argv[1]))
outputs = {}
"""
_FRESH_EPILOGUE = """
np.savez(sys.argv[2], **outputs)
print(json.dumps(sorted(m for m in sys.modules if "." not in m)))
"""


def run_in_fresh_process(code: str, workdir: Path, **inputs) -> tuple[dict, list[str]]:
    """Runs ``code`` in a new interpreter and returns its ``outputs`` and top-level modules.

    The new process starts with only ``numpy`` imported (``inputs`` holds the given arrays),
    so whatever ``code`` needs, such as a registration done by ``import kerasseg``, must come
    from what ``code`` itself imports: a test's own imports cannot make it pass. ``code`` puts
    arrays into the dict ``outputs``. The repository root is first on ``sys.path``.
    """
    import subprocess
    import sys

    import numpy as np

    workdir = Path(workdir)
    np.savez(workdir / "fresh_inputs.npz", **inputs)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _FRESH_PRELUDE + code + _FRESH_EPILOGUE,
            str(workdir / "fresh_inputs.npz"),
            str(workdir / "fresh_outputs.npz"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    import json

    modules = json.loads(result.stdout.strip().splitlines()[-1])
    with np.load(workdir / "fresh_outputs.npz") as saved:
        return dict(saved), modules


@contextlib.contextmanager
def cli_error(capsys: pytest.CaptureFixture, match: str) -> Iterator[None]:
    """Expects the command run inside to stop as argparse does on a user error: exit
    status 2 and one last stderr line ``kerasseg: error: ...`` matching `match`, no
    traceback."""
    with pytest.raises(SystemExit) as stop:
        yield
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("kerasseg: error: "), err
    assert re.search(match, last), f"{match!r} not in {last!r}"
