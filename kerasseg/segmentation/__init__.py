"""Segmentation architectures. Importing this package registers their builders in the zoo."""

from kerasseg.segmentation.fcn import fcn
from kerasseg.segmentation.segnet import segnet
from kerasseg.segmentation.unet import unet

__all__ = ["fcn", "segnet", "unet"]
