"""The model registry: one entry per architecture, timm-style.

An entry (`ModelSpec`) knows everything that differs between architectures: its Keras backbone,
native input size, the pixel convention each weight source expects (the numbers are data here,
in CONVENTIONS, like timm's pretrained_cfg), and the map from TF-Slim variable names onto our
Keras variables. Adding a model is one module that calls `register`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import keras

from recordkit.errors import RecordkitError
from recordkit.train_config import HEADS

BACKBONE = "backbone"
HEAD_DROPOUT = "head_dropout"
LOGITS = "logits"
GLOBAL_POOL = "global_pool"
HEAD_NORM = "head_norm"  # pool_bn's BatchNorm: part of the new head, it trains when the logits do
POOL_BN_DROPOUT = 0.2  # Keras' transfer-learning guide; better than VGG's 0.5 here (docs/performance.md §5)


@dataclass(frozen=True)
class PixelConvention:
    """How a weight source's training images were normalised, as timm's pretrained_cfg says it:
    model input = RGB pixels in [0, 255] / `scale` - `mean` (per channel, RGB order), channels
    then reversed when `bgr`. `geometry` names the crop family of `recordkit.preprocessing`:
    "inception" (central 87.5 % at eval, distorted boxes in training) or "vgg" (shorter side
    scaled, centre or random square)."""

    scale: float
    mean: tuple[float, float, float]
    bgr: bool
    geometry: str


# Mixing conventions (slim weights with Keras preprocessing or the reverse) silently costs accuracy.
CONVENTIONS: dict[str, PixelConvention] = {
    # slim and Keras Inception V3: x / 127.5 - 1, RGB in [-1, 1]
    "inception": PixelConvention(scale=127.5, mean=(1.0, 1.0, 1.0), bgr=False, geometry="inception"),
    # slim vgg_16: x - the ImageNet RGB mean
    "vgg": PixelConvention(scale=1.0, mean=(123.68, 116.78, 103.94), bgr=False, geometry="vgg"),
    # Keras VGG16 "imagenet" (caffe): x - the caffe mean, then RGB → BGR
    "caffe": PixelConvention(scale=1.0, mean=(123.68, 116.779, 103.939), bgr=True, geometry="vgg"),
}


@dataclass(frozen=True)
class SlimEntry:
    """One model variable and the TF-Slim checkpoint name it corresponds to."""

    slim_name: str
    variable: keras.Variable
    layer_name: str


@dataclass(frozen=True)
class ModelSpec:
    """An architecture: Keras builders, sizes, preprocessing and the slim name map.

    `preprocessing` maps a weight source kind ("slim", "keras", "none") to the name of its
    pixel convention in CONVENTIONS (what a run records). `neck` adds the layers between the backbone and the head's
    dropout (VGG's fc6/fc7); `dense_slim_scopes` names the slim scope of each of our Dense
    layers and `keras_top_slim_scopes` does the same for the Keras application's top layers.
    `backbone_entries` maps the backbone's variables to slim names. `cut_layers` names the
    backbone layers, in data-flow order, whose output alone feeds the rest of the network
    (where `feature_cache` may cut it).
    """

    name: str
    aliases: tuple[str, ...]
    native_size: int
    min_size: int
    slim_num_classes: int
    keras_num_classes: int
    dropout: float
    preprocessing: dict[str, str]
    application: Callable[..., keras.Model]
    application_kwargs: dict
    neck: Callable[[keras.KerasTensor, float | None], keras.KerasTensor]
    dense_slim_scopes: dict[str, str]
    keras_top_slim_scopes: dict[str, str]
    backbone_entries: Callable[[keras.Model], list[SlimEntry]]
    cut_layers: tuple[str, ...] = ()
    absent_slim_scopes: tuple[str, ...] = field(default_factory=tuple)

    def backbone(self, image_size: int, weights: str | None = None) -> keras.Model:
        """The Keras application without its top (random weights unless `weights`)."""
        return self.application(
            include_top=False, weights=weights, input_shape=(image_size, image_size, 3),
            name=BACKBONE, **self.application_kwargs,
        )

    def keras_application(self, weights: str | None, include_top: bool) -> keras.Model:
        """The application exactly as Keras ships it (native size), to read Keras weights."""
        kwargs = self.application_kwargs if not include_top else {}
        size = self.native_size
        return self.application(
            include_top=include_top, weights=weights, classes=self.keras_num_classes,
            input_shape=(size, size, 3), **kwargs,
        )

    def check_size(self, image_size: int) -> None:
        if image_size < self.min_size:
            raise RecordkitError(
                f"{self.name} needs --image_size >= {self.min_size} (got {image_size})"
            )


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: ModelSpec) -> ModelSpec:
    unknown = sorted(set(spec.preprocessing.values()) - set(CONVENTIONS))
    if unknown:
        raise ValueError(f"{spec.name}: pixel conventions {unknown} are not in CONVENTIONS")
    _REGISTRY[spec.name] = spec
    for alias in (spec.name, *spec.aliases):
        _ALIASES[alias.lower()] = spec.name
    return spec


def names() -> list[str]:
    """Registered model names (the canonical ones, as TF-Slim spells them)."""
    return sorted(_REGISTRY)


def get(name: str) -> ModelSpec:
    """The spec for `name` (slim spelling or an alias such as `vgg16`); unknown names raise."""
    key = _ALIASES.get(name.lower().replace("-", "_"))
    if key is None:
        raise RecordkitError(f"unknown model {name!r}; valid names: {', '.join(names())}")
    return _REGISTRY[key]


def build(
    spec: ModelSpec, num_classes: int, image_size: int | None = None, dropout: float | None = None,
    head: str = "slim", backbone_output: str | None = None,
) -> keras.Model:
    """Backbone + neck + dropout + a new `logits` Dense layer with `num_classes` outputs.

    The model takes preprocessed float images (see `recordkit.preprocessing.preprocess`).
    `dropout` overrides the rate of every dropout layer (default: the original network's; 0.2
    before pool_bn's logits, as in Keras' transfer-learning guide).
    head="pool" replaces the neck by global average pooling (Keras' transfer-learning head):
    for VGG, no randomly initialised fc6/fc7 of 100M weights when the weights have no top, and
    logits whose scale does not grow with the image size. Inception's slim head pools already.
    head="pool_bn" adds a BatchNorm after the pooling (timm's `fc_norm`): pretrained features
    come at whatever scale their training left them, and a linear layer learns fastest on
    standardised inputs. `backbone_output` ends the backbone at one of the registry's
    `cut_layers`, for weights whose last blocks were trained for another task.
    """
    if head not in HEADS:
        raise RecordkitError(f"unknown head {head!r}; expected one of {', '.join(HEADS)}")
    size = image_size or spec.native_size
    spec.check_size(size)
    inputs = keras.Input((size, size, 3), name="images")
    backbone = spec.backbone(size)
    if backbone_output:
        if head == "slim":
            raise RecordkitError("--backbone_output needs --head pool or pool_bn: the original top "
                                 "expects the whole backbone")
        backbone = truncated(spec, backbone, backbone_output)
    features = backbone(inputs)
    if head == "slim":
        features = spec.neck(features, dropout)
    elif len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D(name=GLOBAL_POOL)(features)
    if head == "pool_bn":
        features = keras.layers.BatchNormalization(name=HEAD_NORM)(features)
    rate = dropout if dropout is not None else POOL_BN_DROPOUT if head == "pool_bn" else spec.dropout
    features = keras.layers.Dropout(rate, name=HEAD_DROPOUT)(features)
    logits = keras.layers.Dense(num_classes, name=LOGITS, dtype="float32")(features)
    return keras.Model(inputs, logits, name=spec.name)


def truncated(spec: ModelSpec, backbone: keras.Model, output: str) -> keras.Model:
    """The backbone up to layer `output` (its layers and variables, the rest dropped)."""
    if output not in spec.cut_layers:
        raise RecordkitError(
            f"--backbone_output {output!r} is not a layer {spec.name} can end at; "
            f"expected one of {', '.join(spec.cut_layers)}"
        )
    return keras.Model(backbone.input, backbone.get_layer(output).output, name=BACKBONE)


def dense_entries(model: keras.Model, scopes: dict[str, str]) -> list[SlimEntry]:
    """Slim names for Dense layers given by name (slim stores them as convolutions)."""
    entries = []
    for layer_name, scope in scopes.items():
        layer = model.get_layer(layer_name)
        entries.append(SlimEntry(f"{scope}/weights", layer.kernel, layer_name))
        entries.append(SlimEntry(f"{scope}/biases", layer.bias, layer_name))
    return entries


def slim_entries(spec: ModelSpec, model: keras.Model) -> list[SlimEntry]:
    """Every variable of a model from `build` with its slim checkpoint name. pool_bn's BatchNorm
    belongs to the logits' scope (`<logits scope>/BatchNorm/...`, layer name `logits`), so the
    flags that exclude or train the new logits cover it too."""
    layers = {l.name for l in model.layers}
    entries = spec.backbone_entries(model.get_layer(BACKBONE)) + dense_entries(
        model, {k: v for k, v in spec.dense_slim_scopes.items() if k in layers}
    )
    if HEAD_NORM in layers:
        norm, scope = model.get_layer(HEAD_NORM), spec.dense_slim_scopes[LOGITS]
        entries += [SlimEntry(f"{scope}/BatchNorm/{name}", getattr(norm, name), LOGITS)
                    for name in ("gamma", "beta", "moving_mean", "moving_variance")]
    return entries


def keras_application_entries(spec: ModelSpec, app: keras.Model) -> list[SlimEntry]:
    """Slim names for the variables of a Keras application (with or without its top)."""
    tops = {k: v for k, v in spec.keras_top_slim_scopes.items() if k in {l.name for l in app.layers}}
    return spec.backbone_entries(app) + dense_entries(app, tops)


from recordkit.models import inception_v3, vgg_16  # noqa: E402,F401  (registers the models)
