"""Small learnable datasets written straight to shards + dataset.json (no converter needed).

Single-label: each class is a colour (plus noise), so a classifier can learn it in a few
steps. Multi-label: each class is a colour; an image shows a random subset as a grid of cells, and some present classes are marked difficult-only (the loss must ignore them).
"""

from __future__ import annotations

import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from recordkit import metadata, near_duplicates, records

COLOURS = [(230, 30, 30), (30, 200, 30), (30, 30, 230), (230, 230, 30), (30, 230, 230)]


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _single_image(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, 20, (size, size, 3))
    return np.clip(np.array(COLOURS[label]) + noise, 0, 255).astype(np.uint8)


def _multi_image(present: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """An 8x8 grid of cells coloured with the present classes in turn, so any crop of at
    least a quarter of the image still shows every present class (augmentation-proof)."""
    colours = np.array(COLOURS)[np.flatnonzero(present)]
    cells = np.arange(64).reshape(8, 8)
    grid = colours[(cells + cells.T) % len(colours)]
    pixels = np.kron(grid, np.ones((size // 8, size // 8, 1))) + rng.normal(0, 20, (size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _image_values(name: str, encoded: bytes, size: int) -> dict:
    fingerprint = near_duplicates.fingerprint(Image.open(io.BytesIO(encoded)))
    return records.image_values(encoded, size, size, f"{name}.jpg", name, fingerprint)


def _record(label_kind: str, classes: list[str], index: int, size: int, rng) -> tuple[bytes, list[str]]:
    name = f"img{index:05d}"
    if label_kind == "single":
        label = index % len(classes)
        values = _image_values(name, _jpeg(_single_image(label, size, rng)), size)
        values.update({records.LABEL: label, records.TEXT: classes[label]})
        return records.serialize(records.CLASSIFICATION_FEATURES, values), [classes[label]]
    present = rng.random(len(classes)) < 0.5
    present[index % len(classes)] = True
    difficult = present & (rng.random(len(classes)) < 0.15)
    values = _image_values(name, _jpeg(_multi_image(present, size, rng)), size)
    objects = np.flatnonzero(present)
    values.update({
        records.MULTI_HOT: (present & ~difficult).astype(int), records.DIFFICULT_ONLY: difficult.astype(int),
        records.BBOX_XMIN: [0.0] * len(objects), records.BBOX_XMAX: [0.5] * len(objects),
        records.BBOX_YMIN: [0.0] * len(objects), records.BBOX_YMAX: [0.5] * len(objects),
        records.OBJECT_LABEL: objects.tolist(), records.OBJECT_TEXT: [classes[c] for c in objects],
        records.OBJECT_DIFFICULT: difficult[objects].astype(int).tolist(),
        records.OBJECT_TRUNCATED: [0] * len(objects), records.OBJECT_VIEW: ["Unspecified"] * len(objects),
    })
    return records.serialize(records.MULTI_LABEL_FEATURES, values), [classes[c] for c in objects]


def write_dataset(directory: str, label_kind: str = "single", num_classes: int = 3,
                  sizes: dict[str, int] | None = None, image_size: int = 48, num_shards: int = 2,
                  name: str = "toy", seed: int = 0) -> metadata.DatasetInfo:
    """Write `{name}_{split}_{i:05d}-of-{n:05d}.tfrecord` shards, label.txt and dataset.json."""
    os.makedirs(directory, exist_ok=True)
    sizes = sizes or {"train": 24, "validation": 12}
    classes = [f"class{c}" for c in range(num_classes)]
    rng = np.random.default_rng(seed)
    splits = {}
    for split, count in sizes.items():
        files = [metadata.shard_name(name, split, i, num_shards) for i in range(num_shards)]
        writers = [tf.io.TFRecordWriter(os.path.join(directory, f)) for f in files]
        per_class = {c: 0 for c in classes}
        for index in range(count):
            record, names = _record(label_kind, classes, index, image_size, rng)
            writers[index % num_shards].write(record)
            for n in names:
                per_class[n] += 1
        for writer in writers:
            writer.close()
        splits[split] = metadata.SplitInfo(count, num_shards, files, per_class)
    spec = records.spec_for(label_kind)
    info = metadata.DatasetInfo(
        name=name, label_kind=label_kind, classes=classes, splits=splits,
        features=records.describe(spec), image={"format": "JPEG"}, seed=seed,
    )
    with open(os.path.join(directory, metadata.LABEL_TXT), "w") as f:
        f.write(metadata.format_labels(classes))
    with open(os.path.join(directory, metadata.DATASET_JSON), "w") as f:
        f.write(info.to_json())
    return info


def write_both_label_kinds(tmp_path_factory, prefix: str, sizes: dict[str, int]) -> dict[str, str]:
    """A learnable 4-class dataset of each label kind, in temporary folders `{prefix}{kind}`:
    {"single": folder, "multi": folder}."""
    dirs = {}
    for kind in ("single", "multi"):
        dirs[kind] = str(tmp_path_factory.mktemp(f"{prefix}{kind}"))
        write_dataset(dirs[kind], kind, num_classes=4, sizes=sizes)
    return dirs
