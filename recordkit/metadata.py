"""dataset.json and label.txt: what a converted dataset says about itself.

dataset.json replaces the hand-written TF-Slim dataset file: training, eval and inspect read
split sizes, classes, label kind and the feature spec from it, so nobody retypes them.
It is written last, so its presence marks a complete output set.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import asdict, dataclass, field
from typing import Any

from recordkit import __version__
from recordkit.errors import RecordkitError

DATASET_JSON = "dataset.json"
LABEL_TXT = "label.txt"
REPORT_JSON = "report.json"


def shard_name(dataset_name: str, split: str, index: int, num_shards: int) -> str:
    return f"{dataset_name}_{split}_{index:05d}-of-{num_shards:05d}.tfrecord"


def join(directory: str, name: str) -> str:
    """Join for local paths and URLs alike (gs://bucket/dir + name)."""
    return posixpath.join(directory, name) if "://" in directory else os.path.join(directory, name)


@dataclass
class SplitInfo:
    num_records: int
    num_shards: int
    files: list[str]
    per_class: dict[str, Any]
    source: str = ""


@dataclass
class DatasetInfo:
    name: str
    label_kind: str
    classes: list[str]
    splits: dict[str, SplitInfo]
    features: dict[str, dict[str, str]]
    image: dict[str, Any]
    seed: int
    skipped: dict[str, Any] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    near_duplicates: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    recordkit_version: str = __version__

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> str:
        data = asdict(self)
        data["num_classes"] = self.num_classes
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "DatasetInfo":
        data = json.loads(text)
        data.pop("num_classes", None)
        data["splits"] = {k: SplitInfo(**v) for k, v in data["splits"].items()}
        return cls(**data)

    def split(self, name: str) -> SplitInfo:
        """A split by our name (`train`) or the source's (VOC's `trainval`, via source.splits)."""
        ours = {source: split for split, source in self.source.get("splits", {}).items()}
        if name not in self.splits and name not in ours:
            known = sorted(self.splits) + sorted(set(ours) - set(self.splits))
            raise KeyError(f"dataset {self.name!r} has no split {name!r}; it has {known}")
        return self.splits[name if name in self.splits else ours[name]]

    def shard_paths(self, directory: str, split: str) -> list[str]:
        return [join(directory, f) for f in self.split(split).files]


def load(directory: str) -> DatasetInfo:
    """Read dataset.json from a converted dataset directory (local or gs://); a missing one is
    the user's mistake (wrong folder, unfinished conversion), so it is a RecordkitError."""
    from recordkit import files

    path = join(directory, DATASET_JSON)
    if not files.exists(path):
        raise RecordkitError(
            f"{path} not found: is {directory!r} the output of `recordkit convert` "
            "(and did the conversion finish)?"
        )
    return DatasetInfo.from_json(files.read_text(path))


def format_labels(classes: list[str]) -> str:
    return "".join(f"{name}\n" for name in classes)


def parse_labels(text: str) -> list[str]:
    """label.txt: one name per line, line i is label i; also reads TF-Slim's `i:name` lines."""
    names = []
    for i, line in enumerate(line for line in text.splitlines() if line.strip()):
        index, sep, name = line.partition(":")
        if sep and index.strip().isdigit():
            if int(index) != i:
                raise ValueError(f"label file line {i + 1} has index {index}, expected {i}")
            line = name
        names.append(line.strip())
    return names
