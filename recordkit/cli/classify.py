"""`recordkit classify`: print the top classes of image files, as the tutorial's label_image did."""

from __future__ import annotations

import json
import sys

from recordkit.cli import flags


def register(commands) -> None:
    parser = commands.add_parser(
        "classify",
        help="classify image files with an exported SavedModel",
        description="Prints `name (score = logit)` lines, highest first. A missing, corrupt or "
        "non-image file gets a one-line error and a non-zero exit; the other files are still "
        "classified.",
    )
    flags.add(parser, "model_path", required=True, help="directory written by `recordkit export`")
    flags.add(parser, "image_file", nargs="+", required=True, metavar="FILE",
              help="image files or glob patterns (quote them), several allowed")
    flags.add(parser, "label_path", help="label.txt to use instead of the names inside the model "
              "(must have the same number of classes)")
    flags.add(parser, "num_top_predictions", type=int, default=5,
              help="single-label: how many classes to print (default 5)")
    flags.add(parser, "probabilities", action="store_true",
              help="print softmax (single-label) / sigmoid (multi-label) instead of logits")
    flags.add(parser, "threshold", type=float, default=0.5,
              help="multi-label: print classes with probability >= this (default 0.5)")
    flags.add(parser, "json", action="store_true", help="one JSON document on stdout")
    parser.set_defaults(run=run)


def run(args, extra) -> int:
    from recordkit import classify

    classifier = classify.load(args.model_path, args.label_path)
    paths = classify.expand(args.image_file)
    results = classify.classify_files(classifier, paths)
    rankings = [
        None if r.error else classify.ranked(classifier, r, args.num_top_predictions, args.threshold)
        for r in results
    ]
    if args.json:
        print(json.dumps([_as_json(r, p) for r, p in zip(results, rankings)], indent=2))
    else:
        _print_text(results, rankings, args.probabilities, args.threshold)
    for result in results:
        if result.error:
            print(f"recordkit classify: error: {result.path}: {result.error}", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


def _print_text(results, rankings, probabilities: bool, threshold: float) -> None:
    good = [(r, p) for r, p in zip(results, rankings) if not r.error]
    for n, (result, predictions) in enumerate(good):
        if len(results) > 1:
            print(("\n" if n else "") + f"{result.path}:")
        for p in predictions:
            score = p.probability if probabilities else p.logit
            print(f"{p.name} (score = {score:.5f})")
        if not predictions:
            print(f"(no class with probability >= {threshold})")


def _as_json(result, predictions) -> dict:
    if result.error:
        return {"file": result.path, "error": result.error}
    return {
        "file": result.path,
        "predictions": [
            {"class": p.name, "index": p.index, "logit": p.logit, "probability": p.probability}
            for p in predictions
        ],
    }
