"""A picture of a dataset: one row per class with its first images, the class name beside them.

People spot a mislabelled folder, wrong colours or rotated images faster by looking than by
reading counts. The samples are the first N records of each class in split, shard and record
order (multi-label: records where the class is a positive), so a dataset always gives the same
picture.
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont, ImageOps

from recordkit import metadata, records
from recordkit.inspect import SplitRecords

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
EMPTY_CELL = (235, 235, 235)
PAD = 6
FONT_SIZE = 14

Sample = tuple[str, int, int]  # (split, shard position, record index)


def pick(contents: dict[str, SplitRecords], num_classes: int, per_class: int) -> list[list[Sample]]:
    """For each class, its first `per_class` records in split, shard and record order."""
    picked: list[list[Sample]] = [[] for _ in range(num_classes)]
    for split, split_records in contents.items():
        order = np.lexsort((split_records.index, split_records.shard))
        for c in range(num_classes):
            rows = [r for r in order if split_records.multi_hot[r, c]][: per_class - len(picked[c])]
            picked[c] += [(split, int(split_records.shard[r]), int(split_records.index[r])) for r in rows]
    return picked


def load_images(directory: str, info: metadata.DatasetInfo, samples: list[Sample]) -> dict[Sample, bytes]:
    """The encoded images of the samples, reading each shard only as far as its last sample."""
    found = {}
    for split, shard in sorted({(s[0], s[1]) for s in samples}):
        wanted = sorted(s[2] for s in samples if s[:2] == (split, shard))
        path = info.shard_paths(directory, split)[shard]
        dataset = (
            tf.data.TFRecordDataset(path).take(wanted[-1] + 1).enumerate()
            .filter(lambda index, _: tf.reduce_any(tf.equal(index, wanted)))
            .map(lambda index, record: (index, tf.io.parse_single_example(
                record, {records.ENCODED: tf.io.FixedLenFeature([], tf.string)})[records.ENCODED]))
        )
        found.update({(split, shard, int(index)): encoded.numpy() for index, encoded in dataset})
    return found


def render(title: str, rows: list[tuple[str, list[bytes]]], columns: int, thumb: int = 96) -> Image.Image:
    """Rows of (label, encoded images) as one RGB picture; thumbnails keep their aspect ratio."""
    font = ImageFont.load_default(size=FONT_SIZE)
    label_width = int(max([font.getlength(label) for label, _ in rows] + [0])) + 2 * PAD
    title_height = FONT_SIZE + 2 * PAD
    cell = thumb + PAD
    width = max(label_width + columns * cell + PAD, int(font.getlength(title)) + 2 * PAD)
    sheet = Image.new("RGB", (width, title_height + len(rows) * cell + PAD), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, PAD), title, fill=INK, font=font)
    for r, (label, images) in enumerate(rows):
        top = title_height + r * cell
        draw.text((PAD, top + thumb // 2), label, fill=INK, font=font, anchor="lm")
        for c in range(columns):
            left = label_width + c * cell
            if c >= len(images):
                draw.rectangle((left, top, left + thumb - 1, top + thumb - 1), fill=EMPTY_CELL)
                continue
            image = ImageOps.contain(Image.open(io.BytesIO(images[c])).convert("RGB"), (thumb, thumb))
            sheet.paste(image, (left + (thumb - image.width) // 2, top + (thumb - image.height) // 2))
    return sheet


def make(directory: str, info: metadata.DatasetInfo, contents: dict[str, SplitRecords],
         per_class: int = 8, thumb: int = 96) -> Image.Image:
    picked = pick(contents, info.num_classes, per_class)
    images = load_images(directory, info, [s for samples in picked for s in samples])
    rows = [(name, [images[s] for s in samples if s in images]) for name, samples in zip(info.classes, picked)]
    return render(f"{info.name}: the first {per_class} images of each class", rows, per_class, thumb)
