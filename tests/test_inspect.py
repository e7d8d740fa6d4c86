"""`recordkit inspect`: counts, duplicates and broken records planted in real shards are found,
exactly, with their shard and record index."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import fixtures_records
import imagegen
import vocgen
from recordkit import contact_sheet, inspect, metadata, records, voc
from recordkit.cli import main
from recordkit.convert import ConvertOptions
from recordkit.folders import convert_folders

TRAIN = "ds_train_00000-of-00002.tfrecord"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A converted dataset with planted duplicates: the same bytes under two labels, in both
    splits, and twice in one class."""
    root = tmp_path_factory.mktemp("pic")
    imagegen.write_folder_dataset(root, {"train": {"a": 4, "b": 3, "c": 3}, "validation": {"a": 2, "b": 1}})
    train, validation = root / "train", root / "validation"
    (train / "b" / "b_relabelled.jpg").write_bytes((train / "a" / "a_0.jpg").read_bytes())
    (validation / "a" / "a_leaked.jpg").write_bytes((train / "a" / "a_1.jpg").read_bytes())
    (train / "c" / "c_again.jpg").write_bytes((train / "c" / "c_2.jpg").read_bytes())
    out = tmp_path_factory.mktemp("out")
    options = ConvertOptions(input_dir=str(root), dataset_name="ds", output_dir=str(out), num_workers=1)
    convert_folders(options, show_progress=False)
    return out


@pytest.fixture
def copy(converted, tmp_path):
    """A copy of the converted dataset that a test may damage."""
    return shutil.copytree(converted, tmp_path / "ds")


def raw_records(path) -> list[bytes]:
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def write_records(path, serialized: list[bytes]) -> None:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in serialized:
            writer.write(record)


def edit_record(path, index: int, change) -> None:
    """Rewrite record `index` of a shard (with valid framing) after `change(its features)`."""
    serialized = raw_records(path)
    example = tf.train.Example.FromString(serialized[index])
    change(example.features.feature)
    serialized[index] = example.SerializeToString()
    write_records(path, serialized)


def set_value(key: str, value):
    """A change for edit_record: one int64 or bytes value."""
    def change(feature):
        values = feature[key].int64_list.value if isinstance(value, int) else feature[key].bytes_list.value
        values[0] = value
    return change


def record_offset(path, index: int) -> int:
    """Byte offset where record `index` starts in a shard file."""
    return sum(len(r) + 16 for r in raw_records(path)[:index])


def where(report) -> list[tuple]:
    return [(p.split, p.shard, p.index) for p in report.problems]


def test_counts_sizes_and_planted_duplicates_exactly(converted):
    report, _ = inspect.inspect(str(converted))
    assert report.problems == []
    train, validation = report.splits["train"], report.splits["validation"]
    assert (train.records, train.shards, validation.records) == (12, 2, 4)
    assert train.per_class == {"a": 4, "b": 4, "c": 4} and validation.per_class == {"a": 3, "b": 1, "c": 0}
    assert train.bytes == sum(p.stat().st_size for p in converted.glob("ds_train_*.tfrecord"))
    assert train.image_sizes == {
        "width": {"min": 48, "median": 48.0, "max": 48}, "height": {"min": 32, "median": 32.0, "max": 32},
        "distinct": 1, "most_common": [{"size": "48x32", "records": 12}],
    }
    found = [(f.kind, [(c.split, c.path, c.label) for c in f.copies]) for f in report.duplicates]
    assert found == [
        ("conflicting_labels", [("train", "a/a_0.jpg", ("a",)), ("train", "b/b_relabelled.jpg", ("b",))]),
        ("across_splits", [("train", "a/a_1.jpg", ("a",)), ("validation", "a/a_leaked.jpg", ("a",))]),
        ("within_split", [("train", "c/c_2.jpg", ("c",)), ("train", "c/c_again.jpg", ("c",))]),
    ]
    # Each copy names the shard and record that hold it.
    for copy_ in (c for f in report.duplicates for c in f.copies):
        record = raw_records(converted / copy_.shard)[copy_.index]
        assert tf.train.Example.FromString(record).features.feature[records.SOURCE_ID].bytes_list.value[0].decode() == copy_.path


def test_verify_passes_a_healthy_dataset(converted):
    report, _ = inspect.inspect(str(converted), verify=True)
    assert report.problems == [] and report.verified
    assert report.splits["train"].decoded == 12 and report.splits["validation"].decoded == 4


def test_verify_finds_an_image_that_does_not_decode_inside_a_shard(copy):
    def truncate_image(feature):
        jpeg = feature[records.ENCODED].bytes_list.value[0][:300]
        feature[records.ENCODED].bytes_list.value[0] = jpeg
        feature[records.SHA256].bytes_list.value[0] = hashlib.sha256(jpeg).hexdigest().encode()

    edit_record(copy / TRAIN, 3, truncate_image)
    assert inspect.inspect(str(copy))[0].problems == []  # framing and keys are fine: only decoding tells
    report, _ = inspect.inspect(str(copy), verify=True)
    assert where(report) == [("train", TRAIN, 3)]
    assert report.problems[0].message.startswith("image does not decode: ")
    assert "jpeg" in report.problems[0].message.lower()
    assert report.splits["train"].decoded == 11 and report.splits["train"].records == 12


def test_verify_checks_sha256_and_size_against_the_record(copy):
    edit_record(copy / TRAIN, 1, set_value(records.SHA256, b"0" * 64))
    edit_record(copy / TRAIN, 4, set_value(records.WIDTH, 99))
    report, _ = inspect.inspect(str(copy), verify=True)
    assert [(p.index, p.message) for p in report.problems] == [
        (1, "image/key/sha256 is not the sha256 of image/encoded"),
        (4, "image is 48x32 but the record says 99x32"),
    ]


def test_a_shard_truncated_mid_record_is_damaged_from_that_record_on(copy):
    path = copy / TRAIN
    kept = record_offset(path, 4) + 100
    path.write_bytes(path.read_bytes()[:kept])
    report, _ = inspect.inspect(str(copy))
    assert where(report) == [("train", None, None), ("train", TRAIN, None)]
    assert report.problems[0].message == "dataset.json says 12 records, the shards hold 10"
    assert report.problems[1].message.startswith(f"damaged from record 4 on, 100 of {kept} bytes unreadable: truncated record")
    assert report.splits["train"].records == 10


def test_a_bad_crc_loses_the_rest_of_the_shard(copy):
    path = copy / TRAIN
    data = bytearray(path.read_bytes())
    data[record_offset(path, 2) + 50] ^= 0xFF
    path.write_bytes(bytes(data))
    report, _ = inspect.inspect(str(copy), verify=True)
    assert where(report) == [("train", None, None), ("train", TRAIN, None)]
    assert "damaged from record 2 on" in report.problems[1].message
    assert "corrupted record" in report.problems[1].message
    assert report.splits["train"].decoded == 12 - 4  # 6 records in the shard, 2 readable


def test_a_record_missing_a_key_does_not_parse(copy):
    edit_record(copy / TRAIN, 5, lambda feature: feature.__delitem__(records.TEXT))
    report, _ = inspect.inspect(str(copy))
    assert where(report) == [("train", TRAIN, 5)]
    assert report.problems[0].message.startswith("does not parse: ")
    assert records.TEXT in report.problems[0].message
    assert report.splits["train"].records == 11


def test_labels_out_of_range_or_disagreeing_with_their_text(copy):
    edit_record(copy / TRAIN, 0, set_value(records.LABEL, 7))
    edit_record(copy / TRAIN, 2, set_value(records.TEXT, b"zebra"))
    report, _ = inspect.inspect(str(copy))
    messages = [(p.index, p.message) for p in report.problems if p.shard]
    assert messages[0] == (0, "label 7 out of range: there are 3 classes")
    assert messages[1][0] == 2 and "image/class/text says 'zebra'" in messages[1][1]
    assert len(messages) == 2
    # The out-of-range record is counted in no class, and dataset.json's per-class count disagrees.
    assert sum(report.splits["train"].per_class.values()) == 11


def test_missing_shard_and_wrong_counts_in_dataset_json(copy):
    (copy / TRAIN).unlink()
    info = metadata.load(str(copy))
    info.splits["validation"].per_class = {"a": 2, "b": 2, "c": 0}
    (copy / metadata.DATASET_JSON).write_text(info.to_json())
    report, _ = inspect.inspect(str(copy))
    assert [(p.split, p.shard, p.message) for p in report.problems] == [
        ("train", None, "dataset.json says 12 records, the shards hold 6"),
        ("train", TRAIN, "listed in dataset.json but missing"),
        ("validation", None, "class a: dataset.json says 2, the shards hold 3"),
        ("validation", None, "class b: dataset.json says 2, the shards hold 1"),
    ]


def multi_label_dataset(directory) -> metadata.DatasetInfo:
    """3 classes, 5 records in 2 shards, (multi_hot, difficult_only) as listed; record 4 has
    record 1's image. dataset.json's per_class as the VOC converter writes it."""
    classes = ["cat", "dog", "car"]
    labelled = [([1, 0, 0], [0, 0, 0]), ([1, 1, 0], [0, 0, 1]), ([0, 0, 1], [1, 0, 0]),
                ([0, 1, 0], [0, 0, 0]), ([1, 0, 1], [0, 0, 0])]
    colours = [fixtures_records.COLOURS[k] for k in range(len(labelled))]
    jpegs = [imagegen.encode(Image.new("RGB", (40, 30), c), "JPEG") for c in colours]
    jpegs[4] = jpegs[1]  # same image, different labels
    serialized = []
    for k, ((hot, difficult), jpeg) in enumerate(zip(labelled, jpegs)):
        values = records.image_values(jpeg, 30, 40, f"{k}.jpg", f"img{k}", "")  # no fingerprint, as before 0.x
        objects = [c for c in range(3) if hot[c] or difficult[c]]
        values.update({
            records.MULTI_HOT: hot, records.DIFFICULT_ONLY: difficult,
            records.BBOX_XMIN: [0.0] * len(objects), records.BBOX_XMAX: [1.0] * len(objects),
            records.BBOX_YMIN: [0.0] * len(objects), records.BBOX_YMAX: [1.0] * len(objects),
            records.OBJECT_LABEL: objects, records.OBJECT_TEXT: [classes[c] for c in objects],
            records.OBJECT_DIFFICULT: [difficult[c] for c in objects],
            records.OBJECT_TRUNCATED: [0] * len(objects), records.OBJECT_VIEW: ["Unspecified"] * len(objects),
        })
        serialized.append(records.serialize(records.MULTI_LABEL_FEATURES, values))
    files = [metadata.shard_name("voc", "trainval", i, 2) for i in range(2)]
    write_records(directory / files[0], serialized[:3])
    write_records(directory / files[1], serialized[3:])
    info = metadata.DatasetInfo(
        name="voc", label_kind="multi", classes=classes,
        splits={"trainval": metadata.SplitInfo(5, 2, files, {"cat": {"positive": 3, "difficult_only": 1}, "dog": {"positive": 2, "difficult_only": 0},
                                                  "car": {"positive": 2, "difficult_only": 1}})},
        features=records.describe(records.MULTI_LABEL_FEATURES), image={}, seed=0,
    )
    (directory / metadata.DATASET_JSON).write_text(info.to_json())
    return info


def test_multi_label_positives_difficult_only_and_conflicts(tmp_path):
    multi_label_dataset(tmp_path)
    report, contents = inspect.inspect(str(tmp_path), verify=True)
    assert report.problems == []
    assert report.splits["trainval"].per_class == {
        "cat": {"positive": 3, "difficult_only": 1}, "dog": {"positive": 2, "difficult_only": 0},
        "car": {"positive": 2, "difficult_only": 1},
    }
    [finding] = report.duplicates
    assert finding.kind == "conflicting_labels"
    assert report.near_duplicates == [] and report.unfingerprinted == 5  # records without fingerprints
    assert [(c.path, c.label, c.shard, c.index) for c in finding.copies] == [
        ("img1", ("cat", "dog"), "voc_trainval_00000-of-00002.tfrecord", 1),
        ("img4", ("cat", "car"), "voc_trainval_00001-of-00002.tfrecord", 1),
    ]
    # Contact sheet rows come from positives, in shard and record order.
    assert contact_sheet.pick(contents, 3, 2) == [
        [("trainval", 0, 0), ("trainval", 0, 1)], [("trainval", 0, 1), ("trainval", 1, 0)],
        [("trainval", 0, 2), ("trainval", 1, 1)],
    ]


def test_a_real_voc_conversion_agrees_with_its_dataset_json(tmp_path):
    Obj, Img = vocgen.Obj, vocgen.Img
    vocgen.write_voc(tmp_path / "voc", {
        "trainval": {"1": Img([Obj("cat"), Obj("dog", difficult=1)]), "2": Img([Obj("dog")]), "3": Img([Obj("cat")])},
        "test": {"4": Img([Obj("car")])},
    })
    options = ConvertOptions(input_dir=str(tmp_path / "voc"), output_dir=str(tmp_path / "out"),
                             dataset_name="voc", num_workers=1, train_shards=2, validation_shards=1)
    voc.convert_voc(options, show_progress=False)
    report, _ = inspect.inspect(str(tmp_path / "out"), verify=True)
    assert report.problems == [] and report.label_kind == "multi"
    train = report.splits["train"].per_class
    assert (train["cat"], train["dog"]) == ({"positive": 2, "difficult_only": 0}, {"positive": 1, "difficult_only": 1})
    assert report.splits["validation"].per_class["car"] == {"positive": 1, "difficult_only": 0}


def test_near_copies_are_found_as_the_conversion_found_them(tmp_path, capsys):
    root = tmp_path / "pic"
    imagegen.write_folder_dataset(root, {"train": {"a": 3, "b": 2}, "validation": {"a": 1, "b": 1}})
    picture = imagegen.scene(128, 4)
    (root / "train" / "a" / "scene.jpg").write_bytes(imagegen.encode(picture, quality=95))
    copies = imagegen.near_copies(picture)
    (root / "validation" / "a" / "scene_small.jpg").write_bytes(copies["resize90"])
    (root / "train" / "b" / "scene_q60.jpg").write_bytes(copies["q60"])
    options = ConvertOptions(input_dir=str(root), dataset_name="ds", output_dir=str(tmp_path / "out"), num_workers=1)
    convert_folders(options, show_progress=False)
    converted = json.loads((tmp_path / "out" / "report.json").read_text())["near_duplicates"]
    report, _ = inspect.inspect(str(tmp_path / "out"))
    found = [(f.kind, [(c.split, c.path) for c in f.copies]) for f in report.near_duplicates]
    # Three mutual near copies: the two in train under different labels, and each of them
    # with the validation copy (with a/scene.jpg a leak; with b/scene_q60.jpg a label conflict).
    assert found == [("conflicting_labels", [("train", "a/scene.jpg"), ("train", "b/scene_q60.jpg")]),
                     ("conflicting_labels", [("train", "b/scene_q60.jpg"), ("validation", "a/scene_small.jpg")]),
                     ("across_splits", [("train", "a/scene.jpg"), ("validation", "a/scene_small.jpg")])]
    assert sorted(found, key=str) == sorted(
        [(f["kind"], [(c["split"], c["path"].split(f"{c['split']}/", 1)[1]) for c in f["copies"]]) for f in converted], key=str)
    assert report.unfingerprinted == 0
    assert main(["inspect", str(tmp_path / "out")]) == 0
    table = capsys.readouterr().out
    assert "near duplicates (image/key/fingerprint: re-saved, resized or cropped a little): 3 pairs" in table
    assert "train/a/scene.jpg (a) ~ validation/a/scene_small.jpg (a)" in table


def test_contact_sheet_has_a_row_of_each_class_images(tmp_path):
    info = fixtures_records.write_dataset(str(tmp_path), num_classes=3, sizes={"train": 7, "validation": 3})
    _, contents = inspect.inspect(str(tmp_path))
    sheet = contact_sheet.make(str(tmp_path), info, contents, per_class=3, thumb=32)
    pixels = np.asarray(sheet).astype(int)
    top = contact_sheet.FONT_SIZE + 2 * contact_sheet.PAD
    for row, colour in enumerate(fixtures_records.COLOURS[:3]):
        band = pixels[top + row * (32 + contact_sheet.PAD):][:32]
        near = np.abs(band - colour).sum(axis=-1) < 90
        assert near.sum() > 3 * 32 * 32 * 0.8, f"row {row} does not show class {row}'s images"
    assert sheet.height == top + 3 * (32 + contact_sheet.PAD) + contact_sheet.PAD


def test_cli_table_json_exit_codes_and_contact_sheet(copy, tmp_path, capsys):
    assert main(["inspect", str(copy)]) == 0
    table = capsys.readouterr().out
    assert "train/a/a_0.jpg (a) = train/b/b_relabelled.jpg (b)" in table
    assert "train/a/a_1.jpg (a) = validation/a/a_leaked.jpg (a)" in table
    assert "problems: none" in table
    sheet = tmp_path / "new folder" / "sheet.png"  # the folder is made
    assert main(["inspect", str(copy), "--json", "--contact_sheet", str(sheet), "--samples-per-class", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["splits"]["train"]["per_class"] == {"a": 4, "b": 4, "c": 4}
    assert [f["kind"] for f in data["duplicates"]] == ["conflicting_labels", "across_splits", "within_split"]
    assert Image.open(sheet).size[1] > 3 * 96
    (copy / TRAIN).write_bytes((copy / TRAIN).read_bytes()[:-10])
    assert main(["inspect", str(copy), "--verify"]) == 1
    assert f"train {TRAIN}: damaged from record 5 on" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "nowhere")]) == 2
    assert "dataset.json" in capsys.readouterr().err
    (tmp_path / "a file").write_text("")
    assert main(["inspect", str(copy), "--contact-sheet", str(tmp_path / "a file" / "sheet.png")]) == 2
    assert "cannot write the contact sheet to" in capsys.readouterr().err
