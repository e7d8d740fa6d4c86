"""Classification metrics on plain numpy arrays, so they are checked by hand, not by TF.

Single-label: accuracy, recall@k, per-class precision/recall and the confusion matrix.
Multi-label: per-class average precision the way the PASCAL VOC devkit (`VOCevalcls.m`)
computes it. VOC ground truth has three values per class: 1 positive, -1 negative and
0 "difficult only", which is ignored (neither a true nor a false positive). 2007 scores the
11-point interpolated AP; 2010 and later the area under the precision/recall curve.
"""

from __future__ import annotations

import numpy as np

POSITIVE, IGNORED, NEGATIVE = 1, 0, -1

# The recall thresholds of `for t=0:0.1:1` as MATLAB's colon operator evaluates them: the first
# half as k*0.1, the second as 1-(10-k)*0.1. They are not the decimals 0.3, 0.7: a recall of
# exactly 3/10 does not reach t=0.30000000000000004, in the devkit or here.
VOC07_RECALL_THRESHOLDS = tuple(k * 0.1 if k <= 5 else 1.0 - (10 - k) * 0.1 for k in range(11))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return matrix


def accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    """Top-1 accuracy of `scores` [N, C] (logits or probabilities) against labels [N]."""
    return recall_at_k(labels, scores, 1)


def recall_at_k(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of examples whose true class is among the k highest scores.

    Ties are counted in the true class's favour, as `tf.math.in_top_k` does: an example is a
    hit when fewer than k classes score strictly higher than its true class.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.int64)
    if len(labels) == 0:
        return float("nan")
    true_scores = scores[np.arange(len(labels)), labels]
    higher = (scores > true_scores[:, None]).sum(axis=1)
    return float(np.mean((higher < k) & np.isfinite(true_scores)))


def precision_recall_per_class(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class precision (column-wise) and recall (row-wise) from a confusion matrix.

    A class never predicted has no precision and a class never present no recall: NaN, not 0,
    so a tiny eval split doesn't report a made-up number.
    """
    matrix = np.asarray(matrix, np.float64)
    hits = np.diag(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = hits / matrix.sum(axis=0)
        recall = hits / matrix.sum(axis=1)
    return precision, recall


def precision_recall_curve(scores: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each ranked entry, as `VOCevalcls.m` builds them.

    Entries are ranked by descending score with a stable sort (MATLAB's `sort` keeps ties in
    input order). Ignored entries (gt 0) are dropped: in the devkit they add neither a true
    nor a false positive, so they only repeat the previous point of the curve.
    """
    scores = np.asarray(scores, np.float64)
    gt = np.asarray(gt, np.int64)
    order = np.argsort(-scores, kind="stable")
    ranked = gt[order]
    ranked = ranked[ranked != IGNORED]
    tp = np.cumsum(ranked == POSITIVE)
    fp = np.cumsum(ranked == NEGATIVE)
    num_positives = int(np.sum(gt == POSITIVE))
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / num_positives
        precision = tp / (tp + fp)
    return recall, precision


def voc07_ap(scores: np.ndarray, gt: np.ndarray) -> float:
    """VOC2007 11-point interpolated AP: mean over r in 0, 0.1, ..., 1 of max precision at recall >= r.

    NaN when the class has no positive entry (the devkit would divide by zero).
    """
    if not np.any(np.asarray(gt) == POSITIVE):
        return float("nan")
    recall, precision = precision_recall_curve(scores, gt)
    best = [precision[recall >= t].max(initial=0.0) for t in VOC07_RECALL_THRESHOLDS]
    return float(np.sum(best) / len(best))


def area_ap(scores: np.ndarray, gt: np.ndarray) -> float:
    """VOC2010+ AP (`VOCap.m`): area under the precision/recall curve made monotone."""
    if not np.any(np.asarray(gt) == POSITIVE):
        return float("nan")
    recall, precision = precision_recall_curve(scores, gt)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def voc_ground_truth(multi_hot: np.ndarray, difficult_only: np.ndarray) -> np.ndarray:
    """Devkit values (1 / -1 / 0) from recordkit's multi-hot and difficult-only masks."""
    multi_hot = np.asarray(multi_hot, np.int64)
    difficult_only = np.asarray(difficult_only, np.int64)
    gt = np.where(multi_hot > 0, POSITIVE, NEGATIVE)
    return np.where((difficult_only > 0) & (multi_hot == 0), IGNORED, gt)


def average_precisions(scores: np.ndarray, gt: np.ndarray, method: str = "voc07") -> np.ndarray:
    """Per-class AP for scores and devkit ground truth, both [N, C]; method voc07 or area."""
    ap = {"voc07": voc07_ap, "area": area_ap}[method]
    scores = np.asarray(scores)
    gt = np.asarray(gt)
    return np.array([ap(scores[:, c], gt[:, c]) for c in range(scores.shape[1])])


def mean_ap(per_class: np.ndarray) -> float:
    """Mean over the classes that have an AP (a class without positives is left out)."""
    per_class = np.asarray(per_class, np.float64)
    defined = per_class[~np.isnan(per_class)]
    return float(defined.mean()) if defined.size else float("nan")
