"""Segmentation architectures. Importing this package registers their builders in the zoo."""

from kerasseg.segmentation.unet import unet

__all__ = ["unet"]
