"""VGG16: Keras' `VGG16` convolutions plus slim's fully connected layers and dropout.

Keras' layer names (`block1_conv1`, ...) are explicit, so the slim map is by name. Slim stores
fc6/fc7/fc8 as convolutions ([7,7,512,4096], [1,1,4096,4096], [1,1,4096,1000]); ours are Dense
layers after a Flatten, and the loader reshapes (fc6 only fits at the native 224 pixels).
Keras' own VGG16 has no dropout; slim's has 0.5 after fc6 and fc7, which we keep.
"""

from __future__ import annotations

import keras

from recordkit.models import ModelSpec, SlimEntry, register

SCOPE = "vgg_16"
_BLOCKS = {1: 2, 2: 2, 3: 3, 4: 3, 5: 3}  # block -> number of convolutions


def block_entries(scope: str, blocks: dict[int, int]):
    """Slim names of VGG-style `block<b>_conv<i>` layers: `<scope>/conv<b>/conv<b>_<i>`
    (those the backbone has: one ended early by --backbone_output lacks the last blocks)."""

    def entries(backbone: keras.Model) -> list[SlimEntry]:
        found = []
        present = {layer.name for layer in backbone.layers}
        for block, count in blocks.items():
            for i in range(1, count + 1):
                if f"block{block}_conv{i}" not in present:
                    continue
                layer = backbone.get_layer(f"block{block}_conv{i}")
                name = f"{scope}/conv{block}/conv{block}_{i}"
                found.append(SlimEntry(f"{name}/weights", layer.kernel, layer.name))
                found.append(SlimEntry(f"{name}/biases", layer.bias, layer.name))
        return found

    return entries


def fc_neck(units: int):
    """Slim's fc6 → dropout → fc7 (`units` wide); the head's dropout and fc8 (`logits`) follow."""

    def neck(features, dropout: float | None = None):
        x = keras.layers.Flatten(name="flatten")(features)
        x = keras.layers.Dense(units, activation="relu", name="fc6")(x)
        x = keras.layers.Dropout(0.5 if dropout is None else dropout, name="dropout6")(x)
        return keras.layers.Dense(units, activation="relu", name="fc7")(x)

    return neck


def cut_layers(blocks: dict[int, int]) -> tuple[str, ...]:
    """Every convolution and pooling layer, in data-flow order."""
    return tuple(
        name for block, count in blocks.items()
        for name in [*(f"block{block}_conv{i}" for i in range(1, count + 1)), f"block{block}_pool"]
    )


SPEC = register(
    ModelSpec(
        name="vgg_16",
        aliases=("vgg16", "vgg-16"),
        native_size=224,
        min_size=32,
        slim_num_classes=1000,
        keras_num_classes=1000,
        dropout=0.5,
        preprocessing={"slim": "vgg", "keras": "caffe", "none": "vgg"},
        application=keras.applications.VGG16,
        application_kwargs={},
        neck=fc_neck(4096),
        dense_slim_scopes={"fc6": f"{SCOPE}/fc6", "fc7": f"{SCOPE}/fc7", "logits": f"{SCOPE}/fc8"},
        keras_top_slim_scopes={
            "fc1": f"{SCOPE}/fc6", "fc2": f"{SCOPE}/fc7", "predictions": f"{SCOPE}/fc8",
        },
        backbone_entries=block_entries(SCOPE, _BLOCKS),
        cut_layers=cut_layers(_BLOCKS),
    )
)
