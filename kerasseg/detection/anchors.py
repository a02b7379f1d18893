"""Multi-level anchor (default box / prior) generation.

An anchor generator knows, for every pyramid level, a set of anchor *shapes* (width,
height) and the level's stride. Placed at every cell of a feature map, they give the
anchors of that level; the levels are concatenated.

**Order.** `AnchorGenerator.__call__` returns an ``(N, 4)`` xyxy tensor in the order
``(level, y, x, anchor)``: all anchors of the first level first; within a level row by
row (``y``), then column by column (``x``); within a cell, the level's shapes in the order
of `AnchorGenerator.shapes`. For `AnchorGenerator.from_sizes` that order is aspect ratio
major, size minor, as torchvision's ``AnchorGenerator``. A detection head whose output at
level ``l`` is reshaped from ``(B, H_l, W_l, A_l * K)`` to ``(B, H_l * W_l * A_l, K)`` and
concatenated over levels lines up with these anchors.

**Centres.** The anchor of cell ``(i, j)`` at stride ``s`` is centred on
``((j + offset) * s_x, (i + offset) * s_y)``. ``offset=0`` is torchvision's Faster
R-CNN/RetinaNet convention (cell corners); ``offset=0.5`` the SSD / keras-cv one (cell
centres).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = ["AnchorGenerator"]


def _per_level(value: Any, num_levels: int, name: str) -> list[tuple[float, ...]]:
    """Broadcasts one tuple to every level, or checks a tuple per level."""
    if isinstance(value, (int, float)):
        return [(float(value),)] * num_levels
    value = list(value)
    if value and all(isinstance(v, (int, float)) for v in value):
        return [tuple(float(v) for v in value)] * num_levels
    if len(value) != num_levels:
        raise ValueError(
            f"`{name}` must be one sequence for all levels or one per level ({num_levels} "
            f"levels), got {len(value)} entries: {value!r}."
        )
    return [tuple(float(v) for v in level) for level in value]


class AnchorGenerator:
    """Anchors for a feature pyramid, as ``(N, 4)`` xyxy boxes in absolute pixels.

    Most users build one with `from_sizes`, `retinanet` or `ssd`; the constructor takes
    the shapes directly.

    Args:
        shapes: Per level, a sequence of ``(width, height)`` anchor shapes. In pixels, or
            in fractions of the image size when `relative` is True.
        strides: Per level, the stride in pixels, an int/float or a ``(stride_y,
            stride_x)`` pair. None: computed at call time as ``image_size /
            feature_size`` (float division; torchvision uses floor division, so pass
            strides for exact parity on sizes that are not multiples).
        offset: Position of the anchor centre inside its cell, in cells (0 or 0.5, see
            the module docstring).
        relative: Whether `shapes` are fractions of ``(image_width, image_height)``
            (SSD's default boxes).
        round_base_anchors: Round the corners of the anchor centred on ``(0, 0)`` to
            integers, as torchvision's ``AnchorGenerator`` does (``[-w/2, -h/2, w/2,
            h/2].round()``, half to even). Pixel shapes only.

    Example:
        >>> gen = AnchorGenerator.retinanet()
        >>> anchors = gen((512, 512))  # (49104, 4) xyxy
        >>> gen.num_anchors_per_location()
        [9, 9, 9, 9, 9]
    """

    def __init__(
        self,
        shapes: Sequence[Sequence[Sequence[float]]],
        strides: Sequence[Any] | None = None,
        offset: float = 0.0,
        relative: bool = False,
        round_base_anchors: bool = False,
    ):
        levels = []
        for level, level_shapes in enumerate(shapes):
            array = np.asarray(level_shapes, dtype=np.float64)
            if array.ndim != 2 or array.shape[1] != 2 or len(array) == 0:
                raise ValueError(
                    f"`shapes[{level}]` must be a non-empty sequence of (width, height) "
                    f"pairs, got {level_shapes!r}."
                )
            if np.any(array <= 0):
                raise ValueError(f"`shapes[{level}]` must be positive, got {level_shapes!r}.")
            levels.append(array)
        if not levels:
            raise ValueError("`shapes` must describe at least one level.")
        if relative and round_base_anchors:
            raise ValueError("`round_base_anchors` only applies to pixel shapes (relative=False).")
        self.shapes = levels
        self.strides = None if strides is None else self._parse_strides(strides, len(levels))
        self.offset = float(offset)
        self.relative = bool(relative)
        self.round_base_anchors = bool(round_base_anchors)

    @staticmethod
    def _parse_strides(strides: Sequence[Any], num_levels: int) -> list[tuple[float, float]]:
        strides = list(strides)
        if len(strides) != num_levels:
            raise ValueError(
                f"`strides` must have one entry per level ({num_levels}), got {strides!r}."
            )
        parsed = []
        for stride in strides:
            pair = (stride, stride) if isinstance(stride, (int, float)) else tuple(stride)
            if len(pair) != 2 or any(float(s) <= 0 for s in pair):
                raise ValueError(
                    f"Each stride must be a positive number or (stride_y, stride_x), got {stride!r}."
                )
            parsed.append((float(pair[0]), float(pair[1])))
        return parsed

    # ----------------------------------------------------------------- builders

    @classmethod
    def from_sizes(
        cls,
        sizes: Sequence[Any],
        aspect_ratios: Sequence[Any] = (0.5, 1.0, 2.0),
        scales: Sequence[Any] = (1.0,),
        strides: Sequence[Any] | None = None,
        offset: float = 0.0,
        round_base_anchors: bool = False,
    ) -> AnchorGenerator:
        """Anchors of given sizes (square roots of areas) and aspect ratios per level.

        A level with sizes ``S``, scales ``K`` and aspect ratios ``R`` (``r = h / w``)
        gets, for each ``r`` in ``R`` and each ``s * k`` (``s`` in ``S``, ``k`` in ``K``),
        the shape ``w = s k / sqrt(r)``, ``h = s k sqrt(r)``: ``|R| |S| |K|`` anchors
        per location, ratio-major as in torchvision.

        Args:
            sizes: One size per level (``(32, 64, 128, 256, 512)``) or a tuple of sizes
                per level (``((32, 40, 50), ...)``, torchvision's form).
            aspect_ratios: Height/width ratios, shared by all levels or one tuple per level.
            scales: Multipliers of the sizes, shared or per level (RetinaNet:
                ``(1, 2**(1/3), 2**(2/3))``).
            strides: Per-level strides (see the class docstring).
            offset: Anchor centre within a cell, 0 (torchvision) or 0.5.
            round_base_anchors: torchvision's rounding of the base anchors.

        Returns:
            The generator.
        """
        sizes = list(sizes)
        num_levels = len(sizes)
        level_sizes = [
            (float(s),) if isinstance(s, (int, float)) else tuple(float(v) for v in s)
            for s in sizes
        ]
        level_ratios = _per_level(aspect_ratios, num_levels, "aspect_ratios")
        level_scales = _per_level(scales, num_levels, "scales")
        shapes = []
        for size_set, ratios, scale_set in zip(level_sizes, level_ratios, level_scales):
            sides = [s * k for s in size_set for k in scale_set]
            shapes.append(
                [(side / math.sqrt(r), side * math.sqrt(r)) for r in ratios for side in sides]
            )
        return cls(shapes, strides=strides, offset=offset, round_base_anchors=round_base_anchors)

    @classmethod
    def retinanet(
        cls,
        min_level: int = 3,
        max_level: int = 7,
        size_per_stride: float = 4.0,
        scales: Sequence[float] = (1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        offset: float = 0.0,
    ) -> AnchorGenerator:
        """RetinaNet's anchors (Lin et al., 2017): 3 scales x 3 ratios on P3-P7.

        Level ``l`` has stride ``2**l`` and base size ``size_per_stride * 2**l`` (32 on
        P3 ... 512 on P7). torchvision truncates the scaled sizes to integers
        (``(32, 40, 50)`` rather than ``(32, 40.3, 50.8)``) and rounds the base anchors;
        build its exact anchors with `from_sizes` and ``round_base_anchors=True``.

        Args:
            min_level: First pyramid level (stride ``2**min_level``).
            max_level: Last pyramid level, inclusive.
            size_per_stride: Base anchor size in strides.
            scales: Multipliers of the base size.
            aspect_ratios: Height/width ratios.
            offset: Anchor centre within a cell (0 as torchvision, 0.5 as keras-cv).

        Returns:
            The generator.
        """
        if min_level > max_level:
            raise ValueError(f"`min_level` ({min_level}) must be <= `max_level` ({max_level}).")
        strides = [2**level for level in range(min_level, max_level + 1)]
        return cls.from_sizes(
            [size_per_stride * s for s in strides],
            aspect_ratios=aspect_ratios,
            scales=scales,
            strides=strides,
            offset=offset,
        )

    @classmethod
    def ssd(
        cls,
        aspect_ratios: Sequence[Sequence[float]],
        scales: Sequence[float] | None = None,
        min_ratio: float = 0.15,
        max_ratio: float = 0.9,
        strides: Sequence[Any] | None = None,
        clip: bool = True,
    ) -> AnchorGenerator:
        """SSD's default boxes (Liu et al., 2016), relative to the image size.

        With ``m`` levels, the scales are ``s_k = min_ratio + (max_ratio - min_ratio) k /
        (m - 1)`` followed by 1.0 (or the given ``m + 1`` `scales`). Level ``k`` gets the
        shapes ``(s_k, s_k)``, ``(s'_k, s'_k)`` with ``s'_k = sqrt(s_k s_{k+1})``, then
        for each ratio ``a``: ``(s_k sqrt(a), s_k / sqrt(a))`` and its transpose, as
        torchvision's ``DefaultBoxGenerator``. Centres are cell centres (offset 0.5).

        Args:
            aspect_ratios: Per level, the ratios besides 1 (e.g. ``[[2], [2, 3], ...]``).
            scales: ``m + 1`` scales (fractions of the image size); overrides the ratios.
            min_ratio: Smallest scale when `scales` is None.
            max_ratio: Largest scale when `scales` is None.
            strides: Per-level strides in pixels (SSD300: ``[8, 16, 32, 64, 100, 300]``);
                None: image size / feature size.
            clip: Clip the relative widths and heights to at most 1 (torchvision's
                ``clip=True``).

        Returns:
            The generator (``relative=True``).
        """
        num_levels = len(aspect_ratios)
        if scales is None:
            if num_levels > 1:
                step = (max_ratio - min_ratio) / (num_levels - 1)
                scales = [min_ratio + step * k for k in range(num_levels)] + [1.0]
            else:
                scales = [min_ratio, max_ratio]
        scales = [float(s) for s in scales]
        if len(scales) != num_levels + 1:
            raise ValueError(
                f"`scales` must have one more entry than `aspect_ratios` ({num_levels + 1}), "
                f"got {len(scales)}."
            )
        shapes = []
        for k, ratios in enumerate(aspect_ratios):
            s_k, s_prime = scales[k], math.sqrt(scales[k] * scales[k + 1])
            level = [(s_k, s_k), (s_prime, s_prime)]
            for ratio in ratios:
                root = math.sqrt(ratio)
                level += [(s_k * root, s_k / root), (s_k / root, s_k * root)]
            if clip:
                level = [(min(w, 1.0), min(h, 1.0)) for w, h in level]
            shapes.append(level)
        return cls(shapes, strides=strides, offset=0.5, relative=True)

    # ---------------------------------------------------------------- queries

    @property
    def num_levels(self) -> int:
        return len(self.shapes)

    def num_anchors_per_location(self) -> list[int]:
        """Number of anchors per feature-map cell, per level."""
        return [len(level) for level in self.shapes]

    def base_anchors(self, level: int) -> np.ndarray:
        """The xyxy anchors of `level` centred on (0, 0), shape ``(A, 4)``.

        For relative generators, in fractions of the image size.
        """
        shapes = self.shapes[level]
        half = shapes / 2.0
        base = np.concatenate([-half, half], axis=1)  # (-w/2, -h/2, w/2, h/2)
        return np.round(base) if self.round_base_anchors else base

    def feature_sizes(self, image_size: Sequence[int]) -> list[tuple[int, int]]:
        """Default feature-map sizes: ``ceil(image_size / stride)`` per level."""
        if self.strides is None:
            raise ValueError("This generator has no `strides`; pass `feature_sizes` explicitly.")
        height, width = (int(v) for v in image_size)
        return [(math.ceil(height / sy), math.ceil(width / sx)) for sy, sx in self.strides]

    # ------------------------------------------------------------ generation

    def per_level(
        self, image_size: Sequence[Any], feature_sizes: Sequence[Sequence[Any]] | None = None
    ) -> list[Any]:
        """The anchors of each level, a list of ``(H_l * W_l * A_l, 4)`` tensors.

        Args:
            image_size: ``(height, width)`` of the (padded) input image; ints or scalar
                tensors (dynamic shapes inside a traced model work).
            feature_sizes: ``(H_l, W_l)`` per level; default `feature_sizes`.

        Returns:
            One float32 xyxy tensor per level, in ``(y, x, anchor)`` order.
        """
        if feature_sizes is None:
            feature_sizes = self.feature_sizes(image_size)
        feature_sizes = list(feature_sizes)
        if len(feature_sizes) != self.num_levels:
            raise ValueError(
                f"`feature_sizes` must have one (height, width) per level ({self.num_levels}), "
                f"got {len(feature_sizes)}."
            )
        image_h = ops.cast(image_size[0], "float32")
        image_w = ops.cast(image_size[1], "float32")
        outputs = []
        for level, (feature_h, feature_w) in enumerate(feature_sizes):
            if self.strides is not None:
                stride_y, stride_x = self.strides[level]
            else:
                stride_y = image_h / ops.cast(feature_h, "float32")
                stride_x = image_w / ops.cast(feature_w, "float32")
            shift_x = (ops.cast(ops.arange(feature_w), "float32") + self.offset) * stride_x
            shift_y = (ops.cast(ops.arange(feature_h), "float32") + self.offset) * stride_y
            grid_y, grid_x = ops.meshgrid(shift_y, shift_x, indexing="ij")
            grid_x, grid_y = ops.reshape(grid_x, (-1, 1)), ops.reshape(grid_y, (-1, 1))
            centres = ops.stack([grid_x, grid_y, grid_x, grid_y], axis=-1)  # (HW, 1, 4)
            base = ops.convert_to_tensor(self.base_anchors(level), "float32")[None]  # (1, A, 4)
            if self.relative:
                base = base * ops.stack([image_w, image_h, image_w, image_h])
            outputs.append(ops.reshape(centres + base, (-1, 4)))
        return outputs

    def __call__(
        self, image_size: Sequence[Any], feature_sizes: Sequence[Sequence[Any]] | None = None
    ) -> Any:
        """All anchors, ``(N, 4)`` float32 xyxy in ``(level, y, x, anchor)`` order.

        Args:
            image_size: ``(height, width)`` of the input image.
            feature_sizes: ``(H_l, W_l)`` per level; default ``ceil(image_size / stride)``.

        Returns:
            ``(N, 4)`` tensor, ``N = sum_l H_l W_l A_l``.
        """
        return ops.concatenate(self.per_level(image_size, feature_sizes), axis=0)

    def numpy(
        self, image_size: Sequence[int], feature_sizes: Sequence[Sequence[int]] | None = None
    ) -> np.ndarray:
        """`__call__` as a NumPy array (for data pipelines and target assignment)."""
        return keras.ops.convert_to_numpy(self(image_size, feature_sizes))

    # ---------------------------------------------------------- serialization

    def get_config(self) -> dict[str, Any]:
        return {
            "shapes": [level.tolist() for level in self.shapes],
            "strides": None if self.strides is None else [list(s) for s in self.strides],
            "offset": self.offset,
            "relative": self.relative,
            "round_base_anchors": self.round_base_anchors,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> AnchorGenerator:
        return cls(**config)

    def __repr__(self) -> str:
        return (
            f"AnchorGenerator(levels={self.num_levels}, anchors_per_location="
            f"{self.num_anchors_per_location()}, strides={self.strides}, offset={self.offset}, "
            f"relative={self.relative})"
        )
