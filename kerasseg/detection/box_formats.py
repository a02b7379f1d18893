"""Box format names and the decoding clip: the part of the box conventions that needs no array
library, shared by `kerasseg.detection.boxes` (keras.ops) and `kerasseg.detection.boxes_np`
(NumPy)."""

from __future__ import annotations

import math

__all__ = ["BBOX_XFORM_CLIP", "FORMATS", "parse_format"]

#: Largest log-scale size delta accepted by `decode` before `exp`: a box at most 1000/16
#: times its anchor, the value torchvision uses (``bbox_xform_clip``). Prevents overflow of
#: ``exp`` for wild early-training predictions.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)

#: The absolute formats; each also exists with a ``"rel_"`` prefix.
FORMATS = ("xyxy", "yxyx", "xywh", "cxcywh")
_ALIASES = {"center_xywh": "cxcywh"}


def parse_format(fmt: str) -> tuple[str, bool]:
    """Splits a format name into (absolute format, is_relative), validating it.

    Args:
        fmt: A name from `FORMATS`, optionally with a ``"rel_"`` prefix, or an alias.

    Returns:
        ``(base, relative)``, e.g. ``parse_format("rel_xywh") == ("xywh", True)``.
    """
    if not isinstance(fmt, str):
        raise ValueError(f"A box format must be a string, got {fmt!r}.")
    name = fmt.lower()
    relative = name.startswith("rel_")
    if relative:
        name = name[4:]
    name = _ALIASES.get(name, name)
    if name not in FORMATS:
        allowed = ", ".join(f"'{f}'" for f in FORMATS)
        raise ValueError(
            f"Unknown box format {fmt!r}: expected one of {allowed}, optionally prefixed "
            f"with 'rel_' (or the alias 'center_xywh')."
        )
    return name, relative
