"""PASCAL VOC's rules, as pure functions: annotation XML → objects, objects → the devkit's labels.

Labels follow the VOC devkit exactly, so they agree with its ImageSets/Main/<class>_<split>.txt:
per image and class, 1 if at least one non-difficult object, 0 ("difficult only", ignored when
scoring) if every object of the class is difficult, -1 otherwise.

Annotation files come from anyone. They are parsed with entity resolution, DTD loading and the
network off, and any DOCTYPE is rejected outright, so an XXE or entity-expansion file is
reported and nothing it points at is read. No Beam, no file access: `voc.py` does the reading
and the pipeline.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from lxml import etree

# The devkit's order (VOCinit.m): label i in label.txt is VOC_CLASSES[i].
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
DEVKIT_CHECK = "devkit check"  # prefix of the warnings --check-devkit adds
POSITIVE, DIFFICULT_ONLY, NEGATIVE = 1, 0, -1  # the devkit's values

# An id becomes a file name under Annotations/ and JPEGImages/: no separators, so it cannot
# climb out of the dataset, and no whitespace (the devkit's files separate fields with it).
_IMAGE_ID = re.compile(r"[^/\\\s\x00]+")
_HOSTILE = (
    "hostile XML: DOCTYPE/entity declarations are not allowed in annotations "
    "(XXE or entity expansion); nothing they reference was read"
)


class BadAnnotation(ValueError):
    """The XML cannot be used; the message is the reason that goes in the report."""


@dataclass(frozen=True)
class VocObject:
    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax in pixels, as written
    difficult: bool
    truncated: bool
    pose: str


@dataclass(frozen=True)
class Annotation:
    size: tuple[int, int] | None  # (height, width) that <size> states, None if absent or 0
    objects: tuple[VocObject, ...]


def parse_annotation(data: bytes) -> Annotation:
    """Parse one VOC annotation, or raise BadAnnotation with the reason.

    Missing <difficult>/<truncated>/<pose> default to 0/0/Unspecified and an image with no
    <object> is an image with no objects (both crashed the tools users come from).
    """
    parser = etree.XMLParser(  # one per call: lxml parsers must not be shared across threads
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as e:
        # libxml2 stops entity-expansion bombs itself; say why rather than "malformed".
        raise BadAnnotation(_HOSTILE if _declares_dtd(data) else f"malformed XML: {e}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise BadAnnotation(_HOSTILE)
    if root.tag != "annotation":
        raise BadAnnotation(f"bad annotation: root element is <{root.tag}>, expected <annotation>")
    objects = tuple(_object(i, element) for i, element in enumerate(root.findall("object"), 1))
    return Annotation(_size(root), objects)


def _declares_dtd(data: bytes) -> bool:
    return any(marker.encode(codec) in data for marker in ("<!DOCTYPE", "<!ENTITY")
               for codec in ("utf-8", "utf-16-le", "utf-16-be"))


def _text(element, tag: str) -> str:
    child = element.find(tag)
    return (child.text or "").strip() if child is not None else ""


def _size(root) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    try:
        height, width = int(float(_text(size, "height"))), int(float(_text(size, "width")))
    except (ValueError, OverflowError):  # "abc", or "inf"
        return None
    return (height, width) if height > 0 and width > 0 else None


def _number(element, tag: str, what: str) -> float:
    text = _text(element, tag)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadAnnotation(f"bad annotation: {what} has <{tag}> {text!r}, not a number")
    return value


def _flag(element, tag: str, what: str) -> bool:
    text = _text(element, tag)
    if text not in ("", "0", "1"):
        raise BadAnnotation(f"bad annotation: {what} has <{tag}> {text!r}, expected 0 or 1")
    return text == "1"


def _object(index: int, element) -> VocObject:
    name = _text(element, "name")
    if not name:
        raise BadAnnotation(f"bad annotation: object {index} has no <name>")
    what = f"object {index} ({name})"
    bndbox = element.find("bndbox")
    if bndbox is None:
        raise BadAnnotation(f"bad annotation: {what} has no <bndbox>")
    xmin, ymin, xmax, ymax = (_number(bndbox, tag, what) for tag in ("xmin", "ymin", "xmax", "ymax"))
    if xmin > xmax or ymin > ymax:
        raise BadAnnotation(f"bad annotation: {what} has an inverted box ({xmin}, {ymin}, {xmax}, {ymax})")
    return VocObject(
        name=name,
        box=(xmin, ymin, xmax, ymax),
        difficult=_flag(element, "difficult", what),
        truncated=_flag(element, "truncated", what),
        pose=_text(element, "pose") or "Unspecified",
    )


def devkit_values(objects: Iterable[VocObject], classes: Sequence[str]) -> list[int]:
    """Per class, what the devkit's <class>_<split>.txt says for this image: 1, 0 or -1."""
    value = dict.fromkeys(classes, NEGATIVE)
    for obj in objects:
        if obj.name in value:
            value[obj.name] = max(value[obj.name], DIFFICULT_ONLY if obj.difficult else POSITIVE)
    return [value[name] for name in classes]


def split_unknown(objects: Iterable[VocObject], classes: Sequence[str]) -> tuple[list[VocObject], list[str]]:
    """(objects of known classes, sorted names of the unknown classes)."""
    known = [o for o in objects if o.name in classes]
    return known, sorted({o.name for o in objects if o.name not in classes})


def normalised_boxes(
    objects: Sequence[VocObject], height: int, width: int
) -> tuple[list[tuple[float, float, float, float]], list[int]]:
    """(xmin, ymin, xmax, ymax) as fractions of the image, clipped to [0, 1], and the 1-based
    numbers of the objects whose box reached outside the image (reported, never dropped: the
    labels do not depend on boxes)."""
    boxes, clipped = [], []
    for number, obj in enumerate(objects, 1):
        xmin, ymin, xmax, ymax = obj.box
        if xmin < 0 or ymin < 0 or xmax > width or ymax > height:
            clipped.append(number)
        boxes.append(tuple(
            min(max(v / size, 0.0), 1.0)
            for v, size in ((xmin, width), (ymin, height), (xmax, width), (ymax, height))
        ))
    return boxes, clipped


def parse_image_ids(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """An ImageSets/Main/<split>.txt: the ids in order, and (id, reason) for rejected lines."""
    ids, rejected, seen = [], [], set()
    for line in text.splitlines():
        image_id = line.strip()
        if not image_id:
            continue
        if not _IMAGE_ID.fullmatch(image_id):
            rejected.append((image_id, f"invalid image id: {image_id!r} (ids are file names, not paths)"))
        elif image_id in seen:
            rejected.append((image_id, f"duplicate image id: {image_id} is listed more than once"))
        else:
            seen.add(image_id)
            ids.append(image_id)
    return ids, rejected


def parse_class_file(text: str) -> tuple[dict[str, int], list[str]]:
    """An ImageSets/Main/<class>_<split>.txt: id → 1/0/-1, and a problem per unreadable line."""
    values, problems = {}, []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("1", "0", "-1"):
            problems.append(f"line {number} is {line.strip()!r}, expected '<id> 1|0|-1'")
            continue
        values[fields[0]] = int(fields[1])
    return values, problems


def devkit_disagreement(
    image_id: str, computed: Sequence[int], listed: Mapping[int, int], classes: Sequence[str], voc_split: str
) -> str | None:
    """One line naming every class where `computed` and the devkit's files differ, or None."""
    differences = []
    for index, name in enumerate(classes):
        if index not in listed:
            differences.append(f"{name} {computed[index]} here, absent from {name}_{voc_split}.txt")
        elif listed[index] != computed[index]:
            differences.append(f"{name} {computed[index]} here, {listed[index]} in {name}_{voc_split}.txt")
    if not differences:
        return None
    return f"{DEVKIT_CHECK}: {image_id} ({voc_split}): " + "; ".join(differences)
