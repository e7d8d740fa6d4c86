"""Benchmark 8: near-duplicate search at conversion, its quality and its cost.

    .venv/bin/python benchmarks/bench_near_duplicates.py [--copies 300] [--seed 1] [--rounds 3]

The satellite set plus injected near copies: --copies random images (by --seed), each saved
three more times beside itself: re-encoded at JPEG quality 60, resized to 90 %, and cropped
by 4 % per side (then re-encoded at 95). One `recordkit convert` finds the pairs:

- recall: injected copies paired with their original (or with another copy of it);
- false alarms: of the files that are neither injected nor an original of one, the share
  paired with anything (the satellite set holds no near copies we know of, so every such
  pair counts against us; they are listed for a look);
- cost: the whole command with and without the search (--no-near-duplicates), alternating
  for --rounds rounds; the ratio of images/s is the target's (>= 0.90). --before REV adds a
  third command, the package as of commit REV (e.g. before fingerprints existed).

The thresholds in recordkit/near_duplicates.py were chosen with seed 0; the default seed 1
picks other images, so the recall here is not measured on what tuned it.
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import random
import shutil
import statistics

from PIL import Image

import _common

KINDS = ("q60", "resize90", "crop4")


def variants(data: bytes) -> dict[str, bytes]:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    dx, dy = round(width * 0.04), round(height * 0.04)
    made = {
        "q60": (image, 60),
        "resize90": (image.resize((round(width * 0.9), round(height * 0.9)), Image.Resampling.BILINEAR), 95),
        "crop4": (image.crop((dx, dy, width - dx, height - dy)), 95),
    }
    out = {}
    for kind, (picture, quality) in made.items():
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=quality)
        out[kind] = buffer.getvalue()
    return out


def injected_tree(copies: int, seed: int) -> tuple[pathlib.Path, dict[str, str]]:
    """SCRATCH/satellite_near_<copies>_<seed>: the satellite files (symlinked) and the copies;
    returns the root and {copy path: original path}, paths relative to the root."""
    root = _common.SCRATCH / f"satellite_near_{copies}_{seed}"
    manifest = root / ".injected.json"
    if manifest.exists():
        return root, json.loads(manifest.read_text())
    shutil.rmtree(root, ignore_errors=True)
    files = _common.image_files(_common.SATELLITE)
    for path in files:
        target = root / path.relative_to(_common.SATELLITE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
    injected = {}
    for path in random.Random(seed).sample(files, copies):
        original = path.relative_to(_common.SATELLITE)
        for kind, data in variants(path.read_bytes()).items():
            copy = original.with_name(f"{original.stem}__{kind}.jpg")
            (root / copy).write_bytes(data)
            injected[str(copy)] = str(original)
    manifest.write_text(json.dumps(injected))
    return root, injected


def quality(root: pathlib.Path, out: pathlib.Path, injected: dict[str, str]) -> dict:
    pairs = json.loads((out / "report.json").read_text())["near_duplicates"]
    prefix = str(root) + "/"
    group = lambda path: injected.get(path, path)  # noqa: E731 - a copy belongs to its original's group
    linked = [[c["path"].removeprefix(prefix) for c in p["copies"]] for p in pairs]
    found = {path for a, b in linked if group(a) == group(b) for path in (a, b) if path in injected}
    originals = set(injected.values())
    others = [str(p.relative_to(root)) for p in _common.image_files(root)]
    others = [p for p in others if p not in injected and p not in originals]
    alarms = sorted({path for a, b in linked if group(a) != group(b) for path in (a, b) if path in set(others)})
    by_kind = {kind: sum(1 for c in found if c.endswith(f"__{kind}.jpg")) / (len(injected) / len(KINDS))
               for kind in KINDS}
    true_pairs = sum(group(a) == group(b) for a, b in linked)
    return {"pairs": len(pairs), "true_pairs": true_pairs, "precision": true_pairs / max(1, len(pairs)),
            "recall": len(found) / len(injected), **{f"recall_{k}": v for k, v in by_kind.items()},
            "false_alarm_files": len(alarms), "other_files": len(others), "false_alarm_rate": len(alarms) / len(others),
            "alarms": alarms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=300, help="originals to inject copies of (default 300)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="timed runs with and without the search (default 3)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--before", help="also time the package as of this commit (e.g. e967d5a, before fingerprints)")
    args = parser.parse_args()
    root, injected = injected_tree(args.copies, args.seed)
    count = len(_common.image_files(root))
    out = _common.SCRATCH / "out_near"
    _common.warm(root)
    variants = [("without", ["--no-near-duplicates"], None), ("with", [], None)]
    if args.before:
        variants.insert(0, (f"before_{args.before}", [], _common.checkout(args.before)))
    runs = {name: [] for name, _, _ in variants}
    for _ in range(args.rounds):
        for name, extra, code in variants:
            shutil.rmtree(out / name, ignore_errors=True)
            run = _common.convert(root, out / name, *extra, workers=args.workers, code=code)
            runs[name].append({"seconds": run.seconds, "pipeline_s": _common.pipeline_seconds(run.stdout),
                               "cpu_s": run.cpu_seconds})
    found = quality(root, out / "with", injected)
    rate = {name: count / statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    cpu = {name: statistics.median(r["cpu_s"] for r in rs) for name, rs in runs.items()}  # steadier under load
    rows = [{"measure": "recall (injected copies found)", "value": found["recall"], "target": ">= 0.90",
             "met": "yes" if found["recall"] >= 0.9 else "NO"},
            *[{"measure": f"  recall, {k}", "value": found[f"recall_{k}"]} for k in KINDS],
            {"measure": "precision of the reported pairs", "value": f"{found['precision']:.3f} "
             f"({found['true_pairs']} of {found['pairs']})"},
            {"measure": "false alarms (share of other files)", "value": f"{found['false_alarm_rate']:.4f}", "target": "<= 0.01",
             "met": "yes" if found["false_alarm_rate"] <= 0.01 else "NO"},
            {"measure": "images/s without the search (median)", "value": rate["without"]},
            {"measure": "images/s with the search (median)", "value": rate["with"]},
            {"measure": "throughput ratio with/without", "value": rate["with"] / rate["without"], "target": ">= 0.90",
             "met": "yes" if rate["with"] / rate["without"] >= 0.9 else "NO"},
            {"measure": "CPU seconds with/without (median)", "value": f"{cpu['with']:.1f} / {cpu['without']:.1f}"}]
    if args.before:
        before = rate[variants[0][0]]
        rows += [{"measure": f"images/s {variants[0][0]} (median)", "value": before},
                 {"measure": f"CPU seconds {variants[0][0]} (median)", "value": f"{cpu[variants[0][0]]:.1f}"},
                 {"measure": f"throughput ratio with/{args.before}", "value": rate["with"] / before, "target": ">= 0.90",
                  "met": "yes" if rate["with"] / before >= 0.9 else "NO"}]
    print(f"{count} files ({len(injected)} injected copies of {args.copies} originals); "
          f"{found['pairs']} pairs reported; {found['false_alarm_files']} of {found['other_files']} other files "
          f"flagged: {', '.join(found['alarms'][:8])}{' ...' if len(found['alarms']) > 8 else ''}")
    _common.report("near_duplicates", ["measure", "value", "target", "met"], rows,
                   {"files": count, "injected": len(injected), "seed": args.seed, "runs": runs, "quality": found})
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
