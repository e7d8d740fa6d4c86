"""report.json, written by the workers in sorted parts and merged line by line.

Bad files, duplicate findings and warnings can be millions at scale: each list's entries are
spread over PARTS_PER_LIST groups, each sorted and written by a worker; the publishing step
gets only the parts' names and counts and merges the sorted parts (one line held per part).
"""

from __future__ import annotations

import collections
import heapq
import io
import itertools
import json
import zlib
from typing import Any, Callable, Iterator, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from recordkit import duplicates
from recordkit.metadata import join

REPORT_PARTS = ".report"  # inside the staging folder, so publishing (or a failed run's cleanup) removes it
SKIPPED, DUPLICATES, NEAR_DUPLICATES, WARNINGS = "skipped", "duplicates", "near_duplicates", "warnings"
LISTS = (SKIPPED, DUPLICATES, NEAR_DUPLICATES, WARNINGS)
PARTS_PER_LIST = 16


class ReportEntry(NamedTuple):
    """One item of a report list: which list, where it sorts, its JSON, what it adds to the counts."""

    name: str
    order: str
    json: str
    tally: tuple[str, ...]


class PartWritten(NamedTuple):
    name: str  # which list of report.json
    path: str  # a file of "order\tjson" lines, sorted
    count: int
    tally: dict[str, int]


def skipped_entry(strict: bool, fatal_reasons: tuple[str, ...]) -> Callable:
    """For Skipped values: sorted by (split, path, reason), counted by reason and fatality."""

    def entry(s) -> ReportEntry:
        fatal = strict or s.reason.startswith(fatal_reasons)
        tally = (f"reason:{s.reason.split(':')[0]}",) + (("fatal",) if fatal else ())
        return ReportEntry(SKIPPED, json.dumps([s.split, s.path, s.reason]), json.dumps(s._asdict(), sort_keys=True), tally)

    return entry


def finding_entry(dropped: bool, name: str = DUPLICATES) -> Callable[[Any], ReportEntry]:
    """For duplicate Findings (exact, or near_duplicates' for the `near_duplicates` list):
    mildest kind first; `dropped` says whether copies were left out."""

    def entry(f) -> ReportEntry:
        data = f.as_json(dropped)
        tally = (f"kind:{f.kind}",) + ("dropped",) * len(data["dropped"])
        order = json.dumps([duplicates.KINDS.index(f.kind), f.copies])
        return ReportEntry(name, order, json.dumps(data, sort_keys=True), tally)

    return entry


def warning_entry(notice) -> ReportEntry:
    """For Notices (anything with .text)."""
    return ReportEntry(WARNINGS, json.dumps(notice.text), json.dumps(notice.text), ())


class WriteReportParts(beam.PTransform):
    """ReportEntries → PartWritten: each list's entries are spread over PARTS_PER_LIST groups,
    each sorted and written by a worker, so no list of bad files or findings is ever held in
    one place; `write` merges the sorted parts into report.json line by line."""

    def __init__(self, staging: str):
        super().__init__()
        self._folder = join(staging, REPORT_PARTS)

    def expand(self, entries):
        return (
            entries
            | "ByPart" >> beam.Map(lambda e: ((e.name, zlib.crc32(e.json.encode()) % PARTS_PER_LIST), e))
            | "GroupParts" >> beam.CombinePerKey(beam.combiners.ToListCombineFn())
            | "WritePart" >> beam.Map(_write_part, self._folder)
        )


def _write_part(part: tuple[tuple[str, int], list[ReportEntry]], folder: str) -> PartWritten:
    (name, index), entries = part
    entries = sorted(entries)
    path = join(folder, f"{name}-{index:05d}")
    with FileSystems.create(path) as f:
        for e in entries:
            f.write(f"{e.order}\t{e.json}\n".encode("utf-8"))  # json.dumps never emits a raw tab
    tally = collections.Counter(key for e in entries for key in e.tally)
    return PartWritten(name, path, len(entries), dict(tally))


def merged_lines(paths: list[str]) -> Iterator[str]:
    """The JSON of every entry in the sorted parts, in global order, one line held per part."""

    def lines(path: str) -> Iterator[str]:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            for line in io.TextIOWrapper(f, encoding="utf-8"):
                yield line.rstrip("\n")

    for line in heapq.merge(*(lines(p) for p in paths)):
        yield line.partition("\t")[2]


def write(path: str, head: dict, lists: dict[str, tuple[list[str], list[str]]]) -> None:
    """report.json: `head`'s values, and each list as its leading JSON items then its parts'."""
    keys = sorted({**head, **lists})
    with FileSystems.create(path) as f:
        f.write(b"{\n")
        for i, key in enumerate(keys):
            f.write(f"  {json.dumps(key)}: ".encode())
            if key in head:
                f.write(json.dumps(head[key], sort_keys=True).encode())
            else:
                leading, parts = lists[key]
                items = itertools.chain(leading, merged_lines(parts))
                first = next(items, None)
                if first is None:
                    f.write(b"[]")
                else:
                    f.write(f"[\n    {first}".encode())
                    for item in items:
                        f.write(f",\n    {item}".encode())
                    f.write(b"\n  ]")
            f.write(b",\n" if i < len(keys) - 1 else b"\n")
        f.write(b"}\n")
