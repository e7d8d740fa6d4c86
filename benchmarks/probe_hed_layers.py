"""Exploration behind benchmark 5: how linearly separable the satellite classes are in each
HED VGG16 layer (frozen features, no fine-tuning), i.e. what a head on cached outputs can reach.

    .venv/bin/python benchmarks/probe_hed_layers.py [--size 224]

Global average pooling of block3_pool, block4_conv3, block4_pool and block5_conv3 (plain and
square-rooted) over the eval crops of the satellite train/validation splits; each feature set
standardised and fed to a linear softmax and to a 256-unit MLP (Adam 1e-3, 40 epochs, batch
64, seed 0). Prints last and best validation accuracy per layer. ~20 CPU minutes at 224 px.
"""

from __future__ import annotations

import argparse

import keras
import numpy as np
import tensorflow as tf

import _common
from bench_finetune import HED
from recordkit import dataset

LAYERS = ["block3_pool", "block4_conv3", "block4_pool", "block5_conv3"]


def features(shards, size: int) -> dict:
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    vgg.load_weights(str(HED))
    body = keras.Model(vgg.input, {n: vgg.get_layer(n).output for n in LAYERS})
    out = {}
    for split in ("train", "validation"):
        ds = dataset.make(str(shards), split, image_size=size, mode="caffe", batch_size=64, training=False)
        pooled, labels = {}, []
        for images, targets in ds:
            maps = body(images, training=False)
            for name in LAYERS:
                pooled.setdefault(name, []).append(tf.reduce_mean(maps[name], [1, 2]).numpy())
                pooled.setdefault(name + "_sqrt", []).append(tf.reduce_mean(tf.sqrt(maps[name]), [1, 2]).numpy())
            labels.append(targets["label"].numpy())
        out[split] = ({k: np.concatenate(v) for k, v in pooled.items()}, np.concatenate(labels))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    data = features(_common.converted(_common.SATELLITE, 256), args.size)
    (train_x, train_y), (val_x, val_y) = data["train"], data["validation"]
    for name in train_x:
        a, b = train_x[name], val_x[name]
        mean, std = a.mean(0), a.std(0) + 1e-6
        for hidden in (0, 256):
            keras.utils.set_random_seed(0)
            layers = [keras.Input(a.shape[1:])]
            layers += [keras.layers.Dense(hidden, activation="relu"), keras.layers.Dropout(0.5)] if hidden else []
            model = keras.Sequential(layers + [keras.layers.Dense(6)])
            model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
            history = model.fit((a - mean) / std, train_y, epochs=40, batch_size=64,
                                validation_data=((b - mean) / std, val_y), verbose=0).history
            print(args.size, name, hidden, "val last %.3f best %.3f train %.3f" % (
                history["val_accuracy"][-1], max(history["val_accuracy"]), history["accuracy"][-1]), flush=True)


if __name__ == "__main__":
    main()
