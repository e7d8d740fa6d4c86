"""Pretrained weights from three sources onto a registry model, by explicit name.

Sources: `imagenet` (Keras' download), a local Keras weights file (`.weights.h5` / `.h5`, as
written by `save_weights` of the Keras application, with or without its top), TF-Slim
checkpoints (`vgg_16.ckpt`, `inception_v3.ckpt`), and another `recordkit train` run (its
train_dir or a checkpoint in it: the second phase of a fine-tuning recipe starts from the
first phase's weights with other trainable scopes). Every source is read into one dictionary
keyed by slim variable names, so `--checkpoint_exclude_scopes` means the same for all three
and a mismatch is reported by name with both shapes before anything is assigned.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from recordkit import metadata, models, runs
from recordkit.errors import RecordkitError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsSource:
    """Where pretrained weights come from: kind is none, imagenet, keras, slim or run."""

    kind: str
    path: str = ""

    @property
    def convention(self) -> str:
        """Which preprocessing family the weights were trained with (key of spec.preprocessing)."""
        return {"imagenet": "keras", "keras": "keras"}.get(self.kind, self.kind)

    def describe(self) -> str:
        return self.kind if not self.path else f"{self.kind}:{self.path}"


def source_for(weights: str | None) -> WeightsSource:
    """`None`/"" → random init; "imagenet"; a path ending in .h5 → Keras; else a slim checkpoint."""
    if not weights or weights == "none":
        return WeightsSource("none")
    if weights == "imagenet":
        return WeightsSource("imagenet")
    if weights.endswith(".h5"):
        if not tf.io.gfile.exists(weights):
            raise RecordkitError(f"Keras weights file {weights} not found")
        return WeightsSource("keras", weights)
    if tf.io.gfile.exists(metadata.join(runs.run_folder(weights), runs.RUN_JSON)):
        return WeightsSource("run", weights)
    return WeightsSource("slim", _slim_checkpoint_path(weights))


def preprocessing_for(spec: models.ModelSpec, source: WeightsSource) -> str:
    """The pixel convention the weights were trained with."""
    if source.kind == "run":
        return runs.read_run_metadata(runs.run_folder(source.path))["preprocessing"]
    return spec.preprocessing[source.convention]


def read_run(spec: models.ModelSpec, path: str) -> dict[str, np.ndarray]:
    """A recordkit run's trained weights by slim name (its head included)."""
    model, meta = runs.load_for_inference(path)
    if meta["model_name"] != spec.name:
        raise RecordkitError(f"{path} is a {meta['model_name']} run, not {spec.name}")
    return {e.slim_name: e.variable.numpy() for e in models.slim_entries(spec, model)}


def _slim_checkpoint_path(path: str) -> str:
    """A checkpoint prefix or file, or a directory holding one (as slim accepts)."""
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise RecordkitError(f"no checkpoint found in directory {path}")
        return latest
    if not (tf.io.gfile.exists(path) or tf.io.gfile.exists(path + ".index")):
        raise RecordkitError(f"checkpoint {path} not found (neither {path} nor {path}.index exists)")
    return path


def _slim_reader(path: str) -> tf.train.CheckpointReader:
    try:
        return tf.train.load_checkpoint(path)
    except (tf.errors.OpError, ValueError) as e:
        raise RecordkitError(f"cannot read checkpoint {path}: {e}") from None


class SlimTensors(Mapping):
    """A TF checkpoint's tensors by variable name, each read when first asked for: loading
    with the head excluded never reads VGG16's 480 MB of fc6-fc8, and one tensor at a time is
    in memory beside the model."""

    def __init__(self, path: str):
        self._reader = _slim_reader(path)
        self._shapes = self._reader.get_variable_to_shape_map()
        self._names = sorted(self._shapes)

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape, from the checkpoint's index (nothing read)."""
        return tuple(self._shapes[name])

    def __getitem__(self, name: str) -> np.ndarray:
        if not self._reader.has_tensor(name):
            raise KeyError(name)
        return self._reader.get_tensor(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._reader.has_tensor(name)

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def read_slim(path: str) -> SlimTensors:
    """A TF checkpoint's tensors by variable name (read on demand)."""
    return SlimTensors(path)


def _load_keras_application(spec: models.ModelSpec, weights: str) -> keras.Model:
    """Keras' application with the file's weights, tried first with or without the top as the
    file's layer names suggest, then the other way."""
    if weights == "imagenet":
        try:
            return spec.keras_application(weights, include_top=True)
        except Exception as e:  # Keras' download raises a bare Exception when the fetch fails
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise RecordkitError(
                f"cannot download the ImageNet weights for {spec.name} ({reason}): no network? "
                "pass a local .weights.h5 or slim .ckpt to --checkpoint_path"
            ) from None
    errors = []
    for include_top in (True, False) if _names_a_top(weights) else (False, True):
        try:
            with warnings.catch_warnings():
                # Keras 3 warns about the application's weightless containers, which files
                # saved by save_weights do not list; every variable is still loaded (tested).
                warnings.filterwarnings("ignore", message="Skipping nested container")
                return spec.keras_application(weights, include_top=include_top)
        except (ValueError, OSError, KeyError) as e:
            errors.append(f"{'with' if include_top else 'without'} top: {e}")
    raise RecordkitError(f"cannot load {weights} into Keras' {spec.name}: " + "; ".join(errors))


def _names_a_top(path: str) -> bool:
    """Whether a weights file holds a dense layer (Keras 3 names them dense, dense_1, ... by
    type; Keras 2 files by layer: fc1, predictions), so that a file without the top is not
    first tried in VGG16 with its 138M-weight top. Unreadable here: try the top first."""
    import h5py  # Keras' own dependency; only weights files need it

    names: list[str] = []
    try:
        with h5py.File(path, "r") as f:
            f.visit(names.append)
    except (OSError, ValueError):
        return True
    return any(part.startswith(("dense", "fc1", "predictions")) for name in names for part in name.split("/"))


def read_keras(spec: models.ModelSpec, weights: str) -> dict[str, np.ndarray]:
    """Keras weights (imagenet or a file) by slim name, via the Keras application's layers."""
    app = _load_keras_application(spec, weights)
    return {e.slim_name: e.variable.numpy() for e in models.keras_application_entries(spec, app)}


def read(spec: models.ModelSpec, source: WeightsSource) -> Mapping[str, np.ndarray]:
    """The source's tensors keyed by slim variable name, in slim's or Keras' layout."""
    if source.kind == "slim":
        return read_slim(source.path)
    if source.kind in ("imagenet", "keras"):
        return read_keras(spec, "imagenet" if source.kind == "imagenet" else source.path)
    if source.kind == "run":
        return read_run(spec, source.path)
    raise RecordkitError(f"weights source {source.kind!r} has nothing to read")


def holds(spec: models.ModelSpec, source: WeightsSource, names: list[str]) -> bool:
    """Whether the source has every one of these slim tensors, reading as little as it can: a
    slim checkpoint's index (`SlimTensors` reads no tensor to answer `in`). Keras files are
    loaded (only the Keras application knows which layers they fill)."""
    if source.kind == "none":
        return False
    tensors = read(spec, source)
    return all(name in tensors for name in names)


def in_scopes(entry: models.SlimEntry, scopes: tuple[str, ...] | list[str]) -> bool:
    """True if a scope (slim name prefix, or one of our layer names) covers the entry."""
    for scope in scopes:
        scope = scope.strip().rstrip("/")
        if scope and (
            entry.slim_name == scope
            or entry.slim_name.startswith(scope + "/")
            or entry.layer_name == scope
        ):
            return True
    return False


def _fits(stored: tuple[int, ...], model: tuple[int, ...]) -> bool:
    """Whether a stored tensor becomes the model's variable as it is or reshaped: slim's 1x1 /
    7x7 convolutions become Dense kernels ([kh, kw, in, out] in Flatten's (h, w, c) order)."""
    return stored == model or (len(stored) == 4 and len(model) == 2 and int(np.prod(stored)) == int(np.prod(model)))


@dataclass
class LoadReport:
    """What a load did, for the log and for tests."""

    loaded: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"restored {len(self.loaded)} tensors, kept {len(self.excluded)} excluded at their "
            f"initial values, ignored {len(self.unused)} checkpoint tensors the model does not use"
        )


def assign(
    entries: list[models.SlimEntry],
    tensors: Mapping[str, np.ndarray],
    exclude_scopes: tuple[str, ...] | list[str] = (),
    source_name: str = "checkpoint",
) -> LoadReport:
    """Copy `tensors` onto the entries' variables; all problems are listed before any write."""
    report, updates, problems = LoadReport(), [], []
    for entry in entries:
        if in_scopes(entry, exclude_scopes):
            report.excluded.append(entry.slim_name)
            continue
        model_shape = tuple(entry.variable.shape)
        if entry.slim_name not in tensors:
            problems.append(f"  {entry.slim_name}: missing from {source_name} (model {list(model_shape)})")
            continue
        stored = (tensors.shape(entry.slim_name) if isinstance(tensors, SlimTensors)
                  else tuple(tensors[entry.slim_name].shape))
        if not _fits(stored, model_shape):
            problems.append(f"  {entry.slim_name}: checkpoint {list(stored)}, model {list(model_shape)}")
            continue
        updates.append(entry)
    if problems:
        raise RecordkitError(
            f"{source_name} does not fit the model ({len(problems)} variables):\n"
            + "\n".join(problems)
            + "\nExclude what you replace with --checkpoint_exclude_scopes (e.g. the head: "
            "the new num_classes never matches ImageNet's), or check --model_name/--image_size."
        )
    for entry in updates:  # one tensor in memory at a time (read here from a slim checkpoint)
        value = tensors[entry.slim_name].reshape(tuple(entry.variable.shape))
        entry.variable.assign(value.astype(entry.variable.dtype, copy=False))
        report.loaded.append(entry.slim_name)
    used = {e.slim_name for e in entries}
    report.unused = sorted(set(tensors) - used)
    return report


def load(
    model: keras.Model,
    spec: models.ModelSpec,
    source: WeightsSource,
    exclude_scopes: tuple[str, ...] | list[str] = (),
) -> LoadReport:
    """Load pretrained weights into a model from `models.build`, honouring exclude scopes."""
    if source.kind == "none":
        return LoadReport()
    report = assign(
        models.slim_entries(spec, model), read(spec, source), exclude_scopes, source.describe()
    )
    log.info("%s: %s", source.describe(), report.summary())
    return report


def pretrained_model(
    model_name: str, weights: str, image_size: int | None = None
) -> tuple[keras.Model, dict]:
    """A model with its ORIGINAL ImageNet head (slim: 1001 for Inception, 1000 for VGG;
    Keras: 1000) and the weights' preprocessing, e.g. to export straight from a checkpoint.

    The returned info has model_name, image_size, num_classes, preprocessing, weights and
    label_offset (1 when class 0 is slim's "background").
    """
    spec = models.get(model_name)
    source = source_for(weights)
    if source.kind == "none":
        raise RecordkitError("pretrained_model needs weights (imagenet, a .weights.h5 or a .ckpt)")
    num_classes = spec.slim_num_classes if source.kind == "slim" else spec.keras_num_classes
    model = models.build(spec, num_classes, image_size)
    load(model, spec, source)
    info = {
        "model_name": spec.name,
        "image_size": int(model.input.shape[1]),
        "num_classes": num_classes,
        "preprocessing": preprocessing_for(spec, source),
        "weights": source.describe(),
        "label_offset": num_classes - 1000,
    }
    return model, info
