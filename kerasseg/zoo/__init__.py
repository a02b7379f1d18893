"""The model zoo: models by name, with pretrained weights that are fetched, verified and cached.

```python
import kerasseg
model = kerasseg.zoo.get("unet", num_classes=1, input_shape=(256, 256, 1), weights=None)
kerasseg.zoo.list_models("unet*")
kerasseg.zoo.info("unet")              # parameters, input, weights, licence, metrics
```

`registry` holds the builders and the public functions; `metafiles` reads the zoo's
metafiles (``zoo/`` in the source tree, shipped in the package); `remote` fetches published
files (``KERASSEG_HOME``, ``KERASSEG_OFFLINE``, ``KERASSEG_MIRROR``); `weights` converts
ImageNet encoders and COCO detectors once and keeps trained weights; `recipes` trains task
weights; `convert` maps torchvision checkpoints onto the encoders and, with
`convert_detection`, onto RetinaNet and SSD300.
"""

from kerasseg.zoo.registry import (
    ModelEntry,
    download,
    get,
    info,
    list_models,
    register_model,
)
from kerasseg.zoo.remote import ChecksumError, DownloadError, WeightsNotAvailableError

__all__ = [
    "ChecksumError",
    "DownloadError",
    "ModelEntry",
    "WeightsNotAvailableError",
    "download",
    "get",
    "info",
    "list_models",
    "register_model",
]
