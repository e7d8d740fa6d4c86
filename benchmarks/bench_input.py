"""Benchmark 2: images/s the trainer's tf.data pipeline delivers, vs a bare read-and-decode loop.

    .venv/bin/python benchmarks/bench_input.py [--size 299] [--batch 32] [--seconds 20]

Both read the satellite shards already converted at the training size (made once with
`recordkit convert --image-size SIZE`). Ours is `recordkit.dataset.make(training=True)`: shuffle,
parse, decode the random crop window, flip, bilinear resize, batch uint8, Inception scaling per batch. The baseline is
TFRecordDataset → parse image/encoded → decode_jpeg → batch, all with AUTOTUNE.
GPU demand: Inception V3 training images/s per H100, from published figures (see docs).
"""

from __future__ import annotations

import argparse
import time

import tensorflow as tf

import _common
from recordkit import dataset, metadata, records

# No published Inception V3 training figure for the H100 was found, and no GPU was available:
# an estimate from FLOPs. Forward pass 5.7 GMACs at 299 px (Szegedy et al. 2015, Table 1 ~ 5
# billion multiply-adds; Keras reports 5.7) → ~34 GFLOP per training image (×2 FLOP/MAC, ×3 for
# backward); H100 SXM dense BF16 peak 989 TFLOP/s at 30-40 % utilisation typical of convnets.
H100_INCEPTION_V3_IMG_S = (989e12 * 0.30 / 34e9, 989e12 * 0.40 / 34e9)


def rate(ds: tf.data.Dataset, seconds: float) -> float:
    """Images/s after a warm-up of 5 batches, over at least `seconds`."""
    iterator = iter(ds)
    for _ in range(5):
        next(iterator)
    count, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        images = next(iterator)[0]
        count += int(images.shape[0])
    return count / (time.monotonic() - start)


def bare(files: list[str], batch: int) -> tf.data.Dataset:
    spec = {records.ENCODED: tf.io.FixedLenFeature([], tf.string)}
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE).repeat()
    ds = ds.map(lambda r: (tf.io.decode_jpeg(tf.io.parse_single_example(r, spec)[records.ENCODED], channels=3),),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    shards = _common.converted(_common.replicate(1), args.size)
    info = metadata.load(str(shards))
    ours = rate(dataset.make(str(shards), "train", image_size=args.size, mode="inception", batch_size=args.batch,
                             training=True, seed=0, info=info), args.seconds)
    files = info.shard_paths(str(shards), "train")
    baseline = rate(bare(files, args.batch), args.seconds)
    low, high = H100_INCEPTION_V3_IMG_S
    rows = [{"pipeline": "recordkit.dataset.make (train: shuffle, decode crop window, flip, resize, scale)", "img_s": ours,
             "ratio": ours / baseline, "target": 0.8, "met": "yes" if ours / baseline >= 0.8 else "NO",
             "h100s_fed": f"{ours / high:.3f}-{ours / low:.3f}"},
            {"pipeline": "bare TFRecordDataset -> decode_jpeg", "img_s": baseline, "ratio": 1.0}]
    _common.report("input", ["pipeline", "img_s", "ratio", "target", "met", "h100s_fed"], rows,
                   {"size": args.size, "batch": args.batch,
                    "h100_inception_v3_img_s_estimate": H100_INCEPTION_V3_IMG_S,
                    "h100_source": "estimate from FLOPs and the H100 SXM BF16 peak; no GPU measured"})


if __name__ == "__main__":
    main()
