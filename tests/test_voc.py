"""PASCAL VOC conversion: XML parsing and the devkit's label rules, then the pipeline end to end."""

import hashlib
import json
import os
import pathlib
import threading

import pytest
import tensorflow as tf

import vocgen
from recordkit import images, metadata, records, voc, voc_annotations
from recordkit.cli import main
from recordkit.convert import ConvertOptions
from recordkit.errors import RecordkitError
from vocgen import Img, Obj

CANARY = "CANARY-7f3a-top-secret"


class Canary:
    """A file outside the dataset that tells whether anything opened it: a FIFO whose writer
    thread is unblocked only by a reader. (A regular file read and then rejected as "not an
    image" would leave no trace in the output, and atime depends on mount options.)"""

    def __init__(self, path: pathlib.Path):
        os.mkfifo(path)
        self.path, self._opened, self._closing = path, threading.Event(), False
        self._writer = threading.Thread(target=self._write, daemon=True)
        self._writer.start()

    def _write(self) -> None:
        with open(self.path, "w") as fifo:  # returns once a reader has opened the FIFO
            if not self._closing:
                self._opened.set()
                fifo.write(CANARY)

    def opened(self) -> bool:
        """Whether anything opened the file; also releases the writer thread."""
        opened = self._opened.is_set()
        self._closing = True
        reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._writer.join(timeout=10)
        os.close(reader)
        return opened


def hostile_xml(secret: pathlib.Path) -> dict[str, str]:
    body = "<size><width>48</width><height>32</height></size>"
    box = "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
    return {
        "xxe": f'<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file://{secret}">]>'
               f"<annotation>{body}<object><name>&xxe;</name>{box}</object></annotation>",
        "laughs": '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1 if i > 1 else "") + ";") * 10}">'
                            for i in range(1, 10))
                  + f"]><annotation>{body}<object><name>&lol9;</name>{box}</object></annotation>",
        "external_dtd": f'<?xml version="1.0"?><!DOCTYPE annotation SYSTEM "file://{secret}">'
                        f"<annotation>{body}</annotation>",
        "parameter_entity": f'<?xml version="1.0"?><!DOCTYPE annotation [<!ENTITY % p SYSTEM "file://{secret}"> %p;]>'
                            f"<annotation>{body}</annotation>",
    }


def fixture_splits(secret: pathlib.Path) -> dict[str, dict[str, Img]]:
    hostile = hostile_xml(secret)
    return {
        "trainval": {
            "000001": Img([Obj("dog"), Obj("person", (10, 2, 40, 30))]),
            "000002": Img([Obj("dog", difficult=1), Obj("cat"), Obj("cat", difficult=1)]),
            "000003": Img([Obj("car", (-3, 2, 53, 30), truncated=1, pose="Left")]),
            "000004": Img([]),
            "000005": Img([Obj("bird", (12, 8, 36, 24))], size=(500, 375)),
            "000006": Img([Obj("person", difficult=1), Obj("person", difficult=1)]),
            "000007": Img([Obj("bus", difficult=None, truncated=None, pose=None)]),
            "000008": Img([Obj("horse")], filename="../../../secret.txt", path=str(secret)),
            "000009": Img(xml=hostile["xxe"]),
            "000010": Img(xml=hostile["laughs"]),
            "000011": Img(xml=hostile["external_dtd"]),
            "000012": Img(xml="<annotation><object><name>dog</name>"),
            "000013": Img([Obj("dog")], image=False),
        },
        "test": {
            "100001": Img([Obj("cat")]),
            "100002": Img([Obj("chair", difficult=1), Obj("sofa")]),
            "100003": Img([Obj("tvmonitor"), Obj("tvmonitor", difficult=1)]),
            "100004": Img(xml=hostile["parameter_entity"]),
        },
    }


EXPECTED_SKIPPED = sorted([
    ("Annotations/000009.xml", "hostile XML"),
    ("Annotations/000010.xml", "hostile XML"),
    ("Annotations/000011.xml", "hostile XML"),
    ("Annotations/100004.xml", "hostile XML"),
    ("Annotations/000012.xml", "malformed XML"),
    ("JPEGImages/000013.jpg", "missing image"),
    ("Annotations/000014.xml", "missing annotation"),
    ("ImageSets/Main/trainval.txt", "duplicate image id"),  # 000001 listed twice
    ("ImageSets/Main/trainval.txt", "invalid image id"),  # ../outside
])


@pytest.fixture
def canary(tmp_path):
    """secret.txt beside the VOC root, referenced by hostile XML and a hostile <filename>."""
    watched = Canary(tmp_path / "secret.txt")
    yield watched
    watched.opened()  # release the writer thread


@pytest.fixture
def voc_root(tmp_path, canary) -> pathlib.Path:
    root = tmp_path / "VOCdevkit" / "VOC2007"
    vocgen.write_voc(root, fixture_splits(canary.path), listed_extra={"trainval": ["000014", "../outside", "000001"]})
    return root


def run(root, out, voc_options=voc.VocOptions(), **kwargs):
    options = dict(input_dir=str(root), output_dir=str(out), dataset_name="voc2007", num_workers=1,
                   train_shards=2, validation_shards=1)
    options.update(kwargs)
    return voc.convert_voc(ConvertOptions(**options), voc_options, show_progress=False)


def read(out: pathlib.Path, split: str) -> dict[str, dict]:
    info = metadata.load(str(out))
    spec = records.parse_spec(records.MULTI_LABEL_FEATURES, info.num_classes)
    parsed = {}
    for raw in tf.data.TFRecordDataset(info.shard_paths(str(out), split)):
        example = tf.io.parse_single_example(raw, spec)
        values = {k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v).numpy()
                  for k, v in example.items()}
        parsed[values[records.SOURCE_ID].decode()] = values
    return parsed


def devkit_files(root: pathlib.Path, split: str, classes=vocgen.VOC_CLASSES) -> dict[str, list[int]]:
    values: dict[str, list[int]] = {}
    for index, name in enumerate(classes):
        for line in (root / "ImageSets" / "Main" / f"{name}_{split}.txt").read_text().splitlines():
            image_id, value = line.split()
            values.setdefault(image_id, [0] * len(classes))[index] = int(value)
    return values


# --- pure parsing and labels ------------------------------------------------------------------


def test_parse_annotation_reads_objects_and_defaults_missing_fields():
    xml = vocgen.annotation_xml("x", Img([Obj("dog", (1, 2, 30, 20), difficult=1, truncated=1, pose="Left"),
                                          Obj("cat", difficult=None, truncated=None, pose=None)]))
    annotation = voc_annotations.parse_annotation(xml.encode())
    assert annotation.size == (32, 48)
    dog, cat = annotation.objects
    assert (dog.name, dog.box, dog.difficult, dog.truncated, dog.pose) == ("dog", (1, 2, 30, 20), True, True, "Left")
    assert (cat.difficult, cat.truncated, cat.pose) == (False, False, "Unspecified")
    assert voc_annotations.parse_annotation(b"<annotation/>").objects == ()


@pytest.mark.parametrize("xml,reason", [
    (b"", "malformed XML"),
    (b"<annotation><object>", "malformed XML"),
    (b"<voc/>", "root element is <voc>"),
    (b"<annotation><object><bndbox/></object></annotation>", "object 1 has no <name>"),
    (b"<annotation><object><name>dog</name></object></annotation>", "object 1 (dog) has no <bndbox>"),
    (b"<annotation><object><name>dog</name><bndbox><xmin>a</xmin></bndbox></object></annotation>",
     "<xmin> 'a', not a number"),
    (b"<annotation><object><name>dog</name><difficult>yes</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
     b"<xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>", "<difficult> 'yes'"),
    (b"<annotation><object><name>dog</name><bndbox><xmin>9</xmin><ymin>1</ymin>"
     b"<xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>", "inverted box"),
])
def test_unusable_annotations_name_the_reason(xml, reason):
    with pytest.raises(voc_annotations.BadAnnotation) as raised:
        voc_annotations.parse_annotation(xml)
    assert reason in str(raised.value)


@pytest.mark.parametrize("kind", ["xxe", "laughs", "external_dtd", "parameter_entity"])
def test_hostile_xml_is_rejected_without_reading_what_it_references(tmp_path, kind):
    secret = Canary(tmp_path / "secret.txt")
    with pytest.raises(voc_annotations.BadAnnotation) as raised:
        voc_annotations.parse_annotation(hostile_xml(secret.path)[kind].encode())
    assert str(raised.value).startswith("hostile XML")
    assert not secret.opened()


def test_devkit_values_follow_the_devkit_rule():
    objects = [Obj("dog", difficult=1), Obj("cat"), Obj("cat", difficult=1), Obj("person", difficult=1),
               Obj("person", difficult=1), Obj("bus"), Obj("bus", difficult=1)]
    parsed = [voc_annotations.VocObject(o.name, o.box, bool(o.difficult), False, "") for o in objects]
    values = dict(zip(voc_annotations.VOC_CLASSES, voc_annotations.devkit_values(parsed, voc_annotations.VOC_CLASSES)))
    assert (values["dog"], values["cat"], values["person"], values["bus"], values["car"]) == (0, 1, 0, 1, -1)
    assert voc_annotations.devkit_values([], ("a", "b")) == [-1, -1]


def test_boxes_are_normalised_by_the_image_and_clipped():
    objects = [voc_annotations.VocObject("a", (12, 8, 24, 16), False, False, ""), voc_annotations.VocObject("b", (-4, 0, 60, 40), False, False, "")]
    boxes, clipped = voc_annotations.normalised_boxes(objects, height=32, width=48)
    assert boxes == [(0.25, 0.25, 0.5, 0.5), (0.0, 0.0, 1.0, 1.0)]
    assert clipped == [2]


def test_id_lists_reject_paths_and_repeats():
    ids, rejected = voc_annotations.parse_image_ids("000001\n\n 000002 \n../etc/passwd\n000001\na\\b\n")
    assert ids == ["000001", "000002"]
    assert [r.split(":")[0] for _, r in rejected] == ["invalid image id", "duplicate image id", "invalid image id"]


def test_class_files_parse_and_report_bad_lines():
    values, problems = voc_annotations.parse_class_file("000001  1\n000002 -1\n000003  0\n000004 2\n\n")
    assert values == {"000001": 1, "000002": -1, "000003": 0}
    assert problems == ["line 4 is '000004 2', expected '<id> 1|0|-1'"]


def test_classes_from_a_list_or_a_label_file(tmp_path):
    assert voc.load_classes(None) == voc_annotations.VOC_CLASSES and len(voc_annotations.VOC_CLASSES) == 20
    assert voc.load_classes("cat, dog") == ("cat", "dog")
    (tmp_path / "label.txt").write_text("0:cat\n1:dog\n2:unicorn\n")
    assert voc.load_classes(str(tmp_path / "label.txt")) == ("cat", "dog", "unicorn")
    with pytest.raises(RecordkitError, match="dog more than once"):
        voc.load_classes("dog,cat,dog")
    with pytest.raises(RecordkitError, match="expected a label.txt or a list"):
        voc.load_classes("cat,,dog")


# --- the pipeline ----------------------------------------------------------------------------


def test_voc_fixture_converts_with_devkit_labels_objects_and_reports(voc_root, tmp_path, canary):
    out = tmp_path / "out"
    result = run(voc_root, out, voc.VocOptions(check_devkit=True))
    names = sorted(p.name for p in out.iterdir())
    assert names == ["dataset.json", "label.txt", "report.json", "voc2007_train_00000-of-00002.tfrecord",
                     "voc2007_train_00001-of-00002.tfrecord", "voc2007_validation_00000-of-00001.tfrecord"]
    assert (out / "label.txt").read_text().split() == list(vocgen.VOC_CLASSES)

    # Every bad input is reported with its reason; every good one is written.
    reported = sorted((pathlib.Path(s["path"]).relative_to(voc_root).as_posix(), s["reason"].split(":")[0])
                      for s in result.report["skipped"])
    assert reported == EXPECTED_SKIPPED
    train, validation = read(out, "train"), read(out, "validation")
    assert sorted(train) == [f"00000{i}" for i in range(1, 9)]
    assert sorted(validation) == ["100001", "100002", "100003"]

    # multi-hot and difficult-only agree with the devkit-style files the fixture wrote.
    for split, converted in (("trainval", train), ("test", validation)):
        devkit = devkit_files(voc_root, split)
        for image_id, record in converted.items():
            assert list(record[records.MULTI_HOT]) == [int(v == 1) for v in devkit[image_id]], image_id
            assert list(record[records.DIFFICULT_ONLY]) == [int(v == 0) for v in devkit[image_id]], image_id
    cls = vocgen.VOC_CLASSES.index
    assert train["000002"][records.DIFFICULT_ONLY][cls("dog")] == 1 and train["000002"][records.MULTI_HOT][cls("cat")] == 1
    assert train["000006"][records.DIFFICULT_ONLY][cls("person")] == 1 and train["000006"][records.MULTI_HOT].sum() == 0
    assert train["000004"][records.MULTI_HOT].sum() == 0 and len(train["000004"][records.OBJECT_LABEL]) == 0

    # Objects under the TF OD API keys, boxes normalised by the decoded image and clipped.
    multi = train["000001"]
    assert list(multi[records.OBJECT_LABEL]) == [cls("dog"), cls("person")]
    assert list(multi[records.OBJECT_TEXT]) == [b"dog", b"person"]
    assert multi[records.BBOX_XMIN] == pytest.approx([4 / 48, 10 / 48])
    assert multi[records.BBOX_YMAX] == pytest.approx([16 / 32, 30 / 32])
    car = train["000003"]
    assert list(car[records.OBJECT_TRUNCATED]) == [1] and list(car[records.OBJECT_VIEW]) == [b"Left"]
    assert car[records.BBOX_XMIN] == pytest.approx([0.0]) and car[records.BBOX_XMAX] == pytest.approx([1.0])
    assert car[records.BBOX_YMIN] == pytest.approx([2 / 32])
    assert list(train["000002"][records.OBJECT_DIFFICULT]) == [1, 0, 1]
    bird = train["000005"]  # <size> says 500x375: the real 48x32 image wins
    assert bird[records.BBOX_XMIN] == pytest.approx([12 / 48]) and bird[records.BBOX_YMAX] == pytest.approx([24 / 32])
    defaults = train["000007"]
    assert (list(defaults[records.OBJECT_DIFFICULT]), list(defaults[records.OBJECT_VIEW])) == ([0], [b"Unspecified"])

    # The image is JPEGImages/<id>.jpg, never what <filename>/<path> say.
    horse = train["000008"]
    assert horse[records.ENCODED] == (voc_root / "JPEGImages" / "000008.jpg").read_bytes()
    assert horse[records.FILENAME] == b"000008.jpg"
    assert (horse[records.HEIGHT], horse[records.WIDTH]) == (32, 48)

    warnings = result.report["warnings"]
    assert any("000003.xml: boxes of objects 1 (car) reach outside the 48x32 image; clipped" in w for w in warnings)
    assert any("000005.xml: <size> says 500x375 but the image is 48x32" in w for w in warnings)
    assert not [w for w in warnings if w.startswith("devkit check")]  # the fixture's files agree

    # dataset.json: label kind, keys, where each split came from, per-class counts.
    info = metadata.load(str(out))
    assert info.label_kind == "multi" and info.num_classes == 20
    assert info.features == records.describe(records.MULTI_LABEL_FEATURES)
    assert info.source["splits"] == {"train": "trainval", "validation": "test"}
    assert (info.splits["train"].source, info.splits["validation"].source) == ("trainval", "test")
    assert info.splits["train"].num_records == 8 and info.splits["validation"].num_records == 3
    assert info.splits["train"].per_class["dog"] == {"positive": 1, "difficult_only": 1}
    assert info.splits["train"].per_class["person"] == {"positive": 1, "difficult_only": 1}
    assert info.splits["validation"].per_class["chair"] == {"positive": 0, "difficult_only": 1}
    assert info.splits["validation"].per_class["tvmonitor"] == {"positive": 1, "difficult_only": 0}
    assert info.skipped["count"] == 9 and info.skipped["by_reason"]["hostile XML"] == 4

    # Nothing the hostile files point at (entities, a DTD, <filename>../../../secret.txt) was opened.
    assert not canary.opened()


def test_infinite_size_and_unreadable_annotation_are_reported_not_fatal(tmp_path):
    root = tmp_path / "VOC"
    vocgen.write_voc(root, {"trainval": {"a1": Img([Obj("dog")]), "a2": Img([Obj("cat")]), "a3": Img([Obj("cow")])},
                            "test": {"b1": Img([Obj("dog")])}})
    a2 = root / "Annotations" / "a2.xml"
    a2.write_text(a2.read_text().replace("<height>32</height>", "<height>inf</height>"))
    (root / "Annotations" / "a3.xml").unlink()
    (root / "Annotations" / "a3.xml").mkdir()  # exists, but cannot be read as a file
    result = run(root, tmp_path / "out")
    assert [(pathlib.Path(s["path"]).name, s["reason"].split(":")[0]) for s in result.report["skipped"]] == [
        ("a3.xml", "unreadable")]
    assert result.report["records"] == {"train": 2, "validation": 1}  # a2 kept: the decoded size wins


def test_devkit_check_reports_a_disagreement(voc_root, tmp_path):
    dog_file = voc_root / "ImageSets" / "Main" / "dog_trainval.txt"
    dog_file.write_text(dog_file.read_text().replace("000001  1", "000001 -1") + "garbage line here\n")
    result = run(voc_root, tmp_path / "out", voc.VocOptions(check_devkit=True))
    devkit = [w for w in result.report["warnings"] if w.startswith("devkit check")]
    assert len(devkit) == 2, devkit
    assert "devkit check: 000001 (trainval): dog 1 here, -1 in dog_trainval.txt" in devkit
    assert any("dog_trainval.txt: line" in w and "garbage line here" in w for w in devkit)
    assert result.info is not None  # a disagreement is reported, not fatal


def write_custom(root: pathlib.Path) -> None:
    vocgen.write_voc(root, {
        "train": {"a1": Img([Obj("cat")]), "a2": Img([Obj("dog"), Obj("unicorn", difficult=1)])},
        "val": {"b1": Img([Obj("dog", difficult=1)])},
    }, classes=("cat", "dog"))


def test_custom_classes_and_unknown_class_is_an_error_naming_file_and_class(tmp_path):
    root = tmp_path / "custom"
    write_custom(root)
    result = run(root, tmp_path / "out", voc.VocOptions(splits=("train", "val"), classes=("cat", "dog")))
    assert result.info is None and not result.report["published"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.json"]
    [entry] = result.report["skipped"]
    assert entry["path"].endswith("Annotations/a2.xml") and entry["reason"] == "unknown class: unicorn (not in the class list)"


def test_unknown_class_objects_can_be_skipped_with_a_warning(tmp_path):
    root = tmp_path / "custom"
    write_custom(root)
    (tmp_path / "label.txt").write_text("cat\ndog\n")
    classes = voc.load_classes(str(tmp_path / "label.txt"))
    result = run(root, tmp_path / "out", voc.VocOptions(splits=("train", "val"), classes=classes,
                                                        unknown_classes="skip", check_devkit=True))
    assert result.report["skipped"] == []
    assert any("a2.xml: dropped objects of classes not in the class list: unicorn" in w for w in result.report["warnings"])
    assert (tmp_path / "out" / "label.txt").read_text() == "cat\ndog\n"
    train = read(tmp_path / "out", "train")
    assert list(train["a2"][records.MULTI_HOT]) == [0, 1] and list(train["a2"][records.OBJECT_TEXT]) == [b"dog"]
    assert list(read(tmp_path / "out", "validation")["b1"][records.DIFFICULT_ONLY]) == [0, 1]
    assert result.info.source["classes"] == "--classes"


def shard_digests(out: pathlib.Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tfrecord"))}


@pytest.mark.slow
def test_same_bytes_with_one_or_two_workers(voc_root, tmp_path):
    run(voc_root, tmp_path / "one", num_workers=1, train_shards=3)
    run(voc_root, tmp_path / "two", num_workers=2, train_shards=3)
    assert shard_digests(tmp_path / "one") == shard_digests(tmp_path / "two")
    assert len(shard_digests(tmp_path / "one")) == 4
    report = lambda out: json.loads((out / "report.json").read_text())  # noqa: E731
    assert report(tmp_path / "one") == report(tmp_path / "two")


def test_cli_voc_flow_with_resize_keeps_boxes_normalised(voc_root, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["convert", "--format", "voc", "--voc-root", str(voc_root), "--splits", "trainval,test",
                 "--dataset-name", "voc2007", "--train-shards", "2", "--validation-shards", "1",
                 "--image-size", "24", "--output-dir", str(out), "--num-threads", "1", "--no-progress",
                 "--check-devkit"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "records: 8 train, 3 validation (11 in all)" in printed.out
    assert "skipped: 9 files" in printed.out and "hostile XML" in printed.out
    assert "devkit check: all 11 converted images agree" in printed.out
    record = read(out, "train")["000001"]
    assert (record[records.HEIGHT], record[records.WIDTH]) == (24, 24)
    assert record[records.BBOX_XMIN] == pytest.approx([4 / 48, 10 / 48])  # stretch keeps fractions
    assert metadata.load(str(out)).image["size"] == [24, 24]


def test_cli_unknown_class_exits_1_and_says_how_to_fix(tmp_path, capsys):
    root = tmp_path / "custom"
    write_custom(root)
    code = main(["convert", "--format", "voc", "--voc-root", str(root), "--splits", "train,val",
                 "--classes", "cat,dog", "--output-dir", str(tmp_path / "out"), "--num-threads", "1",
                 "--no-progress"])
    printed = capsys.readouterr()
    assert code == 1
    assert "a2.xml: unknown class: unicorn" in printed.out
    assert "--unknown-classes skip" in printed.err


@pytest.mark.parametrize("change,message", [
    (lambda root: (root / "ImageSets" / "Main" / "test.txt").unlink(), "missing .*ImageSets/Main/test.txt"),
    (lambda root: (root / "JPEGImages").rename(root / "images"), "not a VOC dataset: no JPEGImages/"),
    (lambda root: (root / "ImageSets" / "Main" / "cow_test.txt").unlink(), "missing .*cow_test.txt .*--check-devkit"),
])
def test_layout_errors_name_what_is_missing(voc_root, change, message):
    change(voc_root)
    with pytest.raises(RecordkitError, match=message):
        voc.discover(str(voc_root), voc.VocOptions(check_devkit=True), images.ImageOptions())


def test_option_errors(voc_root):
    with pytest.raises(RecordkitError, match="two different VOC splits"):
        voc.discover(str(voc_root), voc.VocOptions(splits=("trainval", "trainval")), images.ImageOptions())
    with pytest.raises(RecordkitError, match="crop would cut objects off"):
        voc.discover(str(voc_root), voc.VocOptions(), images.ImageOptions(size=(24, 24), resize_mode="crop"))
    with pytest.raises(RecordkitError, match="does not exist"):
        voc.discover(str(voc_root / "nope"), voc.VocOptions(), images.ImageOptions())


def test_training_input_reads_multi_hot_targets_and_ignores_difficult_only(voc_root, tmp_path):
    from recordkit import dataset

    out = tmp_path / "out"
    run(voc_root, out)
    batches = dataset.make(str(out), "validation", image_size=16, mode="inception", batch_size=8, training=False)
    [(pixels, targets)] = list(batches)
    assert pixels.shape == (3, 16, 16, 3)
    by_id = {tuple(t): i for i, t in enumerate(targets["multi_hot"].numpy().astype(int).tolist())}
    expected = devkit_files(voc_root, "test")
    for values in expected.values():
        row = by_id[tuple(int(v == 1) for v in values)]
        assert targets["mask"].numpy()[row].tolist() == [float(v != 0) for v in values]
