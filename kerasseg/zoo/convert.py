"""Weight conversion, torchvision -> kerasseg encoders: the zoo's public name for it.

The converter lives with the encoders it maps (`kerasseg.encoders.convert` holds the layer
maps and the checks, `kerasseg.encoders.build` the functions that build an encoder and load
a checkpoint into it); this module gathers them under ``kerasseg.zoo.convert``:

```python
from kerasseg.zoo import convert
encoder = convert.convert_torchvision("resnet34", "resnet34-b627a593.pth")   # or a state dict
convert.save_weights(encoder, "resnet34.weights.h5")
```
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

__all__ = [
    "ConversionError",
    "ConversionReport",
    "adapt_input_conv",
    "convert_torchvision",
    "convert_torchvision_file",
    "load_torchvision_weights",
    "read_state_dict",
    "save_weights",
    "torchvision_layer_map",
]
