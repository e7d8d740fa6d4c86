"""Folder-per-class conversion: ROOT/{train,validation}/<class>/<image> to shards.

Classes are the sorted folder names under train/ (never directory-listing order, which differs
between machines and made labels look shuffled for users of the tools we replace). Listing
the image files themselves is left to the pipeline's workers; here only folders are read.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field

import apache_beam as beam
import tensorflow as tf

from recordkit import images, records
from recordkit.convert import ConvertOptions, ConvertResult, image_description, run_pipeline
from recordkit.errors import RecordkitError
from recordkit.metadata import DatasetInfo
from recordkit.pipeline import (
    Encoded,
    MatchSplitFiles,
    ProgressDoFn,
    Skipped,
    Target,
    WriteDataset,
    read_bytes,
    sort_key,
)

SPLITS = ("train", "validation")


@dataclass(frozen=True)
class Layout:
    root: str
    classes: list[str]
    warnings: list[str] = field(default_factory=list)
    # Files that are not inside a class folder: (split, path, reason), for the report.
    stray_files: list[tuple[str, str, str]] = field(default_factory=list)

    def patterns(self) -> list[tuple[str, str]]:
        """(split, glob) for every class folder; `*` also matches hidden files like .DS_Store,
        so they are reported rather than silently ignored."""
        return [
            (split, _join(self.root, split, name, "*"))
            for split in SPLITS
            for name in self.classes
            if tf.io.gfile.isdir(_join(self.root, split, name))
        ]

    def label_of(self, split: str, path: str) -> tuple[int, str, str]:
        """(label, class name, id relative to the split folder) for a matched file."""
        prefix = _join(self.root, split) + "/"
        path = _posix(path)
        relative = path[len(prefix) :] if path.startswith(prefix) else ""
        name = relative.split("/", 1)[0]
        if name not in self.classes:
            raise ValueError(f"{path} is not inside a class folder of {prefix}")
        return self.classes.index(name), name, relative


def _join(*parts: str) -> str:
    return posixpath.join(*(_posix(p) for p in parts))


def _posix(path: str) -> str:
    return path.replace("\\", "/")


def _entries(directory: str) -> tuple[list[str], list[str]]:
    """(sub-folders, files) directly inside `directory`, sorted."""
    folders, files = [], []
    for name in sorted(tf.io.gfile.listdir(directory)):
        name = name.rstrip("/")
        (folders if tf.io.gfile.isdir(_join(directory, name)) else files).append(name)
    return folders, files


def discover(root: str) -> Layout:
    """Check the layout and find the classes; raise RecordkitError naming what is wrong."""
    root = _posix(root).rstrip("/") or "/"
    if not tf.io.gfile.isdir(root):
        raise RecordkitError(f"input folder {root} does not exist")
    expected = f"expected {root}/train/<class>/<image> and {root}/validation/<class>/<image>"
    missing = [s for s in SPLITS if not tf.io.gfile.isdir(_join(root, s))]
    if missing:
        raise RecordkitError(f"no {' or '.join(s + '/' for s in missing)} folder in {root}: {expected}")
    warnings: list[str] = []
    stray: list[tuple[str, str, str]] = []
    folders = {}
    for split in SPLITS:
        names, files = _entries(_join(root, split))
        hidden = [n for n in names if n.startswith(".")]
        if hidden:
            warnings.append(f"ignored hidden folders in {split}/: {', '.join(hidden)}")
        folders[split] = [n for n in names if not n.startswith(".")]
        stray += [(split, _join(root, split, f), "not inside a class folder") for f in files]
    classes = folders["train"]
    if not classes:
        raise RecordkitError(f"{root}/train has no class folders: {expected}")
    empty = [c for c in classes if not tf.io.gfile.listdir(_join(root, "train", c))]
    if empty:
        raise RecordkitError(
            f"empty class folders in {root}/train: {', '.join(empty)} "
            "(a class with no training images cannot be learned: add images or remove the folder)"
        )
    unknown = sorted(set(folders["validation"]) - set(classes))
    if unknown:
        raise RecordkitError(
            f"classes in {root}/validation but not in train: {', '.join(unknown)} "
            "(their label would not exist in label.txt)"
        )
    absent = [c for c in classes if c not in folders["validation"]]
    if absent:
        warnings.append(f"classes with no validation folder: {', '.join(absent)}")
    return Layout(root=root, classes=classes, warnings=warnings, stray_files=stray)


class EncodeFolderImage(ProgressDoFn):
    """(split, path) → Encoded record, or a Skipped value on the "skipped" output."""

    SKIPPED = "skipped"

    def __init__(self, layout: Layout, image: images.ImageOptions, seed: int, progress_dir):
        super().__init__(progress_dir)
        self._layout = layout
        self._image = image
        self._seed = seed

    def process(self, element):
        split, path = element
        self.tick()
        label, name, source_id = self._layout.label_of(split, path)
        try:
            image = images.to_rgb_jpeg(read_bytes(path), self._image)
        except images.BadImage as e:
            yield beam.pvalue.TaggedOutput(self.SKIPPED, Skipped(split, path, str(e)))
            return
        except OSError as e:
            yield beam.pvalue.TaggedOutput(self.SKIPPED, Skipped(split, path, f"unreadable: {e}"))
            return
        values = records.image_values(
            image.jpeg, image.height, image.width, posixpath.basename(source_id), source_id
        )
        values.update({records.LABEL: label, records.TEXT: name})
        example = records.serialize(records.CLASSIFICATION_FEATURES, values)
        yield Encoded(split, sort_key(self._seed, split, source_id), example, (name,))


def build_pipeline(
    pipeline: beam.Pipeline, options: ConvertOptions, layout: Layout, staging: str, progress_dir
):
    info = DatasetInfo(
        name=options.dataset_name,
        label_kind="single",
        classes=layout.classes,
        splits={},
        features=records.describe(records.CLASSIFICATION_FEATURES),
        image=image_description(options.image),
        seed=options.seed,
        source={"format": "folders", "root": layout.root, "warnings": layout.warnings},
    )
    target = Target(
        output_dir=options.destination,
        staging=staging,
        info=info,
        num_shards={"train": options.train_shards, "validation": options.validation_shards},
        strict=options.strict,
    )
    encoded = (
        pipeline
        | "Patterns" >> beam.Create(layout.patterns())
        | "MatchFiles" >> MatchSplitFiles()
        | "Encode"
        >> beam.ParDo(EncodeFolderImage(layout, options.image, options.seed, progress_dir)).with_outputs(
            EncodeFolderImage.SKIPPED, main="records"
        )
    )
    stray = pipeline | "StrayFiles" >> beam.Create([Skipped(*s) for s in layout.stray_files])
    skipped = (encoded[EncodeFolderImage.SKIPPED], stray) | "AllSkipped" >> beam.Flatten()
    return (encoded.records, skipped) | "Write" >> WriteDataset(target)


def count_local_files(layout: Layout) -> int | None:
    """Total for the progress bar, where listing is cheap (a local folder)."""
    if "://" in layout.root:
        return None
    return sum(len(os.listdir(os.path.dirname(pattern))) for _, pattern in layout.patterns())


def convert_folders(options: ConvertOptions, beam_args: list[str] = (), show_progress: bool = True) -> ConvertResult:
    """Convert ROOT/{train,validation}/<class>/* into shards + label.txt + dataset.json."""
    layout = discover(options.input_dir)
    total = count_local_files(layout) if show_progress else None
    return run_pipeline(
        lambda p, staging, progress_dir: build_pipeline(p, options, layout, staging, progress_dir),
        options,
        list(beam_args),
        total,
        show_progress,
    )
