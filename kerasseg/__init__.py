"""kerasseg: image segmentation and object detection for Keras 3.

`import kerasseg` imports Keras and the modules that define serializable objects
(`layers`, `losses`, `metrics`, `detection`), so that `keras.models.load_model` finds every kerasseg
class without `custom_objects`. Everything else (architectures, the zoo, data loading,
plotting, the command line) is imported on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Registered with keras.saving at import time: a saved model that uses them must load
# after a plain `import kerasseg`.
from kerasseg import detection, layers, losses, metrics

_LAZY_SUBMODULES = (
    "callbacks",
    "data",
    "encoders",
    "segmentation",
    "visualize",
    "zoo",
)

__all__ = ["__version__", "detection", "layers", "losses", "metrics", *_LAZY_SUBMODULES]

if TYPE_CHECKING:  # pragma: no cover
    from kerasseg import callbacks, data, encoders, segmentation, visualize, zoo  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"kerasseg.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'kerasseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
