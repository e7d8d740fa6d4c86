"""Benchmark 4: conversion time and peak memory as the dataset grows.

    .venv/bin/python benchmarks/bench_scaling.py [--times 1 5 10] [--workers 2]
    .venv/bin/python benchmarks/bench_scaling.py --synthetic 60000 600000

Converts the satellite set replicated 1×, 5× and 10× (6k, 30k, 60k images), or small
synthetic JPEGs (64×64, 6 classes) in the given numbers, with the whole `recordkit convert`
command. Time should grow linearly (constant seconds per 1,000 images once start-up is
subtracted); peak RSS of the whole process tree (launcher + worker processes, summed at each
50 ms sample) should stay flat. Replicas and synthetic files repeat a few pictures, so every
one is a near copy of others: the runs pass --no-near-duplicates (a dataset of nothing but
copies is not what the search's scaling should be judged on).
"""

from __future__ import annotations

import argparse
import shutil

import _common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--synthetic", type=int, nargs="+", help="image counts of synthetic sets instead")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = []
    roots = [_common.synthetic(n) for n in args.synthetic] if args.synthetic else [_common.replicate(t) for t in args.times]
    for root in roots:
        images = len(_common.image_files(root))
        out = _common.SCRATCH / "out" / f"scaling_{root.name}"
        shutil.rmtree(out, ignore_errors=True)
        _common.warm(root)
        run = _common.convert(root, out, "--no-near-duplicates", workers=args.workers)
        shutil.rmtree(out, ignore_errors=True)
        pipeline = _common.pipeline_seconds(run.stdout)
        rows.append({"images": images, "command_s": run.seconds, "pipeline_s": pipeline,
                     "s_per_1k_images": 1000 * pipeline / images, "cpu_s": run.cpu_seconds,
                     "launcher_peak_mib": run.launcher_mib, "worker_peak_mib": run.workers_mib,
                     "tree_peak_mib": run.tree_mib})
    first, last = rows[0], rows[-1]
    growth = {"size_ratio": last["images"] / first["images"],
              "time_per_image_ratio": last["s_per_1k_images"] / first["s_per_1k_images"],
              "tree_memory_ratio": last["tree_peak_mib"] / first["tree_peak_mib"]}
    name = "scaling_synthetic" if args.synthetic else "scaling"
    _common.report(name, ["images", "command_s", "pipeline_s", "s_per_1k_images", "cpu_s", "launcher_peak_mib",
                          "worker_peak_mib", "tree_peak_mib"], rows, {"workers": args.workers, "growth": growth})
    print("growth, largest vs smallest: " + ", ".join(f"{k} {v:.2f}" for k, v in growth.items()))


if __name__ == "__main__":
    main()
