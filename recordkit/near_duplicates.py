"""Near-duplicate images: the same photo re-saved at another quality, resized or cropped a little.

A fingerprint is made from pixels the worker has already decoded: a 64-bit perceptual hash
(pHash: the 8x8 lowest DCT frequencies of a 32x32 grey thumbnail, each one bit for above or
below their median) and the mean RGB of each quarter of the image. Two images are near copies
when their hashes differ in at most MAX_BITS bits *and* their quarter colours by at most
MAX_COLOUR (root mean square, 0-255). The grey hash alone calls a white glacier and dark water
with the same faint texture copies; the colours tell them apart. The thresholds are measured
on the satellite set (docs/inspect.md, benchmarks/bench_near_duplicates.py).

Nothing compares all pairs: each image is filed under a bucket key per row of its hash's DCT
block and per brightness cell (LSH banding), and only images sharing a bucket are compared; a
copy within MAX_BITS usually keeps at least one row intact, and the cells lose no pair the
colour test accepts (each image is filed in its own cell and the nearer neighbouring one). A
bucket that still grows past CROWDED images is split by further rows of the hash before
comparing, which bounds the work per image at the price of missing copies that changed in
those rows too.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image

from recordkit import duplicates

THUMBNAIL = 32  # side of the grey thumbnail the DCT is taken of
BANDS = 8  # rows of the 8x8 low-frequency block: one bucket key each
MAX_BITS = 14  # of 64
MAX_COLOUR = 4.0  # root mean square difference of the 12 quarter-colour values
CELL = 2 * MAX_COLOUR  # brightness cells this wide: a pair the colour test accepts is in a shared cell
CROWDED = 1000  # images in a bucket before it is split
FINGERPRINT_CHARS = 16 + 24  # hex: 8 bytes of hash, 12 of colours


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II as a matrix: a 32x32 transform is two small products."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m


# The 8 lowest frequencies, in integers (x 2^16): the hash bits compare coefficients, and in
# floating point a flat image's coefficients are rounding noise that differs between machines.
_DCT_LOW = np.rint(_dct_matrix(THUMBNAIL)[:BANDS] * 2**16).astype(np.int64)


def fingerprint(image: Image.Image) -> str:
    """The image's fingerprint as 40 hex characters (hash, then quarter colours).

    Take it of whatever decode is at hand: a JPEG decoded at reduced scale gives the same
    fingerprint as the full image, to within the thresholds. About 0.1 ms an image.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    thumbnail = rgb.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
    low = (_DCT_LOW @ np.asarray(thumbnail.convert("L"), np.int64) @ _DCT_LOW.T).ravel()  # exact
    ranked = sorted(low.tolist())
    middle = ranked[len(ranked) // 2 - 1] + ranked[len(ranked) // 2]  # twice the median
    quarters = thumbnail.reduce(THUMBNAIL // 2)  # 2x2: mean RGB of each quarter
    return (np.packbits(2 * low > middle).tobytes() + quarters.tobytes()).hex()


class Parsed(NamedTuple):
    bits: int
    colours: bytes  # 12 values: RGB of the top-left, top-right, bottom-left, bottom-right quarter


@functools.lru_cache(maxsize=65536)  # an image is compared in BANDS buckets (and split groups)
def parse(text: str) -> Parsed:
    if len(text) != FINGERPRINT_CHARS:
        raise ValueError(f"a fingerprint has {FINGERPRINT_CHARS} hex characters, got {text!r}")
    raw = bytes.fromhex(text)
    return Parsed(int.from_bytes(raw[:8], "big"), raw[8:])


def usable(text: str) -> bool:
    """Whether a record's fingerprint can be compared ("" in records written without one)."""
    try:
        parse(text)
    except ValueError:
        return False
    return True


def _colour_rms(a: bytes, b: bytes) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)) / len(a))


def distance(a: str, b: str) -> tuple[int, float]:
    """(hash bits that differ, quarter-colour RMS difference)."""
    pa, pb = parse(a), parse(b)
    return (pa.bits ^ pb.bits).bit_count(), _colour_rms(pa.colours, pb.colours)


def is_near(a: str, b: str) -> bool:
    return _near(parse(a), parse(b))


def _near(a: Parsed, b: Parsed) -> bool:
    """The hash test first: it is one integer operation and rejects most pairs."""
    return (a.bits ^ b.bits).bit_count() <= MAX_BITS and _colour_rms(a.colours, b.colours) <= MAX_COLOUR


def bucket_keys(text: str) -> list[tuple[int, int, int]]:
    """(band, the hash's byte in that band, brightness cell) for each band and both cells."""
    raw = parse(text).bits.to_bytes(8, "big")
    cells = _brightness_cells(text)
    return [(band, value, cell) for band, value in enumerate(raw) for cell in cells]


def _brightness_cells(text: str) -> tuple[int, int]:
    """The image's brightness cell and the nearer neighbouring one: two images whose mean
    brightness differs by at most CELL / 2 (all the colour test accepts) share a cell."""
    colours = parse(text).colours
    position = sum(colours) / len(colours) / CELL
    cell = int(position)
    return cell, cell + 1 if position - cell >= 0.5 else cell - 1


class Member(NamedTuple):
    """What near-duplicate search needs of a record: its identity, labels and fingerprint."""

    split: str
    path: str
    label: tuple[str, ...]
    sha256: str
    fingerprint: str

    @property
    def copy(self) -> duplicates.Copy:
        return duplicates.Copy(self.split, self.path, self.label)

    def encode(self) -> str:
        """One string: a shuffle moves each record 16 times, and one string pickles several
        times faster than a tuple of strings (paths and labels hold no control characters)."""
        return "\0".join((self.split, self.path, self.sha256, self.fingerprint, "\x1f".join(self.label)))

    @classmethod
    def decode(cls, text: str) -> "Member":
        split, path, sha256, fingerprint, label = text.split("\0")
        return cls(split, path, tuple(label.split("\x1f")) if label else (), sha256, fingerprint)


def keep_order(m: Member) -> tuple:
    return duplicates.keep_order(m.copy)


def pairs_in_bucket(members: Sequence[Member], band: int = 0) -> Iterator[tuple[Member, Member]]:
    """(earlier, later) near pairs among images that share bucket `band`, each pair once."""
    found = set()
    for group in _uncrowded(sorted(set(members), key=keep_order), band):
        for pair in _leader_pairs(group):
            if pair not in found:
                found.add(pair)
                yield pair


def _uncrowded(members: list[Member], band: int, depth: int = 1) -> Iterator[list[Member]]:
    """Groups of at most CROWDED members (in keep order), split by the hash's next rows (the
    bucket key already holds the brightness cell); a group that no row splits (copies of one
    picture) stays."""
    if len(members) <= CROWDED or depth == BANDS:
        yield members
        return
    groups: dict[int, list[Member]] = {}
    for m in members:
        groups.setdefault(parse(m.fingerprint).bits.to_bytes(8, "big")[(band + depth) % BANDS], []).append(m)
    for group in groups.values():
        yield from _uncrowded(group, band, depth + 1)


def _leader_pairs(members: list[Member]) -> Iterator[tuple[Member, Member]]:
    """Each image is compared with the group's leaders, the earlier images not already a near
    copy of another, and paired with the first it is near; an image near none becomes a
    leader. That is linear for a group of many copies of one picture (say, 100,000 blank
    frames: one leader), where comparing all pairs would be quadratic. Exact copies (same
    sha256) are left to the exact-duplicate check: a leader's exact copy is neither paired
    nor a leader (its near copies are the leader's)."""
    leaders: list[tuple[Member, Parsed]] = []
    leading = set()
    for m in members:
        if m.sha256 in leading:
            continue
        mine = parse(m.fingerprint)
        for leader, theirs in leaders:
            if _near(mine, theirs):
                yield leader, m
                break
        else:
            leaders.append((m, mine))
            leading.add(m.sha256)


class Finding(NamedTuple):
    """Two images that are near copies; `dropped` is what drop_near_duplicates removes."""

    kind: str
    copies: tuple[duplicates.Copy, duplicates.Copy]
    bits: int
    colour: float
    dropped: tuple[duplicates.Copy, ...]

    def as_json(self, dropped: bool) -> dict:
        return {
            "kind": self.kind,
            "distance": {"hash_bits": self.bits, "colour_rms": round(self.colour, 2)},
            "copies": [duplicates.copy_json(c) for c in self.copies],
            "dropped": [duplicates.copy_json(c) for c in self.dropped] if dropped else [],
        }


def classify(pair: tuple[Member, Member]) -> Finding:
    """The finding for one near pair, judged as exact copies are: under different labels both
    go (one label is wrong); otherwise the later one in keep order."""
    first, second = sorted(pair, key=keep_order)
    kind = duplicates.kind_of([first.copy, second.copy])
    bits, colour = distance(first.fingerprint, second.fingerprint)
    dropped = (first.copy, second.copy) if kind == duplicates.CONFLICTING_LABELS else (second.copy,)
    return Finding(kind, (first.copy, second.copy), bits, colour, dropped)


def find_pairs(members: Iterable[Member]) -> list[tuple[Member, Member]]:
    """Every near pair among `members`, in one process (inspect's way; the pipeline runs the
    same buckets on its workers)."""
    buckets: dict[tuple[int, int, int], list[Member]] = {}
    for m in members:
        for key in bucket_keys(m.fingerprint):
            buckets.setdefault(key, []).append(m)
    pairs = {p for key, bucket in buckets.items() if len(bucket) > 1 for p in pairs_in_bucket(bucket, key[0])}
    return sorted(pairs, key=lambda p: (keep_order(p[0]), keep_order(p[1])))
