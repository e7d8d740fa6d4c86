"""Benchmark 2: images/s the trainer's tf.data pipeline delivers, vs a bare read-and-decode loop.

    .venv/bin/python benchmarks/bench_input.py [--size 299] [--batch 32] [--seconds 20] [--rounds 3]

Both read the satellite train JPEGs converted as they are (256x256, `recordkit convert` without
--image-size). Rows, each measured `--rounds` times, interleaved:
- train: what `recordkit train` reads, `dataset.make(training=True, finish_in_step=True)`: shuffle,
  parse, decode the random crop window, flip, pad, batch uint8. The resize to SIZE and the
  scaling run in the training step (on the accelerator), so they are not part of this row.
- train, finished on the CPU: the same plus `dataset.finish` in the pipeline (the resize and
  scaling on the CPU; what `make` returns by default, and what training did before).
- eval: what `recordkit eval` and the feature cache read (central crop windows; the resize
  and scaling next to the model, as in training).
- the baseline: TFRecordDataset → parse image/encoded → decode_jpeg → batch, all with AUTOTUNE.
GPU demand: Inception V3 training images/s per H100, from published figures (see docs).
"""

from __future__ import annotations

import argparse
import statistics
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
        count += int(tf.nest.flatten(next(iterator)[0])[0].shape[0])
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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    shards = str(_common.converted(_common.replicate(1), None))
    info = metadata.load(shards)
    common = {"image_size": args.size, "mode": "inception", "batch_size": args.batch, "seed": 0, "info": info}
    pipelines = {
        "train (recordkit train: crop windows, resized in the step)":
            lambda: dataset.make(shards, "train", training=True, finish_in_step=True, **common),
        "train, resized and scaled on the CPU": lambda: dataset.make(shards, "train", training=True, **common),
        "eval (one pass, repeated; resized next to the model)":
            lambda: dataset.make(shards, "train", training=False, finish_in_step=True, **common).repeat(),
        "bare TFRecordDataset -> decode_jpeg": lambda: bare(info.shard_paths(shards, "train"), args.batch),
    }
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.rounds):  # interleaved, so drifting load on a shared machine hits every row
        for name, make in pipelines.items():
            rates[name].append(rate(make(), args.seconds))
    baseline = statistics.median(rates["bare TFRecordDataset -> decode_jpeg"])
    low, high = H100_INCEPTION_V3_IMG_S
    rows = []
    for name, values in rates.items():
        ours = statistics.median(values)
        row = {"pipeline": name, "img_s": ours, "ratio": ours / baseline,
               "ratios": " ".join(f"{v / b:.2f}" for v, b in zip(values, rates["bare TFRecordDataset -> decode_jpeg"])),
               "h100s_fed": f"{ours / high:.3f}-{ours / low:.3f}"}
        if name.startswith("train (recordkit train"):
            row.update(target=0.8, met="yes" if ours / baseline >= 0.8 else "NO")
        rows.append(row)
    _common.report("input", ["pipeline", "img_s", "ratio", "ratios", "target", "met", "h100s_fed"], rows,
                   {"size": args.size, "batch": args.batch, "rounds": args.rounds, "seconds": args.seconds,
                    "shards": "satellite train, 256x256 JPEGs as converted (no --image-size)",
                    "h100_inception_v3_img_s_estimate": H100_INCEPTION_V3_IMG_S,
                    "h100_source": "estimate from FLOPs and the H100 SXM BF16 peak; no GPU measured"})


if __name__ == "__main__":
    main()
