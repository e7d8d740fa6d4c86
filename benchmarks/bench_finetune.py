"""Benchmark 5: what fine-tuning learns from the real HED/ImageNet VGG16 weights, per CPU budget.

    .venv/bin/python benchmarks/bench_finetune.py [--budget-minutes 30] [--size 224] [--configs abcde]

The real satellite set (4,800 train / 1,200 validation), vgg_16 at --size, batch 32, seed 0.
Every configuration is the `recordkit train` command a user would type; it runs until its
process has used --budget-minutes of CPU time (user + system, all threads), then gets SIGTERM,
saves a checkpoint and stops (exit 143); `recordkit eval` scores that checkpoint on the
validation split (its CPU time is reported apart). Configurations:

  a  HED backbone ended at block4_pool (HED retrained conv5 for edges), the default head
     (pooling, BatchNorm, logits) trained on cached pooled features, 6,000 steps at most
  b  the same, full forward pass every step (--feature_cache=off, random crops and flips)
  c  the whole HED backbone, conv5 unfrozen too (the cache then holds block4_pool outputs)
  d  the same architecture from scratch (no weights, every layer trains)
  e  the tutorial's recipe as given (slim head, fc6-fc8 excluded and trained, RMSProp 1e-3)

Needs ../shared (RECORDKIT_SATELLITE_DIR, RECORDKIT_HED_WEIGHTS override the paths).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import _common

HED = pathlib.Path(os.environ.get("RECORDKIT_HED_WEIGHTS", _common.REPO.parent / "shared" / "weights"
                                  / "vgg16_hed_notop.weights.h5"))
ADAM = ["--optimizer=adam", "--opt_epsilon=1e-7", "--learning_rate_decay_type=fixed"]
BLOCK4_HEAD = [f"--checkpoint_path={HED}", "--backbone_output=block4_pool", "--checkpoint_exclude_scopes=logits",
               "--trainable_scopes=logits", "--learning_rate=1e-3", "--max_number_of_steps=6000", *ADAM]
CONFIGS = {
    "a": ("HED to block4, head on cached features", BLOCK4_HEAD),
    "b": ("the same, full forward", [*BLOCK4_HEAD, "--feature_cache=off"]),
    "c": ("HED, conv5 + head (cached block4)", [f"--checkpoint_path={HED}", "--head=pool",
                                                "--checkpoint_exclude_scopes=logits",
                                                "--trainable_scopes=vgg_16/conv5,logits", "--learning_rate=1e-4", *ADAM]),
    "d": ("from scratch, all layers", ["--head=pool", "--learning_rate=1e-4", *ADAM]),
    "e": ("tutorial recipe (slim head)", [f"--checkpoint_path={HED}", "--head=slim",
                                         "--checkpoint_exclude_scopes=vgg_16/fc6,vgg_16/fc7,vgg_16/fc8",
                                         "--trainable_scopes=vgg_16/fc6,vgg_16/fc7,vgg_16/fc8",
                                         "--optimizer=rmsprop", "--learning_rate=0.001",
                                         "--learning_rate_decay_type=fixed", "--weight_decay=0.00004"]),
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def train_for(budget_s: float, args: list[str]) -> dict:
    """Run `recordkit train` until it has used budget_s CPU seconds, then SIGTERM it."""
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:  # a pipe nobody reads would block the run
        process = subprocess.Popen(args, env=_common.QUIET_ENV, stdout=log, stderr=subprocess.STDOUT, text=True)
        used = 0.0
        while process.poll() is None:
            try:
                used = cpu_seconds(process.pid)
            except OSError:
                break
            if used >= budget_s:
                process.send_signal(signal.SIGTERM)
                break
            time.sleep(1)
        process.wait()
        log.seek(0)
        err = log.read()
    if process.returncode not in (0, 128 + signal.SIGTERM):
        raise RuntimeError(f"{' '.join(args)} failed ({process.returncode}):\n{err[-3000:]}")
    cached = [line for line in err.splitlines() if "cached " in line and " outputs of " in line]
    return {"train_cpu_min": used / 60, "train_wall_min": (time.monotonic() - start) / 60,
            "cache": cached[0].split(" ", 1)[1] if cached else "", "log_tail": err.splitlines()[-3:]}


def evaluate(recordkit: str, train_dir: pathlib.Path, shards: pathlib.Path) -> dict:
    eval_dir = train_dir / "eval"
    run = _common.run_command([recordkit, "eval", f"--checkpoint_path={train_dir}", f"--dataset_dir={shards}",
                               f"--eval_dir={eval_dir}"])
    report = json.loads((eval_dir / "eval.json").read_text())
    return {"step": report["step"], "val_accuracy": report["scalars"]["eval/Accuracy"],
            "eval_cpu_min": run.cpu_seconds / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=30, help="CPU minutes per configuration")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--configs", default="abcde")
    args = parser.parse_args()
    if not HED.is_file() or not _common.SATELLITE.is_dir():
        raise SystemExit(f"needs {HED} and {_common.SATELLITE} (see the docstring)")
    shards = _common.converted(_common.SATELLITE, 256)  # the source size: no resize at conversion
    recordkit = str(pathlib.Path(_common.PYTHON).parent / "recordkit")
    rows = []
    for key in args.configs:
        name, flags = CONFIGS[key]
        train_dir = _common.SCRATCH / "finetune" / key
        shutil.rmtree(train_dir, ignore_errors=True)
        command = [recordkit, "train", f"--train_dir={train_dir}", f"--dataset_dir={shards}", "--model_name=vgg_16",
                   f"--image_size={args.size}", "--batch_size=32", "--seed=0", "--save_interval_secs=600",
                   "--save_summaries_secs=600", "--log_every_n_steps=50", *flags]
        row = {"config": key, "what": name, **train_for(args.budget_minutes * 60, command)}
        row.update(evaluate(recordkit, train_dir, shards))
        rows.append(row)
        print(json.dumps(row), flush=True)
    _common.report("finetune", ["config", "what", "step", "train_cpu_min", "train_wall_min", "val_accuracy",
                                "eval_cpu_min"], rows,
                   {"size": args.size, "budget_cpu_minutes": args.budget_minutes, "weights": str(HED),
                    "commands": {k: CONFIGS[k][1] for k in args.configs}})


if __name__ == "__main__":
    main()
