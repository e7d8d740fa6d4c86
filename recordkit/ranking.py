"""Global ranks in sort-key order without holding the dataset in one place.

Shards must be byte-identical for any runner and worker count and equal in size (±1), so
each record's shard follows from its rank among all records of its split, ordered by their
seeded sort key. Records are gathered per (split, range of the key's first 12 bits) by a
combiner (each worker sends one list per range, not one element per record); a global count
per range (at most 4,096 numbers per split, whatever the dataset's size) gives each range its
offset, joined back by key; inside a range, rank = offset + place in sort order. TFDS's Beam
writer ranks the same way, by a range partition of the hash. No side inputs: Beam's Dask
runner recomputes a side input's whole upstream for every bundle that reads it.
"""

from __future__ import annotations

import collections

import apache_beam as beam

RANGE_BITS = 12  # sort keys are ranked in 4,096 ranges of their first 12 bits per split


def range_of(key: bytes) -> int:
    return int.from_bytes(key[:2], "big") >> (16 - RANGE_BITS)


def shard_index(rank: int, total: int, num_shards: int) -> int:
    return rank * num_shards // total


class RankRecords(beam.PTransform):
    """Records (anything with .split and .sort_key) → ((split, shard), record)."""

    def __init__(self, num_shards: dict[str, int]):
        super().__init__()
        self._num_shards = num_shards

    def expand(self, refs):
        ranges = (
            refs
            | "ByRange" >> beam.Map(lambda r: ((r.split, range_of(r.sort_key)), r))
            | "GatherRanges" >> beam.CombinePerKey(beam.combiners.ToListCombineFn())
        )
        offsets = (
            ranges
            | "Sizes" >> beam.Map(lambda group: (group[0], len(group[1])))
            | "Count" >> beam.CombineGlobally(RangeOffsets())
            | "PerRange" >> beam.FlatMap(lambda found: found.items())
        )
        return (
            {"refs": ranges, "offset": offsets}
            | "Join" >> beam.CoGroupByKey()
            | "RankInRange" >> beam.FlatMap(_rank_range, self._num_shards)
        )


class RangeOffsets(beam.CombineFn):
    """((split, range), size) → {(split, range): (offset, split total)} for non-empty ranges:
    at most 4,096 entries per split, whatever the dataset's size."""

    def create_accumulator(self):
        return {}

    def add_input(self, sizes, element):
        key, size = element
        sizes[key] = sizes.get(key, 0) + size
        return sizes

    def merge_accumulators(self, accumulators):
        merged = {}
        for sizes in accumulators:
            for key, size in sizes.items():
                merged[key] = merged.get(key, 0) + size
        return merged

    def extract_output(self, sizes):
        totals = collections.Counter()
        for (split, _), size in sizes.items():
            totals[split] += size
        offsets, running = {}, collections.Counter()
        for split, index in sorted(sizes):
            offsets[(split, index)] = (running[split], totals[split])
            running[split] += sizes[(split, index)]
        return offsets


def _rank_range(group: tuple[tuple[str, int], dict], num_shards: dict[str, int]):
    (split, _), joined = group
    [(offset, total)] = joined["offset"]
    refs = sorted((r for members in joined["refs"] for r in members), key=lambda r: r.sort_key)
    for position, ref in enumerate(refs):
        yield (split, shard_index(offset + position, total, num_shards[split])), ref
