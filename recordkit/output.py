"""Writing a converted dataset so that a crash at any moment leaves the previous set or the new
one in the output folder, never a mix.

Shards are written into a hidden staging folder inside the output folder (same filesystem, so
moves are renames). Publishing then follows a plan written into the staging folder first:
1. move the previous set's files (dataset.json first) into `staging/previous/`;
2. move the new files in, dataset.json last: its arrival is the commit point;
3. remove the staging folder (and the previous set with it).
dataset.json present means the set beside it is complete. A publish cut short (a crash, kill -9,
a full disk) is undone by the next conversion into the folder before it does anything else
(`recover`): before the commit point the previous set is put back, after it the new set stays.
A runner that retries the publishing step finishes it instead (`publish` resumes its plan).
"""

from __future__ import annotations

import glob
import json
import posixpath
import uuid

from recordkit import files
from recordkit.metadata import DATASET_JSON, REPORT_JSON, join

STAGING_PREFIX = ".recordkit-staging-"
RUN_ID_LENGTH = 12
PLAN = "publish-plan.json"
PREVIOUS = "previous"
ASIDE = "previous-set-aside"  # written once every file of the previous set is in PREVIOUS


def new_staging_dir(output_dir: str, dataset_name: str) -> str:
    """A fresh folder name per run, so a retried or concurrent run never mixes shards."""
    return join(output_dir, f"{STAGING_PREFIX}{dataset_name}-{uuid.uuid4().hex[:RUN_ID_LENGTH]}")


def staging_dirs(output_dir: str, dataset_name: str) -> list[str]:
    """Staging folders of `dataset_name` in output_dir (left by interrupted runs, when no other
    conversion holds the folder's lock)."""
    run_id = "[0-9a-f]" * RUN_ID_LENGTH  # so dataset "a" never matches dataset "a-b"'s folders
    pattern = join(output_dir, f"{STAGING_PREFIX}{dataset_name}-{run_id}")
    # Beam's FileSystems match files only: a staging folder is found through what it holds.
    depth = pattern.count("/") + 1
    found = {"/".join(path.replace("\\", "/").split("/")[:depth]) for path in files.glob(join(pattern, "**"))}
    if not files.is_remote(output_dir):  # an empty local folder holds nothing to match
        found.update(glob.glob(pattern))
    return sorted(found)


def recover(output_dir: str, dataset_name: str) -> list[str]:
    """Undo what interrupted runs left: put a previous set back where its replacement was cut
    short before the commit point, then remove their staging folders. Returns what was done,
    one line per staging folder. Call only while holding the output folder's lock."""
    done = []
    for staging in staging_dirs(output_dir, dataset_name):
        plan_path = join(staging, PLAN)
        if not files.exists(plan_path):
            done.append(f"removed {staging} (an interrupted run's unpublished shards)")
        elif not files.exists(join(staging, DATASET_JSON)):
            done.append(f"removed {staging} (its publish had committed: the new set stays)")
        else:
            _roll_back(output_dir, staging, json.loads(files.read_text(plan_path)))
            done.append(f"put the previous set back from {staging} (its publish was cut short)")
        files.remove(staging)
    return done


def _roll_back(output_dir: str, staging: str, plan: dict) -> None:
    previous = join(staging, PREVIOUS)
    if files.exists(join(staging, ASIDE)):  # every new name in output_dir is a new file
        for name in reversed(plan["new"]):
            files.remove(join(output_dir, name))
    for name in reversed(plan["old"]):  # dataset.json last
        if files.exists(join(previous, name)):
            files.rename(join(previous, name), join(output_dir, name))


def publish(
    output_dir: str,
    staging: str,
    shard_files: list[str],
    old_shard_patterns: list[str],
    texts: list[tuple[str, str]],
) -> None:
    """Replace the set in output_dir with the staged shards, report.json (already staged) and
    `texts` (name, content; dataset.json last), following the steps in the module docstring.

    Safe to run again after failing part-way (a runner retrying the step): it resumes its plan.
    """
    plan_path = join(staging, PLAN)
    if not files.exists(plan_path):
        for name, text in texts:
            files.write_text(join(staging, name), text)
        metadata_names = [REPORT_JSON] + [name for name, _ in texts]
        old = [name for name in reversed(metadata_names) if files.exists(join(output_dir, name))]
        old += sorted({posixpath.basename(path.replace("\\", "/"))
                       for pattern in old_shard_patterns for path in files.glob(join(output_dir, pattern))})
        _write_atomically(plan_path, json.dumps({"old": old, "new": shard_files + metadata_names}))
    plan = json.loads(files.read_text(plan_path))
    previous = join(staging, PREVIOUS)
    if not files.exists(join(staging, ASIDE)):
        files.makedirs(previous)
        for name in plan["old"]:  # dataset.json first
            if files.exists(join(output_dir, name)):
                files.rename(join(output_dir, name), join(previous, name))
        files.write_text(join(staging, ASIDE), "")
    for name in plan["new"]:  # dataset.json last: the commit point
        if files.exists(join(staging, name)):
            files.rename(join(staging, name), join(output_dir, name))
    files.remove(staging)


def _write_atomically(path: str, text: str) -> None:
    files.write_text(path + ".tmp", text)
    files.rename(path + ".tmp", path)
