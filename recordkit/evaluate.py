"""Evaluate a checkpoint on a converted split: metrics, a printed table, JSON and TensorBoard.

Single-label runs report accuracy, recall@k (named `eval/Recall_5` as TF-Slim's
eval_image_classifier did, so old TensorBoard dashboards keep working), per-class precision
and recall and the confusion matrix. Multi-label (VOC) runs report per-class AP and mAP the
VOC2007 way (11-point interpolated, difficult-only entries ignored) and the VOC2010+ area
under the PR curve. Everything about the run (model, classes, preprocessing) comes from its
metadata; the tutorial's --model_name/--dataset_name are only checked against it.

Single-label runs can also list the records whose given label the model finds least likely
(`label_issues=N`, confident learning: see label_issues.py), named by source id and file.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
from tqdm import tqdm

from recordkit import files, metadata, metrics
from recordkit.errors import RecordkitError


@dataclass
class Report:
    """One checkpoint's evaluation; `per_class` maps a class name to its metrics."""

    checkpoint: str
    step: int | None
    dataset: str
    split: str
    label_kind: str
    num_examples: int
    scalars: dict[str, float]
    per_class: dict[str, dict[str, float]]
    confusion_matrix: list[list[int]] | None = None
    classes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # reading, preprocessing and the forward passes
    # Asked for with label_issues=N: the top N likely label errors (see `likely_label_errors`),
    # how many records met the criterion (fewer than N: only those are listed), and whether the
    # split is the one the run trained on (then the probabilities are in-sample and the list
    # misses what the model memorised).
    label_issues_requested: int = 0
    label_issues: list[dict] | None = None
    label_issues_flagged: int | None = None
    label_issues_in_sample: bool = False


def check_run(run: dict, model_name: str | None = None, dataset_name: str | None = None) -> dict:
    """The run's metadata, after checking the tutorial flags a user passed against it.

    TF-Slim needed --model_name/--dataset_name repeated at eval and export time, and a wrong
    one gave shape errors or silently shifted labels; here they can only confirm the run.
    """
    from recordkit import models

    if model_name and models.get(model_name).name != models.get(run["model_name"]).name:
        raise RecordkitError(
            f"--model_name {model_name} does not match the checkpoint, which is a "
            f"{run['model_name']} run (the flag can be left out: the run records it)"
        )
    if dataset_name and run.get("dataset_name") and dataset_name != run["dataset_name"]:
        raise RecordkitError(
            f"--dataset_name {dataset_name} does not match the run, which trained on "
            f"{run['dataset_name']!r} (the flag can be left out)"
        )
    return run


def evaluate(checkpoint_path: str, dataset_dir: str, split: str = "validation", *,
             batch_size: int = 32, k: int = 5, model_name: str | None = None,
             dataset_name: str | None = None, label_issues: int = 0) -> Report:
    """Evaluate one checkpoint (or a train_dir's newest) on `split` of a converted dataset."""
    from recordkit import runs

    model, run = runs.load_for_inference(checkpoint_path)
    run = check_run(run, model_name, dataset_name)
    run.setdefault("checkpoint", checkpoint_path)
    return evaluate_model(model, run, dataset_dir, split, batch_size=batch_size, k=k,
                          label_issues=label_issues)


def evaluate_model(model, run: dict, dataset_dir: str, split: str = "validation", *,
                   batch_size: int = 32, k: int = 5, label_issues: int = 0) -> Report:
    """Evaluate a loaded model whose run metadata gives image size, preprocessing, classes;
    with label_issues=N, also list the N likeliest label errors of the split."""
    from recordkit import dataset

    info = metadata.load(dataset_dir)
    if list(info.classes) != list(run["classes"]):
        raise RecordkitError(
            f"{dataset_dir} has classes {info.classes} but the run was trained on "
            f"{run['classes']}: scores would be compared against the wrong labels"
        )
    if label_issues < 0:
        raise RecordkitError(f"--label_issues must be 0 (off) or a number of records, not {label_issues}")
    if label_issues and info.label_kind != "single":
        raise RecordkitError(f"--label_issues is for single-label datasets; {info.name} is multi-label")
    size, mode = int(run["image_size"]), run["preprocessing"]
    data = dataset.make(dataset_dir, split, image_size=size, mode=mode, batch_size=batch_size,
                        training=False, info=info, finish_in_step=True, ids=label_issues > 0)
    start = time.monotonic()
    scores, targets = predict(lambda windows: model(dataset.finish(windows, size, mode), training=False),
                              data, info.split(split).num_records)
    checkpoint = run.get("checkpoint", "")
    report = Report(checkpoint, run.get("step", checkpoint_step(checkpoint)), info.name, split,
                    info.label_kind, len(scores), {}, {}, classes=list(info.classes),
                    seconds=time.monotonic() - start)
    if info.label_kind == "single":
        report.scalars, report.per_class, report.confusion_matrix = single_label_metrics(
            targets["label"], scores, report.classes, k)
        if label_issues:
            report.label_issues_requested = label_issues
            report.label_issues, report.label_issues_flagged = likely_label_errors(
                scores, targets, report.classes, label_issues)
            report.label_issues_in_sample = (split == run.get("dataset_split_name")
                                             and info.name == run.get("dataset_name", info.name))
    else:
        report.scalars, report.per_class = multi_label_metrics(
            scores, targets["multi_hot"], 1 - targets["mask"], report.classes)
    return report


def predict(logits_of, data, total: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits [N, C] of the whole split (`logits_of` each input batch) and its targets (with
    the records' `source_id` and `filename` when the data carries them), in file order (a
    progress bar on a terminal)."""
    scores, targets = [], {}
    with tqdm(total=total, desc="evaluating", unit="img", disable=None, leave=False) as bar:
        for inputs, batch_targets in data:
            batch = np.asarray(logits_of(inputs), np.float64)
            scores.append(batch)
            for key, value in batch_targets.items():
                targets.setdefault(key, []).append(value.numpy())
            bar.update(len(batch))
    if not scores:
        raise RecordkitError("the split is empty: nothing to evaluate")
    return np.concatenate(scores), {key: np.concatenate(v) for key, v in targets.items()}


def likely_label_errors(logits: np.ndarray, targets: dict[str, np.ndarray], classes: list[str],
                        n: int) -> tuple[list[dict], int]:
    """The `n` records whose given label is least probable among those confident learning
    flags (softmax of the logits; `label_issues.find`), and how many were flagged."""
    from recordkit import label_issues

    found = label_issues.find(label_issues.softmax(logits), targets["label"], n)

    def text(key: str, index: int) -> str:
        return targets[key][index].decode("utf-8", "replace") if key in targets else ""

    rows = [{"index": issue.index, "source_id": text("source_id", issue.index),
             "filename": text("filename", issue.index), "given": classes[issue.given],
             "suggested": classes[issue.suggested], "p_given": issue.p_given,
             "p_suggested": issue.p_suggested} for issue in found.top]
    return rows, found.flagged


def single_label_metrics(labels: np.ndarray, scores: np.ndarray, classes: list[str],
                         k: int = 5) -> tuple[dict, dict, list[list[int]]]:
    """Scalars, per-class precision/recall and the confusion matrix (rows = true class)."""
    matrix = metrics.confusion_matrix(labels, np.argmax(scores, axis=1), len(classes))
    precision, recall = metrics.precision_recall_per_class(matrix)
    scalars = {
        "eval/Accuracy": metrics.accuracy(labels, scores),
        f"eval/Recall_{k}": metrics.recall_at_k(labels, scores, k),
    }
    per_class = {
        name: {"precision": float(p), "recall": float(r), "support": int(n)}
        for name, p, r, n in zip(classes, precision, recall, matrix.sum(axis=1))
    }
    return scalars, per_class, matrix.tolist()


def multi_label_metrics(scores: np.ndarray, multi_hot: np.ndarray, difficult_only: np.ndarray,
                        classes: list[str]) -> tuple[dict, dict]:
    """Scalars (mAP both ways) and per-class AP; a class without positives has no AP."""
    gt = metrics.voc_ground_truth(multi_hot, difficult_only)
    voc07 = metrics.average_precisions(scores, gt, "voc07")
    area = metrics.average_precisions(scores, gt, "area")
    scalars = {"eval/mAP": metrics.mean_ap(voc07), "eval/mAP_area": metrics.mean_ap(area)}
    per_class = {
        name: {"ap": float(a), "ap_area": float(b), "positives": int(np.sum(gt[:, c] == 1)),
               "ignored": int(np.sum(gt[:, c] == 0))}
        for c, (name, a, b) in enumerate(zip(classes, voc07, area))
    }
    return scalars, per_class


def format_table(report: Report) -> str:
    """The report as text: scalars, then one row per class, then the confusion matrix."""
    lines = [
        f"{report.dataset}/{report.split}: {report.num_examples} examples, "
        f"checkpoint {report.checkpoint}" + (f" (step {report.step})" if report.step is not None else ""),
    ]
    if report.seconds:
        lines.append(f"time: {report.seconds:.1f} s ({report.num_examples / report.seconds:.1f} images/s)")
    lines += [f"{name} = {_number(value)}" for name, value in report.scalars.items()]
    if report.per_class:
        columns = list(next(iter(report.per_class.values())))
        width = max(len("class"), *(len(name) for name in report.per_class))
        lines.append("")
        lines.append("  ".join([f"{'class':<{width}}", *(f"{c:>10}" for c in columns)]))
        for name, row in report.per_class.items():
            lines.append("  ".join([f"{name:<{width}}", *(f"{_number(row[c]):>10}" for c in columns)]))
    if report.confusion_matrix is not None:
        lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
        cell = max(4, *(len(str(v)) for row in report.confusion_matrix for v in row))
        width = max(len(name) for name in report.classes)
        lines.append(" " * width + "  " + " ".join(f"{i:>{cell}}" for i in range(len(report.classes))))
        for i, (name, row) in enumerate(zip(report.classes, report.confusion_matrix)):
            lines.append(f"{name:<{width}}  " + " ".join(f"{v:>{cell}}" for v in row) + f"  ({i})")
    if report.label_issues is not None:
        lines += ["", *_label_issue_lines(report)]
    return "\n".join(lines)


def _label_issue_lines(report: Report) -> list[str]:
    """The likely label errors, least likely given label first, with how many were flagged."""
    issues, flagged = report.label_issues or [], report.label_issues_flagged or 0
    head = f"likely label errors (confident learning): {flagged} of {report.num_examples} records flagged"
    if not issues:
        lines = [head]
    elif len(issues) < flagged:
        lines = [f"{head}, the {len(issues)} with the least likely given label:"]
    elif flagged < report.label_issues_requested:
        lines = [f"{head} (fewer than the {report.label_issues_requested} asked for), all listed, "
                 "least likely given label first:"]
    else:
        lines = [f"{head}, least likely given label first:"]
    if report.label_issues_in_sample:
        lines.append(f"note: the run trained on {report.split}: these probabilities are in-sample "
                     "(overconfident) and miss the errors it memorised; use a split it did not train on")
    if issues:
        names = [row["source_id"] or row["filename"] or f"record {row['index']}" for row in issues]
        file_w = max(len("file"), *map(len, names))
        given_w = max(len("given"), *(len(row["given"]) for row in issues))
        suggested_w = max(len("suggested"), *(len(row["suggested"]) for row in issues))
        lines.append(f"{'rank':>4}  {'file':<{file_w}}  {'given':<{given_w}}  {'suggested':<{suggested_w}}"
                     "  p(given)  p(suggested)")
        for rank, (name, row) in enumerate(zip(names, issues), 1):
            lines.append(f"{rank:>4}  {name:<{file_w}}  {row['given']:<{given_w}}  "
                         f"{row['suggested']:<{suggested_w}}  {_probability(row['p_given']):>8}  "
                         f"{_probability(row['p_suggested']):>12}")
    return lines


def _probability(p: float) -> str:
    """4 decimals, or 2 significant digits below 0.0001: the likeliest errors' p(given) is tiny,
    and a column of 0.0000 would hide their order."""
    return f"{p:.4f}" if p >= 1e-4 or p == 0 else f"{p:.1e}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return "-" if math.isnan(value) else f"{value:.4f}"


def _json_safe(value: Any) -> Any:
    """NaN (no precision for a class never predicted...) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_report(report: Report, eval_dir: str) -> str:
    """JSON (one file per checkpoint, plus eval.json for the latest) and TensorBoard scalars."""
    import tensorflow as tf

    from recordkit import summaries

    files.make_folder(eval_dir, "--eval_dir")
    text = json.dumps(_json_safe(asdict(report)), indent=2) + "\n"
    name = f"eval_{report.step}.json" if report.step is not None else "eval.json"
    for file_name in {name, "eval.json"}:
        with tf.io.gfile.GFile(os.path.join(eval_dir, file_name), "w") as f:
            f.write(text)
    scalars = dict(report.scalars)
    for class_name, row in report.per_class.items():
        scalars.update({f"eval/per_class/{metric}/{class_name}": value
                        for metric, value in row.items() if isinstance(value, float)})
    summaries.write_scalars(eval_dir, report.step or 0, scalars)
    return os.path.join(eval_dir, name)


def checkpoint_step(path: str) -> int | None:
    """The training step in a checkpoint's file name (`ckpt-1200.weights.h5`, `model.ckpt-1200`)."""
    numbers = re.findall(r"[-_](\d+)", os.path.basename(path.rstrip("/")))
    return int(numbers[-1]) if numbers else None


def watch(newest: Callable[[], str | None], evaluate_one: Callable[[str], Any],
          timeout_s: float, interval_s: float = 10.0,
          sleep: Callable[[float], None] = time.sleep,
          clock: Callable[[], float] = time.monotonic) -> Iterator[Any]:
    """Evaluate each new checkpoint as `newest()` reports it; stop after `timeout_s` without one.

    A checkpoint is evaluated once even if it stays the newest; if several are written
    between two looks, only the newest is evaluated (as TF-Slim's evaluation_loop did).
    """
    seen = None
    last_new = clock()
    while True:
        current = newest()
        if current is not None and current != seen:
            seen = current
            yield evaluate_one(current)
            last_new = clock()
        elif clock() - last_new >= timeout_s:
            return
        else:
            sleep(interval_s)
