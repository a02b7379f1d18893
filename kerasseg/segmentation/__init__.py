"""Segmentation architectures. Importing this package registers their builders in the zoo."""

from kerasseg.segmentation.fcn import fcn
from kerasseg.segmentation.fcn_conversion import fully_convolutional
from kerasseg.segmentation.segnet import segnet
from kerasseg.segmentation.unet import unet

__all__ = ["fcn", "fully_convolutional", "segnet", "unet"]
