"""PASCAL VOC conversion: Annotations/<id>.xml + JPEGImages/<id>.jpg → multi-label shards.

The devkit's rules (annotation XML → objects → labels 1/0/-1 per class) are pure functions in
`voc_annotations.py`; this module finds the files, reads them and wires the Beam pipeline.
Records keep the 1s as image/class/multi_hot and the 0s as image/class/difficult_only, plus the
objects under the TF Object Detection API keys. The image is always JPEGImages/<id>.jpg; the
XML's <filename> and <path> can point anywhere and are ignored.
"""

from __future__ import annotations

import collections
import io
import posixpath
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import apache_beam as beam
from PIL import Image

from recordkit import files, images, records
from recordkit.convert import ConvertOptions, ConvertResult, dataset_target, run_pipeline
from recordkit.errors import RecordkitError
from recordkit.metadata import parse_labels
from recordkit.pipeline import Encoded, EncodeDoFn, Notice, Skipped, WriteDataset, by_type, sort_key
from recordkit.voc_annotations import (
    DEVKIT_CHECK, DIFFICULT_ONLY, POSITIVE, VOC_CLASSES, Annotation, BadAnnotation, devkit_disagreement,
    devkit_values, normalised_boxes, parse_annotation, parse_class_file, parse_image_ids, split_unknown,
)

SPLITS = ("train", "validation")  # what the first and second --splits entry are written as
UNKNOWN_CLASS = "unknown class"  # reason prefix of images held back by --unknown-classes error
UNKNOWN_CLASS_POLICIES = ("error", "skip")
BOX_CONVENTION = (
    "pixel coordinate / decoded image size, as the TF Object Detection API's "
    "create_pascal_tf_record.py; clipped to [0, 1]; object class ids are 0-based into label.txt"
)
_EXIF_ORIENTATION = 0x0112
_QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def load_classes(spec: str | None) -> tuple[str, ...]:
    """--classes: a label.txt (one name per line, or TF-Slim's i:name) or a comma-separated
    list; None gives the 20 VOC classes in the devkit's order."""
    if spec is None:
        return VOC_CLASSES
    if files.exists(spec):
        names = parse_labels(files.read_text(spec))
    else:
        names = [name.strip() for name in spec.split(",")]
    if not names or not all(names):
        raise RecordkitError(f"--classes {spec!r}: expected a label.txt or a list like 'cat,dog'")
    repeated = sorted(n for n, count in collections.Counter(names).items() if count > 1)
    if repeated:
        raise RecordkitError(f"--classes lists {', '.join(repeated)} more than once")
    return tuple(names)


# --- The dataset on disk ---------------------------------------------------------------------


@dataclass(frozen=True)
class VocOptions:
    """What VOC adds to ConvertOptions: the devkit splits written as train and validation."""

    splits: tuple[str, str] = ("trainval", "test")
    classes: tuple[str, ...] = VOC_CLASSES
    check_devkit: bool = False  # compare with ImageSets/Main/<class>_<split>.txt
    unknown_classes: str = "error"  # or "skip": drop those objects, keep the image, warn


@dataclass(frozen=True)
class VocLayout:
    root: str
    splits: dict[str, str]  # our split → VOC split, e.g. {"train": "trainval", "validation": "test"}
    classes: tuple[str, ...]
    check_devkit: bool
    skip_unknown: bool

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def split_file(self, voc_split: str) -> str:
        return self.path("ImageSets", "Main", f"{voc_split}.txt")

    def class_file(self, name: str, voc_split: str) -> str:
        return self.path("ImageSets", "Main", f"{name}_{voc_split}.txt")

    def annotation(self, image_id: str) -> str:
        return self.path("Annotations", f"{image_id}.xml")

    def image(self, image_id: str) -> str:
        return self.path("JPEGImages", f"{image_id}.jpg")

    def source(self) -> dict:
        """dataset.json's `source`: where each split came from and how labels were made."""
        return {
            "format": "voc",
            "root": self.root,
            "splits": dict(self.splits),
            "classes": "VOC devkit" if self.classes == VOC_CLASSES else "--classes",
            "unknown_classes": "skip" if self.skip_unknown else "error",
            "devkit_check": self.check_devkit,
            "boxes": BOX_CONVENTION,
            "warnings": [],
        }


def discover(root: str, voc: VocOptions, image: images.ImageOptions) -> VocLayout:
    """Check the VOC layout and the options; raise RecordkitError naming what is wrong."""
    root = root.replace("\\", "/").rstrip("/") or "/"
    if not files.isdir(root):
        raise RecordkitError(f"VOC root {root} does not exist")
    missing = [d for d in ("Annotations", "JPEGImages", "ImageSets/Main") if not files.isdir(f"{root}/{d}")]
    if missing:
        raise RecordkitError(
            f"{root} is not a VOC dataset: no {', '.join(d + '/' for d in missing)} "
            "(expected Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/<split>.txt)"
        )
    if len(voc.splits) != 2 or len(set(voc.splits)) != 2 or not all(voc.splits):
        raise RecordkitError(
            f"--splits needs two different VOC splits (written as train and validation), got {','.join(voc.splits)!r}"
        )
    if image.size is not None and image.resize_mode != "stretch":
        raise RecordkitError(
            "--resize-mode crop would cut objects off and change the labels; VOC images are "
            "resized with stretch (boxes stay correct as fractions of the image)"
        )
    if voc.unknown_classes not in UNKNOWN_CLASS_POLICIES:
        raise RecordkitError(f"--unknown-classes must be one of {', '.join(UNKNOWN_CLASS_POLICIES)}")
    layout = VocLayout(
        root=root,
        splits=dict(zip(SPLITS, voc.splits)),
        classes=tuple(voc.classes),
        check_devkit=voc.check_devkit,
        skip_unknown=voc.unknown_classes == "skip",
    )
    absent = [layout.split_file(s) for s in voc.splits if not files.exists(layout.split_file(s))]
    if voc.check_devkit:
        absent += [
            layout.class_file(c, s) for s in voc.splits for c in layout.classes
            if not files.exists(layout.class_file(c, s))
        ]
    if absent:
        shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        raise RecordkitError(f"missing {shown}" + (" (needed by --check-devkit)" if voc.check_devkit else ""))
    return layout


# --- One image ---------------------------------------------------------------------------------


class Rejected(Exception):
    """An input that goes to the report: the file at fault and the reason."""

    def __init__(self, path: str, reason: str):
        super().__init__(reason)
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class VocRecord:
    example: bytes
    sha256: str
    fingerprint: str
    devkit: tuple[int, ...]  # the devkit's 1/0/-1 per class
    warnings: tuple[str, ...]


def _upright_size(data: bytes) -> tuple[int, int]:
    """(height, width) of the image as displayed, before any --image-size resize: the frame
    the annotator drew the boxes in. Reads the header only."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if image.getexif().get(_EXIF_ORIENTATION, 1) in _QUARTER_TURNS:
            width, height = height, width
    return height, width


def _read_annotation(layout: VocLayout, voc_split: str, image_id: str) -> tuple[Annotation, str]:
    path = layout.annotation(image_id)
    if not files.exists(path):
        raise Rejected(path, f"missing annotation: {image_id} is listed in {voc_split}.txt but has no XML")
    try:
        return parse_annotation(files.read_bytes(path)), path
    except BadAnnotation as e:
        raise Rejected(path, str(e)) from None
    except OSError as e:
        raise Rejected(path, f"unreadable: {e}") from None


def _read_image(layout: VocLayout, image_id: str, options: images.ImageOptions):
    path = layout.image(image_id)
    if not files.exists(path):
        raise Rejected(path, f"missing image: no JPEGImages/{image_id}.jpg for Annotations/{image_id}.xml")
    try:
        data = files.read_bytes(path)
        return images.to_rgb_jpeg(data, options), _upright_size(data)
    except images.BadImage as e:
        raise Rejected(path, str(e)) from None
    except OSError as e:
        raise Rejected(path, f"unreadable: {e}") from None


def encode_image(layout: VocLayout, voc_split: str, image_id: str, options: images.ImageOptions) -> VocRecord:
    """Annotation + image → one record; raises Rejected for anything that goes to the report.

    The image's own decoded size is trusted over the XML's <size>: boxes are normalised by it,
    and a disagreement is a warning.
    """
    annotation, xml_path = _read_annotation(layout, voc_split, image_id)
    objects, unknown = split_unknown(annotation.objects, layout.classes)
    warnings = []
    if unknown and not layout.skip_unknown:
        raise Rejected(xml_path, f"{UNKNOWN_CLASS}: {', '.join(unknown)} (not in the class list)")
    if unknown:
        warnings.append(f"{xml_path}: dropped objects of classes not in the class list: {', '.join(unknown)}")
    image, (height, width) = _read_image(layout, image_id, options)
    if annotation.size and annotation.size != (height, width):
        warnings.append(
            f"{xml_path}: <size> says {annotation.size[1]}x{annotation.size[0]} but the image is "
            f"{width}x{height}; boxes normalised by the image"
        )
    boxes, clipped = normalised_boxes(objects, height, width)
    if clipped:
        numbers = ", ".join(f"{n} ({objects[n - 1].name})" for n in clipped)
        warnings.append(f"{xml_path}: boxes of objects {numbers} reach outside the {width}x{height} image; clipped")
    devkit = devkit_values(objects, layout.classes)
    values = records.image_values(image.jpeg, image.height, image.width, f"{image_id}.jpg", image_id,
                                  image.fingerprint)
    values.update({
        records.MULTI_HOT: [int(v == POSITIVE) for v in devkit],
        records.DIFFICULT_ONLY: [int(v == DIFFICULT_ONLY) for v in devkit],
        records.BBOX_XMIN: [b[0] for b in boxes],
        records.BBOX_YMIN: [b[1] for b in boxes],
        records.BBOX_XMAX: [b[2] for b in boxes],
        records.BBOX_YMAX: [b[3] for b in boxes],
        records.OBJECT_LABEL: [layout.classes.index(o.name) for o in objects],
        records.OBJECT_TEXT: [o.name for o in objects],
        records.OBJECT_DIFFICULT: [int(o.difficult) for o in objects],
        records.OBJECT_TRUNCATED: [int(o.truncated) for o in objects],
        records.OBJECT_VIEW: [o.pose for o in objects],
    })
    example = records.serialize(records.MULTI_LABEL_FEATURES, values)
    return VocRecord(example, values[records.SHA256], image.fingerprint, tuple(devkit), tuple(warnings))


def label_counts(classes: Sequence[str], devkit: Sequence[int]) -> tuple[str, ...]:
    """Encoded.counts keys: '<class>/positive' and '<class>/difficult_only'."""
    kinds = {POSITIVE: "positive", DIFFICULT_ONLY: "difficult_only"}
    return tuple(f"{name}/{kinds[v]}" for name, v in zip(classes, devkit) if v in kinds)


def count_multi_label(classes: list[str], counts: collections.Counter) -> dict[str, dict[str, int]]:
    """dataset.json per_class: {class: {"positive": n, "difficult_only": m}}."""
    return {
        name: {kind: counts.get(f"{name}/{kind}", 0) for kind in ("positive", "difficult_only")}
        for name in classes
    }


# --- The pipeline --------------------------------------------------------------------------------


class Listed(NamedTuple):
    """An image id listed in a split file."""

    split: str
    image_id: str


class DevkitLabels(NamedTuple):
    """(split, image id) → 1/0/-1 per class: computed from an annotation, or (one class at
    a time) read from ImageSets/Main/<class>_<split>.txt. A key-value pair for CoGroupByKey."""

    key: tuple[str, str]
    labels: tuple


class EncodeVocImage(EncodeDoFn):
    """Listed → Encoded, or Skipped; plus a Notice per warning and (for the devkit check) the
    computed DevkitLabels."""

    def process(self, element: Listed):
        split, image_id = element
        self.tick()
        try:
            record = encode_image(self._layout, self._layout.splits[split], image_id, self._image)
        except Rejected as e:
            yield self.skip(split, e.path, e.reason)
            return
        for warning in record.warnings:
            yield Notice(warning)
        if self._layout.check_devkit:
            yield DevkitLabels((split, image_id), record.devkit)
        counts = label_counts(self._layout.classes, record.devkit)
        key = sort_key(self._seed, split, image_id)
        yield self.encoded(Encoded(split, key, record.example, counts, record.sha256, record.fingerprint,
                                   self._layout.image(image_id)))


def _read_split_file(split_file: tuple[str, str], layout: VocLayout):
    """(split, VOC split) → Listed per id; bad lines become Skipped."""
    split, voc_split = split_file
    path = layout.split_file(voc_split)
    ids, rejected = parse_image_ids(files.read_bytes(path).decode("utf-8", errors="replace"))
    for image_id in ids:
        yield Listed(split, image_id)
    for _, reason in rejected:
        yield Skipped(split, path, reason)


class ClassFileLine(NamedTuple):
    """((split, id), (class index, 1/0/-1)): one line of a devkit class file."""

    key: tuple[str, str]
    value: tuple[int, int]


def _read_class_file(entry: tuple[str, int], layout: VocLayout):
    """(split, class index) → ClassFileLine per line of the devkit file; a Notice per problem."""
    split, index = entry
    path = layout.class_file(layout.classes[index], layout.splits[split])
    values, problems = parse_class_file(files.read_bytes(path).decode("utf-8", errors="replace"))
    for image_id, value in values.items():
        yield ClassFileLine((split, image_id), (index, value))
    for problem in problems:
        yield Notice(f"{DEVKIT_CHECK}: {path}: {problem}")


def _compare(joined, layout: VocLayout):
    """Images that were converted, checked against every class file (others are in the report)."""
    (split, image_id), groups = joined
    for computed in groups["computed"]:
        listed = dict(groups["devkit"])
        found = devkit_disagreement(image_id, computed, listed, layout.classes, layout.splits[split])
        if found:
            yield Notice(found)


class CheckDevkit(beam.PTransform):
    """DevkitLabels computed from annotations → a Notice per image the devkit files disagree on."""

    def __init__(self, layout: VocLayout):
        super().__init__()
        self._layout = layout

    def expand(self, computed):
        class_files = [(split, index) for split in SPLITS for index in range(len(self._layout.classes))]
        lines, problems = by_type(
            computed.pipeline
            | "ClassFiles" >> beam.Create(class_files)
            | "ReadClassFiles" >> beam.FlatMap(_read_class_file, self._layout),
            "Devkit", ClassFileLine, Notice,
        )
        disagreements = (
            {"computed": computed, "devkit": lines}
            | "Join" >> beam.CoGroupByKey()
            | "Compare" >> beam.FlatMap(_compare, self._layout)
        )
        return (disagreements, problems) | "DevkitWarnings" >> beam.Flatten()


def build_pipeline(pipeline: beam.Pipeline, options: ConvertOptions, layout: VocLayout, staging: str, progress_dir):
    target = dataset_target(
        options,
        staging,
        "multi",
        layout.classes,
        layout.source(),
        per_class=count_multi_label,
        fatal_reasons=() if layout.skip_unknown else (UNKNOWN_CLASS,),
    )
    ids, bad_lines = by_type(
        pipeline
        | "SplitFiles" >> beam.Create(sorted(layout.splits.items()))
        | "ReadIds" >> beam.FlatMap(_read_split_file, layout),
        "Listed", Listed, Skipped,
    )
    encoded, bad_images, notices, labels = by_type(
        ids
        | "Spread" >> beam.Reshuffle()
        | "Encode" >> beam.ParDo(EncodeVocImage(layout, options.image, options.seed, progress_dir)),
        "Encoded", Encoded, Skipped, Notice, DevkitLabels,
    )
    skipped = (bad_lines, bad_images) | "AllSkipped" >> beam.Flatten()
    warnings = [notices]
    if layout.check_devkit:
        warnings.append(labels | "CheckDevkit" >> CheckDevkit(layout))
    warnings = tuple(warnings) | "AllWarnings" >> beam.Flatten()
    return (encoded, skipped, warnings) | "Write" >> WriteDataset(target)


def count_listed_ids(layout: VocLayout) -> int | None:
    """Total for the progress bar, where reading the split files is cheap (a local folder)."""
    if "://" in layout.root:
        return None
    return sum(len(parse_image_ids(files.read_bytes(layout.split_file(s)).decode("utf-8", "replace"))[0])
               for s in layout.splits.values())


def convert_voc(
    options: ConvertOptions, voc: VocOptions = VocOptions(), beam_args: Sequence[str] = (), show_progress: bool = True,
    log: str | None = None,
) -> ConvertResult:
    """Convert a VOC root's two splits into shards + label.txt + dataset.json (label_kind multi)."""
    layout = discover(options.input_dir, voc, options.image)
    total = count_listed_ids(layout) if show_progress else None
    return run_pipeline(build_pipeline, layout, options, beam_args, total, show_progress, log)
