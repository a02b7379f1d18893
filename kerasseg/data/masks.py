"""Folders of images and masks as validated `tf.data` pipelines.

```python
folder = SegmentationFolder("data/images", "data/masks", channels=1,
                            mask_values={0: 1, 255: 0})   # membrane (0) is class 1
train = folder.dataset(indices=range(24), batch_size=4, crop_size=(256, 256),
                       augment=True, shuffle=True, repeat=True, seed=0)
images, masks = folder.load(indices=range(24, 30))
```

Images and masks are paired by file stem (``12.png`` with ``12.png`` or ``12_mask.tif``
with `mask_suffix="_mask"`), in natural order (2 before 10). Construction checks the pairing
and the sizes (from the file headers, without decoding); decoding checks the mask values.
Every error names the file.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from kerasseg.data.augment import joint_augment, seeded_map

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.stem)]


def _list_images(directory: Path, what: str) -> list[Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"`{what}` directory {str(directory)!r} does not exist.")
    files = [p for p in directory.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ValueError(
            f"`{what}` directory {str(directory)!r} holds no images with extensions "
            f"{IMAGE_EXTENSIONS}."
        )
    return sorted(files, key=_natural_key)


def _header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read image file {str(path)!r}: {error}") from error


def _read_mask_array(path: Path) -> np.ndarray:
    """Raw mask values as stored (palette images give their palette indices)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read image file {str(path)!r}: {error}") from error


class SegmentationFolder:
    """Image/mask pairs from two folders, validated, as arrays or a `tf.data.Dataset`.

    Args:
        images_dir: Folder of images (PNG, JPEG, TIFF, BMP).
        masks_dir: Folder of masks, one per image, with the same stem (plus `mask_suffix`).
        channels: 1 (grayscale) or 3 (RGB): images are converted to this.
        mask_values: Mapping from raw mask pixel values to class ids, e.g.
            ``{0: 0, 255: 1}``; a mask pixel with a value not in the mapping is an error.
            None: the raw values are the class ids (checked against `num_classes`, if given).
        num_classes: The model's classes: class ids (raw values, or those `mask_values`
            maps to) must be below it, or be 0 and 1 for a binary model (``1``). None:
            unchecked.
        mask_suffix: Suffix of mask stems, e.g. ``"_mask"`` for ``a.png`` / ``a_mask.png``.

    Raises:
        FileNotFoundError: a folder does not exist.
        ValueError: no images, images without masks or masks without images (the names
            are listed), an unreadable file, or an image and mask of different sizes.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike,
        masks_dir: str | os.PathLike,
        *,
        channels: int = 3,
        mask_values: dict[int, int] | None = None,
        num_classes: int | None = None,
        mask_suffix: str = "",
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"`channels` must be 1 or 3, got {channels!r}.")
        self.images_dir = Path(images_dir)
        self.masks_dir = Path(masks_dir)
        self.channels = channels
        self.mask_values = (
            None if mask_values is None else {int(k): int(v) for k, v in mask_values.items()}
        )
        self.num_classes = num_classes
        images = _list_images(self.images_dir, "images_dir")
        masks = {p.stem: p for p in _list_images(self.masks_dir, "masks_dir")}
        pairs, missing = [], []
        for image in images:
            mask = masks.pop(f"{image.stem}{mask_suffix}", None)
            if mask is None:
                missing.append(image.name)
            else:
                pairs.append((image, mask))
        if missing or masks:
            details = []
            if missing:
                details.append(
                    f"images without a mask: {missing[:5]}{' ...' if len(missing) > 5 else ''}"
                )
            if masks:
                extra = sorted(p.name for p in masks.values())
                details.append(
                    f"masks without an image: {extra[:5]}{' ...' if len(extra) > 5 else ''}"
                )
            raise ValueError(
                f"Images in {str(self.images_dir)!r} and masks in {str(self.masks_dir)!r} do not "
                f"pair up by name (mask stem = image stem + {mask_suffix!r}); "
                + "; ".join(details)
                + "."
            )
        for image, mask in pairs:
            image_size, mask_size = _header_size(image), _header_size(mask)
            if image_size != mask_size:
                raise ValueError(
                    f"Image {str(image)!r} is {image_size[0]}x{image_size[1]} (WxH) but its mask "
                    f"{str(mask)!r} is {mask_size[0]}x{mask_size[1]}."
                )
        self.pairs: list[tuple[Path, Path]] = pairs
        if self.mask_values is not None and num_classes is not None:
            bad = {k: v for k, v in self.mask_values.items() if not 0 <= v < self._class_limit}
            if bad:
                raise ValueError(
                    f"`mask_values` maps {bad} to class ids outside 0..{self._class_limit - 1} "
                    f"(num_classes={num_classes})."
                )
        if self.mask_values is not None:
            self._lookup = np.full(65536, -1, dtype=np.int64)
            for raw, class_id in self.mask_values.items():
                self._lookup[raw] = class_id

    @property
    def _class_limit(self) -> int:
        """One past the largest valid class id (a binary model's masks hold 0 and 1)."""
        return max(int(self.num_classes), 2)

    def __len__(self) -> int:
        return len(self.pairs)

    def check_masks(self, indices: Iterable[int] | None = None) -> None:
        """Reads every selected mask and checks its values, before any training starts.

        Raises:
            ValueError: for the first mask with values outside `mask_values` or class ids
                out of range, naming the file, the values found and a `mask_values` to pass.
        """
        for _, mask_path in self._select(indices):
            self._class_ids(_read_mask_array(mask_path), mask_path)

    def __repr__(self) -> str:
        return (
            f"SegmentationFolder({str(self.images_dir)!r}, {str(self.masks_dir)!r}, "
            f"{len(self)} pairs, channels={self.channels})"
        )

    def _select(self, indices: Iterable[int] | None) -> list[tuple[Path, Path]]:
        if indices is None:
            return list(self.pairs)
        chosen = []
        for index in indices:
            if not -len(self.pairs) <= int(index) < len(self.pairs):
                raise IndexError(
                    f"`indices` contains {index}, but the folder has {len(self.pairs)} pairs."
                )
            chosen.append(self.pairs[int(index)])
        return chosen

    def read_pair(self, image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Decodes one pair.

        Returns:
            ``(image, mask)``: (H, W, channels) float32 in 0..255 (16-bit images are scaled
            to 0..255), and (H, W, 1) int32 class ids.

        Raises:
            ValueError: naming the mask file, for values outside `mask_values` or class ids
                out of range.
        """
        image = read_image(image_path, self.channels)
        return image, self._class_ids(_read_mask_array(mask_path), mask_path)

    def _class_ids(self, raw: np.ndarray, mask_path: Path) -> np.ndarray:
        """A raw mask -> (H, W, 1) int32 class ids, or a ValueError naming the file."""
        if raw.ndim == 3:
            if not (raw[..., :1] == raw).all():
                raise ValueError(
                    f"Mask {str(mask_path)!r} has {raw.shape[-1]} channels with different values; "
                    "masks must be single-channel class maps."
                )
            raw = raw[..., 0]
        raw = raw.astype(np.int64)
        if self.mask_values is not None:
            if raw.min() < 0 or raw.max() >= self._lookup.size:
                bad = np.unique(raw[(raw < 0) | (raw >= self._lookup.size)])[:10]
                raise ValueError(
                    f"Mask {str(mask_path)!r} has values {bad.tolist()} outside `mask_values`."
                )
            mask = self._lookup[raw]
            if (mask < 0).any():
                bad = np.unique(raw[mask < 0])[:10].tolist()
                raise ValueError(
                    f"Mask {str(mask_path)!r} has values {bad} that are not keys of `mask_values` "
                    f"{sorted(self.mask_values)}."
                )
        else:
            mask = raw
            limit = np.inf if self.num_classes is None else self._class_limit
            if mask.min() < 0 or mask.max() >= limit:
                found = np.unique(mask)
                bad = found[(found < 0) | (found >= limit)][:10].tolist()
                mapping = {int(v): i for i, v in enumerate(found[:10])}
                text = ",".join(f"{k}:{v}" for k, v in mapping.items())
                raise ValueError(
                    f"Mask {str(mask_path)!r} has class ids {bad} outside 0..{limit - 1} "
                    f"(num_classes={self.num_classes}; the mask's values are "
                    f"{found[:10].tolist()}). Map the raw values to classes with "
                    f"`mask_values`, e.g. mask_values={mapping} (on the command line "
                    f"--mask-values {text}), choosing which value is which class."
                )
        return mask.astype(np.int32)[..., None]

    def load(self, indices: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Decodes the selected pairs into memory (they must all have one size).

        Returns:
            ``(images, masks)``: (N, H, W, channels) float32 in 0..255 and (N, H, W, 1) int32.
        """
        pairs = self._select(indices)
        decoded = [self.read_pair(*pair) for pair in pairs]
        sizes = {image.shape[:2] for image, _ in decoded}
        if len(sizes) > 1:
            raise ValueError(
                f"`load` stacks images of one size, but the selection has sizes {sorted(sizes)}; "
                "use `dataset(crop_size=...)` instead."
            )
        return np.stack([d[0] for d in decoded]), np.stack([d[1] for d in decoded])

    def dataset(
        self,
        *,
        indices: Iterable[int] | None = None,
        batch_size: int = 4,
        crop_size: tuple[int, int] | None = None,
        augment: bool = False,
        shuffle: bool = False,
        repeat: bool = False,
        cache: bool = True,
        seed: int = 0,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """A batched, prefetched `tf.data.Dataset` of ``(image, mask)``.

        Args:
            indices: Which pairs (positions in natural order); all when None.
            batch_size: Batch size B.
            crop_size: (h, w) random crop (when `augment`) or centre crop; None keeps the
                full images (which then must all have one size to be batched).
            augment: Random crops, flips and 90-degree rotations applied jointly.
            shuffle: Shuffle the pairs each epoch.
            repeat: Repeat forever (then pass `steps_per_epoch` to `fit`).
            cache: Keep decoded pairs in memory after the first pass.
            seed: Seed of shuffling and augmentation.
            drop_remainder: Drop a last incomplete batch.

        Returns:
            Batches of images (B, h, w, channels) float32 in 0..255 and masks (B, h, w, 1)
            int32.
        """
        pairs = self._select(indices)
        if not pairs:
            raise ValueError("`indices` selects no pairs.")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        paths = tf.data.Dataset.from_tensor_slices(
            ([str(p[0]) for p in pairs], [str(p[1]) for p in pairs])
        )
        channels = self.channels

        def decode(image_path: tf.Tensor, mask_path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            image, mask = tf.numpy_function(
                lambda a, b: self.read_pair(Path(a.decode()), Path(b.decode())),
                [image_path, mask_path],
                [tf.float32, tf.int32],
                stateful=False,
            )
            image.set_shape([None, None, channels])
            mask.set_shape([None, None, 1])
            return image, mask

        data = paths.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        if cache:
            data = data.cache()
        if shuffle:
            data = data.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            data = data.repeat()
        if augment:
            data = seeded_map(
                data,
                lambda image, mask, s: joint_augment(image, mask, s, crop_size=crop_size),
                seed=seed,
            )
        elif crop_size is not None:
            data = data.map(lambda image, mask: _center_crop(image, mask, crop_size))
        return data.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def read_image(path: Path, channels: int) -> np.ndarray:
    """Decodes an 8-bit (any PIL mode) or 16-bit grayscale image.

    Returns:
        (H, W, channels) float32 in 0..255; 16-bit images are scaled by 255/65535 and
        replicated to 3 channels if needed.
    """
    try:
        with Image.open(path) as image:
            if image.mode in _SIXTEEN_BIT_MODES:
                array = np.asarray(image, dtype=np.float32) * (255.0 / 65535.0)
                array = np.repeat(array[..., None], channels, axis=-1)
            elif image.mode in ("I", "F"):
                raise ValueError(
                    f"32-bit {'integer' if image.mode == 'I' else 'float'} images have no "
                    "standard value range; convert them to 8 or 16 bits"
                )
            else:
                array = np.asarray(image.convert("L" if channels == 1 else "RGB"), np.float32)
                if channels == 1:
                    array = array[..., None]
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read image file {str(path)!r}: {error}") from error
    return array


def _center_crop(
    image: tf.Tensor, mask: tf.Tensor, crop_size: Sequence[int]
) -> tuple[tf.Tensor, tf.Tensor]:
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    top = (height - crop_size[0]) // 2
    left = (width - crop_size[1]) // 2
    return (
        image[top : top + crop_size[0], left : left + crop_size[1]],
        mask[top : top + crop_size[0], left : left + crop_size[1]],
    )
