"""The Beam transforms behind WriteDataset, one at a time (TestPipeline + assert_that).

The end-to-end tests show the files; these pin the rules: ranks follow the seeded sort key
exactly, shards differ in size by at most one even when a key range straddles a shard
boundary, duplicates keep the documented copy, and the report parts merge in sorted order.
"""

import hashlib
import json
import random

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from recordkit import duplicates, pipeline, ranking, report
from recordkit.pipeline import Ref, Skipped, Spilled


def ref(split: str, key: bytes, label: str = "a") -> Ref:
    return Ref(split, key, (label,), "run", 0, 1)


def expected_shards(refs: list[Ref], num_shards: dict[str, int]) -> list:
    out = []
    for split, n in num_shards.items():
        ordered = sorted((r for r in refs if r.split == split), key=lambda r: r.sort_key)
        out += [((split, ranking.shard_index(i, len(ordered), n)), r) for i, r in enumerate(ordered)]
    return out


def test_ranks_follow_the_sort_key_and_shards_differ_by_at_most_one():
    rng = random.Random(0)
    refs = [ref("train", rng.randbytes(32)) for _ in range(2000)]
    # 300 keys in one range of the sort key: that range straddles shard boundaries.
    refs += [ref("train", b"\x7f\xf0" + rng.randbytes(30)) for _ in range(300)]
    refs += [ref("validation", rng.randbytes(32)) for _ in range(101)]
    num_shards = {"train": 7, "validation": 3}
    expected = expected_shards(refs, num_shards)
    sizes = {}
    for (split, shard), _ in expected:
        sizes.setdefault(split, {}).setdefault(shard, 0)
        sizes[split][shard] += 1
    assert max(sizes["train"].values()) - min(sizes["train"].values()) <= 1 and len(sizes["train"]) == 7
    with test_pipeline.TestPipeline() as p:
        ranked = p | beam.Create(refs) | ranking.RankRecords(num_shards)
        assert_that(ranked, equal_to(expected))


def test_range_offsets_count_every_split_on_its_own():
    offsets = ranking.RangeOffsets()
    sizes = offsets.create_accumulator()
    for element in [(("train", 5), 3), (("validation", 0), 2), (("train", 1), 4), (("train", 5), 1)]:
        sizes = offsets.add_input(sizes, element)
    merged = offsets.merge_accumulators([sizes, {("train", 9): 2}])
    assert offsets.extract_output(merged) == {
        ("train", 1): (0, 10), ("train", 5): (4, 10), ("train", 9): (8, 10), ("validation", 0): (0, 2),
    }


def spilled(split: str, path: str, image: str, label: str = "a") -> Spilled:
    sha = hashlib.sha256(image.encode()).hexdigest()
    return Spilled(split, pipeline.sort_key(0, split, path), (label,), sha, path, "run", 0, 1)


def as_ref(s: Spilled) -> Ref:
    return Ref(s.split, s.sort_key, s.counts, s.run, s.offset, s.length)


def test_duplicates_keep_the_first_train_copy_and_drop_conflicting_labels_everywhere():
    within = [spilled("train", "t/b.jpg", "x"), spilled("train", "t/a.jpg", "x")]
    leak = [spilled("validation", "v/c.jpg", "y"), spilled("train", "t/z.jpg", "y")]
    conflict = [spilled("train", "t/cat.jpg", "z", "cat"), spilled("train", "t/dog.jpg", "z", "dog")]
    single = [spilled("train", "t/only.jpg", "w")]
    records = within + leak + conflict + single
    kept = [as_ref(s) for s in (within[1], leak[1], single[0])]  # first by path; train before validation
    with test_pipeline.TestPipeline() as p:
        refs, findings = p | beam.Create(records) | pipeline.ResolveDuplicates(drop=True)
        assert_that(refs, equal_to(kept), label="kept")
        kinds = findings | beam.Map(lambda f: (f.kind, len(f.copies), len(f.dropped)))
        assert_that(kinds, equal_to([(duplicates.WITHIN_SPLIT, 2, 1), (duplicates.ACROSS_SPLITS, 2, 1),
                                     (duplicates.CONFLICTING_LABELS, 2, 2)]), label="findings")


def test_without_drop_every_copy_is_written_and_still_reported():
    records = [spilled("train", "t/a.jpg", "x"), spilled("validation", "v/a.jpg", "x")]
    with test_pipeline.TestPipeline() as p:
        refs, findings = p | beam.Create(records) | pipeline.ResolveDuplicates(drop=False)
        assert_that(refs, equal_to([as_ref(s) for s in records]), label="kept")
        assert_that(findings | beam.Map(lambda f: f.kind), equal_to([duplicates.ACROSS_SPLITS]), label="kinds")


def test_report_parts_merge_into_one_sorted_list(tmp_path):
    rng = random.Random(1)
    skipped = [Skipped(rng.choice(["train", "validation"]), f"d/{rng.randrange(10**6):07d}.jpg",
                       rng.choice(["not an image", "truncated JPEG"])) for _ in range(500)]
    with test_pipeline.TestPipeline() as p:
        parts = (p | beam.Create(skipped) | beam.Map(report.skipped_entry(False, ("truncated",)))
                 | report.WriteReportParts(str(tmp_path / "staging")))
        assert_that(parts | beam.Map(lambda part: part.count) | beam.CombineGlobally(sum), equal_to([500]))
    paths = sorted(str(p) for p in (tmp_path / "staging" / report.REPORT_PARTS).iterdir())
    assert 1 < len(paths) <= report.PARTS_PER_LIST  # spread over parts...
    merged = [json.loads(line) for line in report.merged_lines(paths)]
    assert merged == [s._asdict() for s in sorted(skipped)]  # ...merged back in (split, path, reason) order
