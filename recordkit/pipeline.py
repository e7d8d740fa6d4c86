"""Beam transforms shared by every conversion mode: match files, shard, write, publish.

Determinism comes from the data, not the runner: each record's position is the rank of a
seeded hash of its split and source id, so any runner and any number of workers write the
same shard files byte for byte. A record's shard is its rank's slice, which keeps shards
equal in size (±1). Bad inputs never raise inside a worker; they travel as `Skipped` values
to the report.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import hashlib
import json
import uuid
from typing import Callable, Iterable, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from recordkit import duplicates, images, output, progress
from recordkit.metadata import DATASET_JSON, LABEL_TXT, REPORT_JSON, DatasetInfo, SplitInfo
from recordkit.metadata import format_labels, join, shard_name


# The shard numbers of shard_name(): "a_train_*" would also match dataset "a_train"'s files.
SHARD_DIGITS = "[0-9]" * 5


class Encoded(NamedTuple):
    split: str
    sort_key: bytes
    example: bytes
    counts: tuple[str, ...]  # keys added up per split for dataset.json's per_class
    sha256: str  # of the encoded image, as in the record: finds duplicates
    source: str  # the file it came from, for the report


class Spilled(NamedTuple):
    """An Encoded record whose example bytes wait in a run file (see SpillExamples)."""

    split: str
    sort_key: bytes
    counts: tuple[str, ...]
    sha256: str
    source: str
    run: str
    offset: int
    length: int


class Skipped(NamedTuple):
    split: str
    path: str
    reason: str


class ShardWritten(NamedTuple):
    split: str
    file: str
    count: int
    counts: dict[str, int]


def sort_key(seed: int, split: str, source_id: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{split}\0{source_id}".encode()).digest()


def shard_index(rank: int, total: int, num_shards: int) -> int:
    return rank * num_shards // total


class MatchSplitFiles(beam.PTransform):
    """(split, glob) → (split, path), listed by the workers rather than the launcher.

    Paths cross the Reshuffle (which spreads them over the workers) in batches: a shuffle
    costs per element, so 60,000 files are 600 elements there.
    """

    def expand(self, patterns):
        return (
            patterns
            | "Match" >> beam.FlatMap(_match_batches)
            | "Spread" >> beam.Reshuffle()
            | "Unbatch" >> beam.FlatMap(lambda batch: batch)
        )


def _match_batches(split_pattern: tuple[str, str], size: int = 100):
    split, pattern = split_pattern
    batch = []
    for result in FileSystems.match([pattern]):
        for metadata in result.metadata_list:
            batch.append((split, metadata.path))
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


class EncodeDoFn(beam.DoFn):
    """Base of each mode's per-file DoFn: its settings, a tagged output for bad files, and a
    count of processed files for the local progress bar."""

    SKIPPED = "skipped"

    def __init__(self, layout, image: images.ImageOptions, seed: int, progress_dir: str | None):
        self._layout = layout
        self._image = image
        self._seed = seed
        self._progress_dir = progress_dir
        self._counter = None

    def setup(self):
        if self._progress_dir:
            self._counter = progress.Counter(self._progress_dir)

    def tick(self) -> None:
        if self._counter:
            self._counter.add()

    def finish_bundle(self):
        if self._counter:
            self._counter.flush()


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()


def count_single_label(classes: list[str], counts: collections.Counter) -> dict[str, int]:
    return {name: counts.get(name, 0) for name in classes}


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and how a dataset is written; `info` describes it without its splits.

    `per_class` turns a split's added-up `Encoded.counts` into dataset.json's per_class entry.
    With `strict`, any skipped file means nothing but the report is published; a skipped file
    whose reason starts with one of `fatal_reasons` has that effect without `strict`.
    """

    output_dir: str
    staging: str
    info: DatasetInfo
    num_shards: dict[str, int]
    per_class: Callable[[list[str], collections.Counter], dict] = count_single_label
    strict: bool = False
    drop_duplicates: bool = False
    fatal_reasons: tuple[str, ...] = ()

    def shard_files(self, split: str) -> list[str]:
        n = self.num_shards[split]
        return [shard_name(self.info.name, split, i, n) for i in range(n)]


class WriteDataset(beam.PTransform):
    """(Encoded records, Skipped[, warnings]) → shards, label.txt, dataset.json and report.json.

    The optional third input holds warnings found by the workers (strings); report.json lists
    them, sorted, after the launcher's.
    """

    def __init__(self, target: Target):
        super().__init__()
        self._target = target

    def expand(self, inputs):
        encoded, skipped, *found = inputs
        encoded = encoded | "Spill" >> beam.ParDo(SpillExamples(join(self._target.staging, RUNS)))
        warnings = found[0] if found else encoded.pipeline | "NoWarnings" >> beam.Create([])
        findings = encoded | "FindDuplicates" >> FindDuplicates()
        if self._target.drop_duplicates:
            encoded = encoded | "DropDuplicates" >> DropDuplicates(findings)
        ranks = (
            encoded
            | "Keys" >> beam.Map(lambda e: (e.split, e.sort_key))
            | "AllKeys" >> beam.combiners.ToList()
            | "Sort" >> beam.Map(_sorted_keys_by_split)
        )
        written = (
            encoded
            | "AssignShard" >> beam.Map(_assign_shard, beam.pvalue.AsSingleton(ranks), self._target)
            | "GroupShards" >> beam.GroupByKey()
            | "WriteShard" >> beam.Map(_write_shard, self._target)
        )
        return (
            encoded.pipeline
            | "Once" >> beam.Create([None])
            | "Publish"
            >> beam.Map(
                _publish,
                self._target,
                beam.pvalue.AsList(written),
                beam.pvalue.AsList(skipped),
                beam.pvalue.AsList(findings),
                beam.pvalue.AsList(warnings),
            )
        )


class FindDuplicates(beam.PTransform):
    """Spilled records → Finding per image that occurs more than once."""

    def expand(self, encoded):
        return (
            encoded
            | "ByHash" >> beam.Map(lambda e: (e.sha256, duplicates.Copy(e.split, e.source, e.counts)))
            | "GroupByHash" >> beam.GroupByKey()
            | "Classify" >> beam.FlatMap(lambda group: filter(None, [duplicates.classify(*group)]))
        )


class DropDuplicates(beam.PTransform):
    """Spilled records minus the copies the findings drop."""

    def __init__(self, findings):
        super().__init__()
        self._findings = findings

    def expand(self, encoded):
        dropped = self._findings | "Dropped" >> beam.FlatMap(
            lambda f: [((c.split, c.path), True) for c in f.dropped]
        )
        return encoded | "Keep" >> beam.Filter(
            lambda e, drop: (e.split, e.source) not in drop, beam.pvalue.AsDict(dropped)
        )


RUNS = ".runs"  # inside the staging folder, so publishing (or a failed run's cleanup) removes it


class SpillExamples(beam.DoFn):
    """Encoded → Spilled: each bundle appends its examples to its own run file.

    Runs fused with the encoding step, so image bytes are written once by the worker that made
    them and only small references go through the rank side input and the shard shuffle;
    the DirectRunner no longer holds every image in the launcher's memory. A retried bundle
    writes a new run file; the failed attempt's is never referenced.
    """

    def __init__(self, folder: str):
        self._folder = folder
        self._file = None

    def start_bundle(self):
        self._path, self._file, self._offset = join(self._folder, uuid.uuid4().hex), None, 0

    def process(self, e: Encoded):
        if self._file is None:
            self._file = FileSystems.create(self._path)
        self._file.write(e.example)
        yield Spilled(e.split, e.sort_key, e.counts, e.sha256, e.source, self._path, self._offset, len(e.example))
        self._offset += len(e.example)

    def finish_bundle(self):
        self.teardown()

    def teardown(self):
        """Also runs after a failed bundle, whose run file would otherwise stay open."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _read_spilled(records: Iterable[Spilled], keep_open: int = 32) -> Iterable[bytes]:
    """The examples of `records`, in order; rank order jumps between run files, so the most
    recently used ones stay open."""
    files: collections.OrderedDict = collections.OrderedDict()
    try:
        for r in records:
            f = files.pop(r.run, None) or FileSystems.open(r.run, compression_type="uncompressed")
            files[r.run] = f
            if len(files) > keep_open:
                files.popitem(last=False)[1].close()
            f.seek(r.offset)
            data = f.read(r.length)
            if len(data) != r.length:
                raise IOError(f"run file {r.run} ends before {r.source}'s record ({r.offset}+{r.length})")
            yield data
    finally:
        for f in files.values():
            f.close()


def _write_shard(shard: tuple[tuple[str, int], list[Spilled]], target: Target) -> ShardWritten:
    (split, index), records = shard
    records = sorted(records, key=lambda e: e.sort_key)
    name = target.shard_files(split)[index]
    output.write_records(join(target.staging, name), _read_spilled(records))
    counts = collections.Counter(key for e in records for key in e.counts)
    return ShardWritten(split, name, len(records), dict(counts))


def _publish(
    _, target: Target, written: list[ShardWritten], skipped: list[Skipped], findings: list,
    warnings: list[str],
) -> dict:
    skipped = sorted(skipped)
    findings = sorted(findings, key=lambda f: (duplicates.KINDS.index(f.kind), f.copies))
    info = _complete_info(target, written, skipped, findings)
    report = {
        "published": not any(target.strict or s.reason.startswith(target.fatal_reasons) for s in skipped),
        "records": {split: s.num_records for split, s in info.splits.items()},
        "skipped": [s._asdict() for s in skipped],
        "duplicates": [f.as_json(target.drop_duplicates) for f in findings],
        "warnings": info.source.get("warnings", []) + sorted(warnings),
    }
    report_text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    if not report["published"]:
        output.write_text(join(target.output_dir, REPORT_JSON), report_text)
        output.remove_tree(target.staging)
        return report
    shard_files = [f for split in info.splits.values() for f in split.files]
    for name in set(shard_files) - {w.file for w in written}:
        output.write_records(join(target.staging, name), [])
    output.publish(
        target.output_dir,
        target.staging,
        shard_files,
        [f"{target.info.name}_{split}_{SHARD_DIGITS}-of-{SHARD_DIGITS}.tfrecord" for split in target.num_shards],
        [
            (REPORT_JSON, report_text),
            (LABEL_TXT, format_labels(target.info.classes)),
            (DATASET_JSON, info.to_json()),
        ],
    )
    return report


def _complete_info(
    target: Target, written: list[ShardWritten], skipped: list[Skipped], findings: list
) -> DatasetInfo:
    splits = {}
    for split in target.num_shards:
        mine = [w for w in written if w.split == split]
        counts = collections.Counter()
        for w in mine:
            counts.update(w.counts)
        splits[split] = SplitInfo(
            num_records=sum(w.count for w in mine),
            num_shards=target.num_shards[split],
            files=target.shard_files(split),
            per_class=target.per_class(target.info.classes, counts),
            source=target.info.source.get("splits", {}).get(split, split),
        )
    by_reason = collections.Counter(s.reason.split(":")[0] for s in skipped)
    skipped_summary = {"count": len(skipped), "by_reason": dict(sorted(by_reason.items())),
                       "report": REPORT_JSON}
    return dataclasses.replace(
        target.info,
        splits=splits,
        skipped=skipped_summary,
        duplicates=duplicates.summarize(findings, target.drop_duplicates),
    )


def _sorted_keys_by_split(pairs: list[tuple[str, bytes]]) -> dict[str, list[bytes]]:
    keys: dict[str, list[bytes]] = collections.defaultdict(list)
    for split, key in pairs:
        keys[split].append(key)
    return {split: sorted(values) for split, values in keys.items()}


def _assign_shard(record: Spilled, keys: dict[str, list[bytes]], target: Target):
    split_keys = keys[record.split]
    rank = bisect.bisect_left(split_keys, record.sort_key)
    return (record.split, shard_index(rank, len(split_keys), target.num_shards[record.split])), record
