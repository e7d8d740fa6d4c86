"""A small VOC-format dataset for the tests: generated XMLs, JPEGs and devkit-style files.

The per-class ImageSets/Main/<class>_<split>.txt files are computed here from the object specs,
independently of recordkit.voc, so comparing the records against them tests the label rules.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

import imagegen

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
WIDTH, HEIGHT = 48, 32


@dataclass
class Obj:
    name: str
    box: tuple[float, float, float, float] = (4, 4, 20, 16)  # xmin, ymin, xmax, ymax
    difficult: int | None = 0  # None: no <difficult> element
    truncated: int | None = 0
    pose: str | None = "Unspecified"


@dataclass
class Img:
    objects: list[Obj] = field(default_factory=list)
    size: tuple[int, int] = (WIDTH, HEIGHT)  # what <size> says (width, height)
    image: bool = True  # write JPEGImages/<id>.jpg
    xml: str | None = None  # raw XML instead of the generated one
    filename: str | None = None  # <filename>; default <id>.jpg
    path: str | None = None  # <path>


def annotation_xml(image_id: str, img: Img) -> str:
    objects = []
    for obj in img.objects:
        fields = [f"<name>{obj.name}</name>"]
        if obj.pose is not None:
            fields.append(f"<pose>{obj.pose}</pose>")
        if obj.truncated is not None:
            fields.append(f"<truncated>{obj.truncated}</truncated>")
        if obj.difficult is not None:
            fields.append(f"<difficult>{obj.difficult}</difficult>")
        xmin, ymin, xmax, ymax = obj.box
        fields.append(f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>")
        objects.append("<object>" + "".join(fields) + "</object>")
    path = f"<path>{img.path}</path>" if img.path else ""
    return (
        f"<annotation><folder>VOC2007</folder><filename>{img.filename or image_id + '.jpg'}</filename>{path}"
        f"<size><width>{img.size[0]}</width><height>{img.size[1]}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{''.join(objects)}</annotation>\n"
    )


def devkit_value(img: Img, name: str) -> int:
    """The devkit's rule, written independently: 1 / 0 (difficult only) / -1."""
    mine = [o for o in img.objects if o.name == name]
    if any(not o.difficult for o in mine):
        return 1
    return 0 if mine else -1


def write_voc(root: pathlib.Path, splits: dict[str, dict[str, Img]], classes=VOC_CLASSES,
              listed_extra: dict[str, list[str]] | None = None) -> None:
    """root/{Annotations,JPEGImages,ImageSets/Main}; `listed_extra` adds ids to a split file
    without writing anything for them."""
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    seed = 0
    for split, items in splits.items():
        ids = list(items) + list((listed_extra or {}).get(split, []))
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for image_id, img in items.items():
            seed += 1
            (root / "Annotations" / f"{image_id}.xml").write_text(img.xml or annotation_xml(image_id, img))
            if img.image:
                (root / "JPEGImages" / f"{image_id}.jpg").write_bytes(imagegen.jpeg(WIDTH, HEIGHT, seed=seed))
        for name in classes:
            lines = "".join(f"{i} {devkit_value(img, name):2d}\n" for i, img in items.items() if img.xml is None)
            (root / "ImageSets" / "Main" / f"{name}_{split}.txt").write_text(lines)
