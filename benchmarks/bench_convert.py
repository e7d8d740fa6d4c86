"""Benchmark 1: conversion throughput against what the hardware and the tutorial do.

    .venv/bin/python benchmarks/bench_convert.py [--times 10] [--workers 2]

- passthrough (JPEGs validated, bytes kept) vs a bare N-process loop that reads and fully
  decodes every file with Pillow: the floor any validating converter has to beat;
- --image-size 299 vs a bare N-process loop of decode → resize 299 → JPEG encode;
- the whole command on the original 6,000 images vs the tutorial's converter
  (benchmarks/tutorial_baseline.py: threads sharing one TF decoder).
The first two use the satellite set replicated --times times (start-up cost can't hide the
per-image cost) and time whole commands; the bare loops time only the work. The replicas have
the same pixels, so each is a near copy of the others: those two runs pass
--no-near-duplicates (the search's cost on real data is bench_near_duplicates.py's).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import shutil

from PIL import Image

import _common

SIZE = 299


def full_decode(path) -> None:
    with open(path, "rb") as f:
        Image.open(io.BytesIO(f.read())).load()


def decode_resize_encode(path) -> None:
    with open(path, "rb") as f:
        image = Image.open(io.BytesIO(f.read())).convert("RGB")
    image.resize((SIZE, SIZE), Image.Resampling.BILINEAR).save(io.BytesIO(), format="JPEG", quality=95)


def bare_loop(work, files: list, workers: int) -> float:
    """Seconds for `workers` processes to run `work` on every file (pool start-up included)."""
    def run():
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(work, files, chunksize=64):
                pass
    return _common.timed(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=10, help="replicas of the satellite set (default 10)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    big = _common.replicate(args.times)
    small = _common.replicate(1)
    files = _common.image_files(big)
    out = _common.SCRATCH / "out"
    rows = []

    def compare(what: str, ours: _common.Run, count: int, baseline: str, baseline_seconds: float, target: float):
        ours_rate, base_rate = count / ours.seconds, count / baseline_seconds
        rows.append({"comparison": what, "images": count, "ours_s": ours.seconds,
                     "ours_pipeline_s": _common.pipeline_seconds(ours.stdout), "ours_cpu_s": ours.cpu_seconds,
                     "ours_tree_mib": ours.tree_mib,
                     "ours_img_s": ours_rate,
                     "baseline": baseline, "baseline_s": baseline_seconds, "baseline_img_s": base_rate,
                     "ratio": ours_rate / base_rate, "target": target,
                     "met": "yes" if ours_rate / base_rate >= target else "NO"})

    w = args.workers
    shutil.rmtree(out, ignore_errors=True)
    _common.warm(big)
    compare("passthrough", _common.convert(big, out / "pass", "--no-near-duplicates", workers=w), len(files),
            f"{w} procs Pillow full decode", bare_loop(full_decode, files, w), 1.0)
    _common.warm(big)
    compare(f"--image-size {SIZE}", _common.convert(big, out / "resize", "--image-size", str(SIZE), "--no-near-duplicates",
                                                       workers=w),
            len(files), f"{w} procs decode+resize+encode", bare_loop(decode_resize_encode, files, w), 1.0)
    _common.warm(small)
    tutorial = _common.run_command([_common.PYTHON, "benchmarks/tutorial_baseline.py", str(small),
                                    str(out / "tutorial"), "--threads", str(w), "--shards", str(w)])
    compare("whole command, 6k", _common.convert(small, out / "whole", workers=w),
            len(_common.image_files(small)), "tutorial converter (whole command)", tutorial.seconds, 2.0)
    shutil.rmtree(out, ignore_errors=True)
    _common.report("convert", ["comparison", "images", "ours_s", "ours_pipeline_s", "ours_cpu_s", "ours_tree_mib", "ours_img_s", "baseline",
                               "baseline_s", "baseline_img_s", "ratio", "target", "met"], rows,
                   {"workers": w, "times": args.times})


if __name__ == "__main__":
    main()
