"""Data loading: folders of images and masks, synthetic sets, joint augmentation."""

from kerasseg.data.augment import joint_augment
from kerasseg.data.masks import SegmentationFolder
from kerasseg.data.synthetic import synthetic_shapes

__all__ = ["SegmentationFolder", "joint_augment", "synthetic_shapes"]
