"""What is in a converted dataset: counts, image sizes, duplicates, near copies and broken records.

Shards are read with tf.data (records parsed in parallel, no Python loop over protos), so
thousands of records take seconds. A bad record must neither stop the reading nor lose its
position, so a split's shards are read in stages (one interleaved pipeline each) that drop
what fails (`ignore_errors`) and then name what they dropped by shard and record index:

  framing  how many records the shard holds before a bad length/CRC or a truncation. TFRecord
           readers cannot resynchronise, so the rest of the shard is lost; the bytes the
           readable records take fall short of the file size exactly when that happens.
  parse    every key of the record spec (`records.parse_spec`), as training reads them.
  decode   (verify only) the image decodes, has the size the record states and 3 channels,
           and its bytes hash to `image/key/sha256`.

The reason for a dropped record comes from running that one record again on its own: failures
are rare, so this costs nothing on a healthy dataset.
"""

from __future__ import annotations

import collections
import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from recordkit import duplicates, metadata, near_duplicates, records

_BATCH = 1024
_PARALLEL_SHARDS = 8
_FRAME_OVERHEAD = 16  # per record: length (8 bytes), its CRC (4), the data's CRC (4)
_MAX_MESSAGE = 200  # "could not parse example input" quotes the whole record otherwise

DUPLICATE_KINDS = tuple(reversed(duplicates.KINDS))  # worst first


@dataclass(frozen=True)
class Problem:
    """Something wrong with the shards. `shard` None: the split as a whole; `index` None: the
    shard as a whole (a damaged shard names the first record it lost)."""

    split: str
    shard: str | None
    index: int | None
    message: str


@dataclass
class SplitRecords:
    """The records of one split that parsed, as columns in shard and record order.

    Labels are multi-hot for both label kinds (one-hot for single-label data), so counting,
    sampling and comparing labels need no second code path.
    """

    files: list[str]
    shard: np.ndarray  # [n] position in `files`
    index: np.ndarray  # [n] record index within its shard
    height: np.ndarray
    width: np.ndarray
    sha256: list[str]
    fingerprint: list[str]  # near_duplicates' ("" in records written before it existed)
    source_id: list[str]
    multi_hot: np.ndarray  # [n, num_classes] 0/1
    difficult_only: np.ndarray  # [n, num_classes] 0/1; all 0 for single-label data
    stored: int  # records the shards hold up to any damage, parsed or not
    bytes: int
    decoded: int | None  # records whose image passed the decode checks; None without verify
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Copy:
    """One stored copy of an image. Not `duplicates.Copy`: inspect also names the shard and
    record index (where to look), and its findings have no `dropped` (nothing is dropped
    here); the kind still comes from `duplicates.kind_of`, so both judge copies alike."""

    split: str
    path: str  # image/source_id: the source file's path under the split folder
    label: tuple[str, ...]
    shard: str
    index: int


@dataclass(frozen=True)
class Finding:
    """All copies of one image (same image/key/sha256). The kind is the worst they show:
    conflicting labels (one label is wrong) > across splits (validation leaks into training)
    > within a split (the image counts twice)."""

    kind: str
    sha256: str
    copies: tuple[Copy, ...]


@dataclass(frozen=True)
class NearFinding:
    """Two records whose images are near copies (near_duplicates.py), judged as exact ones are."""

    kind: str
    hash_bits: int
    colour_rms: float
    copies: tuple[Copy, Copy]


@dataclass
class SplitReport:
    records: int
    shards: int
    bytes: int
    per_class: dict  # single-label: class → records; multi-label: class → {positive, difficult_only}
    image_sizes: dict
    decoded: int | None


@dataclass
class Report:
    directory: str
    name: str
    label_kind: str
    classes: list[str]
    verified: bool
    splits: dict[str, SplitReport]
    duplicates: list[Finding]
    near_duplicates: list[NearFinding]
    unfingerprinted: int  # records without a usable fingerprint (--no-near-duplicates, older): not searched
    problems: list[Problem]

    def to_json(self) -> dict:
        return asdict(self)


def inspect(directory: str, verify: bool = False) -> tuple[Report, dict[str, SplitRecords]]:
    """The report, and the records it was made from (the contact sheet picks from them)."""
    info = metadata.load(directory)
    contents = read(directory, info, verify)
    return summarize(directory, info, contents, verify), contents


def read(directory: str, info: metadata.DatasetInfo, verify: bool = False) -> dict[str, SplitRecords]:
    return {split: read_split(directory, info, split, verify) for split in info.splits}


def read_split(directory: str, info: metadata.DatasetInfo, split: str, verify: bool = False) -> SplitRecords:
    """One tf.data pipeline per stage over all of the split's shards (not one per shard:
    building a pipeline costs more than reading a small shard)."""
    files = info.split(split).files
    paths = info.shard_paths(directory, split)
    problems = [Problem(split, name, None, "listed in dataset.json but missing")
                for name, path in zip(files, paths) if not tf.io.gfile.exists(path)]
    missing = {p.shard for p in problems}
    sizes = [0 if name in missing else tf.io.gfile.stat(path).length for name, path in zip(files, paths)]
    stored, framed = _framing([None if name in missing else path for name, path in zip(files, paths)])
    problems += [
        Problem(split, files[k], None, f"damaged from record {stored[k]} on, {sizes[k] - framed[k]} of "
                                       f"{sizes[k]} bytes unreadable: {_error(paths[k], stored[k])}")
        for k in range(len(files)) if files[k] not in missing and framed[k] != sizes[k]
    ]
    parse = _parse_fn(info)
    columns, failed = _survivors(paths, stored, parse)
    problems += [Problem(split, files[k], i, f"does not parse: {_error(paths[k], i, parse)}") for k, i in failed]
    problems += [Problem(split, files[k], i, message) for k, i, message in _label_problems(info, columns)]
    decoded_count = None
    if verify:
        decoded, failed = _survivors(paths, stored, _decode, _hash_images)
        unparsed = set(_missing(columns, stored))
        problems += [Problem(split, files[k], i, f"image does not decode: {_error(paths[k], i, _decode)}")
                     for k, i in failed if (k, i) not in unparsed]
        bad = _image_problems(columns, decoded)
        problems += [Problem(split, files[k], i, message) for k, i, message in bad]
        decoded_count = len(decoded["index"]) - len({(k, i) for k, i, _ in bad})
    return SplitRecords(
        files=files,
        shard=columns["shard"].astype(int),
        index=columns["index"].astype(int),
        height=columns[records.HEIGHT].astype(int),
        width=columns[records.WIDTH].astype(int),
        sha256=[h.decode() for h in columns[records.SHA256]],
        fingerprint=[f.decode() for f in columns[records.FINGERPRINT]],
        source_id=[s.decode() for s in columns[records.SOURCE_ID]],
        multi_hot=columns["multi_hot"].astype(int),
        difficult_only=columns["difficult_only"].astype(int),
        stored=sum(stored),
        bytes=sum(sizes),
        decoded=decoded_count,
        problems=sorted(problems, key=lambda p: (files.index(p.shard), -1 if p.index is None else p.index)),
    )


def _shards(paths: list[str | None]) -> tf.data.Dataset:
    """(position, path) of the shards that exist."""
    present = [(k, path) for k, path in enumerate(paths) if path is not None]
    return tf.data.Dataset.from_tensor_slices(
        (tf.constant([k for k, _ in present], tf.int64), tf.constant([p for _, p in present], tf.string)))


def _framing(paths: list[str | None]) -> tuple[list[int], list[int]]:
    """Per shard (None: missing), the records readable and the bytes they take in the file."""
    lengths = _shards(paths).interleave(
        lambda shard, path: tf.data.TFRecordDataset(path).ignore_errors().map(
            lambda record: (shard, tf.cast(tf.strings.length(record), tf.int64) + _FRAME_OVERHEAD)),
        cycle_length=_PARALLEL_SHARDS, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False,
    ).batch(_BATCH * 16)
    counts, sizes = np.zeros(len(paths), np.int64), np.zeros(len(paths), np.int64)
    for shard, size in lengths.as_numpy_iterator():
        np.add.at(counts, shard, 1)
        np.add.at(sizes, shard, size)
    return counts.tolist(), sizes.tolist()


def _survivors(paths: list[str], counts: list[int], fn: Callable, per_batch: Callable = lambda batch: batch
               ) -> tuple[dict[str, np.ndarray], list[tuple[int, int]]]:
    """`fn` over the first `counts[k]` records of every shard k, in parallel: its outputs
    (plus "shard" and "index", then through `per_batch`) for the records it worked on, in shard
    and record order, and the (shard, index) of those it failed on."""
    shards = _shards([path if count else None for path, count in zip(paths, counts)])
    count_of = tf.constant(counts or [0], tf.int64)
    dataset = (
        shards.interleave(
            lambda shard, path: tf.data.TFRecordDataset(path).take(count_of[shard]).enumerate().map(
                lambda index, record: (shard, index, record)),
            cycle_length=_PARALLEL_SHARDS, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
        )
        .map(lambda shard, index, record: {"shard": shard, "index": index, **fn(record)},
             num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors().batch(_BATCH).prefetch(tf.data.AUTOTUNE)
    )
    empty = {key: np.zeros([0, *spec.shape[1:]], spec.dtype.as_numpy_dtype) for key, spec in dataset.element_spec.items()}
    batches = [per_batch(batch) for batch in dataset.as_numpy_iterator()] or [per_batch(empty)]
    columns = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
    order = np.lexsort((columns["index"], columns["shard"]))
    columns = {key: value[order] for key, value in columns.items()}
    return columns, _missing(columns, counts)


def _missing(columns: dict[str, np.ndarray], counts: list[int]) -> list[tuple[int, int]]:
    present = set(zip(columns["shard"].tolist(), columns["index"].tolist()))
    return [(k, i) for k, count in enumerate(counts) for i in range(count) if (k, i) not in present]


def _error(path: str, index: int, fn: Callable | None = None) -> str:
    """Why record `index` of a shard fails: read it again alone, eagerly."""
    try:
        for record in tf.data.TFRecordDataset(path).skip(index).take(1):
            if fn is not None:
                fn(record)
    except tf.errors.OpError as e:
        return _clean(e.message)
    return "failed in the parallel reader but not when read again"


def _clean(message: str) -> str:
    """TensorFlow's message without the op and function names around it."""
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", message.strip().splitlines()[0])
    text = re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).replace("' failed with ", ": ").strip()
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _parse_fn(info: metadata.DatasetInfo) -> Callable:
    """Parses every key of the spec (so a record missing one fails), keeps what inspect uses."""
    description = records.parse_spec(records.spec_for(info.label_kind), info.num_classes)
    single = info.label_kind == "single"

    def parse(record):
        features = tf.io.parse_single_example(record, description)
        kept = {key: features[key]
                for key in (records.HEIGHT, records.WIDTH, records.SHA256, records.FINGERPRINT, records.SOURCE_ID)}
        if single:
            kept.update({
                records.LABEL: features[records.LABEL],
                records.TEXT: features[records.TEXT],
                # An out-of-range label becomes all zeros: counted nowhere, reported as a problem.
                "multi_hot": tf.one_hot(features[records.LABEL], info.num_classes, dtype=tf.int64),
                "difficult_only": tf.zeros([info.num_classes], tf.int64),
            })
        else:
            kept.update(multi_hot=features[records.MULTI_HOT], difficult_only=features[records.DIFFICULT_ONLY])
        return kept

    return parse


def _decode(record):
    encoded = tf.io.parse_single_example(record, {records.ENCODED: tf.io.FixedLenFeature([], tf.string)})[records.ENCODED]
    return {"encoded": encoded, "shape": tf.shape(tf.io.decode_jpeg(encoded, channels=0))}


def _hash_images(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The image bytes replaced by their sha256 as each batch arrives, so verifying holds one
    batch of images in memory, not the dataset (TensorFlow has no sha256 op)."""
    encoded = batch.pop("encoded")
    return {**batch, "sha256": np.array([hashlib.sha256(e).hexdigest() for e in encoded], dtype=object)}


def _label_problems(info: metadata.DatasetInfo, columns: dict[str, np.ndarray]) -> list[tuple[int, int, str]]:
    """(shard, index, message) for labels that are out of range or disagree with their text."""
    where = zip(columns["shard"].tolist(), columns["index"].tolist())
    if info.label_kind != "single":
        return [(k, i, "image/class/multi_hot or difficult_only holds values other than 0 and 1")
                for (k, i), hot, difficult in zip(where, columns["multi_hot"], columns["difficult_only"])
                if not set(hot.tolist()) | set(difficult.tolist()) <= {0, 1}]
    found = []
    for (k, i), label, text in zip(where, columns[records.LABEL].tolist(), columns[records.TEXT]):
        if not 0 <= label < info.num_classes:
            found.append((k, i, f"label {label} out of range: there are {info.num_classes} classes"))
        elif text.decode() != info.classes[label]:
            found.append((k, i, f"label {label} is {info.classes[label]!r} but image/class/text "
                                f"says {text.decode()!r}"))
    return found


def _image_problems(columns: dict[str, np.ndarray], decoded: dict[str, np.ndarray]) -> list[tuple[int, int, str]]:
    """Decoded images against what their records say (records that failed to parse are skipped)."""
    row_of = {where: row for row, where in enumerate(zip(columns["shard"].tolist(), columns["index"].tolist()))}
    found = []
    for k, i, digest, (height, width, channels) in zip(
        decoded["shard"].tolist(), decoded["index"].tolist(), decoded["sha256"], decoded["shape"].tolist()
    ):
        row = row_of.get((k, i))
        if row is None:
            continue
        stated = (int(columns[records.HEIGHT][row]), int(columns[records.WIDTH][row]))
        if (height, width) != stated:
            found.append((k, i, f"image is {width}x{height} but the record says {stated[1]}x{stated[0]}"))
        if channels != 3:
            found.append((k, i, f"image has {channels} channel(s), expected RGB"))
        if digest != columns[records.SHA256][row].decode():
            found.append((k, i, "image/key/sha256 is not the sha256 of image/encoded"))
    return found


def summarize(directory: str, info: metadata.DatasetInfo, contents: dict[str, SplitRecords],
              verified: bool = False) -> Report:
    splits = {split: _split_report(info, split_records) for split, split_records in contents.items()}
    near, unfingerprinted = find_near_duplicates(info, contents)
    return Report(
        directory=directory,
        name=info.name,
        label_kind=info.label_kind,
        classes=list(info.classes),
        verified=verified,
        splits=splits,
        duplicates=find_duplicates(info, contents),
        near_duplicates=near,
        unfingerprinted=unfingerprinted,
        problems=[p for split, split_records in contents.items()
                  for p in [*_count_problems(info, split, split_records, splits[split]), *split_records.problems]],
    )


def _split_report(info: metadata.DatasetInfo, split_records: SplitRecords) -> SplitReport:
    return SplitReport(
        records=len(split_records.index),
        shards=len(split_records.files),
        bytes=split_records.bytes,
        per_class=per_class(info, split_records),
        image_sizes=image_sizes(split_records.width, split_records.height),
        decoded=split_records.decoded,
    )


def per_class(info: metadata.DatasetInfo, split_records: SplitRecords) -> dict:
    """In dataset.json's terms: single-label {class: records}; multi-label (the VOC converter's)
    {class: {"positive": records, "difficult_only": records}}."""
    positive = split_records.multi_hot.sum(axis=0).tolist()
    if info.label_kind == "single":
        return dict(zip(info.classes, positive))
    difficult = split_records.difficult_only.sum(axis=0).tolist()
    return {c: {"positive": p, "difficult_only": d} for c, p, d in zip(info.classes, positive, difficult)}


def image_sizes(width: np.ndarray, height: np.ndarray, most_common: int = 5) -> dict:
    """min / median / max of width and height, and the distinct WxH sizes (most common first)."""
    if len(width) == 0:
        return {"distinct": 0, "most_common": []}

    def spread(values: np.ndarray) -> dict:
        return {"min": int(values.min()), "median": float(np.median(values)), "max": int(values.max())}

    counts = collections.Counter(zip(width.tolist(), height.tolist()))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:most_common]
    return {
        "width": spread(width),
        "height": spread(height),
        "distinct": len(counts),
        "most_common": [{"size": f"{w}x{h}", "records": n} for (w, h), n in ranked],
    }


def _count_problems(info: metadata.DatasetInfo, split: str, split_records: SplitRecords,
                    report: SplitReport) -> list[Problem]:
    """The shards against dataset.json. Per-class counts are compared only when the total agrees:
    otherwise the damaged shard or record is already named and the per-class lines are noise."""
    expected = info.split(split)
    found = []
    if expected.num_shards != len(expected.files):
        found.append(f"dataset.json says {expected.num_shards} shards but lists {len(expected.files)} files")
    if split_records.stored != expected.num_records:
        found.append(f"dataset.json says {expected.num_records} records, the shards hold {split_records.stored}")
    elif report.records == expected.num_records:
        found += [f"class {name}: dataset.json says {expected.per_class.get(name)}, the shards hold {counted}"
                  for name, counted in report.per_class.items() if expected.per_class.get(name) != counted]
    return [Problem(split, None, None, message) for message in found]


def label_names(info: metadata.DatasetInfo, multi_hot: np.ndarray) -> tuple[str, ...]:
    return tuple(info.classes[c] for c in np.flatnonzero(multi_hot))


def _copies(info: metadata.DatasetInfo, contents: dict[str, SplitRecords]) -> Iterator[tuple[Copy, str, str]]:
    """(copy, sha256, fingerprint) of every record."""
    for split, split_records in contents.items():
        for row, digest in enumerate(split_records.sha256):
            copy = Copy(
                split=split,
                path=split_records.source_id[row],
                label=label_names(info, split_records.multi_hot[row]),
                shard=split_records.files[split_records.shard[row]],
                index=int(split_records.index[row]),
            )
            yield copy, digest, split_records.fingerprint[row]


def find_duplicates(info: metadata.DatasetInfo, contents: dict[str, SplitRecords]) -> list[Finding]:
    """One finding per image stored more than once, worst kind first, then by first copy."""
    split_order = {split: i for i, split in enumerate(contents)}
    copies = collections.defaultdict(list)
    for copy, digest, _ in _copies(info, contents):
        copies[digest].append(copy)
    findings = []
    for digest, group in copies.items():
        if len(group) > 1:
            group = sorted(group, key=lambda c: (split_order[c.split], c.path, c.shard, c.index))
            findings.append(Finding(duplicates.kind_of(group), digest, tuple(group)))
    return sorted(findings, key=lambda f: (DUPLICATE_KINDS.index(f.kind), split_order[f.copies[0].split],
                                           f.copies[0].path))


def find_near_duplicates(info: metadata.DatasetInfo, contents: dict[str, SplitRecords]
                         ) -> tuple[list[NearFinding], int]:
    """Near pairs by the conversion's rules (near_duplicates.find_pairs), worst kind first, and
    how many records had no usable fingerprint to search by."""
    where = {}
    members = []
    unfingerprinted = 0
    for copy, digest, fingerprint in _copies(info, contents):
        if not near_duplicates.usable(fingerprint):
            unfingerprinted += 1
            continue
        member = near_duplicates.Member(copy.split, copy.path, copy.label, digest, fingerprint)
        where[member] = copy
        members.append(member)
    findings = []
    for pair in near_duplicates.find_pairs(members):
        finding = near_duplicates.classify(pair)
        first, second = (where[m] for m in sorted(pair, key=near_duplicates.keep_order))
        findings.append(NearFinding(finding.kind, finding.bits, round(finding.colour, 2), (first, second)))
    return sorted(findings, key=lambda f: DUPLICATE_KINDS.index(f.kind)), unfingerprinted
