"""Running a conversion pipeline from a launching process, whatever the source format.

The source modules (folders.py, voc.py) build their Beam pipeline; `run_pipeline` runs it on
the DirectRunner (N local worker processes) unless Beam options name another runner, shows
progress for local runs, and reads back what was published for the summary. Nothing here
imports TensorFlow: the workers start in about a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Sequence

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from recordkit import files, images, locks, output, progress, quiet, records
from recordkit.errors import RecordkitError
from recordkit.metadata import DATASET_JSON, REPORT_JSON, DatasetInfo, join, load
from recordkit.pipeline import METRICS, Target

DEFAULT_SEED = 0
LOCK = ".recordkit-convert.lock"  # one conversion at a time per output folder
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


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
    validation_fraction: float | None = None  # split ROOT/<class>/* by a seeded hash
    drop_duplicates: bool = False
    near_duplicates: bool = True  # look for near copies (re-saved, resized, cropped a little)
    drop_near_duplicates: bool = False

    def __post_init__(self):
        # One switch: dropping near copies searches for them; without the search, the workers
        # take no fingerprints either.
        object.__setattr__(self, "near_duplicates", self.near_duplicates or self.drop_near_duplicates)
        object.__setattr__(self, "image", dataclasses.replace(self.image, fingerprint=self.near_duplicates))
        if not DATASET_NAME.fullmatch(self.dataset_name):
            raise RecordkitError(
                f"dataset name {self.dataset_name!r}: use letters, digits, '.', '-' and '_' "
                "(it becomes part of file names and patterns)"
            )

    @property
    def destination(self) -> str:
        return self.output_dir or self.input_dir


@dataclass
class ConvertResult:
    report: dict
    info: DatasetInfo | None  # None when --strict held the output back
    seconds: float
    output_dir: str
    counters: dict[str, int] = field(default_factory=dict)  # Beam's "recordkit" counters, where the runner reports them
    recovered: list[str] = field(default_factory=list)  # what interrupted runs left, and what was done with it

    @property
    def records(self) -> int:
        return sum(self.report["records"].values())


def image_description(options: images.ImageOptions) -> dict:
    size = list(options.size) if options.size else None
    return {
        "size": size,
        "resize_mode": options.resize_mode if size else "none (source size, JPEG passed through)",
        "jpeg_quality": options.jpeg_quality,
    }


def dataset_target(
    options: ConvertOptions, staging: str, label_kind: str, classes: list[str], source: dict, **target_options
) -> Target:
    """Where and how a mode's records are written; `target_options` add mode-specific settings."""
    info = DatasetInfo(
        name=options.dataset_name,
        label_kind=label_kind,
        classes=list(classes),
        splits={},
        features=records.describe(records.spec_for(label_kind)),
        image=image_description(options.image),
        seed=options.seed,
        source=source,
    )
    return Target(
        output_dir=options.destination,
        staging=staging,
        info=info,
        num_shards={"train": options.train_shards, "validation": options.validation_shards},
        strict=options.strict,
        drop_duplicates=options.drop_duplicates,
        near_duplicates=options.near_duplicates,
        drop_near_duplicates=options.drop_near_duplicates,
        **target_options,
    )


DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


def parse_beam_args(beam_args: list[str]) -> PipelineOptions:
    """Beam's flags, parsed after the named runner's own options are registered (Beam drops
    flags like --dask_client_address while the runner's module is not imported)."""
    options = PipelineOptions(beam_args)
    if options.view_as(StandardOptions).runner in ("DaskRunner", DASK_RUNNER):
        try:
            import apache_beam.runners.dask.dask_runner  # noqa: F401
            import distributed  # noqa: F401
        except ImportError:
            raise RecordkitError("--runner DaskRunner needs Dask: pip install 'recordkit[dask]'") from None
        options = PipelineOptions(beam_args)
        options.view_as(StandardOptions).runner = DASK_RUNNER  # Beam knows it only by its full name
    return options


def pipeline_options(beam_args: list[str], num_workers: int) -> PipelineOptions:
    """Beam's own flags pass through; with no --runner, the DirectRunner with N worker
    processes (Beam's multi_processing mode: the same SDK harness remote runners use)."""
    if not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        beam_args = [*beam_args, "--default_sdk_harness_log_level=WARNING"]
    options = parse_beam_args(beam_args)
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


def _check_not_another_dataset(destination: str, name: str) -> None:
    """label.txt and dataset.json have fixed names: a second dataset would replace the first's."""
    if files.exists(join(destination, DATASET_JSON)):
        existing = load(destination).name
        if existing != name:
            raise RecordkitError(
                f"{destination} already holds dataset {existing!r}: write {name!r} to another "
                "--output-dir (or remove the old one)"
            )


@contextlib.contextmanager
def stderr_to_log(log: str | None):
    """Send this process's and its worker processes' standard error to `log` (Beam's and
    the SDK workers' start-up lines); yields a stream to the terminal for the progress bar."""
    if log is None:
        yield sys.stderr
        return
    with open(log, "ab") as f, quiet.stderr_to(f) as terminal, os.fdopen(os.dup(terminal), "w") as stream:
        yield stream


def run_pipeline(
    build, layout, options: ConvertOptions, beam_args: Sequence[str], total: int | None, show_progress: bool,
    log: str | None = None,
) -> ConvertResult:
    """Run `build(pipeline, options, layout, staging, progress_dir)`; read back what it published.

    With `log`, standard error (ours and the local workers') goes to that file while the
    pipeline runs, so only the progress bar shows.
    """
    files.make_folder(options.destination, "--output-dir")
    with locks.folder_lock(options.destination, LOCK, "recordkit convert"):
        recovered = output.recover(options.destination, options.dataset_name)
        result = _run_locked(build, layout, options, beam_args, total, show_progress, log)
    result.recovered = recovered
    return result


def _run_locked(build, layout, options: ConvertOptions, beam_args, total, show_progress, log) -> ConvertResult:
    beam_options = pipeline_options(list(beam_args), options.num_workers)
    destination = options.destination
    _check_not_another_dataset(destination, options.dataset_name)
    staging = output.new_staging_dir(destination, options.dataset_name)
    files.makedirs(staging)
    shown = show_progress and is_local(beam_options)  # remote runners show progress in their UI
    progress_dir = tempfile.mkdtemp(prefix="recordkit-progress-") if shown else None
    start = time.monotonic()
    pipeline = beam.Pipeline(options=beam_options)
    build(pipeline, options, layout, staging, progress_dir)
    try:
        with stderr_to_log(log) as terminal:
            bar = progress.Bar(progress_dir, total, f"convert {options.dataset_name}", terminal) if progress_dir else None
            with bar or contextlib.nullcontext():
                result = pipeline.run()
                result.wait_until_finish()
                if hasattr(result, "client"):  # Beam's DaskRunner leaves its dask.distributed client open
                    result.client.close()
                counters = read_counters(result)
    finally:
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
    seconds = time.monotonic() - start
    report = json.loads(files.read_text(join(destination, REPORT_JSON)))
    info = load(destination) if report["published"] else None
    return ConvertResult(report=report, info=info, seconds=seconds, output_dir=destination, counters=counters)


def read_counters(result) -> dict[str, int]:
    """The pipeline's counters by name; empty where the runner keeps none (Beam's Dask runner)."""
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(METRICS))["counters"]
    except NotImplementedError:
        return {}
    return {c.key.metric.name: c.committed if c.committed is not None else c.attempted for c in found}
