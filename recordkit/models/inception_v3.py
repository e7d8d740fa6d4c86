"""Inception V3: Keras' `InceptionV3` with TF-Slim's `inception_v3` variable names.

Keras' architecture is slim's (BatchNorm without gamma, epsilon 0.001, the same 94
convolutions), but its layers have auto-generated names and `model.layers` lists them in
another order (they diverge inside Mixed_5b). The map below therefore pairs slim's scopes,
written out in slim's order, with the Keras convolutions in *data-flow* order: a depth-first
walk from the output that visits each concatenation's inputs in order, which is the order
both code bases create their layers in. Tests check it against slim's own graph.
"""

from __future__ import annotations

import keras

from recordkit.errors import RecordkitError
from recordkit.models import ModelSpec, SlimEntry, register

SCOPE = "InceptionV3"

_MIXED_5 = (
    "Branch_0/Conv2d_0a_1x1", "Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_5x5",
    "Branch_2/Conv2d_0a_1x1", "Branch_2/Conv2d_0b_3x3", "Branch_2/Conv2d_0c_3x3",
    "Branch_3/Conv2d_0b_1x1",
)
# Slim's Mixed_5c names two convolutions differently from 5b/5d (a quirk of the original).
_MIXED_5C = (
    "Branch_0/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_1x1", "Branch_1/Conv_1_0c_5x5",
    "Branch_2/Conv2d_0a_1x1", "Branch_2/Conv2d_0b_3x3", "Branch_2/Conv2d_0c_3x3",
    "Branch_3/Conv2d_0b_1x1",
)
_MIXED_6A = (
    "Branch_0/Conv2d_1a_1x1", "Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_3x3",
    "Branch_1/Conv2d_1a_1x1",
)
_MIXED_6 = (
    "Branch_0/Conv2d_0a_1x1", "Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_1x7",
    "Branch_1/Conv2d_0c_7x1", "Branch_2/Conv2d_0a_1x1", "Branch_2/Conv2d_0b_7x1",
    "Branch_2/Conv2d_0c_1x7", "Branch_2/Conv2d_0d_7x1", "Branch_2/Conv2d_0e_1x7",
    "Branch_3/Conv2d_0b_1x1",
)
_MIXED_7A = (
    "Branch_0/Conv2d_0a_1x1", "Branch_0/Conv2d_1a_3x3", "Branch_1/Conv2d_0a_1x1",
    "Branch_1/Conv2d_0b_1x7", "Branch_1/Conv2d_0c_7x1", "Branch_1/Conv2d_1a_3x3",
)
_MIXED_7B = (
    "Branch_0/Conv2d_0a_1x1", "Branch_1/Conv2d_0a_1x1", "Branch_1/Conv2d_0b_1x3",
    "Branch_1/Conv2d_0b_3x1", "Branch_2/Conv2d_0a_1x1", "Branch_2/Conv2d_0b_3x3",
    "Branch_2/Conv2d_0c_1x3", "Branch_2/Conv2d_0d_3x1", "Branch_3/Conv2d_0b_1x1",
)
_MIXED_7C = tuple(n.replace("Branch_1/Conv2d_0b_3x1", "Branch_1/Conv2d_0c_3x1") for n in _MIXED_7B)

# The 94 convolution scopes of slim's inception_v3 base, in slim's order.
SLIM_CONV_SCOPES: tuple[str, ...] = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    *(f"Mixed_5b/{n}" for n in _MIXED_5),
    *(f"Mixed_5c/{n}" for n in _MIXED_5C),
    *(f"Mixed_5d/{n}" for n in _MIXED_5),
    *(f"Mixed_6a/{n}" for n in _MIXED_6A),
    *(f"Mixed_6{b}/{n}" for b in "bcde" for n in _MIXED_6),
    *(f"Mixed_7a/{n}" for n in _MIXED_7A),
    *(f"Mixed_7b/{n}" for n in _MIXED_7B),
    *(f"Mixed_7c/{n}" for n in _MIXED_7C),
)


def dataflow_order(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers in depth-first post-order from the outputs, inputs visited in call order.

    Every layer of the application is called once, so its public `input`/`output` tensors
    are the graph's edges."""
    producer = {id(layer.output): layer for layer in model.layers}
    ordered: list = []
    seen: set[int] = set()

    def visit(tensor) -> None:
        layer = producer[id(tensor)]
        if id(layer) in seen:
            return
        parents = layer.input if isinstance(layer.input, list) else [layer.input]
        for parent in parents if not isinstance(layer, keras.layers.InputLayer) else []:
            visit(parent)
        seen.add(id(layer))
        ordered.append(layer)

    for output in model.outputs:
        visit(output)
    return ordered


def backbone_entries(backbone: keras.Model) -> list[SlimEntry]:
    """Slim names for every convolution and BatchNorm variable of the Keras backbone. A backbone
    ended at a mixed block by --backbone_output has the first of them, in the same order."""
    layers = dataflow_order(backbone)
    convs = [l for l in layers if isinstance(l, keras.layers.Conv2D)]
    norms = [l for l in layers if isinstance(l, keras.layers.BatchNormalization)]
    whole = len(backbone.outputs[0].shape) == 2  # the application ends in its global pooling
    expected = len(SLIM_CONV_SCOPES)
    if len(convs) != len(norms) or len(convs) > expected or (whole and len(convs) != expected):
        raise RecordkitError(
            f"this Keras InceptionV3 has {len(convs)} convolutions and {len(norms)} BatchNorms; "
            f"the slim map expects {expected} of each"
        )
    entries = []
    for scope, conv, norm in zip(SLIM_CONV_SCOPES, convs, norms):
        name = f"{SCOPE}/{scope}"
        entries.append(SlimEntry(f"{name}/weights", conv.kernel, conv.name))
        entries.append(SlimEntry(f"{name}/BatchNorm/beta", norm.beta, norm.name))
        entries.append(SlimEntry(f"{name}/BatchNorm/moving_mean", norm.moving_mean, norm.name))
        entries.append(
            SlimEntry(f"{name}/BatchNorm/moving_variance", norm.moving_variance, norm.name)
        )
    return entries


def _no_neck(features, dropout: float | None = None):
    return features


SPEC = register(
    ModelSpec(
        name="inception_v3",
        aliases=("inceptionv3", "inception-v3"),
        native_size=299,
        min_size=75,
        slim_num_classes=1001,
        keras_num_classes=1000,
        dropout=0.2,  # slim: dropout_keep_prob=0.8 before the logits
        preprocessing={"slim": "inception", "keras": "inception", "none": "inception"},
        application=keras.applications.InceptionV3,
        application_kwargs={"pooling": "avg"},
        neck=_no_neck,
        dense_slim_scopes={"logits": f"{SCOPE}/Logits/Conv2d_1c_1x1"},
        keras_top_slim_scopes={"predictions": f"{SCOPE}/Logits/Conv2d_1c_1x1"},
        backbone_entries=backbone_entries,
        cut_layers=tuple(f"mixed{i}" for i in range(11)),  # mixed9_0, mixed9_1 are inner concats
        absent_slim_scopes=(f"{SCOPE}/AuxLogits",),
    )
)
