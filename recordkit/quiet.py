"""Standard error redirected at the file-descriptor level, where C++ libraries and child
processes write: TensorFlow's start-up lines and Beam's worker processes ignore Python's
`sys.stderr` and logging levels, so keeping recordkit's output readable means moving fd 2."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def stderr_to(target: BinaryIO) -> Iterator[int]:
    """fd 2 (this process's and the processes it starts) writes to `target` inside the block;
    yields a file descriptor of the original stderr, which stays open for the block."""
    sys.stderr.flush()
    terminal = os.dup(2)
    os.dup2(target.fileno(), 2)
    try:
        yield terminal
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)
        os.close(terminal)
