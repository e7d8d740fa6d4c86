"""Writing a converted dataset so that it appears all at once or not at all.

Shards are written into a hidden staging folder inside the output folder (same filesystem, so
the final move is a rename). Publishing removes the old set's dataset.json first and writes the
new one last: dataset.json present means the set beside it is complete, and label.txt only
appears once every shard is in place. A crash before publishing leaves the previous set as it
was; the next run clears the leftover staging folder.
"""

from __future__ import annotations

import glob
import posixpath
import uuid

from recordkit import files
from recordkit.metadata import REPORT_JSON, join

STAGING_PREFIX = ".recordkit-staging-"
RUN_ID_LENGTH = 12


def new_staging_dir(output_dir: str, dataset_name: str) -> str:
    """A fresh folder name per run, so a retried or concurrent run never mixes shards."""
    return join(output_dir, f"{STAGING_PREFIX}{dataset_name}-{uuid.uuid4().hex[:RUN_ID_LENGTH]}")


def remove_stale_staging(output_dir: str, dataset_name: str) -> list[str]:
    """Remove staging folders an interrupted run of the same dataset left behind."""
    run_id = "[0-9a-f]" * RUN_ID_LENGTH  # so dataset "a" never matches dataset "a-b"'s folders
    pattern = join(output_dir, f"{STAGING_PREFIX}{dataset_name}-{run_id}")
    # Beam's FileSystems match files only: a staging folder is found through what it holds.
    depth = pattern.count("/") + 1
    stale = {"/".join(path.replace("\\", "/").split("/")[:depth]) for path in files.glob(join(pattern, "**"))}
    if not files.is_remote(output_dir):  # an empty local folder holds nothing to match
        stale.update(glob.glob(pattern))
    stale = sorted(stale)
    for path in stale:
        files.remove(path)
    return stale


def publish(
    output_dir: str,
    staging: str,
    shard_files: list[str],
    old_shard_patterns: list[str],
    texts: list[tuple[str, str]],
) -> None:
    """Move staged shards, then report.json (already staged), then `texts` (name, content) in
    order, into output_dir.

    The caller puts the completion marker (dataset.json) last in `texts`; old copies are
    removed in the reverse order, marker first. Safe to run again after a failure part-way
    (a runner retrying the step): files already moved are left in place, not deleted.
    """
    for name, text in texts:
        files.write_text(join(staging, name), text)
    names = [REPORT_JSON] + [name for name, _ in texts]
    for name in reversed(names):
        files.remove(join(output_dir, name))
    new = set(shard_files)
    for pattern in old_shard_patterns:
        for path in files.glob(join(output_dir, pattern)):
            if posixpath.basename(path.replace("\\", "/")) not in new:
                files.remove(path)
    for name in shard_files + names:
        source, target = join(staging, name), join(output_dir, name)
        if files.exists(source) or not files.exists(target):
            files.rename(source, target)
    files.remove(staging)
