"""`tiny_vgg`: a VGG-shaped network of ~20k weights, registered for the tests only.

The training loop, resume, scopes, losses, checkpoints, the feature cache, eval and export do
not depend on the architecture, and testing them on VGG16 (34M weights; 400 MB checkpoints with
Adam's slots) made the suite slow and heavy. This entry has everything a real one has (a Keras
application with and without its top, slim names, fc6/fc7 neck, cut points, preprocessing per
weight source), so every code path runs. VGG16 and Inception V3 stay in the tests whose subject
is the architecture or its slim name map.

Imported by conftest.py; subprocesses get it through tiny_cli.py.
"""

from __future__ import annotations

import keras

from recordkit.models import ModelSpec, register, vgg_16

NAME = SCOPE = "tiny_vgg"
_BLOCKS = {1: 1, 2: 2}  # block -> number of convolutions
_FILTERS = {1: 8, 2: 16}
_FC = 32


def application(include_top: bool = True, weights: str | None = None, input_shape=None, classes: int = 10,
                name: str = NAME, **_) -> keras.Model:
    """Keras-application-shaped builder: block<b>_conv<i>/block<b>_pool, top fc1/fc2/predictions."""
    inputs = keras.Input(input_shape)
    x = inputs
    for block, count in _BLOCKS.items():
        for i in range(1, count + 1):
            x = keras.layers.Conv2D(_FILTERS[block], 3, padding="same", activation="relu",
                                    name=f"block{block}_conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    if include_top:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(_FC, activation="relu", name="fc1")(x)
        x = keras.layers.Dense(_FC, activation="relu", name="fc2")(x)
        x = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, x, name=name)
    if weights == "imagenet":
        raise ValueError("tiny_vgg has no ImageNet weights")
    if weights:
        model.load_weights(weights)
    return model


SPEC = register(
    ModelSpec(
        name=NAME,
        aliases=(),
        native_size=32,
        min_size=8,
        slim_num_classes=10,
        keras_num_classes=10,
        dropout=0.5,
        preprocessing={"slim": "vgg", "keras": "caffe", "none": "vgg"},
        application=application,
        application_kwargs={},
        neck=vgg_16.fc_neck(_FC),
        dense_slim_scopes={"fc6": f"{SCOPE}/fc6", "fc7": f"{SCOPE}/fc7", "logits": f"{SCOPE}/fc8"},
        keras_top_slim_scopes={"fc1": f"{SCOPE}/fc6", "fc2": f"{SCOPE}/fc7", "predictions": f"{SCOPE}/fc8"},
        backbone_entries=vgg_16.block_entries(SCOPE, _BLOCKS),
        cut_layers=vgg_16.cut_layers(_BLOCKS),
    )
)
