"""TFRecord files without TensorFlow: the framing `tf.io.TFRecordWriter` writes.

Each record is: uint64 length, masked CRC32C of the length, the data, masked CRC32C of the
data (little-endian). Conversion workers write shards with this, so they never import
TensorFlow; a test proves the files byte-identical to TensorFlow's writer.
"""

from __future__ import annotations

import collections
import errno
import os
import struct
from typing import Iterable

import google_crc32c
from apache_beam.io.filesystems import FileSystems

from recordkit import files
from recordkit.metadata import join

_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record as it appears in a TFRecord file."""
    length = struct.pack("<Q", len(record))
    return b"".join((length, struct.pack("<I", masked_crc32c(length)), record,
                     struct.pack("<I", masked_crc32c(record))))


def write(path: str, records: Iterable[bytes]) -> int:
    """Write `records` to `path` (local or any Beam filesystem); returns how many."""
    count = 0
    with FileSystems.create(path) as f:
        for record in records:
            f.write(frame(record))
            count += 1
    return count


def concatenate(path: str, folder: str, ranges: Iterable[tuple[str, int, int]], keep_open: int = 32) -> None:
    """Write `path` from (file in `folder`, offset, length) byte ranges of framed records.

    Locally the kernel copies the bytes (os.copy_file_range), so they never pass through
    Python; elsewhere they are read and written. Ranges jump between files, so the most
    recently used ones stay open.
    """
    local = not files.is_remote(path) and not files.is_remote(folder) and hasattr(os, "copy_file_range")
    opened: collections.OrderedDict = collections.OrderedDict()
    try:
        with (open(path, "wb", buffering=0) if local else FileSystems.create(path)) as out:
            for name, offset, length in ranges:
                source = opened.pop(name, None)
                if source is None:
                    where = join(folder, name)
                    source = open(where, "rb") if local else FileSystems.open(where, compression_type="uncompressed")
                opened[name] = source
                if len(opened) > keep_open:
                    opened.popitem(last=False)[1].close()
                _copy(source, offset, length, out, local)
    finally:
        for f in opened.values():
            f.close()


# copy_file_range is refused by some kernels, sandboxes and filesystems: copy through Python there.
_NO_KERNEL_COPY = {errno.ENOSYS, errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ETXTBSY}


def _copy(source, offset: int, length: int, out, local: bool) -> None:
    done = 0
    if local:
        try:
            while done < length:
                copied = os.copy_file_range(source.fileno(), out.fileno(), length - done, offset + done)
                if copied == 0:
                    break
                done += copied
        except OSError as e:
            if e.errno not in _NO_KERNEL_COPY:
                raise
    if done < length:
        source.seek(offset + done)
        data = source.read(length - done)
        out.write(data)
        done += len(data)
    if done != length:
        raise IOError(f"a run file ends before the record at {offset}+{length}")
