"""The registry and its slim name maps, driven by the registry (a new model is tested too)."""

import pytest

from recordkit import models
from recordkit.errors import RecordkitError

MIN_SIZES = {name: models.get(name).min_size for name in models.names()}


def test_names_and_aliases():
    assert {"inception_v3", "vgg_16"} <= set(models.names())
    assert models.get("vgg16") is models.get("vgg_16")
    assert models.get("InceptionV3") is models.get("inception_v3")


def test_unknown_model_lists_valid_names():
    with pytest.raises(RecordkitError, match="inception_v3.*vgg_16"):
        models.get("resnet_v1_50")


@pytest.mark.parametrize("head", ["slim", "pool_bn"])
@pytest.mark.parametrize("name", sorted(MIN_SIZES))
def test_slim_map_covers_every_variable_once(name, head):
    """pool_bn's BatchNorm is named inside the logits' scope, so excluding or training the
    logits covers it."""
    spec = models.get(name)
    model = models.build(spec, num_classes=7, image_size=spec.min_size, head=head)
    entries = models.slim_entries(spec, model)
    assert sorted(id(e.variable) for e in entries) == sorted(id(v) for v in model.weights)
    names = [e.slim_name for e in entries]
    assert len(set(names)) == len(names)
    assert len({n.split("/")[0] for n in names}) == 1  # one slim model scope
    head = [e for e in entries if e.slim_name.startswith(spec.dense_slim_scopes[models.LOGITS] + "/")]
    assert {e.layer_name for e in head} == {models.LOGITS}
    assert model.output.shape[-1] == 7


@pytest.mark.parametrize("name", sorted(MIN_SIZES))
def test_too_small_image_size_is_a_clear_error(name):
    spec = models.get(name)
    with pytest.raises(RecordkitError, match="image_size"):
        models.build(spec, 3, image_size=spec.min_size - 1)


def test_dropout_follows_the_originals_and_keras_for_pool_bn():
    assert models.get("inception_v3").dropout == pytest.approx(0.2)  # keep_prob 0.8
    vgg = models.build(models.get("vgg_16"), 3, 32)
    assert vgg.get_layer("dropout6").rate == 0.5 and vgg.get_layer(models.HEAD_DROPOUT).rate == 0.5
    for head, rate in (("pool", 0.5), ("pool_bn", 0.2)):
        assert models.build(models.get("vgg_16"), 3, 32, head=head).get_layer(models.HEAD_DROPOUT).rate == rate
    override = models.build(models.get("vgg_16"), 3, 32, head="pool_bn", dropout=0.4)
    assert override.get_layer(models.HEAD_DROPOUT).rate == 0.4


@pytest.mark.parametrize("name, end, gone", [("vgg_16", "block4_pool", "block5_conv1"),
                                                ("inception_v3", "mixed7", "mixed8")])
def test_backbone_output_ends_the_backbone_and_keeps_the_first_slim_names(name, end, gone):
    """A backbone ended early keeps its first layers with the same slim names (so pretrained
    weights load into them) and none after the end."""
    spec = models.get(name)
    whole = spec.backbone(spec.min_size)
    short = models.truncated(spec, whole, end)  # the same layers and variables, fewer
    layers = {l.name for l in short.layers}
    assert end in layers and gone not in layers
    short_map = {e.slim_name: id(e.variable) for e in spec.backbone_entries(short)}
    whole_map = {e.slim_name: id(e.variable) for e in spec.backbone_entries(whole)}
    assert short_map == {n: v for n, v in whole_map.items() if n in short_map}  # each name on the same variable
    assert list(short_map) == list(whole_map)[: len(short_map)] and len(short_map) < len(whole_map)


def test_backbone_output_errors_name_the_valid_layers():
    spec = models.get("vgg_16")
    with pytest.raises(RecordkitError, match="expected one of block1_conv1, .*block5_pool"):
        models.build(spec, 3, 32, head="pool", backbone_output="fc6")
    with pytest.raises(RecordkitError, match="--head pool or pool_bn"):
        models.build(spec, 3, 32, head="slim", backbone_output="block4_pool")
