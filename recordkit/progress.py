"""Progress of a local Beam run, shown by the launching process.

The default local run uses Beam's multi_processing mode (separate worker processes); a tqdm
bar inside a DoFn would print from each worker. Instead each worker keeps its own count in a small file in
a folder the launcher polls, which works for threads and processes alike. On remote runners
(Dataflow, Flink) the folder is not set and the runner's own UI shows progress.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from tqdm import tqdm


class Counter:
    """Counts items in one worker and writes the count to its file at most twice a second."""

    def __init__(self, directory: str):
        self._path = os.path.join(directory, uuid.uuid4().hex)
        self._count = 0
        self._written = 0.0

    def add(self, n: int = 1) -> None:
        self._count += n
        if time.monotonic() - self._written > 0.5:
            self.flush()

    def flush(self) -> None:
        temporary = self._path + ".tmp"
        with open(temporary, "w") as f:
            f.write(str(self._count))
        os.replace(temporary, self._path)
        self._written = time.monotonic()


def total(directory: str) -> int:
    count = 0
    for entry in os.scandir(directory):
        if not entry.name.endswith(".tmp"):
            with open(entry.path) as f:
                count += int(f.read() or 0)
    return count


class Bar:
    """A tqdm bar fed from the workers' counts by a background thread; use as a context."""

    def __init__(self, directory: str, total_items: int | None, description: str, file=None):
        self._directory = directory
        self._bar = tqdm(total=total_items, desc=description, unit="img", dynamic_ncols=True, file=file)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "Bar":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._update()
        self._bar.close()

    def _poll(self) -> None:
        while not self._stop.wait(0.3):
            self._update()

    def _update(self) -> None:
        self._bar.update(total(self._directory) - self._bar.n)
