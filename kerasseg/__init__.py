"""kerasseg: image segmentation and object detection for Keras 3.

`import kerasseg` imports Keras and the modules that define serializable objects
(`layers`, `losses`, `metrics`, `detection`), so that `keras.models.load_model` finds every kerasseg
class without `custom_objects`. Everything else (architectures, the zoo, data loading,
plotting, the command line) is imported on first attribute access.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Registered with keras.saving at import time: a saved model that uses them must load
# after a plain `import kerasseg`. Without Keras (which the install always brings), the NumPy
# parts still import on their own, e.g. `kerasseg.metrics.detection`, the mAP evaluator;
# the rest raises Keras' ImportError when first used.
_KERAS_AVAILABLE = importlib.util.find_spec("keras") is not None
_REGISTERING_SUBMODULES = ("detection", "layers", "losses", "metrics")
if _KERAS_AVAILABLE:
    from kerasseg import detection, layers, losses, metrics  # noqa: F401

_LAZY_SUBMODULES = (
    *(() if _KERAS_AVAILABLE else _REGISTERING_SUBMODULES),
    "callbacks",
    "data",
    "encoders",
    "segmentation",
    "visualize",
    "zoo",
)

#: Functions of the root namespace, imported on first access: name -> module.
_LAZY_FUNCTIONS = {"load_model": "saving"}

__all__ = [
    "__version__",
    *sorted(set(_REGISTERING_SUBMODULES) | set(_LAZY_SUBMODULES) | set(_LAZY_FUNCTIONS)),
]

if TYPE_CHECKING:  # pragma: no cover
    from kerasseg import callbacks, data, encoders, segmentation, visualize, zoo  # noqa: F401
    from kerasseg.saving import load_model  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"kerasseg.{name}")
        globals()[name] = module
        return module
    if name in _LAZY_FUNCTIONS:
        function = getattr(importlib.import_module(f"kerasseg.{_LAZY_FUNCTIONS[name]}"), name)
        globals()[name] = function
        return function
    raise AttributeError(f"module 'kerasseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES) | set(_LAZY_FUNCTIONS))
