"""Duplicate images found at conversion time, by content hash of the encoded image.

Three findings matter for training: the same image twice in a split (it counts double), in
both train and validation (validation scores leak), and under different labels (one of them
is wrong). With drop_duplicates one copy is kept by a fixed rule: the first by path, a train
copy before a validation copy; an image under conflicting labels is dropped everywhere.
"""

from __future__ import annotations

import collections
from typing import Iterable, NamedTuple

import apache_beam as beam

WITHIN_SPLIT = "within_split"
ACROSS_SPLITS = "across_splits"
CONFLICTING_LABELS = "conflicting_labels"
KINDS = (WITHIN_SPLIT, ACROSS_SPLITS, CONFLICTING_LABELS)


class Copy(NamedTuple):
    split: str
    path: str
    label: tuple[str, ...]


class Finding(NamedTuple):
    kind: str
    sha256: str
    copies: tuple[Copy, ...]
    dropped: tuple[Copy, ...]  # what drop_duplicates removes

    def as_json(self, dropped: bool) -> dict:
        """`dropped`: whether the conversion dropped copies, or only reports them."""

        def copy(c: Copy) -> dict:
            return {"split": c.split, "path": c.path, "label": list(c.label)}

        return {
            "kind": self.kind,
            "sha256": self.sha256,
            "copies": [copy(c) for c in self.copies],
            "dropped": [copy(c) for c in self.dropped] if dropped else [],
        }


def classify(sha256: str, copies: Iterable[Copy]) -> Finding | None:
    """The finding for all copies of one image, or None when there is only one copy."""
    copies = tuple(sorted(copies, key=lambda c: (c.split != "train", c.path, c.split)))
    if len(copies) < 2:
        return None
    if len({c.label for c in copies}) > 1:
        return Finding(CONFLICTING_LABELS, sha256, copies, copies)
    kind = ACROSS_SPLITS if len({c.split for c in copies}) > 1 else WITHIN_SPLIT
    return Finding(kind, sha256, copies, copies[1:])


def summarize(findings: list[Finding], dropped: bool) -> dict:
    """Counts per kind for dataset.json and the summary."""
    kinds = collections.Counter(f.kind for f in findings)
    return {
        **{kind: kinds.get(kind, 0) for kind in KINDS},
        "dropped": sum(len(f.dropped) for f in findings) if dropped else 0,
    }


class FindDuplicates(beam.PTransform):
    """Encoded records → Finding per image that occurs more than once."""

    def expand(self, encoded):
        return (
            encoded
            | "ByHash" >> beam.Map(lambda e: (e.sha256, Copy(e.split, e.source, e.counts)))
            | "GroupByHash" >> beam.GroupByKey()
            | "Classify" >> beam.FlatMap(lambda group: filter(None, [classify(*group)]))
        )


class DropDuplicates(beam.PTransform):
    """Encoded records minus the copies the findings drop."""

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
