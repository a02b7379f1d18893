"""Parsed detection annotations, the load report, and their `tf.data` pipeline.

The VOC and COCO loaders (`kerasseg.data.voc`, `kerasseg.data.coco`) parse annotation
files eagerly in Python into `DetectionRecord`s, validating every box and recording every
problem in a `LoadReport`; `DetectionAnnotations.to_dataset` then decodes the images in
`tf.data` and yields the dense padded format of `kerasseg.detection.format`:

``(image, target)`` with ``image`` float32 ``(H, W, 3)`` in 0..255 and ``target`` =
``{"boxes": (max_boxes, 4) float32 xyxy pixels, "classes": (max_boxes,) int32 (-1 =
padding), <extras>}`` (``"difficult"`` for VOC, ``"iscrowd"`` for COCO, bool), batched to
``(B, ...)`` when ``batch_size`` is given.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["DetectionAnnotations", "DetectionRecord", "LoadReport"]

#: How many individual problems are logged before the rest only go into the report.
MAX_LOGGED_PROBLEMS = 20


@dataclasses.dataclass
class DetectionRecord:
    """One image and its (validated) boxes.

    Attributes:
        image_path: Path of the image file.
        height: Image height in pixels.
        width: Image width in pixels.
        boxes: ``(N, 4)`` float32 xyxy absolute pixels, all valid and inside the image.
        classes: ``(N,)`` int32 class ids in ``0..num_classes-1``.
        extras: Per-box arrays of length N (``"difficult"``, ``"iscrowd"``: bool).
        image_id: The image's id in its source (VOC file stem, COCO image id).
        source: The annotation file it came from (for messages).
    """

    image_path: str
    height: int
    width: int
    boxes: np.ndarray
    classes: np.ndarray
    extras: dict[str, np.ndarray]
    image_id: Any
    source: str

    @property
    def num_boxes(self) -> int:
        return len(self.boxes)


@dataclasses.dataclass
class LoadReport:
    """Everything a loader dropped, clipped or skipped, with counts and messages.

    Attributes:
        source: What was loaded (a folder and split, or a JSON file).
        num_images: Images kept.
        num_boxes: Boxes kept.
        class_counts: Boxes kept per class name.
        images_without_boxes: Kept images that have no box (valid negatives).
        skipped_images: ``(file, reason)`` of every image left out.
        dropped_boxes: Count of dropped boxes per reason (``"degenerate"``,
            ``"outside image"``, ``"unknown class"``, ``"malformed"``, ``"difficult"``,
            ``"crowd"``, ``"over max_boxes"``...).
        clipped_boxes: Boxes kept after clipping to the image.
        problems: Every message, each naming its file.
        strict: Raise a ValueError at the first problem instead of warning.
    """

    source: str
    num_images: int = 0
    num_boxes: int = 0
    class_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    images_without_boxes: int = 0
    skipped_images: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    dropped_boxes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    clipped_boxes: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    strict: bool = False

    def problem(self, file: str | Path, message: str) -> None:
        """Records (and, for the first few, logs) a problem found in `file`.

        Raises:
            ValueError: in strict mode, with the same message.
        """
        text = f"{file}: {message}"
        if self.strict:
            raise ValueError(f"{text} (strict loading; pass strict=False to warn and go on)")
        self.problems.append(text)
        if len(self.problems) <= MAX_LOGGED_PROBLEMS:
            logger.warning(text)
        elif len(self.problems) == MAX_LOGGED_PROBLEMS + 1:
            logger.warning(
                "More annotation problems in %s; the rest are only in the LoadReport "
                "(`annotations.report.problems`).",
                self.source,
            )

    def skip_image(self, file: str | Path, reason: str) -> None:
        self.skipped_images.append((str(file), reason))
        self.problem(file, reason if self.strict else f"image skipped: {reason}")

    def drop_box(self, file: str | Path, reason: str, message: str) -> None:
        self.dropped_boxes[reason] += 1
        self.problem(file, message if self.strict else f"{message}; box dropped")

    @property
    def num_dropped_boxes(self) -> int:
        return int(sum(self.dropped_boxes.values()))

    @property
    def clean(self) -> bool:
        """True when nothing was dropped, clipped or skipped."""
        return not (
            self.skipped_images or self.dropped_boxes or self.clipped_boxes or self.problems
        )

    def summary(self) -> str:
        """A one-paragraph account of the load."""
        counts = ", ".join(f"{name} {count}" for name, count in self.class_counts.items())
        lines = [
            f"{self.source}: {self.num_images} images, {self.num_boxes} boxes ({counts}); "
            f"{self.images_without_boxes} images without boxes."
        ]
        if self.dropped_boxes:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.dropped_boxes.items()))
            lines.append(f"Dropped {self.num_dropped_boxes} boxes: {reasons}.")
        if self.clipped_boxes:
            lines.append(f"Clipped {self.clipped_boxes} boxes to their image.")
        if self.skipped_images:
            lines.append(f"Skipped {len(self.skipped_images)} images.")
        if self.problems:
            lines.append(f"{len(self.problems)} messages in `report.problems`.")
        return " ".join(lines)

    def log(self) -> None:
        """Logs the summary: a warning if anything was dropped/clipped/skipped."""
        (logger.info if self.clean else logger.warning)(self.summary())


@dataclasses.dataclass
class DetectionAnnotations:
    """A parsed detection data set: records, class names and the load report.

    Attributes:
        records: One `DetectionRecord` per kept image, in source order.
        class_names: Name of each class id (``class_names[i]`` is id ``i``).
        report: The `LoadReport`.
        category_ids: COCO only: the COCO category id of each class id.
    """

    records: list[DetectionRecord]
    class_names: list[str]
    report: LoadReport
    category_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def extra_keys(self) -> list[str]:
        keys: list[str] = []
        for record in self.records:
            keys += [k for k in record.extras if k not in keys]
        return keys

    def max_boxes(self) -> int:
        """The largest box count of any image (at least 1)."""
        return max([1] + [record.num_boxes for record in self.records])

    def ground_truth(self) -> list[dict[str, np.ndarray]]:
        """Per-image NumPy ground truth ``{"boxes", "classes", <extras>}`` (for evaluation)."""
        return [{"boxes": r.boxes, "classes": r.classes, **r.extras} for r in self.records]

    def to_dataset(
        self,
        *,
        batch_size: int | None = None,
        max_boxes: int | None = None,
        on_overflow: str = "raise",
        image_size: Sequence[int] | None = None,
        letterbox: bool = False,
        pad_value: float = 0.0,
        flip: bool = False,
        flip_probability: float = 0.5,
        shuffle: bool = False,
        seed: int | None = None,
        drop_remainder: bool = False,
        num_parallel_calls: int | None = None,
    ) -> Any:
        """A `tf.data.Dataset` of ``(image, target)`` in the dense padded format.

        Args:
            batch_size: Batch size; None yields single images.
            max_boxes: Padded box count per image; None: the largest count in the data
                set (never truncates).
            on_overflow: What to do when an image has more than `max_boxes` boxes:
                ``"raise"`` (default: a ValueError naming the files) or ``"warn"``
                (keep the first `max_boxes` boxes, warn naming the files and count the
                rest in ``report.dropped_boxes["over max_boxes"]``).
            image_size: ``(height, width)`` to resize every image to (boxes follow);
                None keeps the original sizes, and batches are then padded at the
                bottom/right with zeros up to the largest image of the batch.
            letterbox: With `image_size`, keep the aspect ratio and pad (see
                `kerasseg.data.detection_transforms.letterbox`).
            pad_value: Fill value of letterbox padding.
            flip: Random horizontal flip of image and boxes (training augmentation).
            flip_probability: Chance of a flip.
            shuffle: Shuffle the images each epoch (the whole data set's order).
            seed: Seed for shuffling and flips (reproducible pipelines).
            drop_remainder: Drop the last incomplete batch.
            num_parallel_calls: Parallelism of the decode/transform map (default AUTOTUNE).

        Returns:
            The dataset; its element spec is ``(image, {"boxes", "classes", <extras>})``.
        """
        import tensorflow as tf

        from kerasseg.data import detection_transforms as T

        if on_overflow not in ("raise", "warn"):
            raise ValueError(f"`on_overflow` must be 'raise' or 'warn', got {on_overflow!r}.")
        if not self.records:
            raise ValueError(f"No images to build a dataset from ({self.report.source}).")
        if letterbox and image_size is None:
            raise ValueError("`letterbox=True` needs an `image_size`.")
        if image_size is not None:
            image_size = (int(image_size[0]), int(image_size[1]))
        max_boxes = self.max_boxes() if max_boxes is None else int(max_boxes)
        if max_boxes < 1:
            raise ValueError(f"`max_boxes` must be a positive int, got {max_boxes!r}.")
        records = self._fit_max_boxes(max_boxes, on_overflow)

        extra_keys = self.extra_keys
        lengths = np.array([r.num_boxes for r in records], np.int64)
        flat_boxes = np.concatenate([r.boxes.reshape(-1, 4) for r in records]).astype(np.float32)
        flat_classes = np.concatenate([r.classes for r in records]).astype(np.int32)
        columns: dict[str, Any] = {
            "path": np.array([r.image_path for r in records]),
            "boxes": tf.RaggedTensor.from_row_lengths(flat_boxes, lengths),
            "classes": tf.RaggedTensor.from_row_lengths(flat_classes, lengths),
        }
        for key in extra_keys:
            flat = np.concatenate(
                [r.extras.get(key, np.zeros(r.num_boxes, bool)) for r in records]
            ).astype(bool)
            columns[key] = tf.RaggedTensor.from_row_lengths(flat, lengths)
        dataset = tf.data.Dataset.from_tensor_slices(columns)
        if shuffle:
            dataset = dataset.shuffle(len(records), seed=seed, reshuffle_each_iteration=True)
        if flip:
            # One random pair per element, re-drawn every epoch: stateless flips that are
            # reproducible with `seed` yet differ between epochs.
            randoms = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
            dataset = tf.data.Dataset.zip((dataset, randoms))
        else:
            dataset = dataset.map(lambda element: (element, tf.zeros((2,), tf.int64)))

        def load(element: dict[str, Any], random_pair: Any) -> tuple[Any, Any]:
            data = tf.io.read_file(element["path"])
            # JPEGs with the accurate integer IDCT: the pixels libjpeg/Pillow give.
            image = tf.cond(
                tf.io.is_jpeg(data),
                lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
                lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
            )
            image = tf.cast(tf.ensure_shape(image, [None, None, 3]), tf.float32)
            target = {"boxes": element["boxes"], "classes": element["classes"]}
            target.update({key: element[key] for key in extra_keys})
            target = {
                k: (v.to_tensor() if isinstance(v, tf.RaggedTensor) else v)
                for k, v in target.items()
            }
            if image_size is not None:
                if letterbox:
                    image, target = T.letterbox(image, target, image_size, pad_value=pad_value)
                else:
                    image, target = T.resize(image, target, image_size)
            if flip:
                image, target = T.random_flip_horizontal(
                    image, target, flip_probability, seed=tf.cast(random_pair, tf.int32)
                )
            return image, T.pad_target(target, max_boxes)

        parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls
        dataset = dataset.map(load, num_parallel_calls=parallel, deterministic=True)
        if batch_size is not None:
            if image_size is not None:
                dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
            else:
                dataset = dataset.padded_batch(batch_size, drop_remainder=drop_remainder)
        return dataset.prefetch(tf.data.AUTOTUNE)

    def _fit_max_boxes(self, max_boxes: int, on_overflow: str) -> list[DetectionRecord]:
        over = [r for r in self.records if r.num_boxes > max_boxes]
        if not over:
            return self.records
        listing = ", ".join(f"{r.source} ({r.num_boxes} boxes)" for r in over[:5])
        more = f" and {len(over) - 5} more" if len(over) > 5 else ""
        if on_overflow == "raise":
            raise ValueError(
                f"{len(over)} images have more than max_boxes={max_boxes} boxes: {listing}{more}. "
                f"Raise `max_boxes` (the data set needs {self.max_boxes()}), or pass "
                "on_overflow='warn' to keep the first max_boxes boxes of those images."
            )
        records = []
        for record in self.records:
            if record.num_boxes > max_boxes:
                excess = record.num_boxes - max_boxes
                self.report.dropped_boxes["over max_boxes"] += excess
                self.report.problem(
                    record.source,
                    f"{record.num_boxes} boxes exceed max_boxes={max_boxes}; the last {excess} dropped",
                )
                record = dataclasses.replace(
                    record,
                    boxes=record.boxes[:max_boxes],
                    classes=record.classes[:max_boxes],
                    extras={k: v[:max_boxes] for k, v in record.extras.items()},
                )
            records.append(record)
        self.report.log()
        return records


def validate_box(
    report: LoadReport,
    file: str | Path,
    what: str,
    box: Sequence[float],
    width: int,
    height: int,
) -> np.ndarray | None:
    """Checks one xyxy box against its image, clipping or dropping it with a message.

    Args:
        report: Where problems go.
        file: The annotation file (named in messages).
        what: Which object, e.g. ``"object #3 (RBC)"``.
        box: ``(x_min, y_min, x_max, y_max)`` in pixels.
        width: Image width.
        height: Image height.

    Returns:
        The (possibly clipped) float32 box, or None if it was dropped.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    coords = [x1, y1, x2, y2]
    shown = "[" + ", ".join(f"{v:g}" for v in coords) + "]"
    if not np.all(np.isfinite(coords)):
        report.drop_box(file, "malformed", f"{what}: non-finite coordinates {shown}")
        return None
    if x2 <= x1 or y2 <= y1:
        kind = "zero width/height" if (x2 == x1 or y2 == y1) else "inverted (max < min)"
        report.drop_box(file, "degenerate", f"{what}: degenerate box {shown} ({kind})")
        return None
    clipped = [
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    ]
    if clipped != coords:
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            report.drop_box(
                file,
                "outside image",
                f"{what}: box {shown} lies outside the {width}x{height} image",
            )
            return None
        report.clipped_boxes += 1
        report.problem(
            file,
            f"{what}: box {shown} extends outside the {width}x{height} image; clipped to "
            "[" + ", ".join(f"{v:g}" for v in clipped) + "]",
        )
    return np.asarray(clipped, np.float32)


def finish(report: LoadReport, records: list[DetectionRecord], class_names: list[str]) -> None:
    """Fills the report's totals from the kept records and logs its summary."""
    counts = collections.Counter()
    for record in records:
        counts.update(int(c) for c in record.classes)
    report.num_images = len(records)
    report.num_boxes = int(sum(r.num_boxes for r in records))
    report.class_counts = {name: int(counts.get(i, 0)) for i, name in enumerate(class_names)}
    report.images_without_boxes = sum(1 for r in records if r.num_boxes == 0)
    report.log()
