"""Benchmark 7: does `recordkit eval --label_issues N` find labels flipped on purpose?

    .venv/bin/python benchmarks/bench_label_issues.py [--fraction 0.05] [--size 112] [--steps 3000]

The real satellite set as a symlink tree in SCRATCH (no image is copied), with --fraction of
the validation files moved into another class folder (seeded: which files and which wrong
class). The tree is converted with `recordkit convert`; `recordkit train` fits vgg_16's new
head on the clean train split from the real HED weights (head only, on cached features, at
--size px: a few CPU minutes); `recordkit eval --label_issues N` on the noisy validation split,
with N = the number of flipped files, lists N files. Reported: precision and recall at N of
that list against the flipped files (equal when N are listed), how many records confident
learning flagged, the validation accuracy (against the given, partly flipped, labels), and the
same precision for a random ranking of the split (seeded draws, in this script; its
expectation is the flipped fraction). The validation split is out-of-sample for the model,
which never trained on it, as the method needs.

Needs ../shared (RECORDKIT_SATELLITE_DIR, RECORDKIT_HED_WEIGHTS override the paths).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import statistics
import time

import _common
from bench_finetune import HED

SATELLITE = pathlib.Path(os.environ.get("RECORDKIT_SATELLITE_DIR", _common.SATELLITE))


def flipped_tree(root: pathlib.Path, fraction: float, seed: int) -> dict[str, str]:
    """Symlink SATELLITE into `root`, moving `fraction` of the validation files into another
    class folder; returns {source id in the tree ("class/name"): the true class}.

    Files are drawn in a seeded order and each gets a seeded wrong class; a move that would
    land on a name the folder already holds is skipped, so every link keeps its file name.
    """
    shutil.rmtree(root, ignore_errors=True)
    classes = sorted(p.name for p in (SATELLITE / "train").iterdir() if p.is_dir())
    files = sorted(p.relative_to(SATELLITE) for p in SATELLITE.glob("*/*/*") if p.is_file())
    validation = [f for f in files if f.parts[0] == "validation"]
    target = round(fraction * len(validation))
    rng = random.Random(seed)
    taken = {(f.parts[1], f.name) for f in validation}
    moved: dict[pathlib.Path, str] = {}
    for f in rng.sample(validation, len(validation)):
        if len(moved) == target:
            break
        wrong = rng.choice([c for c in classes if c != f.parts[1]])
        if (wrong, f.name) in taken:
            continue
        taken.add((wrong, f.name))
        moved[f] = wrong
    flips = {}
    for f in files:
        link = root / f if f not in moved else root / "validation" / moved[f] / f.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(SATELLITE / f)
        if f in moved:
            flips[f"{moved[f]}/{f.name}"] = f.parts[1]
    for c in classes:  # the converter wants every class folder, even if a class lost no file
        (root / "validation" / c).mkdir(parents=True, exist_ok=True)
    return flips


def precision_recall(listed: list[str], flipped: set[str]) -> tuple[float, float]:
    hits = sum(name in flipped for name in listed)
    return (hits / len(listed) if listed else 0.0), hits / len(flipped)


def random_baseline(names: list[str], flipped: set[str], n: int, draws: int, seed: int) -> dict:
    """Precision at n of `draws` seeded random rankings of the split (recall is the same
    fraction of the flipped files when n = their number)."""
    rng = random.Random(seed)
    precisions = [precision_recall(rng.sample(names, n), flipped)[0] for _ in range(draws)]
    return {"mean": statistics.mean(precisions), "stdev": statistics.stdev(precisions),
            "expected": len(flipped) / len(names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.05, help="of the validation files to flip")
    parser.add_argument("--size", type=int, default=112, help="training and eval image size")
    parser.add_argument("--steps", type=int, default=3000, help="head steps on the cached features")
    parser.add_argument("--learning-rate", default="1e-3")
    parser.add_argument("--seed", type=int, default=0, help="which files flip, training, random draws")
    parser.add_argument("--draws", type=int, default=1000, help="random rankings for the baseline")
    args = parser.parse_args()
    if not HED.is_file() or not SATELLITE.is_dir():
        raise SystemExit(f"needs {HED} and {SATELLITE} (see the docstring)")
    work = _common.SCRATCH / "label_issues"
    tree, shards, train_dir, eval_dir = (work / name for name in ("tree", "shards", "train_dir", "eval_dir"))
    flips = flipped_tree(tree, args.fraction, args.seed)
    n = len(flips)
    for folder in (shards, train_dir, eval_dir):
        shutil.rmtree(folder, ignore_errors=True)
    recordkit = str(pathlib.Path(_common.PYTHON).parent / "recordkit")
    stages = {}
    convert = _common.convert(tree, shards, "--train-shards", "4", "--validation-shards", "2")
    stages["convert"] = convert
    train = [recordkit, "train", f"--train_dir={train_dir}", f"--dataset_dir={shards}", "--model_name=vgg_16",
             f"--image_size={args.size}", f"--checkpoint_path={HED}", "--checkpoint_exclude_scopes=logits",
             "--trainable_scopes=logits", "--optimizer=adam", "--opt_epsilon=1e-7",
             f"--learning_rate={args.learning_rate}", "--learning_rate_decay_type=fixed", "--batch_size=32",
             f"--max_number_of_steps={args.steps}", f"--seed={args.seed}", "--save_interval_secs=600",
             "--save_summaries_secs=600", "--log_every_n_steps=500"]
    stages["train"] = _common.run_command(train)
    evaluate = [recordkit, "eval", f"--checkpoint_path={train_dir}", f"--dataset_dir={shards}",
                f"--eval_dir={eval_dir}", "--dataset_split_name=validation", f"--label_issues={n}"]
    stages["eval"] = _common.run_command(evaluate)
    report = json.loads((eval_dir / "eval.json").read_text())
    listed = [row["source_id"] for row in report["label_issues"]]
    flipped = set(flips)
    precision, recall = precision_recall(listed, flipped)
    names = [str(p.relative_to(tree / "validation")) for p in sorted((tree / "validation").glob("*/*"))]
    baseline = random_baseline(names, flipped, n, args.draws, args.seed)
    found = [name for name in listed if name in flipped]
    # The list is ranked: how clean its head is says how far down a reviewer should read.
    precision_at = {k: sum(name in flipped for name in listed[:k]) / k for k in (10, 20, 30, n) if k <= len(listed)}
    rows = [
        {"ranking": "confident learning (eval --label_issues)", "n": n, "listed": len(listed),
         "flagged": report["label_issues_flagged"], "precision": precision, "recall": recall,
         "val_accuracy": report["scalars"]["eval/Accuracy"]},
        {"ranking": f"random ({args.draws} draws, mean)", "n": n, "listed": n, "flagged": "",
         "precision": baseline["mean"], "recall": baseline["mean"], "val_accuracy": ""},
    ]
    print("likely label errors" + stages["eval"].stdout.split("likely label errors", 1)[-1])
    print("precision at k of the list: " + ", ".join(f"{k}: {p:.2f}" for k, p in precision_at.items()))
    _common.report("label_issues", ["ranking", "n", "listed", "flagged", "precision", "recall", "val_accuracy"],
                   rows, {
                       "validation_files": len(names), "fraction": args.fraction, "size": args.size,
                       "steps": args.steps, "weights": str(HED), "random_baseline": baseline,
                       "precision_at": precision_at,
                       "found": {name: flips[name] for name in found},
                       "missed": {name: flips[name] for name in sorted(flipped - set(found))},
                       "suggested_is_true_class": sum(row["suggested"] == flips[row["source_id"]]
                                                      for row in report["label_issues"] if row["source_id"] in flips),
                       "wall_s": {k: v.seconds for k, v in stages.items()},
                       "cpu_s": {k: v.cpu_seconds for k, v in stages.items()},
                       "commands": {"train": train, "eval": evaluate},
                       "time_finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                   })


if __name__ == "__main__":
    main()
