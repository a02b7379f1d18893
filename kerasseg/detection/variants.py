"""One registered builder per detector variant, generated from a family's config table.

``<family>_<variant>`` is a plain function (as torchvision's and keras-hub's builders are)
that calls the family's generic builder with the variant's settings; its keyword
defaults for ``num_classes`` and ``input_shape`` are what the zoo reads as the model's
defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kerasseg.registry import register_model

__all__ = ["register_detector_variant"]


def register_detector_variant(
    model_name: str,
    build: Callable[..., Any],
    config: Mapping[str, Any],
    *,
    doc: str,
    family: str,
    input_multiple: int,
    encoder: str | None = None,
    args: Sequence[Any] = (),
    default_classes: int = 80,
) -> Callable[..., Any]:
    """Registers ``model_name`` as ``build(*args, **config, **overrides)``.

    Args:
        model_name: The registry name, e.g. ``"ssd_resnet18"``.
        build: The family's generic builder (``ssd``, ``retinanet``, ``yolov8`` ...).
        config: The variant's builder arguments; keyword arguments of a call override them.
        doc: The builder's docstring (its first line is the zoo's description).
        family: The metafile family.
        input_multiple: What static input sizes must be multiples of.
        encoder: The `kerasseg.encoders` name the model nests, if any.
        args: Positional arguments of `build` (e.g. the backbone name).
        default_classes: The variant's default ``num_classes``.

    Returns:
        The registered builder.
    """
    settings = dict(config)

    def builder(
        *,
        num_classes: int = default_classes,
        input_shape: tuple[int | None, int | None, int] = (None, None, 3),
        **kwargs: Any,
    ) -> Any:
        return build(
            *args, num_classes=num_classes, input_shape=input_shape, **{**settings, **kwargs}
        )

    builder.__name__ = builder.__qualname__ = model_name
    builder.__module__ = build.__module__  # the family's module, as a hand-written builder
    builder.__doc__ = doc
    return register_model(
        model_name,
        family=family,
        task="detection",
        encoder=encoder,
        input_multiple=input_multiple,
    )(builder)
