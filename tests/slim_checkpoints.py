"""Real-layout TF-Slim checkpoints with random values, built with the `tf-slim` package.

tf_slim still builds the original `vgg_16` / `inception_v3` graphs under tf.compat.v1, so the
checkpoints have exactly the published names and shapes. On TF 2.21 it needs a few moved
modules aliased first (see `import_slim`). Values have a healthy scale (He-style weights,
non-zero biases, random BatchNorm statistics) so that a wrong mapping changes the logits.
"""

from __future__ import annotations

import dataclasses
import fcntl
import io
import os
import pathlib
import subprocess
import sys

import numpy as np
import tensorflow as tf
from PIL import Image


def import_slim():
    import tf_keras.src.legacy_tf_layers as legacy_layers
    import tf_keras.src.legacy_tf_layers.normalization as legacy_normalization
    from tensorflow.python.ops import control_flow_ops

    sys.modules.setdefault("tf_keras.legacy_tf_layers", legacy_layers)
    sys.modules.setdefault("tf_keras.legacy_tf_layers.normalization", legacy_normalization)
    if not hasattr(control_flow_ops, "case"):
        control_flow_ops.case = tf.compat.v1.case
    if not hasattr(control_flow_ops, "cond"):
        control_flow_ops.cond = tf.compat.v1.cond
    import tf_slim
    from tf_slim.nets import inception_v3, vgg

    return tf_slim, inception_v3, vgg


def _random_value(name: str, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    """float32 throughout: VGG's fc6 alone is 400 MB, twice that as float64."""
    if name.endswith("moving_variance"):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if name.endswith("weights"):
        scale = np.sqrt(2.0 / int(np.prod(shape[:-1])))
    else:
        scale = 0.1 if name.endswith(("biases", "beta", "moving_mean")) else 0.05
    value = rng.standard_normal(shape, dtype=np.float32)
    value *= np.float32(scale)
    return value


def _network(model_name: str):
    slim, inception_v3, vgg = import_slim()
    if model_name == "inception_v3":
        return 1001, lambda x: _call(slim, inception_v3.inception_v3_arg_scope(),
                                     inception_v3.inception_v3, x, 1001)
    return 1000, lambda x: _call(slim, vgg.vgg_arg_scope(), vgg.vgg_16, x, 1000)


def _call(slim, arg_scope, net, images, num_classes):
    with slim.arg_scope(arg_scope):
        logits, _ = net(images, num_classes=num_classes, is_training=False)
    return logits


def make_vgg_checkpoint(prefix: str, images: np.ndarray) -> tuple[str, tf.train.CheckpointReader, np.ndarray]:
    """Write a slim vgg_16 checkpoint (seed 0); returns (path, TF's reader of it, slim's logits
    on `images`, preprocessed NHWC float32 at 224 px). Built in a process of its own: its 552
    MB of variables, their values and the graph's memory would otherwise stay in this one."""
    arrays = prefix + ".arrays.npz"
    np.savez(arrays, images=images)
    subprocess.run([sys.executable, __file__, "vgg_16", prefix, str(images.shape[1]), arrays], check=True)
    with np.load(arrays) as saved:
        logits = saved["logits"]
    return prefix, tf.train.load_checkpoint(prefix), logits  # Saver.save returns the prefix it was given


INCEPTION_SIZE = 139  # above 107, the least that slim's AuxLogits (a 5x5 pool on Mixed_6e) accepts


@dataclasses.dataclass(frozen=True)
class SlimInception:
    path: str  # the checkpoint's prefix
    reader: tf.train.CheckpointReader
    images: np.ndarray  # [3, 139, 139, 3]: two random inputs, then `jpeg`'s eval preprocessing
    logits: np.ndarray  # slim's own logits for `images`, [3, 1001]
    jpeg: str


def shared_inception(root: pathlib.Path) -> SlimInception:
    """One slim Inception V3 checkpoint (seed 0) for the whole session, built once even when
    pytest-xdist runs tests in several processes that share `root` (a file lock orders them):
    building slim's graph costs ~20 s, and three test modules need one."""
    from recordkit import export

    folder = root / "slim_inception_v3"
    with open(root / "slim_inception_v3.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "logits.npy").exists():  # written last
            folder.mkdir(exist_ok=True)
            jpeg = _smooth_jpeg(np.random.default_rng(3))
            (folder / "image.jpg").write_bytes(jpeg)
            pixels = export.eval_preprocess(INCEPTION_SIZE, "inception")(tf.io.decode_jpeg(jpeg, channels=3))
            noise = np.random.default_rng(1).uniform(-1, 1, (2, INCEPTION_SIZE, INCEPTION_SIZE, 3))
            images = np.concatenate([noise.astype(np.float32), pixels.numpy()[None]])
            _, logits = _write("inception_v3", str(folder / "inception_v3.ckpt"), INCEPTION_SIZE, images, seed=0)
            np.save(folder / "images.npy", images)
            with open(folder / "logits.tmp", "wb") as f:  # the marker of a finished build: whole or absent
                np.save(f, logits.reshape(len(images), -1))
            os.replace(folder / "logits.tmp", folder / "logits.npy")
    path = str(folder / "inception_v3.ckpt")
    return SlimInception(path, tf.train.load_checkpoint(path), np.load(folder / "images.npy"),
                         np.load(folder / "logits.npy"), str(folder / "image.jpg"))


def _smooth_jpeg(rng: np.random.Generator) -> bytes:
    """A photo-like 160x120 JPEG: random colours at 8x6, upsampled smoothly."""
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    out = io.BytesIO()
    small.resize((160, 120), Image.BILINEAR).save(out, "JPEG", quality=90)
    return out.getvalue()


def _write(model_name: str, prefix: str, image_size: int, images: np.ndarray,
           seed: int) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    _, network = _network(model_name)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, image_size, image_size, 3])
        logits = network(x)
        variables = tf.compat.v1.global_variables()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            for v in variables:
                v.load(_random_value(v.op.name, v.shape.as_list(), rng), session)
            path = saver.save(session, prefix, write_meta_graph=False)
            out = session.run(logits, {x: images})
    return path, out


if __name__ == "__main__":  # python slim_checkpoints.py MODEL PREFIX SIZE ARRAYS.npz
    model, prefix_arg, size, arrays_path = sys.argv[1:]
    with np.load(arrays_path) as given:
        batch = given["images"]
    _, logits_out = _write(model, prefix_arg, int(size), batch, seed=0)
    np.savez(arrays_path, logits=logits_out)
