"""Publishing a converted set: a fault at every filesystem step leaves the previous set or the
new one, never a mix; a held output folder is refused with its holder named."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import pytest

from recordkit import convert, files, locks, output
from recordkit.errors import RecordkitError
from recordkit.pipeline import SHARD_DIGITS

PATTERNS = [f"d_{split}_{SHARD_DIGITS}-of-{SHARD_DIGITS}.tfrecord" for split in ("train", "validation")]
# Files in the output folder that are not dataset d's (the second one looks like a shard of it)
THEIRS = {"notes.txt": "mine", "d_train_extra_00000-of-00001.tfrecord": "another dataset's"}


class Crash(Exception):
    """Stands for the process dying at that call."""


def _stage(out: pathlib.Path, tag: str, train_shards: int) -> tuple[str, list[str]]:
    """A staging folder holding set `tag`: its shards and report.json, as the pipeline leaves it."""
    staging = output.new_staging_dir(str(out), "d")
    os.makedirs(staging)
    shards = [f"d_train_{i:05d}-of-{train_shards:05d}.tfrecord" for i in range(train_shards)]
    shards.append("d_validation_00000-of-00001.tfrecord")
    for name in shards:
        pathlib.Path(staging, name).write_text(f"{tag} {name}")
    pathlib.Path(staging, "report.json").write_text(f"{tag} report")
    return staging, shards


def _publish(out: pathlib.Path, staging: str, shards: list[str], tag: str) -> None:
    output.publish(str(out), staging, shards, PATTERNS, [("label.txt", f"{tag} labels"), ("dataset.json", f"{tag} set")])


def _visible(out: pathlib.Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in out.iterdir() if not p.name.startswith(".")}


def _expected(tag: str, shards: list[str]) -> dict[str, str]:
    return {**{name: f"{tag} {name}" for name in shards}, "report.json": f"{tag} report",
            "label.txt": f"{tag} labels", "dataset.json": f"{tag} set"}


@pytest.fixture
def previous(tmp_path):
    """An output folder holding set A (3 train shards) and files that are not A's."""
    out = tmp_path / "out"
    out.mkdir()
    staging, shards = _stage(out, "A", 3)
    _publish(out, staging, shards, "A")
    for name, text in THEIRS.items():
        (out / name).write_text(text)
    assert _visible(out) == {**_expected("A", shards), **THEIRS}
    return out, {**_expected("A", shards), **THEIRS}


def _faulty(monkeypatch, fail_at: int) -> list[int]:
    """Make the fail_at-th filesystem mutation (0-based) raise Crash; returns the call count."""
    calls = [0]
    for name in ("rename", "write_text", "remove", "makedirs"):
        real = getattr(files, name)

        def wrapper(*args, _real=real):
            if calls[0] == fail_at:
                raise Crash
            calls[0] += 1
            return _real(*args)

        monkeypatch.setattr(files, name, wrapper)
    return calls


@pytest.mark.parametrize("after_crash", ["recover", "retry"])
def test_a_crash_at_any_step_leaves_one_whole_set(previous, monkeypatch, after_crash):
    """Set B (2 train shards, so one of A's shards has no successor) replaces A. For every step
    at which publishing can die: the next run's `recover` gives back A if B had not committed
    (dataset.json moved in) and B otherwise; a runner's retry of the step gives B."""
    out, set_a = previous
    outcomes, fail_at = [], 0
    while True:
        staging, shards = _stage(out, "B", 2)
        set_b = {**_expected("B", shards), **THEIRS}
        calls = _faulty(monkeypatch, fail_at)
        try:
            _publish(out, staging, shards, "B")
            crashed = False
        except Crash:
            crashed = True
        monkeypatch.undo()
        if not crashed:
            break
        if after_crash == "recover":
            output.recover(str(out), "d")
        else:
            _publish(out, staging, shards, "B")
        found = _visible(out)
        assert found in (set_a, set_b), (fail_at, found)
        assert not [p for p in out.iterdir() if p.name.startswith(output.STAGING_PREFIX)]
        outcomes.append("A" if found.get("dataset.json") == "A set" else "B")
        if outcomes[-1] == "B":  # put A back for the next fault point
            staging_a, shards_a = _stage(out, "A", 3)
            _publish(out, staging_a, shards_a, "A")
        fail_at += 1
    assert calls[0] == fail_at >= 12  # every step was tried, up to a clean run
    if after_crash == "recover":  # A until dataset.json arrives, then B: one commit point
        assert outcomes == ["A"] * outcomes.index("B") + ["B"] * (len(outcomes) - outcomes.index("B"))
        assert outcomes.count("A") >= 10
    else:
        assert set(outcomes) == {"B"}


def test_recover_removes_an_unpublished_staging_folder_and_keeps_the_set(previous):
    out, set_a = previous
    staging, _ = _stage(out, "B", 2)  # the pipeline died before publishing
    assert output.recover(str(out), "d") == [f"removed {staging} (an interrupted run's unpublished shards)"]
    assert _visible(out) == set_a


def test_a_held_output_folder_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / convert.LOCK).write_text(f"{socket.gethostname()} {holder.pid}")
        with pytest.raises(RecordkitError, match=f"in use by another recordkit convert \\(process {holder.pid} on "):
            with locks.folder_lock(str(tmp_path), convert.LOCK, "recordkit convert"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with locks.folder_lock(str(tmp_path), convert.LOCK, "recordkit convert"):  # its holder is gone: taken over
        assert (tmp_path / convert.LOCK).read_text() == f"{socket.gethostname()} {os.getpid()}"
    assert not (tmp_path / convert.LOCK).exists()


def test_the_next_conversion_undoes_a_cut_short_publish_and_says_so(tmp_path, monkeypatch, capsys):
    import imagegen
    from recordkit import metadata
    from recordkit.cli import main

    pic, out = tmp_path / "pic", tmp_path / "out"
    imagegen.write_folder_dataset(pic, {"train": {"water": 3, "rock": 2}, "validation": {"water": 1, "rock": 1}})
    args = ["convert", "-t", str(pic), "--output-dir", str(out), "--dataset-name", "d", "--no-progress",
            "--num-threads", "1"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}
    staging, shards = _stage(out, "B", 2)
    _faulty(monkeypatch, 6)  # the previous set is partly aside, nothing new moved in
    with pytest.raises(Crash):
        _publish(out, staging, shards, "B")
    monkeypatch.undo()
    assert not (out / "dataset.json").exists()
    capsys.readouterr()
    assert main(args) == 0
    assert f"recovered: put the previous set back from {staging}" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")} == before  # deterministic
    assert metadata.load(str(out)).splits["train"].num_records == 5


def test_a_conversion_into_a_held_folder_is_a_one_line_error(tmp_path, capsys):
    import imagegen
    from recordkit.cli import main

    pic, out = tmp_path / "pic", tmp_path / "out"
    imagegen.write_folder_dataset(pic, {"train": {"water": 2, "rock": 2}, "validation": {"water": 1, "rock": 1}})
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / convert.LOCK).write_text(f"{socket.gethostname()} {holder.pid}")
        assert main(["convert", "-t", str(pic), "--output-dir", str(out), "--no-progress"]) == 2
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip()
    assert err == (f"recordkit convert: error: {out} is in use by another recordkit convert (process {holder.pid} "
                   f"on {socket.gethostname()}); if it is not running, delete {out / convert.LOCK}")
    assert sorted(p.name for p in out.iterdir()) == [convert.LOCK]  # nothing written beside it
