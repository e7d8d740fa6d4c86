"""The folder-per-class conversion pipeline, end to end on the DirectRunner."""

import hashlib
import json
import pathlib
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf
from PIL import Image

import imagegen
from shared_data import SATELLITE, needs_satellite
from recordkit import convert, images, inspect, metadata, records
from recordkit.cli import main
from recordkit.convert import ConvertOptions
from recordkit.folders import convert_folders
from recordkit.errors import RecordkitError

TUTORIAL_KEYS = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/channels": tf.io.FixedLenFeature([], tf.int64),
    "image/colorspace": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    "image/class/text": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
}


def read_records(paths) -> list[dict]:
    dataset = tf.data.TFRecordDataset([str(p) for p in paths]).map(
        lambda r: tf.io.parse_single_example(r, TUTORIAL_KEYS)
    )
    return [{k: v.numpy() for k, v in r.items()} for r in dataset]


def run(root, out=None, **kwargs) -> convert.ConvertResult:
    options = dict(input_dir=str(root), dataset_name="ds", num_workers=1)
    options.update(kwargs)
    if out is not None:
        options["output_dir"] = str(out)
    return convert_folders(ConvertOptions(**options), show_progress=False)


@pytest.fixture
def dataset(tmp_path) -> pathlib.Path:
    root = tmp_path / "pic"
    imagegen.write_folder_dataset(
        root,
        {"train": {"water": 5, "glacier": 4, "rock": 3}, "validation": {"water": 2, "glacier": 2, "rock": 1}},
    )
    return root


def test_writes_shards_labels_and_dataset_json_readable_with_tutorial_keys(dataset, tmp_path):
    result = run(dataset, tmp_path / "out", train_shards=2, validation_shards=2)
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "dataset.json", "ds_train_00000-of-00002.tfrecord", "ds_train_00001-of-00002.tfrecord",
        "ds_validation_00000-of-00002.tfrecord", "ds_validation_00001-of-00002.tfrecord",
        "label.txt", "report.json",
    ]
    assert (out / "label.txt").read_text() == "glacier\nrock\nwater\n"
    info = metadata.load(str(out))
    assert info.splits["train"].num_records == 12 and info.splits["validation"].num_records == 5
    assert info.splits["train"].per_class == {"glacier": 4, "rock": 3, "water": 5}
    assert info.num_classes == 3 and result.records == 17
    train = read_records(info.shard_paths(str(out), "train"))
    assert len(train) == 12
    for record in train:
        name = record["image/class/text"].decode()
        assert info.classes[record["image/class/label"]] == name
        assert record["image/format"] == b"JPEG" and record["image/colorspace"] == b"RGB"
        assert record["image/channels"] == 3
        source = dataset / "train" / name / record["image/filename"].decode()
        assert record["image/encoded"] == source.read_bytes()  # JPEG passed through untouched
        assert (record["image/height"], record["image/width"]) == (32, 48)


def test_every_key_of_the_spec_round_trips(dataset, tmp_path):
    run(dataset, tmp_path / "out")
    info = metadata.load(str(tmp_path / "out"))
    spec = records.spec_for(info.label_kind)
    assert info.features == records.describe(spec)
    raw = next(iter(tf.data.TFRecordDataset(info.shard_paths(str(tmp_path / "out"), "train"))))
    parsed = tf.io.parse_single_example(raw, records.parse_spec(spec))
    assert set(parsed) == set(spec)
    encoded = parsed[records.ENCODED].numpy()
    assert parsed[records.SHA256].numpy().decode() == hashlib.sha256(encoded).hexdigest()
    assert parsed[records.SOURCE_ID].numpy().decode().endswith(parsed[records.FILENAME].numpy().decode())


def test_label_order_is_sorted_not_creation_order(tmp_path):
    root = tmp_path / "pic"
    for name in ["zebra", "Apple", "mango", "banana"]:  # created in this order
        imagegen.write_folder_dataset(root, {"train": {name: 1}, "validation": {name: 1}})
    run(root, tmp_path / "out")
    assert (tmp_path / "out" / "label.txt").read_text().split() == ["Apple", "banana", "mango", "zebra"]


def test_shards_are_balanced_and_records_shuffled_across_classes(tmp_path):
    root = tmp_path / "pic"
    imagegen.write_folder_dataset(root, {"train": {"a": 20, "b": 20, "c": 11}, "validation": {"a": 1}})
    run(root, tmp_path / "out", train_shards=4, validation_shards=3)
    info = metadata.load(str(tmp_path / "out"))
    sizes = [len(read_records([p])) for p in info.shard_paths(str(tmp_path / "out"), "train")]
    assert sorted(sizes) == [12, 13, 13, 13]
    labels = [r["image/class/label"] for p in info.shard_paths(str(tmp_path / "out"), "train")
              for r in read_records([p])]
    runs_of_same_label = sum(1 for x, y in zip(labels, labels[1:]) if x != y)
    assert runs_of_same_label > 10  # a class-sorted order would have 2 changes
    validation = info.shard_paths(str(tmp_path / "out"), "validation")
    assert sorted(len(read_records([p])) for p in validation) == [0, 0, 1]  # empty shards exist too


def shard_digests(out: pathlib.Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tfrecord"))}


@pytest.mark.slow
def test_same_bytes_with_one_or_two_workers_and_order_follows_seed(dataset, tmp_path):
    run(dataset, tmp_path / "one", num_workers=1, train_shards=3)
    run(dataset, tmp_path / "two", num_workers=2, train_shards=3)
    assert shard_digests(tmp_path / "one") == shard_digests(tmp_path / "two")
    assert len(shard_digests(tmp_path / "one")) == 5
    run(dataset, tmp_path / "seeded", num_workers=1, train_shards=3, seed=7)
    assert shard_digests(tmp_path / "seeded") != shard_digests(tmp_path / "one")


def plant_bad_files(root: pathlib.Path) -> dict[str, str]:
    """Write every kind of bad input; returns path relative to root → expected reason."""
    good = imagegen.jpeg(48, 32, seed=99)
    bad = {
        "train/water/.DS_Store": (b"\x00\x00\x00\x01Bud1" + bytes(100), "not an image"),
        "train/water/Thumbs.db": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(200), "not an image"),
        "train/water/notes.txt": (b"taken on a sunny day\n", "not an image"),
        "train/glacier/empty.jpg": (b"", "empty file"),
        "train/glacier/truncated.jpg": (good[: len(good) // 2], "truncated JPEG"),
        "train/rock/corrupt.jpg": (imagegen.garbage_in_scan(imagegen.jpeg(64, 64)), "corrupt JPEG"),
        "train/rock/scan.tif": (imagegen.encode(imagegen.pattern(8, 8), "TIFF"), "unsupported format TIFF"),
        "validation/water/bomb.png": (imagegen.encode(Image.new("1", (13400, 13400)), "PNG"), "decompression bomb"),
        "train/stray.jpg": (good, "not inside a class folder"),
    }
    for relative, (data, _) in bad.items():
        (root / relative).write_bytes(data)
    return {relative: reason for relative, (_, reason) in bad.items()}


def test_bad_files_are_reported_with_reasons_and_good_files_all_written(dataset, tmp_path):
    planted = plant_bad_files(dataset)
    (dataset / "train" / "water" / "disguised.jpg").write_bytes(imagegen.encode(imagegen.pattern(20, 10), "PNG"))
    result = run(dataset, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reported = {pathlib.Path(s["path"]).relative_to(dataset).as_posix(): s["reason"] for s in report["skipped"]}
    assert set(reported) == set(planted)
    for relative, reason in planted.items():
        assert reason in reported[relative], relative
    info = metadata.load(str(tmp_path / "out"))
    assert info.splits["train"].num_records == 13  # 12 good + the PNG named .jpg, converted
    assert info.splits["validation"].num_records == 5
    assert info.skipped["count"] == len(planted) == len(result.report["skipped"])
    filenames = {r["image/filename"] for r in read_records(info.shard_paths(str(tmp_path / "out"), "train"))}
    assert b"disguised.jpg" in filenames


def test_strict_publishes_only_the_report_and_the_cli_exits_1(dataset, tmp_path, capsys):
    (dataset / "train" / "water" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    code = main(["convert", "-t", str(dataset), "--output-dir", str(out), "--num-threads", "1",
                 "--dataset-name", "ds", "--strict", "--no-progress"])
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    assert "empty.jpg" in capsys.readouterr().out


def test_resize_at_conversion(dataset, tmp_path):
    run(dataset, tmp_path / "out", image=images.ImageOptions(size=(20, 30), resize_mode="crop"))
    info = metadata.load(str(tmp_path / "out"))
    assert info.image["size"] == [20, 30] and info.image["resize_mode"] == "crop"
    for record in read_records(info.shard_paths(str(tmp_path / "out"), "train")):
        assert (record["image/height"], record["image/width"]) == (20, 30)
        assert tf.io.decode_jpeg(record["image/encoded"]).shape == (20, 30, 3)


def test_default_output_is_the_input_folder_and_rerun_overwrites_cleanly(dataset):
    run(dataset, train_shards=3)
    assert len(list(dataset.glob("ds_train_*.tfrecord"))) == 3
    run(dataset, train_shards=2)  # fewer shards: the old third one must not linger
    assert sorted(p.name for p in dataset.glob("ds_train_*.tfrecord")) == [
        "ds_train_00000-of-00002.tfrecord", "ds_train_00001-of-00002.tfrecord"]
    assert metadata.load(str(dataset)).splits["train"].num_records == 12
    assert not list(dataset.glob(".recordkit-staging-*"))


def test_a_crash_mid_run_leaves_the_previous_complete_set(dataset, tmp_path, monkeypatch):
    out = tmp_path / "out"
    run(dataset, out)
    before = shard_digests(out)

    def explode(data, options):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(images, "to_rgb_jpeg", explode)  # num_workers=1 runs in this process
    with pytest.raises(Exception, match="worker killed"):
        run(dataset, out, train_shards=3)
    assert shard_digests(out) == before
    assert metadata.load(str(out)).splits["train"].num_shards == 2
    assert list(out.glob(".recordkit-staging-*"))  # the debris is hidden and incomplete...
    monkeypatch.undo()
    run(dataset, out, train_shards=3)
    assert not list(out.glob(".recordkit-staging-*"))  # ...and cleared by the next run
    assert len(shard_digests(out)) == 5


@pytest.mark.parametrize(
    "layout,message",
    [
        ({"train": {"a": 1}}, "no validation/ folder"),
        ({"validation": {"a": 1}}, "no train/ folder"),
        ({"train": {"a": 1}, "validation": {"a": 1, "b": 1}}, "classes in .*validation but not in train: b"),
    ],
)
def test_layout_errors(tmp_path, layout, message):
    imagegen.write_folder_dataset(tmp_path, layout)
    with pytest.raises(RecordkitError, match=message):
        run(tmp_path)


def test_empty_class_folder_is_an_error_and_missing_validation_class_a_warning(tmp_path):
    imagegen.write_folder_dataset(tmp_path, {"train": {"a": 2, "b": 2}, "validation": {"a": 1}})
    result = run(tmp_path, tmp_path / "out")
    assert "classes with no validation folder: b" in result.report["warnings"]
    (tmp_path / "train" / "c").mkdir()
    with pytest.raises(RecordkitError, match="empty class folders in .*train: c"):
        run(tmp_path)


def test_missing_input_folder(tmp_path):
    with pytest.raises(RecordkitError, match="does not exist"):
        run(tmp_path / "nope")


def test_cli_runs_the_tutorial_command_and_passes_beam_flags_through(dataset, capsys, monkeypatch):
    monkeypatch.chdir(dataset.parent)
    code = main(["convert", "-t", "pic/", "--train-shards", "2", "--validation-shards", "2",
                 "--num-threads", "1", "--dataset-name", "satellite", "--no-progress",
                 "--direct_num_workers=1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "records: 12 train, 5 validation (17 in all)" in out and "images/s" in out
    assert (dataset / "satellite_validation_00001-of-00002.tfrecord").exists()


def test_cli_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for command in ("convert", "train", "eval", "export", "classify", "inspect"):
        assert command in help_text


def test_cli_rejects_bad_flags(dataset, capsys):
    assert main(["convert", "-t", str(dataset), "--train-shards", "0"]) == 2
    assert "--train-shards must be at least 1" in capsys.readouterr().err
    assert main(["convert", "-t", str(dataset), "--image-size", "big"]) == 2


def split_of_each_source(out: pathlib.Path) -> dict[str, str]:
    info = metadata.load(str(out))
    spec = {records.SOURCE_ID: tf.io.FixedLenFeature([], tf.string)}
    return {
        tf.io.parse_single_example(raw, spec)[records.SOURCE_ID].numpy().decode(): split
        for split in info.splits
        for raw in tf.data.TFRecordDataset(info.shard_paths(str(out), split))
    }


def test_validation_fraction_splits_a_single_tree_stably(tmp_path):
    root = tmp_path / "tree"
    imagegen.write_folder_dataset(tmp_path, {"tree": {"cat": 40, "dog": 30}})
    result = run(root, tmp_path / "out1", validation_fraction=0.25)
    first = split_of_each_source(tmp_path / "out1")
    assert len(first) == 70 and result.records == 70
    info = metadata.load(str(tmp_path / "out1"))
    assert info.source["validation_fraction"] == 0.25
    for name, total in (("cat", 40), ("dog", 30)):  # every class is held out at about the rate
        held = info.splits["validation"].per_class[name]
        assert 0.1 * total <= held <= 0.45 * total, (name, held)
    for i in range(40, 60):  # new files in every class...
        (root / "cat" / f"new_{i}.jpg").write_bytes(imagegen.jpeg(seed=1000 + i))
    run(root, tmp_path / "out2", validation_fraction=0.25)
    second = split_of_each_source(tmp_path / "out2")
    assert len(second) == 90
    assert {k: second[k] for k in first} == first  # ...never move the old ones


def test_validation_fraction_ignores_its_own_outputs_and_reports_strays(tmp_path):
    imagegen.write_folder_dataset(tmp_path, {"tree": {"a": 6, "b": 6}})
    root = tmp_path / "tree"
    (root / "README.txt").write_text("about this data")
    run(root, validation_fraction=0.5)  # writes shards, label.txt, dataset.json into the tree
    result = run(root, validation_fraction=0.5)
    assert [pathlib.Path(s["path"]).name for s in result.report["skipped"]] == ["README.txt"]
    assert result.records == 12


@pytest.mark.parametrize("fraction,message", [(0.0, "between 0 and 1"), (1.5, "between 0 and 1")])
def test_validation_fraction_is_checked(tmp_path, fraction, message):
    imagegen.write_folder_dataset(tmp_path, {"tree": {"a": 2}})
    with pytest.raises(RecordkitError, match=message):
        run(tmp_path / "tree", validation_fraction=fraction)


def test_validation_fraction_refuses_an_already_split_tree(dataset):
    with pytest.raises(RecordkitError, match="already has train/ or validation/"):
        run(dataset, validation_fraction=0.2)


def plant_duplicates(root: pathlib.Path) -> None:
    """water/water_0 copied: within train, into validation, and into the glacier class."""
    image = (root / "train" / "water" / "water_0.jpg").read_bytes()
    (root / "train" / "water" / "copy_within.jpg").write_bytes(image)
    (root / "validation" / "water" / "copy_leak.jpg").write_bytes(image)
    other = (root / "train" / "rock" / "rock_0.jpg").read_bytes()
    (root / "train" / "glacier" / "mislabelled.jpg").write_bytes(other)


def copies(finding: dict) -> list[tuple[str, str]]:
    return [(c["split"], pathlib.Path(c["path"]).name) for c in finding["copies"]]


def test_duplicates_are_reported_and_all_kept_by_default(dataset, tmp_path):
    plant_duplicates(dataset)
    result = run(dataset, tmp_path / "out")
    findings = result.report["duplicates"]
    assert [(f["kind"], copies(f)) for f in findings] == [
        ("across_splits", [("train", "copy_within.jpg"), ("train", "water_0.jpg"),
                           ("validation", "copy_leak.jpg")]),
        ("conflicting_labels", [("train", "mislabelled.jpg"), ("train", "rock_0.jpg")]),
    ]
    assert all(f["dropped"] == [] for f in findings)
    assert result.records == 17 + 3
    assert metadata.load(str(tmp_path / "out")).duplicates == {
        "within_split": 0, "across_splits": 1, "conflicting_labels": 1, "dropped": 0}


def test_within_split_duplicate(dataset, tmp_path):
    image = (dataset / "train" / "rock" / "rock_1.jpg").read_bytes()
    (dataset / "train" / "rock" / "again.jpg").write_bytes(image)
    findings = run(dataset, tmp_path / "out").report["duplicates"]
    assert [(f["kind"], copies(f)) for f in findings] == [
        ("within_split", [("train", "again.jpg"), ("train", "rock_1.jpg")])]


def test_drop_duplicates_keeps_one_train_copy_and_drops_conflicts(dataset, tmp_path, capsys):
    plant_duplicates(dataset)
    out = tmp_path / "out"
    code = main(["convert", "-t", str(dataset), "--output-dir", str(out), "--num-threads", "1",
                 "--dataset-name", "ds", "--drop-duplicates", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "more than one split (validation leaks into training): 1" in printed
    assert "same image under different labels: 1" in printed
    assert "--drop-duplicates left out 4 copies" in printed
    info = metadata.load(str(out))
    names = {split: sorted(r["image/filename"].decode() for r in read_records(info.shard_paths(str(out), split)))
             for split in info.splits}
    assert "copy_within.jpg" in names["train"]  # first train copy by path is kept
    assert "water_0.jpg" not in names["train"] and "copy_leak.jpg" not in names["validation"]
    assert "mislabelled.jpg" not in names["train"] and "rock_0.jpg" not in names["train"]
    assert info.splits["train"].num_records == 12 + 2 - 3
    assert info.duplicates["dropped"] == 4


def plant_near_copies(root: pathlib.Path) -> None:
    """Two pictures, each with a near copy: a re-save in validation (a leak) and a crop under
    another class (one label is wrong)."""
    for name, seed in (("harbour", 1), ("dunes", 2)):
        (root / "train" / "water" / f"{name}.jpg").write_bytes(imagegen.encode(imagegen.scene(128, seed), quality=95))
    copies = imagegen.near_copies(imagegen.scene(128, 1))
    (root / "validation" / "water" / "harbour_q60.jpg").write_bytes(copies["q60"])
    (root / "train" / "rock" / "dunes_crop.jpg").write_bytes(imagegen.near_copies(imagegen.scene(128, 2))["crop4"])


def test_near_copies_are_reported_in_the_summary_report_and_dataset_json(dataset, tmp_path, capsys):
    plant_near_copies(dataset)
    out = tmp_path / "out"
    assert main(["convert", "-t", str(dataset), "--output-dir", str(out), "--num-threads", "1",
                 "--dataset-name", "ds", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "near duplicates (pairs): same image twice in a split: 0, same image in more than one split " \
           "(validation leaks into training): 1, same image under different labels: 1" in printed
    findings = json.loads((out / "report.json").read_text())["near_duplicates"]
    assert [(f["kind"], copies(f)) for f in findings] == [
        ("across_splits", [("train", "harbour.jpg"), ("validation", "harbour_q60.jpg")]),
        ("conflicting_labels", [("train", "dunes_crop.jpg"), ("train", "dunes.jpg")]),
    ]
    assert all(f["distance"]["hash_bits"] <= 14 and f["dropped"] == [] for f in findings)
    info = metadata.load(str(out))
    assert info.near_duplicates == {"checked": True, "within_split": 0, "across_splits": 1,
                                    "conflicting_labels": 1, "dropped": 0}
    assert info.splits["train"].num_records == 12 + 3 and info.splits["validation"].num_records == 5 + 1


def test_drop_near_duplicates_and_turning_the_search_off(dataset, tmp_path, capsys):
    plant_near_copies(dataset)
    out = tmp_path / "out"
    assert main(["convert", "-t", str(dataset), "--output-dir", str(out), "--num-threads", "1",
                 "--dataset-name", "ds", "--no-progress", "--drop-near-duplicates"]) == 0
    assert "--drop-near-duplicates left out 3 copies" in capsys.readouterr().out
    info = metadata.load(str(out))
    names = {split: sorted(r["image/filename"].decode() for r in read_records(info.shard_paths(str(out), split)))
             for split in info.splits}
    assert "harbour.jpg" in names["train"] and "harbour_q60.jpg" not in names["validation"]
    assert "dunes.jpg" not in names["train"] and "dunes_crop.jpg" not in names["train"]
    assert info.near_duplicates["dropped"] == 3 and info.duplicates["dropped"] == 0

    off = tmp_path / "off"
    assert main(["convert", "-t", str(dataset), "--output-dir", str(off), "--num-threads", "1",
                 "--dataset-name", "ds", "--no-progress", "--no-near-duplicates"]) == 0
    assert "near duplicates: not checked (--no-near-duplicates)" in capsys.readouterr().out
    assert json.loads((off / "report.json").read_text())["near_duplicates"] == []
    assert metadata.load(str(off)).near_duplicates["checked"] is False
    assert main(["convert", "-t", str(dataset), "--output-dir", str(tmp_path / "both"), "--no-progress",
                 "--no-near-duplicates", "--drop-near-duplicates"]) == 2
    assert "--drop-near-duplicates needs the search" in capsys.readouterr().err
    report, _ = inspect.inspect(str(off))  # the workers took no fingerprints either
    assert report.unfingerprinted == info.splits["train"].num_records + info.splits["validation"].num_records + 3


@pytest.mark.slow
@needs_satellite
def test_tutorial_command_on_the_real_satellite_dataset(tmp_path, monkeypatch, capsys):
    pic = tmp_path / "pic"
    for split in ("train", "validation"):
        shutil.copytree(SATELLITE / split, pic / split)
    monkeypatch.chdir(tmp_path)
    code = main(["convert", "-t", "pic/", "--train-shards", "2", "--validation-shards", "2",
                 "--num-threads", "2", "--dataset-name", "satellite", "--no-progress"])
    assert code == 0
    assert "records: 4800 train, 1200 validation (6000 in all)" in capsys.readouterr().out
    shards = sorted(pic.glob("satellite_*.tfrecord"))
    assert [p.name for p in shards] == [
        "satellite_train_00000-of-00002.tfrecord", "satellite_train_00001-of-00002.tfrecord",
        "satellite_validation_00000-of-00002.tfrecord", "satellite_validation_00001-of-00002.tfrecord"]
    classes = (pic / "label.txt").read_text().split()
    assert classes == sorted(p.name for p in (SATELLITE / "train").iterdir())
    train = read_records(shards[:2])
    assert len(train) == 4800 and len(read_records(shards[2:])) == 1200
    assert {classes[r["image/class/label"]] == r["image/class/text"].decode() for r in train} == {True}
    info = metadata.load(str(pic))
    assert sum(info.splits["train"].per_class.values()) == 4800
    assert info.duplicates["conflicting_labels"] == 1  # the same picture under water/ and wetland/


def test_class_folders_with_glob_characters_and_sub_folders_lose_nothing(tmp_path):
    root = tmp_path / "pic[1]"
    imagegen.write_folder_dataset(root, {"train": {"[x]": 2, "a*b": 1, "plain": 1}, "validation": {"plain": 1}})
    nested = root / "train" / "plain" / "sub" / "deeper"
    nested.mkdir(parents=True)
    (nested / "nested.jpg").write_bytes(imagegen.jpeg(seed=500))
    (nested / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    result = run(root, tmp_path / "out")
    info = metadata.load(str(tmp_path / "out"))
    assert info.splits["train"].per_class == {"[x]": 2, "a*b": 1, "plain": 2}
    assert [pathlib.Path(s["path"]).relative_to(root).as_posix() for s in result.report["skipped"]] == [
        "train/plain/sub/deeper/.DS_Store"]
    spec = {records.SOURCE_ID: tf.io.FixedLenFeature([], tf.string)}
    ids = {tf.io.parse_single_example(r, spec)[records.SOURCE_ID].numpy().decode()
           for r in tf.data.TFRecordDataset(info.shard_paths(str(tmp_path / "out"), "train"))}
    assert "plain/sub/deeper/nested.jpg" in ids


def test_a_mistyped_flag_is_an_error_not_a_silent_default(dataset, capsys):
    code = main(["convert", "-t", str(dataset), "--validaton-shards", "5", "--num-threads", "1"])
    assert code == 2
    assert "unknown flag: --validaton-shards (did you mean --validation-shards?)" in capsys.readouterr().err


def test_a_mistyped_flag_prints_only_recordkits_line(dataset):
    """Beam's own 'Discarding unparseable args' warning would repeat it in another voice."""
    done = subprocess.run([sys.executable, "-m", "recordkit", "convert", "-t", str(dataset), "--validaton-shards", "5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "recordkit convert: error: unknown flag: --validaton-shards (did you mean --validation-shards?)"]


@pytest.mark.parametrize("name", ["", "a/b", "../up", "x*", "-dash"])
def test_dataset_name_must_be_safe_in_file_names(dataset, name):
    with pytest.raises(RecordkitError, match="dataset name"):
        run(dataset, dataset_name=name)


def test_the_output_folder_is_never_read_as_a_class(dataset, tmp_path, capsys):
    out = dataset / "train" / "out"
    for _ in range(2):  # the second run finds the first run's shards inside train/
        assert main(["convert", "-t", str(dataset), "--output-dir", str(out), "--no-progress"]) == 0
    info = metadata.load(str(out))
    assert info.classes == ["glacier", "rock", "water"] and info.splits["train"].num_records == 12
    assert "skipped: 0 files" in capsys.readouterr().out
    with pytest.raises(RecordkitError, match="is in .*train/water"):
        run(dataset, dataset / "train" / "water" / "out")
    with pytest.raises(RecordkitError, match="is a class folder"):  # its images would vanish
        run(dataset, dataset / "train" / "rock")
    with pytest.raises(RecordkitError, match="is in .*train"):  # shards loose in train/
        run(dataset, dataset / "train")


def test_a_class_whose_every_file_was_skipped_is_an_error(dataset, tmp_path, capsys):
    for image in (dataset / "train" / "rock").iterdir():
        image.write_bytes(b"not an image")
    code = main(["convert", "-t", str(dataset), "--output-dir", str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    assert "no training record for class rock: every file of it was skipped" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.json"]  # nothing else published
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert not report["published"] and len(report["skipped"]) == 3


def test_beam_counters_count_what_the_workers_did(dataset, tmp_path):
    (dataset / "train" / "water" / "broken.jpg").write_bytes(imagegen.jpeg(64, 64)[:700])
    (dataset / "train" / "rock" / "notes.txt").write_text("not an image")
    result = run(dataset, tmp_path / "out", num_workers=2)  # counted in two worker processes
    written = sum(p.stat().st_size for p in (tmp_path / "out").glob("*.tfrecord"))
    assert result.counters == {
        "images_read": 19, "records_encoded": 17, "records_written": 17,
        "skipped_truncated_JPEG": 1, "skipped_not_an_image": 1,
        "bytes_encoded": written - 17 * 16,  # each record's TFRecord framing adds 16 bytes
    }


def test_an_output_dir_that_is_a_file_is_a_one_line_error(dataset, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(["convert", "-t", str(dataset), "--output-dir", str(tmp_path / "file"), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"recordkit convert: error: --output-dir {tmp_path / 'file'} is a file: pass a folder")


def test_an_output_dir_that_cannot_be_created_is_a_one_line_error(dataset, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")  # a folder below a file: ENOTDIR, even as root
    assert main(["convert", "-t", str(dataset), "--output-dir", str(tmp_path / "file" / "out"), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"recordkit convert: error: cannot create --output-dir {tmp_path / 'file' / 'out'}: Not a directory")


def test_a_second_dataset_in_the_same_folder_is_refused(dataset, tmp_path):
    run(dataset, tmp_path / "out", dataset_name="a")
    with pytest.raises(RecordkitError, match="already holds dataset 'a'"):
        run(dataset, tmp_path / "out", dataset_name="a_train")
    assert metadata.load(str(tmp_path / "out")).name == "a"
