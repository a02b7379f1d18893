"""Segmentation architectures. Importing this package registers their builders in the zoo."""

from kerasseg.segmentation.encoder_unet import encoder_unet
from kerasseg.segmentation.fpn import fpn
from kerasseg.segmentation.ternausnet import ternausnet, unet11, unet16
from kerasseg.segmentation.unet import unet
from kerasseg.segmentation.unet_fpn import unet_fpn

__all__ = ["encoder_unet", "fpn", "ternausnet", "unet", "unet11", "unet16", "unet_fpn"]
