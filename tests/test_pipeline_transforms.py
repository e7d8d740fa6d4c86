"""The Beam transforms behind WriteDataset, one at a time (TestPipeline + assert_that).

The end-to-end tests show the files; these pin the rules: ranks follow the seeded sort key
exactly, shards differ in size by at most one even when a key range straddles a shard
boundary, duplicates keep the documented copy, near copies are paired once and dropped by the
same rules, and the report parts merge in sorted order.
"""

import hashlib
import json
import random

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from recordkit import duplicates, near_duplicates, pipeline, ranking, report
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


FAR = "0" * 16 + "80" * 12  # a fingerprint no test image is near (hash differs in every row)


def spilled(split: str, path: str, image: str, label: str = "a", fingerprint: str = "") -> Spilled:
    """A record of `image` (a name: same name, same bytes); without a fingerprint, one of its own."""
    sha = hashlib.sha256(image.encode()).hexdigest()
    fingerprint = fingerprint or (sha[:16] + "80" * 12)
    return Spilled(split, pipeline.sort_key(0, split, path), (label,), sha, fingerprint, path, "run", 0, 1)


def test_duplicates_keep_the_first_train_copy_and_drop_conflicting_labels_everywhere():
    within = [spilled("train", "t/b.jpg", "x"), spilled("train", "t/a.jpg", "x")]
    leak = [spilled("validation", "v/c.jpg", "y"), spilled("train", "t/z.jpg", "y")]
    conflict = [spilled("train", "t/cat.jpg", "z", "cat"), spilled("train", "t/dog.jpg", "z", "dog")]
    single = [spilled("train", "t/only.jpg", "w")]
    records = within + leak + conflict + single
    kept = [within[1], leak[1], single[0]]  # first by path; train before validation
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
        assert_that(refs, equal_to(records), label="kept")
        assert_that(findings | beam.Map(lambda f: f.kind), equal_to([duplicates.ACROSS_SPLITS]), label="kinds")


def near(fingerprint: str, bits: int, colour_step: int = 0) -> str:
    """`fingerprint` with its lowest `bits` hash bits flipped and every colour value moved."""
    parsed = near_duplicates.parse(fingerprint)
    flipped = parsed.bits ^ ((1 << bits) - 1)
    return flipped.to_bytes(8, "big").hex() + bytes(c + colour_step for c in parsed.colours).hex()


BASE = "9a3c5e7f11224488" + "80" * 12


def test_near_copies_are_paired_once_and_judged_like_exact_ones():
    original = spilled("train", "t/a.jpg", "a", fingerprint=BASE)
    resaved = spilled("train", "t/b.jpg", "b", fingerprint=near(BASE, 6, 2))  # within both thresholds
    leak = spilled("validation", "v/a.jpg", "c", fingerprint=near(BASE, 3))
    other_colour = spilled("train", "t/c.jpg", "d", fingerprint=near(BASE, 0, 20))  # same hash, other colours
    exact = spilled("train", "t/d.jpg", "a", fingerprint=BASE)  # same bytes as t/a.jpg: an exact duplicate
    unrelated = spilled("train", "t/e.jpg", "e")
    records = [original, resaved, leak, other_colour, exact, unrelated]
    with test_pipeline.TestPipeline() as p:
        kept, findings, dropped = p | beam.Create(records) | pipeline.FindNearDuplicates(drop=False)
        assert_that(dropped, equal_to([]), label="nothing dropped")
        assert_that(kept, equal_to(records), label="kept")
        # A pair shares all 8 bucket rows but is reported once; the exact copy is left to the
        # exact check, and every later image pairs with its first near leader (t/a.jpg).
        pairs = findings | beam.Map(lambda f: (f.kind, tuple(c.path for c in f.copies), tuple(c.path for c in f.dropped)))
        assert_that(pairs, equal_to([
            (duplicates.WITHIN_SPLIT, ("t/a.jpg", "t/b.jpg"), ("t/b.jpg",)),
            (duplicates.ACROSS_SPLITS, ("t/a.jpg", "v/a.jpg"), ("v/a.jpg",)),
        ]), label="pairs")


def test_drop_near_duplicates_keeps_the_first_and_drops_both_under_conflicting_labels():
    original = spilled("train", "t/a.jpg", "a", fingerprint=BASE)
    copy = spilled("validation", "v/a.jpg", "b", fingerprint=near(BASE, 5))
    cat = spilled("train", "t/cat.jpg", "c", "cat", fingerprint=near(FAR, 0))
    dog = spilled("train", "t/dog.jpg", "d", "dog", fingerprint=near(FAR, 4, 1))
    with test_pipeline.TestPipeline() as p:
        kept, findings, dropped = p | beam.Create([original, copy, cat, dog]) | pipeline.FindNearDuplicates(drop=True)
        assert_that(kept, equal_to([original]), label="kept")
        assert_that(dropped, equal_to([pipeline.NearDropped(3)]), label="dropped")
        assert_that(findings | beam.Map(lambda f: (f.kind, len(f.dropped))),
                    equal_to([(duplicates.ACROSS_SPLITS, 1), (duplicates.CONFLICTING_LABELS, 2)]), label="kinds")


def test_a_record_in_several_pairs_is_dropped_and_counted_once():
    """a ~ b, a ~ c, b ~ c: b and c share the last row of the hash, which a lacks, so that
    bucket pairs them too; two pairs name c as the copy to drop, and two records are left out."""
    a = spilled("train", "t/a.jpg", "a", fingerprint=BASE)
    b = spilled("train", "t/b.jpg", "b", fingerprint=near(BASE, 3))  # last row differs from a's
    c_hash = int(b.fingerprint[:16], 16) ^ 1 << 8  # b's last row, one bit of the row before changed
    c = spilled("train", "t/c.jpg", "c", fingerprint=f"{c_hash:016x}" + BASE[16:])
    with test_pipeline.TestPipeline() as p:
        kept, findings, dropped = p | beam.Create([a, b, c]) | pipeline.FindNearDuplicates(drop=True)
        assert_that(findings | beam.Map(lambda f: tuple(c.path for c in f.copies)),
                    equal_to([("t/a.jpg", "t/b.jpg"), ("t/a.jpg", "t/c.jpg"), ("t/b.jpg", "t/c.jpg")]), label="pairs")
        assert_that(kept, equal_to([a]), label="kept")
        assert_that(dropped, equal_to([pipeline.NearDropped(2)]), label="dropped")


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
