"""Encoders (backbones): models returning multi-scale features for the decoders.

```python
import kerasseg
encoder = kerasseg.encoders.get("resnet34", input_shape=(None, None, 3))
features = encoder(images)  # images in 0..255 -> [stride 2, 4, 8, 16, 32 features]
kerasseg.encoders.feature_channels("resnet34")  # (64, 64, 128, 256, 512), without building
```

Every encoder takes (B, H, W, C) images in 0..255 (H, W multiples of 32), normalises them
itself, and returns a list of features at strides 2, 4, 8, 16, 32 (VGG optionally also the
full-resolution one, first). `spec(name)` describes an encoder without building it; that and
the model are the whole interface the decoders use.
"""

from kerasseg.encoders import resnet, vgg  # noqa: F401  (registers the specs)
from kerasseg.encoders.build import get
from kerasseg.encoders.normalization import channel_statistics
from kerasseg.encoders.specs import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    STRIDES,
    EncoderSpec,
    feature_channels,
    feature_strides,
    list_encoders,
    spec,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "STRIDES",
    "EncoderSpec",
    "channel_statistics",
    "feature_channels",
    "feature_strides",
    "get",
    "list_encoders",
    "spec",
]
