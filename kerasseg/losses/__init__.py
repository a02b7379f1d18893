"""Dense segmentation losses (Keras `Loss` subclasses, serializable).

All losses share the arguments of `SegmentationLoss` (`mode`, `from_logits`,
`ignore_index`, `class_weights`, `per_image`, `check_values`, and Keras' `reduction`,
`name`, `dtype`); the overlap losses add `smooth` and `classes`. Losses combine with `+` and
scalar `*` into a `CombinedLoss` that still serializes:

    loss = kerasseg.losses.Dice(mode="multiclass") + 0.5 * kerasseg.losses.Focal(mode="multiclass")

Registered names carry a `Loss` suffix (e.g. `"kerasseg>DiceLoss"`), so that they never
collide with the streaming metrics `kerasseg.metrics.Dice` / `Jaccard`.
"""

from kerasseg.losses.base import SegmentationLoss
from kerasseg.losses.bce_dice import BceDice
from kerasseg.losses.combined import CombinedLoss
from kerasseg.losses.cross_entropy import CrossEntropy
from kerasseg.losses.dice import Dice
from kerasseg.losses.focal import Focal
from kerasseg.losses.jaccard import Jaccard
from kerasseg.losses.lovasz import Lovasz
from kerasseg.losses.region import RegionLoss
from kerasseg.losses.tversky import Tversky

__all__ = [
    "BceDice",
    "CombinedLoss",
    "CrossEntropy",
    "Dice",
    "Focal",
    "Jaccard",
    "Lovasz",
    "RegionLoss",
    "SegmentationLoss",
    "Tversky",
]
