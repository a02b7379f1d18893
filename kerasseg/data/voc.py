"""PASCAL VOC detection data: XML annotation folders into the dense padded format.

Layout (VOC 2007/2012, BCCD, most labelling tools' "VOC export")::

    root/
      JPEGImages/<id>.jpg
      Annotations/<id>.xml          <object><name>, <difficult>, <bndbox> xmin ymin xmax ymax
      ImageSets/Main/<split>.txt    one <id> per line

`load_voc` parses the split's XML files eagerly (fast, validated) and returns a
`DetectionAnnotations` (records, class names, `LoadReport`); its ``to_dataset`` decodes
the images in `tf.data`. `voc_dataset` does both.

**Class ids.** ``class_names`` given: id ``i`` is ``class_names[i]`` and objects of other
classes are dropped with a warning. Not given: the names found in the split's files,
sorted alphabetically (BCCD: ``["Platelets", "RBC", "WBC"]``). Load every split with the
same names, e.g. ``load_voc(root, "test", class_names=train.class_names)``.

**Coordinates** are used as written in the files, as absolute pixels (``xmin ymin xmax
ymax``): VOC's 1-based pixel indices are not shifted (a 1-pixel offset, below annotation
noise; torchvision's ``VOCDetection`` does the same).

**Validation** (each case a warning naming the file, counted in the report):
degenerate boxes (zero or negative width/height) and boxes entirely outside the image are
dropped; boxes partly outside are clipped; unknown class names, objects without a name
or with a malformed ``<bndbox>`` are dropped; unparsable XML files, missing annotation
files and missing or unreadable images skip the image. ``strict=True`` raises instead.
``"difficult"`` flags are kept as a per-box bool key (``skip_difficult=True`` drops those
boxes instead, counted as ``"difficult"``).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kerasseg.data.detection_records import (
    DetectionAnnotations,
    DetectionRecord,
    LoadReport,
    finish,
    validate_box,
)

logger = logging.getLogger(__name__)

__all__ = ["load_voc", "parse_voc_xml", "voc_dataset"]

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")


def parse_voc_xml(path: str | Path) -> dict[str, Any]:
    """Reads one VOC XML file without validating boxes (see `load_voc` for that).

    Args:
        path: The XML file.

    Returns:
        ``{"filename": str | None, "width": int | None, "height": int | None,
        "objects": [{"name": str | None, "difficult": bool, "bndbox": [4 str] | None}]}``.

    Raises:
        ET.ParseError: if the file is not well-formed XML.
        ValueError: if the root element is not ``<annotation>``.
    """
    root = ET.parse(path).getroot()
    if root.tag != "annotation":
        raise ValueError(f"root element is <{root.tag}>, expected <annotation>")

    def text(element: ET.Element | None, tag: str) -> str | None:
        child = None if element is None else element.find(tag)
        return None if child is None or child.text is None else child.text.strip()

    def integer(value: str | None) -> int | None:
        try:
            return int(float(value)) if value is not None else None
        except ValueError:
            return None

    size = root.find("size")
    objects = []
    for obj in root.findall("object"):
        box = obj.find("bndbox")
        coords = None if box is None else [text(box, k) for k in ("xmin", "ymin", "xmax", "ymax")]
        difficult = text(obj, "difficult")
        objects.append(
            {
                "name": text(obj, "name"),
                "difficult": difficult not in (None, "", "0"),
                "bndbox": coords,
            }
        )
    return {
        "filename": text(root, "filename"),
        "width": integer(text(size, "width")),
        "height": integer(text(size, "height")),
        "objects": objects,
    }


def _read_split(root: Path, split: str | None, annotation_dir: Path) -> list[str]:
    if split is None:
        return sorted(p.stem for p in annotation_dir.glob("*.xml"))
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        available = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt"))
        raise FileNotFoundError(
            f"Split file {split_file} not found. Available splits: {available or 'none'}; "
            "or pass split=None to load every file in Annotations/."
        )
    ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"Split file {split_file} lists no image ids.")
    return ids


def _find_image(image_dir: Path, image_id: str, filename: str | None) -> Path | None:
    candidates = [image_dir / filename] if filename else []
    candidates += [image_dir / f"{image_id}{ext}" for ext in _IMAGE_EXTENSIONS]
    return next((c for c in candidates if c.is_file()), None)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image  # header only: no pixel decoding

    with Image.open(path) as image:
        width, height = image.size
    return height, width


def load_voc(
    root: str | Path,
    split: str | None = "trainval",
    class_names: Sequence[str] | None = None,
    *,
    skip_difficult: bool = False,
    check_image_sizes: bool = True,
    strict: bool = False,
    image_dir: str = "JPEGImages",
    annotation_dir: str = "Annotations",
) -> DetectionAnnotations:
    """Parses a VOC split eagerly into validated records.

    Args:
        root: The folder holding ``JPEGImages/``, ``Annotations/``, ``ImageSets/``.
        split: Name of ``ImageSets/Main/<split>.txt``; None: every XML in
            ``Annotations/``.
        class_names: The classes, in id order; None: discovered and sorted (see the
            module docstring).
        skip_difficult: Drop boxes flagged ``difficult`` instead of keeping the flag.
        check_image_sizes: Read each image's header and use its real size if the XML's
            ``<size>`` disagrees (with a warning). Images whose XML has no usable size are
            always read.
        strict: Raise a ValueError naming the file at the first problem.
        image_dir: Images folder under `root`.
        annotation_dir: XML folder under `root`.

    Returns:
        `DetectionAnnotations` with ``extras["difficult"]`` per record; its
        ``report`` has been logged.
    """
    root = Path(root)
    xml_dir, img_dir = root / annotation_dir, root / image_dir
    for folder in (xml_dir, img_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"VOC folder {folder} not found (root={root}).")
    ids = _read_split(root, split, xml_dir)
    report = LoadReport(source=f"VOC {root} split={split}", strict=strict)

    parsed = []
    for image_id in ids:
        xml_path = xml_dir / f"{image_id}.xml"
        if not xml_path.is_file():
            report.skip_image(xml_path, "annotation file not found")
            continue
        try:
            parsed.append((image_id, xml_path, parse_voc_xml(xml_path)))
        except (ET.ParseError, ValueError) as error:
            report.skip_image(xml_path, f"unparsable XML ({error})")

    if class_names is None:
        names = {o["name"] for _, _, p in parsed for o in p["objects"] if o["name"]}
        class_names = sorted(names)
        logger.info("VOC classes discovered in %s: %s", root, class_names)
    class_names = [str(name) for name in class_names]
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"`class_names` has duplicates: {class_names}.")
    class_ids = {name: i for i, name in enumerate(class_names)}

    records = []
    for image_id, xml_path, annotation in parsed:
        record = _to_record(
            image_id,
            xml_path,
            annotation,
            img_dir,
            class_ids,
            report,
            skip_difficult,
            check_image_sizes,
        )
        if record is not None:
            records.append(record)
    finish(report, records, class_names)
    return DetectionAnnotations(records=records, class_names=class_names, report=report)


def _to_record(
    image_id: str,
    xml_path: Path,
    annotation: dict[str, Any],
    img_dir: Path,
    class_ids: dict[str, int],
    report: LoadReport,
    skip_difficult: bool,
    check_image_sizes: bool,
) -> DetectionRecord | None:
    image_path = _find_image(img_dir, image_id, annotation["filename"])
    if image_path is None:
        report.skip_image(
            xml_path, f"image file not found in {img_dir} (<filename> {annotation['filename']!r})"
        )
        return None
    height, width = annotation["height"], annotation["width"]
    valid_size = bool(height and width and height > 0 and width > 0)
    if check_image_sizes or not valid_size:
        try:
            actual = _image_size(image_path)
        except OSError as error:
            report.skip_image(xml_path, f"image {image_path} is unreadable ({error})")
            return None
        if valid_size and actual != (height, width):
            report.problem(
                xml_path,
                f"<size> says {width}x{height} but {image_path.name} is {actual[1]}x{actual[0]}; "
                "using the image's size",
            )
        height, width = actual

    boxes, classes, difficult = [], [], []
    for index, obj in enumerate(annotation["objects"]):
        name = obj["name"]
        what = f"object #{index} ({name})"
        if not name:
            report.drop_box(xml_path, "malformed", f"object #{index}: no <name>")
            continue
        if name not in class_ids:
            report.drop_box(
                xml_path,
                "unknown class",
                f"{what}: class {name!r} is not in class_names {list(class_ids)}",
            )
            continue
        coords = obj["bndbox"]
        try:
            if coords is None or None in coords:
                raise ValueError("missing <bndbox> or coordinate")
            values = [float(c) for c in coords]
        except ValueError as error:
            report.drop_box(xml_path, "malformed", f"{what}: malformed <bndbox> {coords} ({error})")
            continue
        if skip_difficult and obj["difficult"]:
            report.dropped_boxes["difficult"] += 1
            continue
        box = validate_box(report, xml_path, what, values, width, height)
        if box is None:
            continue
        boxes.append(box)
        classes.append(class_ids[name])
        difficult.append(obj["difficult"])
    return DetectionRecord(
        image_path=str(image_path),
        height=int(height),
        width=int(width),
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        classes=np.asarray(classes, np.int32),
        extras={"difficult": np.asarray(difficult, bool)},
        image_id=image_id,
        source=str(xml_path),
    )


def voc_dataset(
    root: str | Path,
    split: str | None = "trainval",
    class_names: Sequence[str] | None = None,
    *,
    skip_difficult: bool = False,
    strict: bool = False,
    **dataset_kwargs: Any,
) -> Any:
    """`load_voc` then ``to_dataset``: a `tf.data.Dataset` of ``(image, target)``.

    Args:
        root: VOC root folder.
        split: Split name (see `load_voc`).
        class_names: Classes in id order, or None to discover them.
        skip_difficult: Drop difficult boxes.
        strict: Raise at the first annotation problem.
        **dataset_kwargs: ``to_dataset`` arguments (``batch_size``, ``max_boxes``,
            ``image_size``, ``letterbox``, ``flip``, ``shuffle``, ``seed``...).

    Returns:
        The dataset. Use `load_voc` when you also need the class names or the report.
    """
    annotations = load_voc(root, split, class_names, skip_difficult=skip_difficult, strict=strict)
    return annotations.to_dataset(**dataset_kwargs)
