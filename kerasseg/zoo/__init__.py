"""The model zoo: a registry of model builders addressed by name.

```python
import kerasseg
model = kerasseg.zoo.get("unet", num_classes=1, input_shape=(256, 256, 1), weights=None)
kerasseg.zoo.list_models("unet*")
```
"""

from kerasseg.zoo.registry import ModelEntry, get, info, list_models, register_model

__all__ = ["ModelEntry", "get", "info", "list_models", "register_model"]
