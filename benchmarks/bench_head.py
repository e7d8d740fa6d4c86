"""Benchmark 3: training the top on cached body outputs vs a full forward pass every step.

    .venv/bin/python benchmarks/bench_head.py [--seeds 0 1 2] [--epochs 3] [--per-class 200] [--size 112]

The real HED/ImageNet VGG16 convolutions (../shared/weights), pool head, only the logits train,
Adam 1e-3, on a satellite subset (--per-class training images per class, half as many
validation images). Per seed, two runs with the same flags but `--feature_cache`:
"off" runs the frozen body every step on random crops and flips (the usual augmentation);
"on" runs it once over the eval crops and their mirror images (`--feature_cache_mirror`),
then steps the head on the cached vectors. Same seed, same number of steps. The question is
whether the cache costs accuracy (compare across seeds: the spread is the noise) and what it
saves (CPU seconds of the whole training call, caching included).
"""

from __future__ import annotations

import argparse
import logging
import math
import resource
import shutil
import statistics

import _common
from bench_finetune import HED
from recordkit import evaluate, metadata, runs, train


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(shards, train_dir, cache: str, steps: int, seed: int, size: int) -> dict:
    shutil.rmtree(train_dir, ignore_errors=True)
    cfg = train.TrainConfig(train_dir=str(train_dir), dataset_dir=str(shards), model_name="vgg_16", image_size=size,
                            checkpoint_path=str(HED), checkpoint_exclude_scopes=["logits"], trainable_scopes=["logits"],
                            feature_cache=cache, feature_cache_mirror=True, max_number_of_steps=steps,
                            batch_size=32, optimizer="adam", opt_epsilon=1e-7, learning_rate=1e-3,
                            learning_rate_decay_type="fixed", seed=seed, save_interval_secs=1e9,
                            save_summaries_secs=1e9, log_every_n_steps=0)
    before = cpu_seconds()
    result = train.train(cfg)
    train_cpu = cpu_seconds() - before
    model, meta = runs.load_for_inference(str(train_dir))
    report = evaluate.evaluate_model(model, meta, str(shards), "validation")
    return {"cache": cache, "seed": seed, "train_cpu_s": train_cpu, "cut": result.feature_cache or "",
            "val_accuracy": report.scalars["eval/Accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=200, help="training images per class")
    parser.add_argument("--size", type=int, default=112)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = _common.subset({"train": args.per_class, "validation": max(1, args.per_class // 2)})
    shards = _common.converted(root, 256)
    images = metadata.load(str(shards)).splits["train"].num_records
    steps = math.ceil(args.epochs * images / 32)
    rows = []
    for seed in args.seeds:
        for cache in ("off", "on"):
            rows.append(run(shards, _common.SCRATCH / "head" / cache, cache, steps, seed, args.size))
            print(rows[-1], flush=True)
    shutil.rmtree(_common.SCRATCH / "head", ignore_errors=True)
    summary = {}
    for cache in ("off", "on"):
        accuracies = [r["val_accuracy"] for r in rows if r["cache"] == cache]
        summary[cache] = {"mean_accuracy": statistics.mean(accuracies),
                          "stdev_accuracy": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                          "mean_train_cpu_s": statistics.mean(r["train_cpu_s"] for r in rows if r["cache"] == cache)}
    speedup = summary["off"]["mean_train_cpu_s"] / summary["on"]["mean_train_cpu_s"]
    gap = summary["on"]["mean_accuracy"] - summary["off"]["mean_accuracy"]
    noise = max(summary["off"]["stdev_accuracy"], summary["on"]["stdev_accuracy"], 0.01)
    rows.append({"cache": "on/off", "seed": "mean", "train_cpu_s": speedup, "cut": "",
                 "val_accuracy": gap})
    _common.report("head", ["cache", "seed", "cut", "train_cpu_s", "val_accuracy"], rows,
                   {"images": images, "size": args.size, "steps": steps, "weights": str(HED), "summary": summary,
                    "cpu_speedup": speedup, "accuracy_gap": gap,
                    "equal_within_noise": abs(gap) <= 2 * noise,
                    "last_row": "speed-up of the CPU time (off/on) and accuracy gap (on - off), means over seeds"})


if __name__ == "__main__":
    main()
