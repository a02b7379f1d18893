"""Writes a parsed detection data set in the YOLO layout that ultralytics trains on.

The parent of `benchmarks/detection.py` converts BCCD's records (`kerasseg.data.load_voc`,
so the boxes are the ones the Keras peers see, degenerate boxes dropped, and the class ids
are kerasseg's) into::

    out/
      data.yaml                  path, train, val, names (kerasseg's class order)
      images/train/<id>.jpg      symlinks to the original images
      labels/train/<id>.txt      one "class cx cy w h" line per box, normalised to 0..1
      images/val/, labels/val/   a few training images: ultralytics validates once when
                                 the budget stops it, and reads a val set from data.yaml
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Training images copied to the val split ultralytics insists on (not used for scoring).
VAL_IMAGES = 8


def label_lines(record: Any) -> list[str]:
    """``"class cx cy w h"`` lines of one record, normalised by its image size."""
    lines = []
    for (x1, y1, x2, y2), class_id in zip(record.boxes.tolist(), record.classes.tolist()):
        cx, cy = (x1 + x2) / 2 / record.width, (y1 + y2) / 2 / record.height
        w, h = (x2 - x1) / record.width, (y2 - y1) / record.height
        lines.append(f"{int(class_id)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def _write_split(records: Sequence[Any], out: Path, split: str) -> None:
    images, labels = out / "images" / split, out / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for record in records:
        source = Path(record.image_path)
        link = images / f"{record.image_id}{source.suffix}"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(source.resolve(), link)
        (labels / f"{record.image_id}.txt").write_text("\n".join(label_lines(record)) + "\n")


def write_yolo_dataset(records: Sequence[Any], class_names: Sequence[str], out: str | Path) -> Path:
    """Writes `records` as a YOLO data set under `out` and returns its ``data.yaml``.

    Args:
        records: The training `kerasseg.data.DetectionRecord`s.
        class_names: Name of each class id, in kerasseg's order.
        out: The (new or reused) folder.

    Returns:
        The path of ``data.yaml``.
    """
    out = Path(out)
    _write_split(records, out, "train")
    _write_split(records[:VAL_IMAGES], out, "val")
    for cache in (out / "labels").glob("*.cache"):
        cache.unlink()  # labels may have changed since a previous run
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(class_names))
    yaml = out / "data.yaml"
    yaml.write_text(
        f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n"
    )
    return yaml
