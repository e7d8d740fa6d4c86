"""Input pipeline and preprocessing: keys via records, determinism with a seed, conventions."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from fixtures_records import write_dataset
from recordkit import dataset, models, preprocessing
from recordkit.errors import RecordkitError


@pytest.fixture(scope="module")
def single_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("single"))
    write_dataset(path, "single", num_classes=3)
    return path


@pytest.fixture(scope="module")
def multi_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("multi"))
    write_dataset(path, "multi", num_classes=4)
    return path


def _take(directory, seed, n=3, **kwargs):
    kwargs = {"image_size": 32, "mode": "inception", "batch_size": 4, "training": True, **kwargs}
    ds = dataset.make(directory, "train", seed=seed, **kwargs)
    return [(x.numpy(), t["label"].numpy()) for x, t in ds.take(n)]


def test_training_input_is_deterministic_with_a_seed(single_dir):
    first, again, other = _take(single_dir, 7), _take(single_dir, 7), _take(single_dir, 8)
    for (xa, ya), (xb, yb) in zip(first, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_batches_shapes_and_ranges(single_dir):
    for mode, low, high in [("inception", -1.0, 1.0), ("vgg", -124.0, 152.0), ("caffe", -124.0, 152.0)]:
        (x, y), = _take(single_dir, 1, n=1, mode=mode)
        assert x.shape == (4, 32, 32, 3) and x.dtype == np.float32
        assert low <= x.min() and x.max() <= high
        assert set(y) <= {0, 1, 2}


def test_eval_is_one_deterministic_pass_in_file_order(single_dir):
    def run():
        ds = dataset.make(single_dir, "validation", image_size=32, mode="vgg", batch_size=5, training=False)
        return [(x.numpy(), t["label"].numpy()) for x, t in ds]

    first, second = run(), run()
    assert [len(y) for _, y in first] == [5, 5, 2]
    for (xa, ya), (xb, yb) in zip(first, second):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_multi_label_targets_mask_difficult_only(multi_dir):
    ds = dataset.make(multi_dir, "validation", image_size=32, mode="vgg", batch_size=12, training=False)
    _, targets = next(iter(ds))
    hot, mask = targets["multi_hot"].numpy(), targets["mask"].numpy()
    assert hot.shape == mask.shape == (12, 4)
    assert "label" not in targets
    assert (mask == 0).any() and not (hot[mask == 0]).any()  # difficult-only: ignored, not positive


def test_unknown_split_is_a_clear_error(single_dir):
    with pytest.raises(RecordkitError, match="no split 'test'"):
        dataset.make(single_dir, "test", image_size=32, mode="vgg", batch_size=2, training=False)


def test_preprocess_conventions():
    pixel = tf.constant([[[255, 0, 128]]], tf.uint8)
    np.testing.assert_allclose(preprocessing.preprocess(pixel, "inception"), [[[1.0, -1.0, 128 / 127.5 - 1]]], atol=1e-6)
    np.testing.assert_allclose(preprocessing.preprocess(pixel, "vgg"), [[[255 - 123.68, -116.78, 128 - 103.94]]], rtol=1e-6)
    # caffe: BGR order, BGR means
    np.testing.assert_allclose(preprocessing.preprocess(pixel, "caffe"), [[[128 - 103.939, -116.779, 255 - 123.68]]], rtol=1e-6)
    with pytest.raises(RecordkitError, match="inception, vgg, caffe"):
        preprocessing.preprocess(pixel, "torch")


def test_registry_conventions_match_what_keras_applications_do():
    """The registry's numbers against Keras' own preprocess_input (the caffe and inception
    conventions are the ones keras.applications ships)."""
    images = np.random.default_rng(1).integers(0, 256, (2, 5, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(preprocessing.preprocess(images, "caffe"),
                               keras.applications.vgg16.preprocess_input(images.copy()), atol=1e-4)
    np.testing.assert_allclose(preprocessing.preprocess(images, "inception"),
                               keras.applications.inception_v3.preprocess_input(images.copy()), atol=1e-6)


def test_a_model_naming_an_unknown_convention_is_refused():
    spec = dataclasses.replace(models.get("vgg_16"), name="vgg_torch", preprocessing={"slim": "torch"})
    with pytest.raises(ValueError, match="'torch'"):
        models.register(spec)


@pytest.mark.parametrize("mode", preprocessing.MODES)
def test_eval_and_train_geometry(mode):
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (40, 60, 3)), tf.uint8)
    out = preprocessing.eval_image(image, 32, mode)
    assert out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out, preprocessing.eval_image(image, 32, mode))
    seed = tf.constant([1, 2], tf.int64)
    a = preprocessing.train_image(image, 32, mode, seed)
    assert a.shape == (32, 32, 3)
    np.testing.assert_array_equal(a, preprocessing.train_image(image, 32, mode, seed))


def test_source_split_names_select_our_splits(tmp_path):
    """VOC data is written as train/validation; `--dataset_split_name=trainval` must work too."""
    info = write_dataset(str(tmp_path), "multi", sizes={"train": 4, "validation": 2})
    info.source = {"format": "voc", "splits": {"train": "trainval", "validation": "test"}}
    assert info.split("trainval") is info.split("train")
    assert info.shard_paths(str(tmp_path), "test") == info.shard_paths(str(tmp_path), "validation")
    with pytest.raises(KeyError, match=r"\['train', 'validation', 'test', 'trainval'\]"):
        info.split("val")


@pytest.mark.parametrize("height, width", [(20, 30), (32, 32), (7, 40), (50, 20), (60, 70), (1, 1)])
def test_fit_then_stretch_is_one_bilinear_resize(height, width):
    """The CPU shrinks the long sides, the step stretches the short ones: together the pixels of
    tf.image.resize's bilinear (up to the uint8 rounding after a CPU shrink)."""
    window = tf.constant(np.random.default_rng(height * width).integers(0, 256, (height, width, 3)), tf.uint8)
    seed = tf.constant([3, 4], tf.int64)
    flipped = tf.image.stateless_random_flip_left_right(window, seed)
    fitted = preprocessing._fit(flipped, 32, antialias=False)
    assert fitted["pixels"].shape == (min(height, 32), min(width, 32), 3)
    pixels = tf.image.pad_to_bounding_box(fitted["pixels"], 0, 0, 32, 32)
    out = preprocessing.stretch({"pixels": pixels[None], "extent": fitted["extent"][None]}, 32)[0]
    shrunk = height > 32 or width > 32
    np.testing.assert_allclose(out, tf.image.resize(flipped, [32, 32]), atol=0.5 if shrunk else 1e-3)


def test_stretch_resizes_each_image_of_a_batch_by_its_own_extent():
    rng = np.random.default_rng(0)
    windows = [rng.integers(0, 256, shape).astype(np.uint8) for shape in [(9, 16, 3), (16, 5, 3), (16, 16, 3)]]
    padded = np.zeros((3, 16, 16, 3), np.uint8)
    for i, w in enumerate(windows):
        padded[i, : w.shape[0], : w.shape[1]] = w
    extent = np.array([w.shape[:2] for w in windows], np.int32)
    out = preprocessing.stretch({"pixels": tf.constant(padded), "extent": tf.constant(extent)}, 16)
    for i, w in enumerate(windows):  # padding never leaks in
        np.testing.assert_allclose(out[i], tf.image.resize(w, [16, 16]), atol=1e-3)


@pytest.mark.parametrize("augment", [True, False])
def test_finishing_in_the_step_gives_the_pipelines_images(single_dir, augment):
    """`recordkit train` finishes batches in its step (finish_in_step): the same model inputs
    as a pipeline that finishes on the CPU; augmented crops travel as uint8 windows."""
    kwargs = {"image_size": 32, "mode": "vgg", "batch_size": 4, "training": True, "seed": 5, "augment": augment}
    inputs, targets = next(iter(dataset.make(single_dir, "train", finish_in_step=True, **kwargs)))
    images, same_targets = next(iter(dataset.make(single_dir, "train", **kwargs)))
    if augment:
        assert inputs["pixels"].dtype == tf.uint8 and inputs["pixels"].shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(dataset.finish(inputs, 32, "vgg"), images)
    np.testing.assert_array_equal(targets["label"], same_targets["label"])


@pytest.mark.parametrize("mode, box", [("inception", [2, 3, 36, 54]), ("vgg", [2, 12, 35, 35]), ("caffe", [2, 12, 35, 35])])
def test_eval_crop_is_pinned(mode, box):
    """40x60 image, 32 px: Inception keeps tf.image.central_crop's 87.5 % box; VGG/caffe the
    centre square slim's resize-to-37-then-crop-32 keeps (side round(40 * 32 / 37) = 35), each
    resized (antialiased) to 32 x 32."""
    image = tf.constant(np.random.default_rng(1).integers(0, 256, (40, 60, 3)), tf.uint8)
    assert preprocessing._central_window(tf.shape(image), 32, mode).numpy().tolist() == box
    if mode == "inception":
        np.testing.assert_array_equal(tf.image.central_crop(image, 0.875), image[2:38, 3:57])
    window = image[box[0] : box[0] + box[2], box[1] : box[1] + box[3]]
    expected = tf.image.resize(window, [32, 32], antialias=True)
    np.testing.assert_allclose(preprocessing.eval_image(image, 32, mode), expected, atol=0.5)


def test_eval_pipeline_gives_eval_image_of_each_record(tmp_path):
    """What export's serving function computes (eval_image on the decoded JPEG) is what eval
    feeds the model."""
    from recordkit import records

    single_dir = str(tmp_path)
    info = write_dataset(single_dir, "single", num_classes=3, num_shards=1, image_size=40)
    ds = dataset.make(single_dir, "validation", image_size=24, mode="caffe", batch_size=5, training=False,
                      finish_in_step=True)
    images = np.concatenate([dataset.finish(windows, 24, "caffe") for windows, _ in ds])
    raw = tf.data.TFRecordDataset(info.shard_paths(single_dir, "validation"))
    spec = {records.ENCODED: tf.io.FixedLenFeature([], tf.string)}
    expected = [preprocessing.preprocess(preprocessing.eval_image(dataset.decode(
        tf.io.parse_single_example(r, spec)[records.ENCODED]), 24, "caffe"), "caffe") for r in raw]
    assert len(images) == len(expected) == info.split("validation").num_records
    np.testing.assert_allclose(images, np.stack(expected), atol=1e-4)
