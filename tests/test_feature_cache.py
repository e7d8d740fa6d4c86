"""Where `feature_cache.split` cuts a model, that body + top is the model, and the cache holds
the body's outputs (and mirror images) in memory or in a temporary file removed afterwards."""

import os

import numpy as np
import pytest

from fixtures_records import write_dataset
from recordkit import feature_cache, metadata, models, train


def _split(name, size, scopes, **build):
    spec = models.get(name)
    model = models.build(spec, 4, size, **build)
    train.apply_trainable_scopes(model, spec, scopes)
    return model, feature_cache.split(model, spec)


@pytest.mark.parametrize("scopes,cut,top_layers", [
    (["vgg_16/fc8"], "fc7", ["head_dropout", "logits"]),
    (["vgg_16/fc7", "vgg_16/fc8"], "fc6", ["dropout6", "fc7", "head_dropout", "logits"]),
    (["vgg_16/fc6", "vgg_16/fc7", "vgg_16/fc8"], "flatten", ["fc6", "dropout6", "fc7", "head_dropout", "logits"]),
    (["vgg_16/conv5", "vgg_16/fc8"], "block4_pool", None),
])
def test_vgg_cut_is_the_latest_point_with_nothing_trainable_before_it(scopes, cut, top_layers):
    model, split = _split("vgg_16", 32, scopes)
    assert split.cut == cut and not split.body.trainable_weights
    assert {id(v) for v in split.top.trainable_weights} == {id(v) for v in model.trainable_weights}
    if top_layers:  # a dropout right before a trained layer stays in the top, in training mode
        assert [l.name for l in split.top.layers[1:]] == top_layers
    x = np.random.default_rng(0).uniform(-100, 100, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(split.top(split.body(x)), model(x), rtol=1e-5, atol=1e-5)


def test_a_backbone_ended_early_is_cut_inside_what_is_left():
    """With --backbone_output, cut points past the end do not exist; the cut is still the
    latest frozen point, and the pooled features are what a logits-only run caches."""
    build = {"head": "pool_bn", "backbone_output": "block4_pool"}
    model, split = _split("vgg_16", 32, ["vgg_16/conv4/conv4_3", "vgg_16/fc8"], **build)
    assert split.cut == "block4_conv2"
    x = np.random.default_rng(0).uniform(-100, 100, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(split.top(split.body(x)), model(x), rtol=1e-5, atol=1e-5)
    assert _split("vgg_16", 32, ["logits"], **build)[1].cut == models.GLOBAL_POOL


def test_inception_cuts_at_a_mixed_block_and_nothing_frozen_means_no_cut():
    model, split = _split("inception_v3", 75, ["InceptionV3/Mixed_7c", "InceptionV3/Logits"])
    assert split.cut == "mixed9"
    x = np.random.default_rng(0).uniform(-1, 1, (2, 75, 75, 3)).astype("float32")
    np.testing.assert_allclose(split.top(split.body(x)), model(x), rtol=1e-4, atol=1e-5)
    assert _split("vgg_16", 32, [])[1] is None
    assert _split("vgg_16", 32, ["vgg_16/conv1/conv1_1", "vgg_16/fc8"])[1] is None


def test_auto_caches_only_outputs_no_larger_than_the_image():
    _, late = _split("vgg_16", 32, ["vgg_16/fc8"])
    _, early = _split("vgg_16", 32, ["vgg_16/conv1/conv1_2", "vgg_16/fc8"])
    assert early.cut == "block1_conv1" and early.values_per_image() == 32 * 32 * 64 > 4 * 32 * 32 * 3
    assert feature_cache.worth_caching(late, 32) and not feature_cache.worth_caching(early, 32)


@pytest.mark.parametrize("spill", [False, True], ids=["memory", "file"])
def test_cache_holds_body_outputs_of_eval_crops_and_their_mirror_images(tmp_path, monkeypatch, spill):
    write_dataset(str(tmp_path), "single", num_classes=3, sizes={"train": 10, "validation": 2})
    if spill:
        monkeypatch.setattr(feature_cache, "MEMORY_LIMIT_BYTES", 0)
    _, split = _split("vgg_16", 32, ["vgg_16/conv5", "vgg_16/fc8"])
    info = metadata.load(str(tmp_path))
    cache = feature_cache.build(split, str(tmp_path), "train", num_records=10, image_size=32, mode="vgg",
                                batch_size=4, mirror=True, info=info)
    folder = os.path.dirname(cache.features.filename) if spill else None
    assert len(cache) == 20 and isinstance(cache.features, np.memmap) == spill
    from recordkit import dataset
    images, targets = next(iter(dataset.make(str(tmp_path), "train", image_size=32, mode="vgg",
                                             batch_size=4, training=False, info=info)))
    rows, row_targets = cache.batch(np.array([4, 0, 6, 5]))  # batch 0: rows 0-3 crops, 4-7 mirrors
    np.testing.assert_allclose(rows[1], split.body(images[:1]).numpy()[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(rows[0], split.body(images[:1, :, ::-1]).numpy()[0], rtol=1e-5, atol=1e-4)
    assert not np.allclose(rows[0], rows[1])
    assert list(row_targets["label"]) == [targets["label"][i] for i in (0, 0, 2, 1)]
    cache.close()
    assert folder is None or not os.path.exists(folder)


def test_stream_indices_are_seeded_epochs_of_permutations():
    steps = [feature_cache.stream_indices(7, step, 4, 10) for step in range(5)]
    first_epoch = np.concatenate(steps)[:10]
    assert sorted(first_epoch) == list(range(10))
    np.testing.assert_array_equal(steps[3], feature_cache.stream_indices(7, 3, 4, 10))
    assert not np.array_equal(first_epoch, np.concatenate(steps)[10:20][: len(first_epoch)])
