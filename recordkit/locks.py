"""One writer per folder: a lock file that names its holder.

Two `recordkit train` runs in one train_dir interleave checkpoints; two conversions into one
output folder could publish a mix of two sets. The lock file holds "host pid"; a holder that no
longer runs on this host (kill -9, a crash) leaves a stale lock, which is taken over. On remote
stores (gs://, s3://) the check and the creation are two steps, so two launchers starting in
the same instant could both pass; the holder's liveness cannot be checked from another host.
"""

from __future__ import annotations

import contextlib
import os
import socket

from recordkit import files
from recordkit.errors import RecordkitError
from recordkit.metadata import join


@contextlib.contextmanager
def folder_lock(folder: str, name: str, command: str):
    """Hold `folder`/`name` for the duration; refuse with the holder named if it is taken."""
    path = join(folder, name)
    holder = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        if _create(path, holder):
            break
        host, _, pid = files.read_text(path).partition(" ")
        if host == socket.gethostname() and pid.strip().isdigit() and not _running(int(pid)):
            files.remove(path)  # stale: its process is gone
            continue
        raise RecordkitError(f"{folder} is in use by another {command} (process {pid.strip()} on {host}); "
                             f"if it is not running, delete {path}")
    try:
        yield
    finally:
        files.remove(path)


def _create(path: str, holder: str) -> bool:
    """Create the lock file holding `holder`; False if it exists."""
    if files.is_remote(path):
        if files.exists(path):
            return False
        files.write_text(path, holder)
        return True
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(holder)
    return True


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
