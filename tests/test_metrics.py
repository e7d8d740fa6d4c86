"""Metrics against hand-computed cases and a line-by-line port of the VOC devkit."""

import math

import numpy as np
import pytest

from recordkit import metrics

# One class, six ranked images; the second is "difficult only" (devkit gt 0).
VOC_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
VOC_GT = np.array([1, 0, -1, 1, -1, 1])


def test_voc07_ap_ignores_difficult_only_entries():
    # Without the ignored entry the ranking is +,-,+,-,+ with 3 positives:
    # recall 1/3 1/3 2/3 2/3 1, precision 1 1/2 2/3 1/2 3/5.
    # r = 0, .1, .2, .3 -> 1;  r = .4, .5, .6 -> 2/3;  r = .7, .8, .9, 1 -> 3/5.
    expected = (4 * 1 + 3 * (2 / 3) + 4 * (3 / 5)) / 11
    assert metrics.voc07_ap(VOC_SCORES, VOC_GT) == pytest.approx(expected, abs=1e-12)


def test_voc07_ap_would_differ_if_difficult_counted_as_negative():
    as_negative = np.where(VOC_GT == 0, -1, VOC_GT)
    assert metrics.voc07_ap(VOC_SCORES, as_negative) == pytest.approx(7.5 / 11, abs=1e-12)


def test_area_ap_by_hand():
    # Monotone precision 1, 2/3, 3/5 over recall steps of 1/3 each.
    expected = (1 + 2 / 3 + 3 / 5) / 3
    assert metrics.area_ap(VOC_SCORES, VOC_GT) == pytest.approx(expected, abs=1e-12)


def test_ties_keep_input_order_like_matlab_sort():
    assert metrics.voc07_ap(np.array([0.5, 0.5]), np.array([-1, 1])) == pytest.approx(0.5)
    assert metrics.voc07_ap(np.array([0.5, 0.5]), np.array([1, -1])) == pytest.approx(1.0)


def test_perfect_and_no_positive_classes():
    assert metrics.voc07_ap(np.array([0.9, 0.1]), np.array([1, -1])) == 1.0
    assert metrics.area_ap(np.array([0.9, 0.1]), np.array([1, -1])) == 1.0
    assert math.isnan(metrics.voc07_ap(np.array([0.9, 0.1]), np.array([-1, 0])))


def _devkit_curve(confidence, gt):
    """VOCevalcls.m transcribed literally: ignored entries stay in the cumulative sums."""
    si = np.argsort(-confidence, kind="stable")
    tp = np.cumsum(gt[si] > 0)
    fp = np.cumsum(gt[si] < 0)
    rec = tp / np.sum(gt > 0)
    with np.errstate(invalid="ignore"):
        prec = tp / (fp + tp)
    return rec, prec


def _devkit_voc07(confidence, gt):
    rec, prec = _devkit_curve(confidence, gt)
    ap = 0.0
    for t in metrics.VOC07_RECALL_THRESHOLDS:
        p = prec[rec >= t]
        p = p[~np.isnan(p)]  # MATLAB's max skips NaN (0/0 before the first counted entry)
        ap += (p.max() if p.size else 0.0) / 11
    return ap


def _devkit_vocap(confidence, gt):
    """VOCap.m (VOC2010+) on the devkit's curve, ignored entries included."""
    rec, prec = _devkit_curve(confidence, gt)
    mrec = np.concatenate([[0], rec, [1]])
    mpre = np.concatenate([[0], prec, [0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = np.nanmax([mpre[i], mpre[i + 1]])
    i = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return np.sum((mrec[i] - mrec[i - 1]) * mpre[i])


def test_recall_thresholds_are_matlab_colon_values():
    t = metrics.VOC07_RECALL_THRESHOLDS
    assert t[3] == 3 * 0.1 and t[3] > 0.3  # 0.30000000000000004
    assert t[7] == 1 - 3 * 0.1 and t[6] == 1 - 4 * 0.1 and t[10] == 1.0
    # Recall exactly 3/10 (three of ten positives first) therefore stops short of t[3].
    gt = np.array([1, 1, 1, -1, -1, 1, 1, 1, 1, 1, 1, 1])
    scores = -np.arange(len(gt), dtype=float)
    expected = (3 * 1 + 8 * (10 / 12)) / 11
    assert metrics.voc07_ap(scores, gt) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_matches_devkit_transcription(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    gt = rng.choice([1, 0, -1], size=n, p=[0.3, 0.2, 0.5])
    gt[0] = 1
    scores = np.round(rng.random(n), 1)  # coarse scores force ties
    assert metrics.voc07_ap(scores, gt) == pytest.approx(_devkit_voc07(scores, gt), abs=1e-12)
    assert metrics.area_ap(scores, gt) == pytest.approx(_devkit_vocap(scores, gt), abs=1e-12)


def test_voc_ground_truth_from_masks():
    multi_hot = np.array([[1, 0, 0], [0, 0, 1]])
    difficult_only = np.array([[0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(
        metrics.voc_ground_truth(multi_hot, difficult_only), [[1, 0, -1], [-1, -1, 1]]
    )


def test_average_precisions_and_mean_skip_classes_without_positives():
    scores = np.column_stack([VOC_SCORES, VOC_SCORES, VOC_SCORES])
    gt = np.column_stack([VOC_GT, np.array([1, -1, -1, -1, -1, -1]), -np.ones(6, int)])
    per_class = metrics.average_precisions(scores, gt, "voc07")
    assert per_class[0] == pytest.approx(8.4 / 11)
    assert per_class[1] == 1.0
    assert math.isnan(per_class[2])
    assert metrics.mean_ap(per_class) == pytest.approx((8.4 / 11 + 1) / 2)


def test_confusion_matrix_and_precision_recall():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 0, 1])
    matrix = metrics.confusion_matrix(labels, predicted, 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [1, 2, 0], [0, 1, 0]])
    precision, recall = metrics.precision_recall_per_class(matrix)
    np.testing.assert_allclose(precision[:2], [1 / 2, 2 / 4])
    assert math.isnan(precision[2])  # class 2 never predicted
    np.testing.assert_allclose(recall, [1 / 2, 2 / 3, 0])


def test_accuracy_and_recall_at_k():
    scores = np.array(
        [
            [0.1, 0.7, 0.2],  # true 1: top-1 hit
            [0.5, 0.3, 0.2],  # true 2: third
            [0.4, 0.4, 0.2],  # true 1: tied for first -> counted in top 1 (tf.math.in_top_k)
            [0.1, 0.2, 0.7],  # true 0: third
        ]
    )
    labels = np.array([1, 2, 1, 0])
    assert metrics.accuracy(labels, scores) == 0.5
    assert metrics.recall_at_k(labels, scores, 2) == 0.5
    assert metrics.recall_at_k(labels, scores, 3) == 1.0
