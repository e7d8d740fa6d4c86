"""Folder-per-class conversion: ROOT/{train,validation}/<class>/<image> to shards.

Classes are the sorted folder names under train/ (never directory-listing order, which differs
between machines and made labels look shuffled for users of the tools we replace). Listing
the image files themselves is left to the pipeline's workers; here only folders are read.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import re
from dataclasses import dataclass, field

import apache_beam as beam

from recordkit import files, images, records
from recordkit.convert import ConvertOptions, ConvertResult, dataset_target, run_pipeline
from recordkit.errors import RecordkitError
from recordkit.pipeline import (
    EncodeDoFn,
    Encoded,
    MatchSplitFiles,
    Skipped,
    WriteDataset,
    by_type,
    sort_key,
)

SPLITS = ("train", "validation")
# What a conversion writes into its output folder, which by default is the input folder.
OWN_OUTPUTS = ("label.txt", "dataset.json", "report.json", "*.tfrecord")


@dataclass(frozen=True)
class Layout:
    """The class folders to read, and how a file's split and label follow from its path.

    With `validation_fraction`, ROOT/<class>/<image> is one tree and each file's split comes
    from a seeded hash of its path inside the class folder: the split is reproducible, about
    the same fraction of every class is held out, and adding files never moves old ones.
    """

    root: str
    classes: list[str]
    # (split, folder) per class folder; split None means "chosen per file by hash".
    class_dirs: list[tuple[str | None, str]]
    validation_fraction: float | None = None
    warnings: list[str] = field(default_factory=list)
    # Files that are not inside a class folder: (split, path, reason), for the report.
    stray_files: list[tuple[str, str, str]] = field(default_factory=list)

    def patterns(self) -> list[tuple[str | None, str]]:
        """(split, glob) for every class folder, sub-folders included (as Keras reads them).
        `**` also matches hidden files like .DS_Store, so they are reported, not ignored."""
        return [(split, _join(escape_glob(folder), "**")) for split, folder in self.class_dirs]

    def locate(self, split: str | None, path: str, seed: int) -> tuple[str, int, str, str]:
        """(split, label, class name, id relative to the split folder) for a matched file."""
        prefix = (self.root if split is None else _join(self.root, split)) + "/"
        path = _posix(path)
        relative = path[len(prefix) :] if path.startswith(prefix) else ""
        name, _, inside_class = relative.partition("/")
        if name not in self.classes:
            raise ValueError(f"{path} is not inside a class folder of {prefix}")
        if split is None:
            split = "validation" if held_out(seed, inside_class, self.validation_fraction) else "train"
        return split, self.classes.index(name), name, relative


def escape_glob(path: str) -> str:
    """A folder named `[x]` or `a*b` must match itself, not a pattern."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def held_out(seed: int, name: str, fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def _join(*parts: str) -> str:
    return posixpath.join(*(_posix(p) for p in parts))


def _posix(path: str) -> str:
    return path.replace("\\", "/")


def _entries(directory: str, output: str | None = None) -> tuple[list[str], list[str], list[str]]:
    """(sub-folders, hidden sub-folders, files) directly inside `directory`, sorted; the
    conversion's own output folder is none of them."""
    folders, hidden, plain = [], [], []
    for name in sorted(files.listdir(directory)):
        name = name.rstrip("/")
        if _same_place(_join(directory, name), output):
            _check_only_our_outputs(_join(directory, name))
            continue
        if not files.isdir(_join(directory, name)):
            plain.append(name)
        else:
            (hidden if name.startswith(".") else folders).append(name)
    return folders, hidden, plain


def _is_own_output(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in OWN_OUTPUTS)


def _same_place(path: str, other: str | None) -> bool:
    if other is None:
        return False
    if files.is_remote(path):
        return path.rstrip("/") == _posix(other).rstrip("/")
    return os.path.realpath(path) == os.path.realpath(other)


def _check_only_our_outputs(output: str) -> None:
    """The output folder sits where a class folder would: fine while it holds only what a
    conversion writes; a folder of images there is a class the user meant to convert."""
    _, _, plain = _entries(output)
    theirs = [f for f in plain if not _is_own_output(f)]
    if theirs:
        raise RecordkitError(
            f"--output-dir {output} is a class folder (it holds {theirs[0]}): its images would be left out "
            "and mixed with the shards; write the shards elsewhere"
        )


def _check_output_outside_classes(layout: "Layout", output: str | None) -> None:
    """Shards written inside a class folder (or loose in a split folder) would be read back
    as bad images by the next conversion."""
    if output is None or files.is_remote(output):
        return
    where = os.path.realpath(output)
    inside_class = [f for _, f in layout.class_dirs if where.startswith(os.path.realpath(f) + os.sep)]
    split_folder = [f for f in (_join(layout.root, s) for s in SPLITS) if _same_place(f, output)]
    if inside_class or split_folder:
        raise RecordkitError(
            f"--output-dir {output} is in {(inside_class + split_folder)[0]}: the next conversion would read "
            "the shards as images; write them elsewhere"
        )


def _check_not_empty(root: str, where: str, classes: list[str]) -> None:
    empty = [c for c in classes if not files.listdir(_join(root, where, c))]
    if empty:
        raise RecordkitError(
            f"empty class folders in {_join(root, where)}: {', '.join(empty)} "
            "(a class with no training images cannot be learned: add images or remove the folder)"
        )


def discover(root: str, validation_fraction: float | None = None, output: str | None = None) -> Layout:
    """Check the layout and find the classes; raise RecordkitError naming what is wrong.

    `output` is where the conversion writes: never read as a class folder, and refused
    inside one.
    """
    root = _posix(root).rstrip("/") or "/"
    if not files.isdir(root):
        raise RecordkitError(f"input folder {root} does not exist")
    layout = (_discover_single_tree(root, validation_fraction, output) if validation_fraction is not None
              else _discover_splits(root, output))
    _check_output_outside_classes(layout, output)
    return layout


def _discover_splits(root: str, output: str | None) -> Layout:
    expected = f"expected {root}/train/<class>/<image> and {root}/validation/<class>/<image>"
    missing = [s for s in SPLITS if not files.isdir(_join(root, s))]
    if missing:
        raise RecordkitError(
            f"no {' or '.join(s + '/' for s in missing)} folder in {root}: {expected} "
            "(or ROOT/<class>/<image> with --validation-fraction)"
        )
    warnings: list[str] = []
    stray: list[tuple[str, str, str]] = []
    folders = {}
    for split in SPLITS:
        folders[split], hidden, plain = _entries(_join(root, split), output)
        if hidden:
            warnings.append(f"ignored hidden folders in {split}/: {', '.join(hidden)}")
        stray += [(split, _join(root, split, f), "not inside a class folder") for f in plain]
    classes = folders["train"]
    if not classes:
        raise RecordkitError(f"{root}/train has no class folders: {expected}")
    _check_not_empty(root, "train", classes)
    unknown = sorted(set(folders["validation"]) - set(classes))
    if unknown:
        raise RecordkitError(
            f"classes in {root}/validation but not in train: {', '.join(unknown)} "
            "(their label would not exist in label.txt)"
        )
    absent = [c for c in classes if c not in folders["validation"]]
    if absent:
        warnings.append(f"classes with no validation folder: {', '.join(absent)}")
    class_dirs = [(s, _join(root, s, c)) for s in SPLITS for c in classes if c in folders[s]]
    return Layout(root, classes, class_dirs, None, warnings, stray)


def _discover_single_tree(root: str, fraction: float, output: str | None) -> Layout:
    if not 0 < fraction < 1:
        raise RecordkitError(f"--validation-fraction must be between 0 and 1, got {fraction}")
    classes, hidden, plain = _entries(root, output)
    if set(SPLITS) & set(classes):
        raise RecordkitError(
            f"{root} already has train/ or validation/ folders: convert it without --validation-fraction"
        )
    if not classes:
        raise RecordkitError(f"{root} has no class folders: expected {root}/<class>/<image>")
    _check_not_empty(root, "", classes)
    warnings = [f"ignored hidden folders in {root}: {', '.join(hidden)}"] if hidden else []
    stray = [
        ("(none)", _join(root, f), "not inside a class folder")
        for f in plain
        if not _is_own_output(f)
    ]
    class_dirs = [(None, _join(root, c)) for c in classes]
    return Layout(root, classes, class_dirs, fraction, warnings, stray)


class EncodeFolderImage(EncodeDoFn):
    """(split, path) → Encoded record, or a Skipped value."""

    def process(self, element):
        split, path = element
        self.tick()
        split, label, name, source_id = self._layout.locate(split, path, self._seed)
        try:
            image = images.to_rgb_jpeg(files.read_bytes(path), self._image)
        except images.BadImage as e:
            yield self.skip(split, path, str(e))
            return
        except OSError as e:
            yield self.skip(split, path, f"unreadable: {e}")
            return
        values = records.image_values(
            image.jpeg, image.height, image.width, posixpath.basename(source_id), source_id, image.fingerprint
        )
        values.update({records.LABEL: label, records.TEXT: name})
        example = records.serialize(records.CLASSIFICATION_FEATURES, values)
        key = sort_key(self._seed, split, source_id)
        yield self.encoded(Encoded(split, key, example, (name,), values[records.SHA256], image.fingerprint,
                                   path))


def build_pipeline(
    pipeline: beam.Pipeline, options: ConvertOptions, layout: Layout, staging: str, progress_dir
):
    source = {
        "format": "folders",
        "root": layout.root,
        "validation_fraction": layout.validation_fraction,
        "warnings": layout.warnings,
    }
    target = dataset_target(options, staging, "single", layout.classes, source, every_class=True)
    encoded, bad = by_type(
        pipeline
        | "Patterns" >> beam.Create(layout.patterns())
        | "MatchFiles" >> MatchSplitFiles()
        | "Encode" >> beam.ParDo(EncodeFolderImage(layout, options.image, options.seed, progress_dir)),
        "Encoded", Encoded, Skipped,
    )
    stray = pipeline | "StrayFiles" >> beam.Create([Skipped(*s) for s in layout.stray_files])
    skipped = (bad, stray) | "AllSkipped" >> beam.Flatten()
    return (encoded, skipped) | "Write" >> WriteDataset(target)


def count_local_files(layout: Layout) -> int | None:
    """Total for the progress bar, where listing is cheap (a local folder)."""
    if "://" in layout.root:
        return None
    return sum(len(names) for _, folder in layout.class_dirs for _, _, names in os.walk(folder))


def convert_folders(
    options: ConvertOptions, beam_args: list[str] = (), show_progress: bool = True, log: str | None = None
) -> ConvertResult:
    """Convert ROOT/{train,validation}/<class>/* (or ROOT/<class>/* with a validation
    fraction) into shards + label.txt + dataset.json; `log` takes the pipeline's stderr."""
    layout = discover(options.input_dir, options.validation_fraction, options.destination)
    total = count_local_files(layout) if show_progress else None
    return run_pipeline(build_pipeline, layout, options, beam_args, total, show_progress, log)
