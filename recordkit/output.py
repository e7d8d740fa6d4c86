"""Writing a converted dataset so that it appears all at once or not at all.

Shards are written into a hidden staging folder inside the output folder (same filesystem, so
the final move is a rename). Publishing removes the old set's dataset.json first and writes the
new one last: dataset.json present means the set beside it is complete, and label.txt only
appears once every shard is in place. A crash before publishing leaves the previous set as it
was; the next run clears the leftover staging folder.
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Iterable

import tensorflow as tf

from recordkit.metadata import join

STAGING_PREFIX = ".recordkit-staging-"
RUN_ID_LENGTH = 12


def new_staging_dir(output_dir: str, dataset_name: str) -> str:
    """A fresh folder name per run, so a retried or concurrent run never mixes shards."""
    return join(output_dir, f"{STAGING_PREFIX}{dataset_name}-{uuid.uuid4().hex[:RUN_ID_LENGTH]}")


def remove_stale_staging(output_dir: str, dataset_name: str) -> list[str]:
    """Remove staging folders an interrupted run of the same dataset left behind."""
    run_id = "[0-9a-f]" * RUN_ID_LENGTH  # so dataset "a" never matches dataset "a-b"'s folders
    stale = tf.io.gfile.glob(join(output_dir, f"{STAGING_PREFIX}{dataset_name}-{run_id}"))
    for path in stale:
        remove_tree(path)
    return stale


def write_records(path: str, records: Iterable[bytes]) -> int:
    count = 0
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
            count += 1
    return count


def write_text(path: str, text: str) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def publish(
    output_dir: str,
    staging: str,
    shard_files: list[str],
    old_shard_patterns: list[str],
    texts: list[tuple[str, str]],
) -> None:
    """Move staged shards, then `texts` (name, content) in order, into output_dir.

    The caller puts the completion marker (dataset.json) last in `texts`; old copies are
    removed in the reverse order, marker first. Safe to run again after a failure part-way
    (a runner retrying the step): files already moved are left in place, not deleted.
    """
    for name, text in texts:
        write_text(join(staging, name), text)
    for name, _ in reversed(texts):
        _remove(join(output_dir, name))
    new = set(shard_files)
    for pattern in old_shard_patterns:
        for path in tf.io.gfile.glob(join(output_dir, pattern)):
            if posixpath.basename(path.replace("\\", "/")) not in new:
                _remove(path)
    for name in shard_files + [name for name, _ in texts]:
        source, target = join(staging, name), join(output_dir, name)
        if tf.io.gfile.exists(source) or not tf.io.gfile.exists(target):
            tf.io.gfile.rename(source, target, overwrite=True)
    remove_tree(staging)


def remove_tree(path: str) -> None:
    if tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def _remove(path: str) -> None:
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)
