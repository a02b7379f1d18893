"""Data loading: folders of images and masks, VOC XML and COCO JSON detection sets,
synthetic sets, joint augmentation of images with their masks or boxes."""

from kerasseg.data import coco, detection_transforms, voc
from kerasseg.data.augment import joint_augment
from kerasseg.data.coco import coco_dataset, load_coco
from kerasseg.data.detection_records import DetectionAnnotations, DetectionRecord, LoadReport
from kerasseg.data.masks import SegmentationFolder
from kerasseg.data.synthetic import synthetic_shapes
from kerasseg.data.voc import load_voc, voc_dataset

__all__ = [
    "DetectionAnnotations",
    "DetectionRecord",
    "LoadReport",
    "SegmentationFolder",
    "coco",
    "coco_dataset",
    "detection_transforms",
    "joint_augment",
    "load_coco",
    "load_voc",
    "synthetic_shapes",
    "voc",
    "voc_dataset",
]
