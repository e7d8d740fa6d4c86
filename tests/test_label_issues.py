"""Confident learning on constructed probability matrices (recordkit/label_issues.py)."""

import numpy as np
import pytest

from recordkit import label_issues

CLEAN = {0: [0.9, 0.05, 0.05], 1: [0.05, 0.9, 0.05], 2: [0.05, 0.05, 0.9]}


def _clean(labels):
    return [CLEAN[label] for label in labels]


def test_a_flipped_record_is_found_with_its_true_class_suggested():
    labels = np.array([0, 1, 2] * 4)
    probs = np.array(_clean(labels))
    probs[4] = [0.9, 0.05, 0.05]  # labelled 1, looks like a 0
    found = label_issues.find(probs, labels, 5)
    assert found.flagged == 1
    assert found.top == [label_issues.LabelIssue(4, 1, 0, pytest.approx(0.05), pytest.approx(0.9))]


def test_thresholds_are_per_class_so_a_low_confidence_class_is_not_all_flagged():
    # The model is unsure of class 2 everywhere: its records score p2 = 0.4 and p0 = 0.5. An
    # argmax rule, or one threshold for every class, would flag all of them; class 0's own
    # threshold (its records score 0.9) is not reached, so only the real flip is flagged.
    labels = np.array([0] * 5 + [1] * 5 + [2] * 6)
    probs = np.array(_clean(labels[:10]) + [[0.5, 0.1, 0.4]] * 5 + [[0.95, 0.03, 0.02]])
    found = label_issues.find(probs, labels, 10)
    assert [issue.index for issue in found.top] == [15]
    assert found.top[0].suggested == 0
    assert found.thresholds[2] == pytest.approx((0.4 * 5 + 0.02) / 6)
    assert found.thresholds[0] == pytest.approx(0.9)


def test_the_given_class_wins_when_it_is_confident_and_more_probable():
    # Record 0 reaches class 2's low threshold (0.3) too, but its given class 0 reaches its
    # own (0.6) with a higher p: it stays on the diagonal of the confident joint.
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[0.6, 0.05, 0.35], [0.6, 0.1, 0.3], [0.05, 0.9, 0.05], [0.05, 0.9, 0.05],
                      [0.4, 0.3, 0.3], [0.35, 0.35, 0.3]])
    assert label_issues.find(probs, labels, 6).flagged == 0
    probs[0] = [0.3, 0.05, 0.65]  # given class under its threshold (now 0.45): flagged
    assert [(i.index, i.suggested) for i in label_issues.find(probs, labels, 6).top] == [(0, 2)]


def test_ranked_by_self_confidence_and_ties_keep_file_order():
    labels = np.array([0, 1, 2] * 4)
    probs = np.array(_clean(labels))
    for index in (8, 2, 5):  # labelled 2, 2, 2: the same probabilities
        probs[index] = [0.02, 0.95, 0.03]
    probs[10] = [0.01, 0.98, 0.01]  # labelled 1: on the diagonal
    probs[9] = [0.04, 0.95, 0.01]  # labelled 0: p(given) 0.04, after the tie at 0.03
    probs[0] = [0.01, 0.97, 0.02]  # labelled 0, the least likely of all
    found = label_issues.find(probs, labels, 10)
    assert [issue.index for issue in found.top] == [0, 2, 5, 8, 9]
    assert found.top == label_issues.find(probs.copy(), labels.copy(), 10).top


def test_n_larger_than_the_flagged_records_lists_only_those_and_counts_them():
    labels = np.array([0, 1, 2] * 4)
    probs = np.array(_clean(labels))
    probs[0], probs[1] = CLEAN[2], CLEAN[0]
    many = label_issues.find(probs, labels, 50)
    assert many.flagged == 2 and len(many.top) == 2
    one = label_issues.find(probs, labels, 1)
    assert one.flagged == 2 and len(one.top) == 1
    assert label_issues.find(probs, labels, 0).top == []


def test_a_class_no_record_carries_is_never_suggested():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.1, 0.1, 0.8], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.9, 0.05]])
    found = label_issues.find(probs, labels, 4)
    assert np.isinf(found.thresholds[2]) and found.flagged == 0


def test_confident_joint_counts_given_against_confident_class():
    labels = np.array([0, 0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    # t0 = 0.6, t1 = 0.75; record 4 reaches neither threshold and is not counted.
    assert label_issues.confident_joint(probs, labels).tolist() == [[2, 1], [0, 1]]


def test_softmax_of_large_logits_is_finite():
    probs = label_issues.softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    assert np.allclose(probs, [[1.0, 0.0], [0.5, 0.5]])


def test_a_record_the_model_predicts_as_its_given_label_is_not_flagged():
    """cleanlab's last filter: class 2 reaches its (low) threshold and beats class 0's, but the
    model's top class is the given one, so the label is not called wrong."""
    probs = np.array([[0.5, 0.1, 0.4], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.1, 0.3], [0.2, 0.5, 0.3]])
    labels = np.array([0, 0, 1, 2, 1])
    t = label_issues.thresholds(probs, labels)
    assert probs[0, 2] >= t[2] and probs[0, 0] < t[0]  # off the diagonal of the confident joint...
    found = label_issues.find(probs, labels, 5)
    assert 0 not in [issue.index for issue in found.top]  # ...but the model's argmax is the label
