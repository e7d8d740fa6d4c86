"""The few file operations conversion needs, local or remote (gs://, s3://, ...).

Everything goes through Beam's FileSystems, which every Beam worker already has, so the
conversion path never imports TensorFlow. FileSystems has no notion of folders; listing the
folders of a remote root (class folders) falls back to tf.io.gfile, which lists one level
with a delimiter instead of every object below it, and runs only in the launching process.
"""

from __future__ import annotations

import os

from apache_beam.io.filesystems import FileSystems

from recordkit.errors import RecordkitError


def is_remote(path: str) -> bool:
    return "://" in path


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def isdir(path: str) -> bool:
    if not is_remote(path):
        return os.path.isdir(path)
    return bool(glob(path.rstrip("/") + "/**", limit=1))


def listdir(path: str) -> list[str]:
    """Names directly inside the folder `path` (files and folders), unsorted."""
    if not is_remote(path):
        return os.listdir(path)
    import tensorflow as tf

    return [name.rstrip("/") for name in tf.io.gfile.listdir(path)]


def glob(pattern: str, limit: int | None = None) -> list[str]:
    [result] = FileSystems.match([pattern], limits=[limit] if limit else None)
    return [m.path for m in result.metadata_list]


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))


def makedirs(path: str) -> None:
    """Remote stores have no folders to make; locally, like `mkdir -p`."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def make_folder(path: str, flag: str) -> None:
    """`makedirs` for an output folder the user named: a file in its place or a folder we may
    not create is a one-line error naming the flag, not an OSError traceback."""
    if is_remote(path):
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise RecordkitError(f"{flag} {path} is a file: pass a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise RecordkitError(f"cannot create {flag} {path}: {e.strerror or e}") from None


def rename(source: str, target: str) -> None:
    """Replaces `target` if it exists (atomic for local files on one filesystem)."""
    FileSystems.rename([source], [target])


def remove(path: str) -> None:
    """Remove a file or a whole folder, if it exists."""
    if not is_remote(path) and not os.path.lexists(path):
        return
    if is_remote(path) and not (exists(path) or isdir(path)):
        return
    FileSystems.delete([path])
