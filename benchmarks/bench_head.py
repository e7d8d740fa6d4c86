"""Benchmark 3: head-only fine-tuning with cached features vs a full forward pass every step.

    .venv/bin/python benchmarks/bench_head.py [--epochs 4] [--per-class 100] [--size 160]

Same data, seed, steps and hyper-parameters; only `feature_cache` differs ("on": the frozen
Inception V3 body runs once over the training set, the head trains on the cached vectors;
"off": every step runs the body). Augmentation is off in both so they see the same pixels.
No network here, so the body has random weights (no ImageNet download): the accuracy is low,
but equal accuracy between the two paths is what is checked. A reduced satellite set and
image size keep the full-forward run to minutes on 2 CPUs.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import time

import _common
from recordkit import evaluate, metadata, train


def run(shards, train_dir, cache: str, steps: int, batch: int) -> dict:
    shutil.rmtree(train_dir, ignore_errors=True)
    cfg = train.TrainConfig(train_dir=str(train_dir), dataset_dir=str(shards), model_name="inception_v3",
                            trainable_scopes=["InceptionV3/Logits"], feature_cache=cache, augment=False,
                            max_number_of_steps=steps, batch_size=batch, optimizer="adam",
                            learning_rate=1e-3, seed=0, save_interval_secs=1e9, save_summaries_secs=1e9)
    start = time.monotonic()
    result = train.train(cfg)
    seconds = time.monotonic() - start
    model, meta = train.load_for_inference(str(train_dir))
    report = evaluate.evaluate_model(model, meta, str(shards), "validation", batch_size=batch)
    return {"seconds": seconds, "loop_seconds": result.seconds, "accuracy": report.scalars["eval/Accuracy"],
            "cached": result.head_only_cached}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=100, help="training images per class")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = _common.subset({"train": args.per_class, "validation": max(1, args.per_class // 4)})
    shards = _common.converted(root, args.size)
    images = metadata.load(str(shards)).splits["train"].num_records
    steps = math.ceil(args.epochs * images / args.batch)
    work = _common.SCRATCH / "head"
    full = run(shards, work / "full", "off", steps, args.batch)
    cached = run(shards, work / "cached", "on", steps, args.batch)
    shutil.rmtree(work, ignore_errors=True)
    # train() returns the loop's time; for the cached run the one pass that computes the
    # features comes before the loop, so it is in total_s (with model building) but not in
    # s_per_epoch, which is what every epoch after that pass costs.
    rows = [{"path": name, "epochs": args.epochs, "total_s": r["seconds"], "s_per_epoch": r["loop_seconds"] / args.epochs,
             "val_accuracy": r["accuracy"]}
            for name, r in (("full forward every step", full), ("cached features", cached))]
    speedup = full["loop_seconds"] / cached["loop_seconds"]
    equal = abs(full["accuracy"] - cached["accuracy"]) <= 0.02
    rows[1].update(speedup=speedup, met="yes" if speedup >= 20 and equal else "NO")
    _common.report("head", ["path", "epochs", "total_s", "s_per_epoch", "val_accuracy", "speedup", "met"], rows,
                   {"images": images, "size": args.size, "batch": args.batch, "steps": steps,
                    "weights": "random (no network for ImageNet weights)"})


if __name__ == "__main__":
    main()
