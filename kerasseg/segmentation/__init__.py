"""Segmentation architectures. Importing this package registers their builders in the zoo."""

from kerasseg.segmentation.encoder_unet import encoder_unet
from kerasseg.segmentation.fcn import fcn
from kerasseg.segmentation.fcn_conversion import fully_convolutional
from kerasseg.segmentation.fpn import fpn
from kerasseg.segmentation.segnet import segnet
from kerasseg.segmentation.ternausnet import ternausnet, unet11, unet16
from kerasseg.segmentation.unet import unet
from kerasseg.segmentation.unet_fpn import unet_fpn

__all__ = [
    "encoder_unet",
    "fcn",
    "fpn",
    "fully_convolutional",
    "segnet",
    "ternausnet",
    "unet",
    "unet11",
    "unet16",
    "unet_fpn",
]
