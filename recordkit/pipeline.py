"""Beam transforms shared by every conversion mode: match files, shard, write, publish.

Determinism comes from the data, not the runner: each record's position is the rank of a
seeded hash of its split and source id, so any runner and any number of workers write the
same shard files byte for byte. A record's shard is its rank's slice, which keeps shards
equal in size (±1). Bad inputs never raise inside a worker; they travel as `Skipped` values
to the report. Beam metrics (namespace "recordkit") count what the workers did, so
Dataflow's and Dask's UIs show progress.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import re
import uuid
from typing import Callable, Iterable, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from recordkit import duplicates, files, images, near_duplicates, output, progress, ranking, report, tfrecord
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
    fingerprint: str  # near_duplicates.fingerprint, as in the record: finds near copies
    source: str  # the file it came from, for the report


class Spilled(NamedTuple):
    """An Encoded record whose example bytes wait in a run file (see SpillExamples)."""

    split: str
    sort_key: bytes
    counts: tuple[str, ...]
    sha256: str
    fingerprint: str
    source: str
    run: str  # the run file's name inside the runs folder
    offset: int  # where the framed record starts in it
    length: int


class Ref(NamedTuple):
    """What ranking and shard writing need of a record: small, so shuffles stay cheap."""

    split: str
    sort_key: bytes
    counts: tuple[str, ...]
    run: str
    offset: int
    length: int


class Skipped(NamedTuple):
    split: str
    path: str
    reason: str


class Notice(NamedTuple):
    """A warning a worker found, for report.json (e.g. a VOC box clipped to its image)."""

    text: str


class ShardWritten(NamedTuple):
    split: str
    file: str
    count: int
    counts: dict[str, int]


def sort_key(seed: int, split: str, source_id: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{split}\0{source_id}".encode()).digest()


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


def _match_batches(split_pattern: tuple[str | None, str], size: int = 100):
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


METRICS = "recordkit"
IMAGES_READ = Metrics.counter(METRICS, "images_read")
RECORDS_ENCODED = Metrics.counter(METRICS, "records_encoded")
BYTES_ENCODED = Metrics.counter(METRICS, "bytes_encoded")
RECORDS_WRITTEN = Metrics.counter(METRICS, "records_written")


def by_type(outputs, label: str, *types: type) -> list:
    """One PCollection per type from a transform that yields several kinds of values.

    Used instead of tagged outputs, which Beam's Dask runner sends to every consumer
    (docs/dataflow.md has the reproduction).
    """
    return [outputs | f"{label}{t.__name__}" >> beam.Filter(lambda x, t=t: isinstance(x, t)) for t in types]


class EncodeDoFn(beam.DoFn):
    """Base of each mode's per-file DoFn: its settings, Skipped values for bad files, Beam
    counters, and a count of processed files for the local progress bar."""

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
        IMAGES_READ.inc()
        if self._counter:
            self._counter.add()

    def skip(self, split: str, path: str, reason: str) -> Skipped:
        kind = reason.split(":")[0].split(" (")[0]  # "truncated JPEG (no end-of-image marker)" → truncated JPEG
        Metrics.counter(METRICS, "skipped_" + re.sub(r"[^A-Za-z0-9]+", "_", kind).strip("_")).inc()
        return Skipped(split, path, reason)

    def encoded(self, record: Encoded) -> Encoded:
        RECORDS_ENCODED.inc()
        BYTES_ENCODED.inc(len(record.example))
        return record

    def finish_bundle(self):
        if self._counter:
            self._counter.flush()


def count_single_label(classes: list[str], counts: collections.Counter) -> dict[str, int]:
    return {name: counts.get(name, 0) for name in classes}


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and how a dataset is written; `info` describes it without its splits.

    `per_class` turns a split's added-up `Encoded.counts` into dataset.json's per_class entry.
    With `strict`, any skipped file means nothing but the report is published; a skipped file
    whose reason starts with one of `fatal_reasons` has that effect without `strict`, and so
    does (with `every_class`) a class left without training records.
    """

    output_dir: str
    staging: str
    info: DatasetInfo
    num_shards: dict[str, int]
    per_class: Callable[[list[str], collections.Counter], dict] = count_single_label
    strict: bool = False
    drop_duplicates: bool = False
    near_duplicates: bool = True  # look for near copies (near_duplicates.py)
    drop_near_duplicates: bool = False
    fatal_reasons: tuple[str, ...] = ()
    every_class: bool = False  # a class whose every training file was skipped holds the output back

    def shard_files(self, split: str) -> list[str]:
        n = self.num_shards[split]
        return [shard_name(self.info.name, split, i, n) for i in range(n)]


class WriteDataset(beam.PTransform):
    """(Encoded records, Skipped[, Notices]) → shards, label.txt, dataset.json and report.json.

    The optional third input holds warnings found by the workers; report.json lists them,
    sorted, after the launcher's. Nothing here holds the whole dataset in one place:
    duplicates are resolved per hash prefix, records are ranked per range of their sort key
    (ranking.py), and the report is written in sorted parts, merged at the end (report.py).
    There are no side inputs: Beam's Dask runner recomputes a side input's whole upstream for
    every bundle that reads it.
    """

    def __init__(self, target: Target):
        super().__init__()
        self._target = target

    def expand(self, inputs):
        target = self._target
        encoded, skipped, *found = inputs
        warnings = found[0] if found else encoded.pipeline | "NoWarnings" >> beam.Create([])
        spilled = encoded | "Spill" >> beam.ParDo(SpillExamples(runs_folder(target)))
        kept, findings = spilled | "Duplicates" >> ResolveDuplicates(target.drop_duplicates)
        if target.near_duplicates:
            kept, near, near_dropped = kept | "NearDuplicates" >> FindNearDuplicates(target.drop_near_duplicates)
        else:
            near = near_dropped = encoded.pipeline | "NearDuplicatesOff" >> beam.Create([])
        written = (
            kept
            | "Refs" >> beam.Map(lambda s: Ref(s.split, s.sort_key, s.counts, s.run, s.offset, s.length))
            | "Rank" >> ranking.RankRecords(target.num_shards)
            | "GroupShards" >> beam.CombinePerKey(beam.combiners.ToListCombineFn())
            | "WriteShard" >> beam.Map(_write_shard, target)
        )
        parts = (
            skipped | "SkippedEntries" >> beam.Map(report.skipped_entry(target.strict, target.fatal_reasons)),
            findings | "FindingEntries" >> beam.Map(report.finding_entry(target.drop_duplicates)),
            near | "NearEntries" >> beam.Map(report.finding_entry(target.drop_near_duplicates, report.NEAR_DUPLICATES)),
            warnings | "WarningEntries" >> beam.Map(report.warning_entry),
        ) | "ReportEntries" >> beam.Flatten() | "Report" >> report.WriteReportParts(target.staging)
        # One small element per shard and per report part, gathered under a single key.
        return (
            (written, parts, near_dropped)
            | "Outcomes" >> beam.Flatten()
            | "OneKey" >> beam.Map(lambda outcome: (None, outcome))
            | "Gather" >> beam.GroupByKey()
            | "Publish" >> beam.Map(lambda group: _publish(target, list(group[1])))
        )


RUNS = ".runs"  # inside the staging folder, so publishing (or a failed run's cleanup) removes it


def runs_folder(target: Target) -> str:
    return join(target.staging, RUNS)


class SpillExamples(beam.DoFn):
    """Encoded → Spilled: each bundle appends its records, already framed as in a TFRecord
    file, to its own run file.

    Runs fused with the encoding step, so image bytes are written once by the worker that made
    them and only small references go through the shuffles; no runner ever holds the image
    bytes of the whole dataset, and a shard is a concatenation of byte ranges of run files.
    A retried bundle writes a new run file; the failed attempt's is never referenced.
    """

    def __init__(self, folder: str):
        self._folder = folder
        self._file = None

    def start_bundle(self):
        self._name, self._file, self._offset = uuid.uuid4().hex, None, 0

    def process(self, e: Encoded):
        if self._file is None:
            self._file = FileSystems.create(join(self._folder, self._name))
        framed = tfrecord.frame(e.example)
        self._file.write(framed)
        yield Spilled(e.split, e.sort_key, e.counts, e.sha256, e.fingerprint, e.source, self._name, self._offset,
                      len(framed))
        self._offset += len(framed)

    def finish_bundle(self):
        self.teardown()

    def teardown(self):
        """Also runs after a failed bundle, whose run file would otherwise stay open."""
        if self._file is not None:
            self._file.close()
            self._file = None


HASH_PARTITIONS = 4096  # duplicates are resolved in groups of images whose hash starts alike


class ResolveDuplicates(beam.PTransform):
    """Spilled → (Spilled to write, duplicate Findings), from one grouping by image hash.

    Each image's copies meet in one group, so the kept copies are chosen there; no set of
    dropped files is broadcast to the workers. Groups are hash prefixes, gathered as lists by
    a combiner so each worker sends one element per prefix, not one per image.
    """

    def __init__(self, drop: bool):
        super().__init__()
        self._drop = drop

    def expand(self, spilled):
        resolved = (
            spilled
            | "ByHash" >> beam.Map(lambda s: (int(s.sha256[:3], 16) % HASH_PARTITIONS, s))
            | "GroupByHash" >> beam.CombinePerKey(beam.combiners.ToListCombineFn())
            | "Resolve" >> beam.FlatMap(_resolve, self._drop)
        )
        return tuple(by_type(resolved, "Only", Spilled, duplicates.Finding))


def _resolve(group: tuple[int, list[Spilled]], drop: bool):
    _, records = group
    by_hash = collections.defaultdict(list)
    for r in records:
        by_hash[r.sha256].append(r)
    for sha256 in sorted(by_hash):
        copies = by_hash[sha256]
        finding = duplicates.classify(sha256, [duplicates.Copy(c.split, c.source, c.counts) for c in copies])
        dropped = collections.Counter(finding.dropped if finding and drop else ())
        if finding:
            yield finding
        for c in copies:
            copy = duplicates.Copy(c.split, c.source, c.counts)
            if dropped[copy]:
                dropped[copy] -= 1
                continue
            yield c


class NearDropped(NamedTuple):
    """How many records drop_near_duplicates left out (one record may be the later copy in
    several pairs, so the findings' dropped lists over-count)."""

    count: int


class FindNearDuplicates(beam.PTransform):
    """Spilled → (Spilled to write, near_duplicates.Findings, NearDropped), by LSH banding.

    Each record is filed in its buckets (near_duplicates.bucket_keys); a bucket's records meet
    in one group, where only they are compared. A pair found in several buckets is reported
    once. With `drop`, the dropped copies are joined back to the records by (split, source),
    so no list of them is broadcast.
    """

    def __init__(self, drop: bool):
        super().__init__()
        self._drop = drop

    def expand(self, spilled):
        findings = (
            spilled
            | "FileInBuckets" >> beam.ParDo(FileInBuckets())
            | "GroupBuckets" >> beam.GroupByKey()
            | "Compare" >> beam.FlatMap(_near_pairs)
            | "OnePerPair" >> beam.CombinePerKey(min)  # the copies of a pair are equal: keep any one
            | "Classify" >> beam.Map(lambda keyed: near_duplicates.classify(keyed[1]))
        )
        if not self._drop:
            return spilled, findings, spilled.pipeline | "NothingDropped" >> beam.Create([])
        dropped = findings | "DroppedCopies" >> beam.FlatMap(
            lambda f: [(_record_id(c.split, c.path), 1) for c in f.dropped])
        records = spilled | "ById" >> beam.Map(lambda s: (_record_id(s.split, s.source), s))
        joined = {"record": records, "dropped": dropped} | "JoinDropped" >> beam.CoGroupByKey()
        kept = joined | "Kept" >> beam.FlatMap(lambda j: [] if j[1]["dropped"] else j[1]["record"])
        count = (
            joined
            | "Left" >> beam.Map(lambda j: len(j[1]["record"]) if j[1]["dropped"] else 0)
            | "CountLeft" >> beam.CombineGlobally(sum)
            | "AsNearDropped" >> beam.Map(NearDropped)
        )
        return kept, findings, count


class FileInBuckets(beam.DoFn):
    """Spilled → (bucket, [encoded member, ...]): a bundle's records gathered per bucket, sent
    once per bucket (or when BATCH entries wait). One element per record and bucket made the
    search cost a fifth of a conversion in Beam's per-element overhead alone."""

    BATCH = 100_000

    def start_bundle(self):
        self._buckets, self._waiting = collections.defaultdict(list), 0

    def process(self, s: Spilled):
        member = near_duplicates.Member(s.split, s.source, s.counts, s.sha256, s.fingerprint).encode()
        for key in near_duplicates.bucket_keys(s.fingerprint):
            self._buckets[key].append(member)
            self._waiting += 1
        if self._waiting >= self.BATCH:
            yield from self._flush()

    def finish_bundle(self):
        for bucket in self._flush():
            yield GlobalWindows.windowed_value(bucket)

    def _flush(self):
        buckets, self._buckets, self._waiting = self._buckets, collections.defaultdict(list), 0
        yield from sorted(buckets.items())


def _record_id(split: str, source: str) -> str:
    return f"{split}\0{source}"


def _near_pairs(bucket: tuple[tuple[int, int, int], Iterable[list]]):
    (band, _, _), batches = bucket
    members = [m for batch in batches for m in batch]
    if len(members) > 1:
        members = [near_duplicates.Member.decode(m) for m in members]
        for first, second in near_duplicates.pairs_in_bucket(members, band):
            pair_id = _record_id(first.split, first.path) + "\0" + _record_id(second.split, second.path)
            yield pair_id, (first, second)


def _write_shard(shard: tuple[tuple[str, int], list[Ref]], target: Target) -> ShardWritten:
    (split, index), refs = shard
    refs = sorted(refs, key=lambda r: r.sort_key)
    name = target.shard_files(split)[index]
    tfrecord.concatenate(join(target.staging, name), runs_folder(target), [(r.run, r.offset, r.length) for r in refs])
    counts = collections.Counter(key for r in refs for key in r.counts)
    RECORDS_WRITTEN.inc(len(refs))
    return ShardWritten(split, name, len(refs), dict(counts))


def _publish(target: Target, outcomes: list) -> None:
    written = [o for o in outcomes if isinstance(o, ShardWritten)]
    parts = [o for o in outcomes if isinstance(o, report.PartWritten)]
    near_dropped = sum(o.count for o in outcomes if isinstance(o, NearDropped))
    tallies = {name: collections.Counter() for name in report.LISTS}
    for part in parts:
        tallies[part.name].update(part.tally)
        tallies[part.name]["count"] += part.count
    info = _complete_info(target, written, tallies, near_dropped)
    head = {"published": not tallies[report.SKIPPED]["fatal"],
            "records": {split: s.num_records for split, s in info.splits.items()}}
    lost = [name for name, n in info.splits["train"].per_class.items() if n == 0] if target.every_class else []
    if lost:
        head["published"] = False
        head["error"] = (f"no training record for class {', '.join(lost)}: every file of it was skipped, dropped "
                         "as a duplicate or held out for validation, and a class with no training images "
                         "cannot be learned (skipped files are listed in report.json)")
    published = head["published"]
    lists = {
        name: ([json.dumps(w) for w in info.source.get("warnings", [])] if name == report.WARNINGS else [],
               sorted(p.path for p in parts if p.name == name))
        for name in tallies
    }
    if not published:
        report.write(join(target.output_dir, REPORT_JSON), head, lists)
        files.remove(target.staging)
        return
    report.write(join(target.staging, REPORT_JSON), head, lists)
    shard_files = [f for split in info.splits.values() for f in split.files]
    for name in set(shard_files) - {w.file for w in written}:
        tfrecord.write(join(target.staging, name), [])
    output.publish(
        target.output_dir,
        target.staging,
        shard_files,
        [f"{target.info.name}_{split}_{SHARD_DIGITS}-of-{SHARD_DIGITS}.tfrecord" for split in target.num_shards],
        [(LABEL_TXT, format_labels(target.info.classes)), (DATASET_JSON, info.to_json())],
    )


def _complete_info(target: Target, written: list[ShardWritten], tallies: dict, near_dropped: int) -> DatasetInfo:
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
    skipped, found, near = tallies[report.SKIPPED], tallies[report.DUPLICATES], tallies[report.NEAR_DUPLICATES]
    by_reason = {key.partition(":")[2]: n for key, n in sorted(skipped.items()) if key.startswith("reason:")}
    return dataclasses.replace(
        target.info,
        splits=splits,
        skipped={"count": skipped["count"], "by_reason": by_reason, "report": REPORT_JSON},
        duplicates={
            **{kind: found[f"kind:{kind}"] for kind in duplicates.KINDS},
            "dropped": found["dropped"],
        },
        near_duplicates={
            "checked": target.near_duplicates,
            **{kind: near[f"kind:{kind}"] for kind in duplicates.KINDS},
            "dropped": near_dropped,
        },
    )
