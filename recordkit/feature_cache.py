"""Training the top of a network on cached outputs of its frozen body.

When every trainable layer lies after some cut point of the network (VGG's fc layers or its
last convolution block, Inception's last mixed blocks, or the new logits alone), the frozen
part before the cut computes the same thing every epoch. We run it once per training image
(the eval crop, plus its mirror image when augmentation is on), keep the outputs in memory or
in a temporary file when they are large, and step the top on them: the same model and loss,
a fraction of the FLOPs per step.

The frozen body always runs in inference mode (its BatchNorm statistics and dropout), cached
or not, so `--feature_cache=off` trains the same function the cache does (Keras'
transfer-learning recipe runs a frozen base with training=False too).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import keras
import numpy as np
from tqdm import tqdm

from recordkit import dataset, models
from recordkit.errors import RecordkitError

log = logging.getLogger(__name__)

# Above this many bytes the cache is a memory-mapped file in the system's temporary folder.
MEMORY_LIMIT_BYTES = 2 * 1024**3
AUTO_SIZE_FACTOR = 4


@dataclass
class Split:
    """A model cut in two: `body` (images → the cut's output, frozen) and `top` (the cut's
    output → logits, sharing the model's layers and variables)."""

    cut: str
    body: keras.Model
    top: keras.Model

    def values_per_image(self) -> int:
        return int(np.prod(self.body.output.shape[1:]))


def split(model: keras.Model, spec: models.ModelSpec) -> Split | None:
    """The latest cut point with no trainable variable before it; None when the first layer
    trains. Cut points are the registry's `cut_layers` inside the backbone, then the backbone's
    output and each layer after it but dropout (the model is sequential from there on; a
    dropout before a trained layer must stay in training mode, so it is never the cut)."""
    backbone = model.get_layer(models.BACKBONE)
    after = model.layers[model.layers.index(backbone) + 1 :]
    present = {layer.name for layer in backbone.layers}  # --backbone_output ends it early
    cuts = [(name, backbone) for name in spec.cut_layers if name in present]
    cuts += [(models.BACKBONE, model)] + [
        (layer.name, model) for layer in after[:-1] if not isinstance(layer, keras.layers.Dropout)
    ]
    for name, graph in reversed(cuts):
        if graph is backbone:
            body = keras.Model(backbone.input, backbone.get_layer(name).output)
        elif name == models.BACKBONE:
            body = backbone
        else:
            body = keras.Model(model.input, model.get_layer(name).output)
        if body.trainable_weights:
            continue
        features = keras.Input(body.output.shape[1:], name="features")
        x = features
        if graph is backbone:
            x = keras.Model(backbone.get_layer(name).output, backbone.output)(x)
        outer = after if graph is backbone or name == models.BACKBONE else after[after.index(model.get_layer(name)) + 1 :]
        for layer in outer:
            x = layer(x)
        return Split(name, body, keras.Model(features, x, name="top"))
    return None


def worth_caching(cut: Split, image_size: int) -> bool:
    """`--feature_cache=auto`: cache when the cut's output has at most AUTO_SIZE_FACTOR times
    the values of the image it replaces. That admits every cut from VGG's second block and
    Inception's first mixed block on, and refuses the first layers' huge maps, whose cache would
    cost gigabytes to save a few percent of the FLOPs."""
    return cut.values_per_image() <= AUTO_SIZE_FACTOR * image_size * image_size * 3


class Cache:
    """The body's outputs for every training image (and mirror image), with their targets."""

    def __init__(self, features: np.ndarray, targets: dict[str, np.ndarray], folder: str | None):
        self.features, self.targets, self._folder = features, targets, folder

    def __len__(self) -> int:
        return len(self.features)

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        order = np.argsort(indices)  # sorted reads from a memory-mapped file, original order back
        rows = np.empty((len(indices), *self.features.shape[1:]), self.features.dtype)
        rows[order] = self.features[indices[order]]
        return rows, {k: v[indices] for k, v in self.targets.items()}

    def close(self) -> None:
        self.features = None
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)


def build(cut: Split, dataset_dir: str, split_name: str, *, num_records: int, image_size: int,
          mode: str, batch_size: int, mirror: bool, info) -> Cache:
    """Run the body once over the split (eval crop; also its mirror image if `mirror`)."""
    views = 2 if mirror else 1
    shape = tuple(cut.body.output.shape[1:])
    rows = num_records * views
    nbytes = rows * int(np.prod(shape)) * 4
    folder = None
    if nbytes > MEMORY_LIMIT_BYTES:
        folder = tempfile.mkdtemp(prefix="recordkit-features-")
        features = np.lib.format.open_memmap(os.path.join(folder, "features.npy"), "w+", np.float32, (rows, *shape))
    else:
        features = np.empty((rows, *shape), np.float32)
    ds = dataset.make(dataset_dir, split_name, image_size=image_size, mode=mode,
                      batch_size=batch_size, training=False, info=info, finish_in_step=True)
    targets: list[dict] = []
    start, row = time.monotonic(), 0
    where = f"a temporary file in {folder}" if folder else "memory"
    with tqdm(total=rows, desc=f"caching {cut.cut} outputs", unit="img", disable=None, leave=False) as bar:
        for windows, batch_targets in ds:
            images = dataset.finish(windows, image_size, mode)
            n = len(images)
            features[row : row + n] = cut.body(images, training=False)
            if mirror:
                features[row + n : row + 2 * n] = cut.body(images[:, :, ::-1], training=False)
            targets += [{k: v.numpy() for k, v in batch_targets.items()}] * views
            row += n * views
            bar.update(n * views)
    if row != rows:
        raise RecordkitError(f"dataset.json says {num_records} records, the shards hold {row // views}")
    seconds = time.monotonic() - start
    log.info("cached %d outputs of %s (%s values each%s) in %s in %.1f s (%.1f images/s)",
             rows, cut.cut, "x".join(map(str, shape)), ", with mirror images" if mirror else "",
             where, seconds, rows / max(seconds, 1e-9))
    merged = {k: np.concatenate([t[k] for t in targets]) for k in targets[0]}
    return Cache(features, merged, folder)


def stream_indices(seed: int, step: int, batch_size: int, n: int) -> np.ndarray:
    """The cache rows of a step: epochs of seeded permutations, so the data position is the
    step and a resumed run continues exactly."""
    positions = np.arange(step * batch_size, (step + 1) * batch_size)
    epochs = positions // n
    out = np.empty_like(positions)
    for epoch in np.unique(epochs):
        perm = np.random.default_rng([seed, int(epoch)]).permutation(n)
        out[epochs == epoch] = perm[positions[epochs == epoch] % n]
    return out
