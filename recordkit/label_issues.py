"""Likely label errors from out-of-sample predicted probabilities: confident learning.

Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels"
(JAIR 2021), as cleanlab's `filter_by="confident_learning"` implements it:

1. per class j a threshold t_j = the mean p_j over the records labelled j: the model's
   typical confidence in its own class, so a class the model is unsure of everywhere is
   judged against its own (lower) bar, not a global one;
2. each record goes to the confident joint at (given label, j*), where j* is the most
   probable class among those whose p_j reaches t_j (records reaching none are not counted);
3. records off the diagonal (j* is not the given label) are the likely label errors, j* the
   suggested label, ranked by self-confidence (p of the given label), least likely first;
   as in cleanlab, a record whose most probable class is its given label is not one (the
   model agrees with the label, even if another class also reached its threshold).

About 30 lines of numpy, so recordkit does not depend on cleanlab (which brings scikit-learn
and pandas) for it. The probabilities must be out-of-sample: on the records a model trained
on, it has memorised their labels, right or wrong, and flags little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The mean of equal values can round below them: without the slack a class whose records all
# score the same p would not reach its own threshold (cleanlab uses the same 1e-6).
THRESHOLD_SLACK = 1e-6


@dataclass(frozen=True)
class LabelIssue:
    """One record whose given label the model finds unlikely; `index` is its row."""

    index: int
    given: int
    suggested: int
    p_given: float
    p_suggested: float


@dataclass(frozen=True)
class LabelIssues:
    """The `top` issues, least likely given label first, out of `flagged` records that meet
    the criterion (fewer than asked for when fewer were flagged: only those are listed)."""

    top: list[LabelIssue]
    flagged: int
    thresholds: np.ndarray


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits do not overflow."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """t_j = mean p_j over the records labelled j; +inf for a class no record carries (no
    evidence of what a confident p_j is, so it is never suggested)."""
    sums = np.zeros(probs.shape[1])
    np.add.at(sums, labels, probs[np.arange(len(labels)), labels])
    counts = np.bincount(labels, minlength=probs.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.inf)


def confident_classes(probs: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per record, the most probable class among those reaching their threshold; -1 if none
    does (ties in p go to the lower class index)."""
    above = probs >= t - THRESHOLD_SLACK
    best = np.argmax(np.where(above, probs, -1.0), axis=1)
    return np.where(above.any(axis=1), best, -1)


def confident_joint(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """C[i, j]: records labelled i whose confident class is j (the diagonal agrees)."""
    num_classes = probs.shape[1]
    assigned = confident_classes(probs, thresholds(probs, labels))
    keep = assigned >= 0
    joint = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(joint, (labels[keep], assigned[keep]), 1)
    return joint


def find(probs: np.ndarray, labels: np.ndarray, n: int) -> LabelIssues:
    """The `n` flagged records whose given label is least probable.

    Ties in self-confidence keep file order (lower index first), so the list is the same on
    every run for the same probabilities.
    """
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels, np.int64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probabilities {probs.shape} and labels {labels.shape} do not match")
    t = thresholds(probs, labels)
    suggested = confident_classes(probs, t)
    flagged = np.flatnonzero((suggested >= 0) & (suggested != labels) & (probs.argmax(axis=1) != labels))
    self_confidence = probs[flagged, labels[flagged]]
    order = flagged[np.lexsort((flagged, self_confidence))][:max(n, 0)]
    top = [LabelIssue(int(i), int(labels[i]), int(suggested[i]), float(probs[i, labels[i]]),
                      float(probs[i, suggested[i]])) for i in order]
    return LabelIssues(top, len(flagged), t)
