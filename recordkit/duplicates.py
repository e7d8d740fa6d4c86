"""Duplicate images found at conversion time, by content hash of the encoded image.

Three findings matter for training: the same image twice in a split (it counts double), in
both train and validation (validation scores leak), and under different labels (one of them
is wrong). With drop_duplicates one copy is kept by a fixed rule: the first by path, a train
copy before a validation copy; an image under conflicting labels is dropped everywhere.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

WITHIN_SPLIT = "within_split"
ACROSS_SPLITS = "across_splits"
CONFLICTING_LABELS = "conflicting_labels"
KINDS = (WITHIN_SPLIT, ACROSS_SPLITS, CONFLICTING_LABELS)  # mildest first
DESCRIPTIONS = {
    WITHIN_SPLIT: "same image twice in a split",
    ACROSS_SPLITS: "same image in more than one split (validation leaks into training)",
    CONFLICTING_LABELS: "same image under different labels",
}


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
        return {
            "kind": self.kind,
            "sha256": self.sha256,
            "copies": [copy_json(c) for c in self.copies],
            "dropped": [copy_json(c) for c in self.dropped] if dropped else [],
        }


def kind_of(copies: Iterable) -> str:
    """The worst thing several copies (anything with .split and .label) of one image show."""
    copies = list(copies)
    if len({c.label for c in copies}) > 1:
        return CONFLICTING_LABELS
    return ACROSS_SPLITS if len({c.split for c in copies}) > 1 else WITHIN_SPLIT


def keep_order(c: Copy) -> tuple:
    """The order copies are kept in: train first, then by path."""
    return c.split != "train", c.path, c.split


def copy_json(c: Copy) -> dict:
    return {"split": c.split, "path": c.path, "label": list(c.label)}


def classify(sha256: str, copies: Iterable[Copy]) -> Finding | None:
    """The finding for all copies of one image, or None when there is only one copy."""
    copies = tuple(sorted(copies, key=keep_order))
    if len(copies) < 2:
        return None
    kind = kind_of(copies)
    return Finding(kind, sha256, copies, copies if kind == CONFLICTING_LABELS else copies[1:])
