"""Writing files atomically: a reader sees the old file or the complete new one, never a
partial one (an interrupted download, conversion or write leaves no corrupt file behind)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside `path`; when the block succeeds it replaces `path`.

    The temporary file is removed whatever happens (an exception inside the block leaves
    `path` as it was).

    Args:
        path: The file to write.
        suffix: What the temporary name must end with (e.g. ``".weights.h5"``, which Keras
            insists on).

    Yields:
        The temporary path to write to (in the same folder, so the replace is atomic).
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part{suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


__all__ = ["atomic_path"]
