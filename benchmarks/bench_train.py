"""Benchmark 6: training images/s of `recordkit train` on real shards vs the model's ceiling.

    .venv/bin/python benchmarks/bench_train.py [--models inception_v3,vgg_16] [--sizes 299,224]
        [--variants plain,xla,mixed,mixed+xla] [--batch 32] [--steps 40]

For each model and variant, two `recordkit train` commands on the satellite train shards (the
256x256 JPEGs as converted, no --image-size), every layer training from random weights:
- real: the shards through the input pipeline (crop windows decoded on the CPU, resized in
  the step), as users train;
- synthetic: `--synthetic_input`, the same step on one batch held in device memory, i.e. the
  model's ceiling on this machine.
Reported: the median of the "step N: ... images/s" lines after the first (tracing/compiling)
interval, and real / synthetic (goal on a GPU: >= 0.9). Variants: xla = --jit_compile,
mixed = --mixed_precision. Defaults: on a GPU native sizes and all four variants; on a CPU a
small size (inception_v3 128 px, vgg_16 64 px) and plain + xla (float16 is emulated on CPUs).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile

import _common

VARIANTS = {"plain": [], "xla": ["--jit_compile"], "mixed": ["--mixed_precision"],
            "mixed+xla": ["--mixed_precision", "--jit_compile"]}
RATE = re.compile(r"step \d+/\d+: .* ([0-9.]+) images/s")


def gpus() -> list[str]:
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def images_per_second(shards: str, model: str, size: int, batch: int, steps: int, extra: list[str]) -> float:
    """Median images/s of the progress lines of one `recordkit train`, the first interval dropped."""
    every = max(1, steps // 8)
    with tempfile.TemporaryDirectory(prefix="recordkit-bench-train-") as train_dir:
        args = [_common.PYTHON, "-m", "recordkit", "train", f"--train_dir={train_dir}", f"--dataset_dir={shards}",
                f"--model_name={model}", f"--image_size={size}", f"--batch_size={batch}",
                f"--max_number_of_steps={steps}", f"--log_every_n_steps={every}", "--seed=0",
                "--feature_cache=off", "--save_interval_secs=100000", "--save_summaries_secs=100000", *extra]
        done = subprocess.run(args, cwd=_common.REPO, env=_common.QUIET_ENV, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    rates = [float(m.group(1)) for m in RATE.finditer(done.stderr)][1:]
    if not rates:
        raise RuntimeError(f"no progress lines after the first in:\n{done.stderr[-3000:]}")
    return statistics.median(rates)


def main() -> None:
    on_gpu = bool(gpus())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="inception_v3,vgg_16")
    parser.add_argument("--sizes", default="299,224" if on_gpu else "128,64", help="one per model")
    parser.add_argument("--variants", default=",".join(VARIANTS) if on_gpu else "plain,xla")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=120 if on_gpu else 24)
    args = parser.parse_args()
    shards = str(_common.converted(_common.replicate(1), None))
    rows = []
    for model, size in zip(args.models.split(","), map(int, args.sizes.split(","))):
        for variant in args.variants.split(","):
            extra = VARIANTS[variant]
            real = images_per_second(shards, model, size, args.batch, args.steps, extra)
            synthetic = images_per_second(shards, model, size, args.batch, args.steps, [*extra, "--synthetic_input"])
            rows.append({"model": model, "size": size, "variant": variant, "real_img_s": real,
                         "synthetic_img_s": synthetic, "ratio": real / synthetic,
                         "met_0.9": "yes" if real / synthetic >= 0.9 else "NO"})
            print(rows[-1], flush=True)
    _common.report("train", ["model", "size", "variant", "real_img_s", "synthetic_img_s", "ratio", "met_0.9"], rows,
                   {"device": ", ".join(gpus()) or "CPU only", "batch": args.batch, "steps": args.steps,
                    "shards": "satellite train, 256x256 JPEGs as converted (no --image-size)"})


if __name__ == "__main__":
    main()
