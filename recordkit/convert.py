"""Folder-per-class conversion, and running a conversion pipeline from a launcher.

`run` is what `recordkit convert` and `pipelines/folder_to_tfrecord.py` call: it checks the
layout, builds the Beam pipeline, runs it on the DirectRunner (N local worker processes) unless
Beam options name another runner, and returns what the summary needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from recordkit import folders, images, output, progress, records
from recordkit.metadata import REPORT_JSON, DatasetInfo, join, load
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

DEFAULT_SEED = 0


@dataclass(frozen=True)
class ConvertOptions:
    input_dir: str
    dataset_name: str
    output_dir: str | None = None  # default: the input folder, as in the tutorial
    train_shards: int = 2
    validation_shards: int = 2
    num_workers: int = 2
    image: images.ImageOptions = field(default_factory=images.ImageOptions)
    seed: int = DEFAULT_SEED
    strict: bool = False

    @property
    def destination(self) -> str:
        return self.output_dir or self.input_dir


@dataclass
class ConvertResult:
    report: dict
    info: DatasetInfo | None  # None when --strict held the output back
    seconds: float
    output_dir: str

    @property
    def records(self) -> int:
        return sum(self.report["records"].values())


class EncodeFolderImage(ProgressDoFn):
    """(split, path) → Encoded record, or a Skipped value on the "skipped" output."""

    SKIPPED = "skipped"

    def __init__(self, layout: folders.Layout, image: images.ImageOptions, seed: int, progress_dir):
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


def image_description(options: images.ImageOptions) -> dict:
    size = list(options.size) if options.size else None
    return {
        "size": size,
        "resize_mode": options.resize_mode if size else "none (source size, JPEG passed through)",
        "jpeg_quality": options.jpeg_quality,
    }


def build_folder_pipeline(
    pipeline: beam.Pipeline, options: ConvertOptions, layout: folders.Layout, staging: str, progress_dir
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


def pipeline_options(beam_args: list[str], num_workers: int) -> PipelineOptions:
    """Beam's own flags pass through; with no --runner, N local worker processes."""
    if not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        beam_args = [*beam_args, "--default_sdk_harness_log_level=WARNING"]
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = "DirectRunner"
        if not any(a.startswith("--direct_num_workers") for a in beam_args):
            direct = options.view_as(DirectOptions)
            direct.direct_num_workers = num_workers
            direct.direct_running_mode = "multi_processing" if num_workers > 1 else "in_memory"
    return options


def is_local(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner or ""
    return runner in ("DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")


def count_local_files(layout: folders.Layout) -> int | None:
    """Total for the progress bar, where listing is cheap (a local folder)."""
    if "://" in layout.root:
        return None
    return sum(len(os.listdir(os.path.dirname(pattern))) for _, pattern in layout.patterns())


def run_pipeline(build, options: ConvertOptions, beam_args: list[str], total: int | None, show_progress: bool):
    """Run `build(pipeline, staging, progress_dir)` and read back what it published."""
    beam_options = pipeline_options(beam_args, options.num_workers)
    destination = options.destination
    tf.io.gfile.makedirs(destination)
    output.remove_stale_staging(destination, options.dataset_name)
    staging = output.staging_dir(destination, options.dataset_name, uuid.uuid4().hex[:12])
    tf.io.gfile.makedirs(staging)
    progress_dir = tempfile.mkdtemp(prefix="recordkit-progress-") if is_local(beam_options) else None
    start = time.monotonic()
    pipeline = beam.Pipeline(options=beam_options)
    build(pipeline, staging, progress_dir)
    bar = progress.Bar(progress_dir, total, f"convert {options.dataset_name}") if progress_dir and show_progress else None
    try:
        with bar or contextlib.nullcontext():
            pipeline.run().wait_until_finish()
    finally:
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
    seconds = time.monotonic() - start
    with tf.io.gfile.GFile(join(destination, REPORT_JSON)) as f:
        report = json.load(f)
    info = load(destination) if report["published"] else None
    return ConvertResult(report=report, info=info, seconds=seconds, output_dir=destination)


def convert_folders(options: ConvertOptions, beam_args: list[str] = (), show_progress: bool = True) -> ConvertResult:
    """Convert ROOT/{train,validation}/<class>/* into shards + label.txt + dataset.json."""
    layout = folders.discover(options.input_dir)
    total = count_local_files(layout) if show_progress else None
    return run_pipeline(
        lambda p, staging, progress_dir: build_folder_pipeline(p, options, layout, staging, progress_dir),
        options,
        list(beam_args),
        total,
        show_progress,
    )
