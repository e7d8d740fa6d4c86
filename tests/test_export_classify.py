"""export -> classify round trip on a tiny model, the CLI's output format and bad files."""

import io
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from recordkit import classify, export  # noqa: E402
from recordkit.cli import main  # noqa: E402
from recordkit.errors import RecordkitError  # noqa: E402

CLASSES = ["cloud", "water", "wetland"]
SIZE = (16, 16)


def _preprocess(image):
    """Stand-in for a run's eval preprocessing: resize, then scale to [-1, 1]."""
    return tf.image.resize(tf.cast(image, tf.float32), SIZE) / 127.5 - 1.0


def _tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((*SIZE, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(len(CLASSES), bias_initializer="glorot_uniform")(x))


def _jpeg(seed, size=(20, 28)):
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


def _export(model, directory, label_kind="single"):
    info = export.ServingInfo(CLASSES, label_kind, SIZE, _preprocess, {"model_name": "tiny"})
    return export.write_saved_model(model, info, str(directory))


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return _export(model, tmp_path_factory.mktemp("export") / "model")


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("images")
    for i in range(3):
        (directory / f"good{i}.jpg").write_bytes(_jpeg(i))
    (directory / "notes.jpg").write_text("this is not an image")
    data = _jpeg(9, size=(64, 64))
    (directory / "truncated.jpg").write_bytes(data[: len(data) * 2 // 3])
    return directory


def _in_memory_logits(model, data):
    image = tf.io.decode_jpeg(data, channels=3)
    return model(_preprocess(image)[None], training=False).numpy()[0]


def test_round_trip_gives_the_in_memory_model_scores(model, exported, images_dir):
    classifier = classify.load(exported)
    assert classifier.classes == CLASSES and classifier.label_kind == "single"
    paths = sorted(str(p) for p in images_dir.glob("good*.jpg"))
    results = classify.classify_files(classifier, paths)
    for path, result in zip(paths, results):
        expected = _in_memory_logits(model, open(path, "rb").read())
        np.testing.assert_allclose(result.logits, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(result.probabilities, tf.nn.softmax(expected).numpy(), atol=1e-6)
    assert np.ptp(results[0].logits) > 1e-3  # the scores are not all the same


def test_signature_returns_top_class_names(model, exported):
    serve = tf.saved_model.load(exported).signatures[export.SIGNATURE]
    out = serve(image_bytes=tf.constant([_jpeg(0), _jpeg(1)]))
    logits = out["logits"].numpy()
    best = np.argmax(logits, axis=1)
    np.testing.assert_array_equal(out["top_class_ids"].numpy()[:, 0], best)
    assert [c.decode() for c in out["top_classes"].numpy()[:, 0]] == [CLASSES[i] for i in best]


def test_cli_prints_tutorial_lines(exported, images_dir, capsys):
    path = str(images_dir / "good0.jpg")
    assert main(["classify", f"--model_path={exported}", "--image_file", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(CLASSES)
    parsed = [re.fullmatch(r"(\w+) \(score = (-?\d+\.\d{5})\)", line) for line in lines]
    assert all(parsed), lines
    scores = [float(m.group(2)) for m in parsed]
    assert scores == sorted(scores, reverse=True)
    logits = classify.classify_files(classify.load(exported), [path])[0].logits
    assert scores[0] == pytest.approx(logits.max(), abs=1e-5)
    assert main(["classify", "--model-path", exported, "--image-file", path,
                 "--num-top-predictions", "1", "--probabilities"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert 0 < float(re.search(r"score = (.*)\)", line).group(1)) <= 1


def test_bad_files_are_named_and_others_still_classified(exported, images_dir, capsys):
    missing = str(images_dir / "missing.jpg")
    code = main(["classify", "--model_path", exported, "--image_file",
                 str(images_dir / "*.jpg"), missing, "--json"])
    assert code == 1
    captured = capsys.readouterr()
    by_file = {entry["file"].rsplit("/", 1)[-1]: entry for entry in json.loads(captured.out)}
    assert sorted(by_file) == ["good0.jpg", "good1.jpg", "good2.jpg", "missing.jpg",
                               "notes.jpg", "truncated.jpg"]
    assert all(len(by_file[f"good{i}.jpg"]["predictions"]) == 3 for i in range(3))
    assert "no such file" in by_file["missing.jpg"]["error"]
    assert "not an image" in by_file["notes.jpg"]["error"]
    assert "truncated" in by_file["truncated.jpg"]["error"].lower()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("recordkit classify: error: ") for line in errors)


def test_label_path_must_match_the_model(exported, images_dir, tmp_path, capsys):
    (tmp_path / "label.txt").write_text("0:a\n1:b\n")
    code = main(["classify", "--model_path", exported, "--label_path",
                 str(tmp_path / "label.txt"), "--image_file", str(images_dir / "good0.jpg")])
    assert code == 2 and "has 2 classes but the model has 3" in capsys.readouterr().err
    (tmp_path / "label.txt").write_text("0:A\n1:B\n2:C\n")
    assert classify.load(exported, str(tmp_path / "label.txt")).classes == ["A", "B", "C"]


def test_multi_label_lists_classes_above_threshold(model, tmp_path, images_dir, capsys):
    exported = _export(model, tmp_path / "multi", label_kind="multi")
    path = str(images_dir / "good1.jpg")
    result = classify.classify_files(classify.load(exported), [path])[0]
    np.testing.assert_allclose(result.probabilities, 1 / (1 + np.exp(-result.logits)), rtol=1e-5)
    middle = float(np.sort(result.probabilities)[1])
    assert main(["classify", "--model_path", exported, "--image_file", path,
                 "--threshold", str(middle), "--probabilities"]) == 0
    scores = [float(re.search(r"score = (.*)\)", line).group(1))
              for line in capsys.readouterr().out.splitlines()]
    assert len(scores) == 2 and min(scores) == pytest.approx(middle, abs=1e-5)


def test_export_is_atomic_and_refuses_to_overwrite(model, exported, tmp_path):
    with pytest.raises(RecordkitError, match="not empty"):
        _export(model, exported)
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")

    def crash(path):
        (tmp_path / "half").write_text(path)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        export.write_atomically(str(target), crash, overwrite=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert (target / "stale.txt").read_text() == "old"
    export.write_atomically(str(target), lambda p: open(f"{p}/new.txt", "w").close(), overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_export_to_a_file_or_a_failed_swap_keeps_what_was_there(tmp_path, monkeypatch):
    a_file = tmp_path / "model.txt"
    a_file.write_text("x")
    with pytest.raises(RecordkitError, match="is a file"):
        export.write_atomically(str(a_file), lambda p: None, overwrite=True)
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    rename = os.rename

    def second_rename_fails(src, dst):
        if str(dst) == str(target) and ".tmp-" in str(src) and not str(src).endswith(".old"):
            raise OSError("cross-device link")
        rename(src, dst)

    monkeypatch.setattr(os, "rename", second_rename_fails)
    with pytest.raises(OSError):
        export.write_atomically(str(target), lambda p: open(f"{p}/new.txt", "w").close(), overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.txt", "out"]


def test_an_unreadable_file_is_a_per_file_error(tmp_path, monkeypatch):
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg(0))

    def denied(*args, **kwargs):
        raise tf.errors.PermissionDeniedError(None, None, "permission denied")

    monkeypatch.setattr(tf.io.gfile, "GFile", denied)
    with pytest.raises(classify.images.BadImage, match="cannot read: permission denied"):
        classify.read_image(str(path))


@pytest.mark.slow
def test_export_from_slim_checkpoint_matches_slim_and_keras(tmp_path, slim_inception):
    """A slim Inception V3 checkpoint (original 1001-class head) exported and classified gives
    slim's own logits and the in-memory Keras model's for the same image."""
    size, checkpoint, slim_logits = slim_inception.images.shape[1], slim_inception.path, slim_inception.logits[2]
    (tmp_path / "imagenet.txt").write_text("".join(f"synset{i}\n" for i in range(1000)))
    with pytest.raises(RecordkitError, match="1001 classes"):
        export.pretrained("inception_v3", checkpoint, num_classes=1000, image_size=size,
                          label_path=str(tmp_path / "imagenet.txt"))
    model, info = export.pretrained("inception_v3", checkpoint, num_classes=1001, image_size=size,
                                    label_path=str(tmp_path / "imagenet.txt"))
    assert info.classes[:2] == ["background", "synset0"] and len(info.classes) == 1001
    exported = export.write_saved_model(model, info, str(tmp_path / "export"))

    result = classify.classify_files(classify.load(exported), [slim_inception.jpeg])[0]
    keras_logits = model(slim_inception.images[2:], training=False).numpy()[0]
    scale = np.abs(slim_logits).max()
    assert scale > 1.0  # random weights with a healthy scale: a wrong mapping would show
    np.testing.assert_allclose(result.logits, slim_logits, atol=1e-4 * scale)
    np.testing.assert_allclose(result.logits, keras_logits, atol=1e-5 * scale)


@pytest.mark.slow
def test_run_export_classify_round_trip(tmp_path, images_dir, capsys):
    """train -> export (CLI) -> classify gives the in-memory model's scores."""
    from tiny_training_run import tiny_run

    from recordkit import runs

    _, train_dir = tiny_run(str(tmp_path))
    output = str(tmp_path / "export")
    assert main(["export", "--checkpoint_path", train_dir, "--output_dir", output,
                 "--model_name", "tiny_vgg"]) == 0
    assert "3 classes, single-label, input 32x32" in capsys.readouterr().out
    model, run = runs.load_for_inference(train_dir)
    path = str(images_dir / "good2.jpg")
    result = classify.classify_files(classify.load(output), [path])[0]
    image = tf.io.decode_jpeg((images_dir / "good2.jpg").read_bytes(), channels=3)
    pixels = export.eval_preprocess(run["image_size"], run["preprocessing"])(image)
    expected = model(pixels[None], training=False).numpy()[0]
    np.testing.assert_allclose(result.logits, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert classify.load(output).classes == run["classes"]
    assert main(["export", "--checkpoint_path", train_dir, "--output_dir", str(tmp_path / "x"),
                 "--model_name", "inception_v3"]) == 2
    assert "is a tiny_vgg run" in capsys.readouterr().err


def test_imagenet_class_names_ship_with_the_package(monkeypatch):
    """Export of an original ImageNet head names its classes offline (slim: background first)."""
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("reached for the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    keras_order = export.imagenet_classes(1000)
    assert len(set(keras_order)) == 998  # "crane" (bird, machine) and "maillot" appear twice, as in Keras
    assert (keras_order[0], keras_order[1], keras_order[281], keras_order[407], keras_order[999]) == (
        "tench", "goldfish", "tabby", "ambulance", "toilet tissue")
    assert export.imagenet_classes(1001)[:3] == ["background", "tench", "goldfish"]
    with pytest.raises(RecordkitError, match="1000 class names for a 10-class model"):
        export.imagenet_classes(10)
