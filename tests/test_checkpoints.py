"""Pretrained weights land where they should: real-layout slim checkpoints, tensor by tensor,
and the mapped Keras model reproduces slim's own logits."""

import os
import subprocess
import sys
import warnings

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from recordkit import checkpoints, models, preprocessing
from recordkit.errors import RecordkitError
from shared_data import HED_WEIGHTS, needs_hed_weights
from slim_checkpoints import INCEPTION_SIZE, make_vgg_checkpoint


def _assert_landed(spec, model, values, excluded=()):
    for entry in models.slim_entries(spec, model):
        if any(entry.slim_name.startswith(s) for s in excluded):
            continue
        expected = values.get_tensor(entry.slim_name).reshape(tuple(entry.variable.shape))
        # np.array_equal, not np.testing's: its temporaries cost 1.3 GB on VGG16's fc6
        assert np.array_equal(entry.variable.numpy(), expected), entry.slim_name


@pytest.mark.slow
def test_inception_slim_checkpoint_tensor_by_tensor_and_logits(slim_inception):
    s = slim_inception
    path, values, images, slim_logits = s.path, s.reader, s.images, s.logits
    spec = models.get("inception_v3")
    model, info = checkpoints.pretrained_model("inception_v3", path, image_size=INCEPTION_SIZE)
    assert info["num_classes"] == 1001 and info["label_offset"] == 1
    assert info["preprocessing"] == "inception"
    _assert_landed(spec, model, values)
    ours = model(images, training=False).numpy()
    assert np.abs(slim_logits).max() > 1.0  # random weights with a healthy scale
    rel = np.abs(ours - slim_logits).max() / np.abs(slim_logits).max()
    assert rel < 1e-4


@pytest.mark.slow
def test_head_mismatch_names_variable_and_both_shapes(slim_inception):
    spec = models.get("inception_v3")
    model = models.build(spec, 5, 75)
    with pytest.raises(RecordkitError) as err:
        checkpoints.load(model, spec, checkpoints.source_for(slim_inception.path))
    message = str(err.value)
    assert "InceptionV3/Logits/Conv2d_1c_1x1/weights: checkpoint [1, 1, 2048, 1001], model [2048, 5]" in message
    assert "--checkpoint_exclude_scopes" in message and "Assign" not in message


@pytest.mark.slow
def test_exclude_scopes_keep_initial_values(slim_inception):
    path, values = slim_inception.path, slim_inception.reader
    spec = models.get("inception_v3")
    model = models.build(spec, 5, 75)
    before = model.get_layer(models.LOGITS).kernel.numpy()
    report = checkpoints.load(
        model, spec, checkpoints.source_for(path), ["InceptionV3/Logits", "InceptionV3/AuxLogits"]
    )
    np.testing.assert_array_equal(model.get_layer(models.LOGITS).kernel.numpy(), before)
    assert len(report.loaded) == 376 and len(report.excluded) == 2
    assert all("AuxLogits" in n for n in report.unused if n.startswith("InceptionV3/"))
    _assert_landed(spec, model, values, excluded=("InceptionV3/Logits",))


ALONE = "RECORDKIT_TEST_ALONE"  # set in the pytest process a test runs itself in


def _in_own_process(test) -> bool:
    """Run `test` in a pytest process of its own (unless this is that process); True if it was
    handed over. For the test that builds VGG16 with its 138M-weight top: the ~2.5 GB of heap
    it leaves would otherwise stay in the test worker for every later test. oneDNN is
    off there: with it, the random initialisation of fc6's 411 MB kernel keeps ~1.2 GB resident
    (measured: 0.4 GB without), and a name map does not depend on which kernels run."""
    if os.environ.get(ALONE):
        return False
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::{test.__name__}"],
                          env={**os.environ, ALONE: "1", "TF_ENABLE_ONEDNN_OPTS": "0"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout, done.stdout[-2000:]
    return True


@pytest.mark.slow
def test_vgg_slim_checkpoint_tensor_by_tensor_and_logits(tmp_path):
    if _in_own_process(test_vgg_slim_checkpoint_tensor_by_tensor_and_logits):
        return
    images = np.random.default_rng(2).uniform(-100, 100, (1, 224, 224, 3)).astype(np.float32)
    path, values, slim_logits = make_vgg_checkpoint(str(tmp_path / "vgg_16.ckpt"), images)
    spec = models.get("vgg_16")
    model, info = checkpoints.pretrained_model("vgg_16", path)
    assert info["num_classes"] == 1000 and info["label_offset"] == 0 and info["preprocessing"] == "vgg"
    _assert_landed(spec, model, values)  # fc6 [7,7,512,4096] -> Dense [25088,4096]
    ours = model(images, training=False).numpy()
    slim_logits = slim_logits.reshape(ours.shape)
    assert np.abs(ours - slim_logits).max() / np.abs(slim_logits).max() < 1e-4
    small = models.build(spec, 5, 32)
    with pytest.raises(RecordkitError, match=r"vgg_16/fc6/weights: checkpoint \[7, 7, 512, 4096\], model \[512, 4096\]"):
        checkpoints.load(small, spec, checkpoints.source_for(path), ["vgg_16/fc8"])
    checkpoints.load(small, spec, checkpoints.source_for(path), ["vgg_16/fc6", "vgg_16/fc7", "vgg_16/fc8"])
    _assert_landed(spec, small, values, excluded=("vgg_16/fc",))


@pytest.mark.slow
def test_keras_weights_file_with_top(tmp_path):
    spec = models.get("inception_v3")
    app = keras.applications.InceptionV3(weights=None, classes=1000)
    for v in app.weights:
        v.assign(np.random.default_rng(len(v.path)).normal(0, 0.1, v.shape).astype("float32"))
    path = str(tmp_path / "inception.weights.h5")
    app.save_weights(path)
    source = checkpoints.source_for(path)
    assert source.kind == "keras" and spec.preprocessing[source.convention] == "inception"
    model, info = checkpoints.pretrained_model("inception_v3", path)
    assert info["num_classes"] == 1000
    for ours, theirs in zip(models.slim_entries(spec, model), models.keras_application_entries(spec, app)):
        assert ours.slim_name == theirs.slim_name
        np.testing.assert_array_equal(ours.variable.numpy(), theirs.variable.numpy())
    images = np.random.default_rng(0).uniform(-1, 1, (1, 299, 299, 3)).astype("float32")
    np.testing.assert_allclose(model(images).numpy(), app(images).numpy(), rtol=1e-4, atol=1e-5)


def _record_include_top(monkeypatch) -> list[bool]:
    """The include_top of every Keras application built from now on, in order."""
    tried = []
    build = models.ModelSpec.keras_application

    def spy(self, weights, include_top):
        tried.append(include_top)
        return build(self, weights, include_top)

    monkeypatch.setattr(models.ModelSpec, "keras_application", spy)
    return tried


@pytest.mark.parametrize("include_top", [True, False], ids=["with_top", "without"])
def test_a_keras_weights_file_is_read_with_or_without_the_top_as_its_layers_say(tmp_path, monkeypatch, include_top):
    """The file's layer names choose, so a file without the top is never first built into
    VGG16 with its 138M-weight top (the real HED file: test_real_vgg16_weights...)."""
    spec = models.get("tiny_vgg")
    path = str(tmp_path / "tiny.weights.h5")
    spec.keras_application(None, include_top=include_top).save_weights(path)
    tried = _record_include_top(monkeypatch)
    tensors = checkpoints.read(spec, checkpoints.source_for(path))
    assert tried == [include_top]
    assert ("tiny_vgg/fc8/weights" in tensors) == include_top and "tiny_vgg/conv1/conv1_1/weights" in tensors


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(RecordkitError, match="not found"):
        checkpoints.source_for(str(tmp_path / "nothing.ckpt"))
    with pytest.raises(RecordkitError, match="not found"):
        checkpoints.source_for(str(tmp_path / "nothing.weights.h5"))
    assert checkpoints.source_for(None).kind == "none"
    assert checkpoints.source_for("imagenet").convention == "keras"
    assert not os.listdir(tmp_path)


@needs_hed_weights
def test_real_vgg16_weights_load_and_their_first_layer_detects_edges(monkeypatch):
    """The real HED/ImageNet VGG16 file through the product's loader: its trained first-layer
    filters answer a vertical edge ~9x more than the flat areas beside it; random ones ~1x."""
    spec = models.get("vgg_16")
    model = models.build(spec, 6, 32, head="pool")
    source = checkpoints.source_for(str(HED_WEIGHTS))
    tried = _record_include_top(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "freshly-initialized weights" notice may slip through
        report = checkpoints.load(model, spec, source, ["logits"])
    assert tried == [False]  # never first built into VGG16 with its 138M-weight top
    assert len(report.loaded) == 26 and checkpoints.preprocessing_for(spec, source) == "caffe"
    with h5py.File(HED_WEIGHTS) as f:  # every tensor of the file, landed somewhere in the model
        stored = []
        f.visititems(lambda name, item: stored.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    landed = [e.variable.numpy() for e in models.slim_entries(spec, model) if e.layer_name != "logits"]
    assert len(stored) == len(landed) == 26
    assert all(any(a.shape == b.shape and np.array_equal(a, b) for b in landed) for a in stored)
    image = np.zeros((1, 32, 32, 3), np.float32)
    image[:, :, 16:] = 255.0

    def edge_to_flat(vgg):
        backbone = vgg.get_layer(models.BACKBONE)
        first = keras.Model(backbone.input, backbone.get_layer("block1_conv1").output)
        out = first(preprocessing.preprocess(image, "caffe")).numpy()[0]
        return out[8:24, 15:17].mean() / np.concatenate([out[8:24, 4:12], out[8:24, 20:28]], 1).mean()

    keras.utils.set_random_seed(0)
    assert edge_to_flat(model) > 5 and edge_to_flat(models.build(spec, 6, 32, head="pool")) < 2


@pytest.mark.parametrize("names, expected", [(["vgg_16/fc6/weights", "vgg_16/fc7/weights"], "slim"),
                                             (["vgg_16/fc6/weights"], "pool_bn")])
def test_default_head_reads_only_a_slim_checkpoints_index(tmp_path, names, expected):
    """fc6 and fc7 in the checkpoint → the slim head; one missing → pooling + BatchNorm. From the
    index: no tensor is read (a slim VGG16 checkpoint is 528 MB)."""
    from recordkit import train

    path = str(tmp_path / "model.ckpt")
    with tf.Graph().as_default():
        for name in ["vgg_16/conv1/conv1_1/weights", *names]:
            tf.compat.v1.get_variable(name, [2])
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(session, path)
    source = checkpoints.source_for(path)

    def no_reading(*args):
        raise AssertionError("read the tensors")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoints.SlimTensors, "__getitem__", no_reading)
        assert train.default_head(models.get("vgg_16"), source) == expected
