"""Weight conversion, torchvision -> kerasseg: the zoo's public name for it.

The encoder converter lives with the encoders it maps (`kerasseg.encoders.convert` holds the
layer maps and the checks, `kerasseg.encoders.build` the functions that build an encoder and
load a checkpoint into it); the detector converter (torchvision's COCO ``retinanet_resnet50_fpn``
and ``ssd300_vgg16``) is `kerasseg.zoo.convert_detection`. This module gathers them under
``kerasseg.zoo.convert``:

```python
from kerasseg.zoo import convert
encoder = convert.convert_torchvision("resnet34", "resnet34-b627a593.pth")   # or a state dict
convert.save_weights(encoder, "resnet34.weights.h5")
detector = convert.convert_torchvision_detector(
    "retinanet_resnet50", "retinanet_resnet50_fpn_coco-eeacb38b.pth"
)
state = convert.read_torch_checkpoint("resnet34-b627a593.pth")   # {name: numpy array}
```

Checkpoints are read without PyTorch (`read_torch_checkpoint`, from
`kerasseg.encoders.torch_checkpoint`): a restricted unpickler that rebuilds tensors as NumPy
arrays and refuses any other global (`UnsafeCheckpointError`) before anything of the file runs.
"""

from kerasseg.encoders.build import convert_torchvision, convert_torchvision_file
from kerasseg.encoders.convert import (
    ConversionError,
    ConversionReport,
    adapt_input_conv,
    load_torchvision_weights,
    read_state_dict,
    save_weights,
    torchvision_layer_map,
)
from kerasseg.encoders.torch_checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    read_torch_checkpoint,
)
from kerasseg.zoo.convert_detection import (
    TORCHVISION_DETECTORS,
    DetectorConversionReport,
    convert_torchvision_detector,
    convert_torchvision_detector_file,
    detector_layer_map,
    load_torchvision_detector,
    torchvision_num_classes,
)

__all__ = [
    "TORCHVISION_DETECTORS",
    "CheckpointError",
    "ConversionError",
    "ConversionReport",
    "DetectorConversionReport",
    "UnsafeCheckpointError",
    "adapt_input_conv",
    "convert_torchvision",
    "convert_torchvision_detector",
    "convert_torchvision_detector_file",
    "convert_torchvision_file",
    "detector_layer_map",
    "load_torchvision_detector",
    "load_torchvision_weights",
    "read_state_dict",
    "read_torch_checkpoint",
    "save_weights",
    "torchvision_layer_map",
    "torchvision_num_classes",
]
