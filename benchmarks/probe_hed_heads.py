"""Exploration behind benchmark 5: which head on HED VGG16's block-4 outputs classifies the
satellite set best, and whether training block 5 on them helps (issue 13's 85 % target).

    .venv/bin/python benchmarks/probe_hed_heads.py [--size 224] [--epochs 20] [--conv5-epochs 4] [--cache DIR]

block4_pool maps of the eval crops (train and validation) are computed once; each head then
trains on them with Adam 1e-3, batch 32, seed 0, random horizontal flips of the maps, and
prints validation accuracy (last and best epoch) and its CPU seconds:

  gap       global average pooling → dropout 0.5 → logits (`--head pool`)
  gap_bn    pooling → BatchNorm → dropout → logits (`--head pool_bn`)
  stats_bn  mean and standard deviation pooling → BatchNorm → dropout → logits
  conv1_bn  BatchNorm → 1x1 convolution (256, BatchNorm, ReLU) → pooling → dropout → logits
  bilinear  1x1 convolution to 64 channels → second-order (bilinear) pooling, signed square
            root, L2 normalisation → BatchNorm → dropout → logits
  conv5     HED's block 5 (trained, Adam 1e-4) → pooling → BatchNorm → dropout → logits

About 25 CPU minutes at 224 px; the maps take 2.4 GB of memory (float16).
"""

from __future__ import annotations

import argparse
import pathlib
import resource

import keras
import numpy as np
import tensorflow as tf

import _common
from bench_finetune import HED
from recordkit import dataset

SPLITS = ("train", "validation")


def maps(shards, size: int, vgg: keras.Model, cache: pathlib.Path | None) -> dict:
    """block4_pool maps and labels per split; with `cache`, kept there as .npy files (the
    forward pass is ~14 wall minutes at 224 px, the heads are quicker)."""
    if cache and all((cache / f"{size}_{s}_{k}.npy").exists() for s in SPLITS for k in ("labels", "block4_pool_map")):
        return {s: tuple(np.load(cache / f"{size}_{s}_{k}.npy") for k in ("block4_pool_map", "labels")) for s in SPLITS}
    body = keras.Model(vgg.input, vgg.get_layer("block4_pool").output)
    out = {}
    for split in SPLITS:
        ds = dataset.make(str(shards), split, image_size=size, mode="caffe", batch_size=64, training=False)
        x, y = [], []
        for images, targets in ds:
            x.append(body(images, training=False).numpy().astype(np.float16))
            y.append(targets["label"].numpy())
        out[split] = (np.concatenate(x), np.concatenate(y))
        if cache:
            cache.mkdir(parents=True, exist_ok=True)
            np.save(cache / f"{size}_{split}_block4_pool_map.npy", out[split][0])
            np.save(cache / f"{size}_{split}_labels.npy", out[split][1])
    return out


def _cbr(x, channels: int):
    x = keras.layers.Conv2D(channels, 1, use_bias=False)(x)
    return keras.layers.ReLU()(keras.layers.BatchNormalization()(x))


def _bilinear(t):
    gram = tf.einsum("bhwi,bhwj->bij", t, t) / tf.cast(tf.shape(t)[1] * tf.shape(t)[2], t.dtype)
    flat = tf.reshape(gram, [-1, t.shape[-1] ** 2])
    return tf.math.l2_normalize(tf.sign(flat) * tf.sqrt(tf.abs(flat) + 1e-8), -1)


def _stats(t):
    mean, variance = tf.nn.moments(t, [1, 2])
    return tf.concat([mean, tf.sqrt(variance + 1e-6)], -1)


def head(kind: str, shape, vgg: keras.Model) -> tuple[keras.Model, float]:
    inputs = keras.Input(shape)
    x, rate = inputs, 1e-3
    if kind == "conv5":
        for name in ("block5_conv1", "block5_conv2", "block5_conv3"):
            layer = keras.layers.Conv2D(512, 3, padding="same", activation="relu", name=name)
            x = layer(x)
            layer.set_weights(vgg.get_layer(name).get_weights())
        rate = 1e-4
    elif kind == "conv1_bn":
        x = _cbr(keras.layers.BatchNormalization()(x), 256)
    elif kind == "bilinear":
        x = keras.layers.Lambda(_bilinear)(_cbr(x, 64))
    if kind == "stats_bn":
        x = keras.layers.Lambda(_stats)(x)
    elif kind != "bilinear":
        x = keras.layers.GlobalAveragePooling2D()(x)
    if kind != "gap":
        x = keras.layers.BatchNormalization()(x)
    outputs = keras.layers.Dense(6)(keras.layers.Dropout(0.5)(x))
    return keras.Model(inputs, outputs), rate


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--conv5-epochs", type=int, default=4)
    parser.add_argument("--heads", default="gap,gap_bn,stats_bn,conv1_bn,bilinear,conv5")
    parser.add_argument("--cache", type=pathlib.Path, default=None,
                        help="folder for the maps (.npy, float16): computed once, read by later runs")
    args = parser.parse_args()
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(args.size, args.size, 3))
    vgg.load_weights(str(HED))
    data = maps(_common.converted(_common.SATELLITE, 256), args.size, vgg, args.cache)
    (train_x, train_y), (val_x, val_y) = data["train"], data["validation"]

    def flip(x, y):
        x = tf.cast(x, tf.float32)
        return tf.cond(tf.random.uniform([]) < 0.5, lambda: x[:, ::-1], lambda: x), y

    rows = []
    for kind in args.heads.split(","):
        keras.utils.set_random_seed(0)
        model, rate = head(kind, train_x.shape[1:], vgg)
        model.compile(keras.optimizers.Adam(rate), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
        train = tf.data.Dataset.from_tensor_slices((train_x, train_y)).shuffle(len(train_x), seed=0).map(flip)
        val = tf.data.Dataset.from_tensor_slices((val_x, val_y)).map(lambda x, y: (tf.cast(x, tf.float32), y))
        epochs = args.conv5_epochs if kind == "conv5" else args.epochs
        start = cpu_seconds()
        history = model.fit(train.batch(32), validation_data=val.batch(64), epochs=epochs, verbose=0).history
        predicted = np.argmax(model.predict(val.batch(64), verbose=0), -1)
        confusion = np.zeros((6, 6), int)  # rows: true class, columns: predicted
        np.add.at(confusion, (val_y, predicted), 1)
        rows.append({"head": kind, "epochs": epochs, "val_last": history["val_accuracy"][-1],
                     "val_best": max(history["val_accuracy"]), "train_last": history["accuracy"][-1],
                     "cpu_s": cpu_seconds() - start, "confusion": confusion.tolist()})
        print(rows[-1], flush=True)
    _common.report("probe_hed_heads", ["head", "epochs", "val_last", "val_best", "train_last", "cpu_s"], rows,
                   {"size": args.size, "weights": str(HED)})


if __name__ == "__main__":
    main()
