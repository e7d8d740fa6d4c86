"""Benchmark 4: conversion time and peak memory as the dataset grows.

    .venv/bin/python benchmarks/bench_scaling.py [--times 1 5 10] [--workers 2]

Converts the satellite set replicated 1×, 5× and 10× (6k, 30k, 60k images) with the whole
`recordkit convert` command. Time should grow linearly (constant seconds per 1,000 images
once start-up is subtracted); peak RSS of the launching process and of any worker processes
should stay flat.
"""

from __future__ import annotations

import argparse
import shutil

import _common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for times in args.times:
        root = _common.replicate(times)
        images = len(_common.image_files(root))
        out = _common.SCRATCH / "out" / f"scaling_x{times}"
        shutil.rmtree(out, ignore_errors=True)
        run = _common.convert(root, out, workers=args.workers)
        shutil.rmtree(out, ignore_errors=True)
        pipeline = _common.pipeline_seconds(run.stdout)
        rows.append({"images": images, "command_s": run.seconds, "pipeline_s": pipeline,
                     "s_per_1k_images": 1000 * pipeline / images, "launcher_peak_mib": run.launcher_mib,
                     "workers_peak_mib": run.workers_mib})
    first, last = rows[0], rows[-1]
    growth = {"time_ratio": last["pipeline_s"] / first["pipeline_s"], "size_ratio": last["images"] / first["images"],
              "launcher_memory_ratio": last["launcher_peak_mib"] / first["launcher_peak_mib"]}
    _common.report("scaling", ["images", "command_s", "pipeline_s", "s_per_1k_images", "launcher_peak_mib",
                               "workers_peak_mib"], rows, {"workers": args.workers, "growth": growth})
    print("growth, largest vs smallest: " + ", ".join(f"{k} {v:.2f}" for k, v in growth.items()))


if __name__ == "__main__":
    main()
