"""Data loading: folders of images and masks, VOC XML and COCO JSON detection sets,
synthetic sets, joint augmentation of images with their masks or boxes."""

from kerasseg.data import coco, detection_augment, detection_transforms, voc
from kerasseg.data.augment import joint_augment
from kerasseg.data.coco import coco_dataset, load_coco
from kerasseg.data.detection_augment import (
    DetectionAugmentation,
    detection_augmentation,
    flip_vertical,
    mosaic,
    mosaic_dataset,
    random_colour_jitter,
    random_flip_vertical,
    random_scale_crop,
)
from kerasseg.data.detection_records import DetectionAnnotations, DetectionRecord, LoadReport
from kerasseg.data.masks import SegmentationFolder
from kerasseg.data.synthetic import synthetic_shapes
from kerasseg.data.voc import load_voc, voc_dataset

__all__ = [
    "DetectionAnnotations",
    "DetectionAugmentation",
    "DetectionRecord",
    "LoadReport",
    "SegmentationFolder",
    "coco",
    "coco_dataset",
    "detection_augment",
    "detection_augmentation",
    "detection_transforms",
    "flip_vertical",
    "joint_augment",
    "load_coco",
    "load_voc",
    "mosaic",
    "mosaic_dataset",
    "random_colour_jitter",
    "random_flip_vertical",
    "random_scale_crop",
    "synthetic_shapes",
    "voc",
    "voc_dataset",
]
