"""realism.classifier: the AUC itself, and the classifier on an easy and an impossible case."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from synth.realism.classifier import (
    bootstrap_auc,
    cross_validated_auc,
    fit_logistic,
    roc_auc,
    roc_curve,
    spatial_folds,
    stratified_folds,
)


def brute_force_auc(scores, labels):
    pairs = [(p, n) for p, n in itertools.product(scores[labels == 1], scores[labels == 0])]
    return np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])


def test_auc_matches_pair_counting_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=40).astype(float)  # many ties
    labels = rng.integers(0, 2, size=40)
    assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels))
    assert roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert roc_auc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    assert roc_auc([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5
    assert np.isnan(roc_auc([1, 2], [1, 1]))


def test_roc_curve_ends_and_area():
    rng = np.random.default_rng(1)
    scores, labels = rng.normal(size=50), rng.integers(0, 2, size=50)
    fpr, tpr = roc_curve(scores, labels)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))  # trapezoids
    assert area == pytest.approx(roc_auc(scores, labels))


def test_easy_case_auc_near_one():
    rng = np.random.default_rng(2)
    real = rng.normal(0.0, 1.0, size=(80, 5))
    synthetic = rng.normal(0.0, 1.0, size=(80, 5)) + np.array([2.5, 0, 0, -2.0, 0])
    features = np.vstack([real, synthetic])
    labels = np.r_[np.ones(80), np.zeros(80)]
    result = cross_validated_auc(features, labels, n_boot=500)
    assert result["auc"] > 0.95
    assert result["ci"][0] > 0.9
    assert result["weights"][0] < 0 < result["weights"][3]  # the model found the right directions


def test_impossible_case_auc_near_half():
    # Real against real: one sample of lesions split at random into two "classes".
    rng = np.random.default_rng(3)
    features = rng.normal(0.0, 1.0, size=(240, 9))
    features[rng.random(features.shape) < 0.05] = np.nan  # missing features are imputed
    labels = rng.permutation(np.r_[np.ones(80), np.zeros(160)])
    result = cross_validated_auc(features, labels, n_boot=1000, seed=3)
    assert abs(result["auc"] - 0.5) < 0.1
    assert result["ci"][0] < 0.5 < result["ci"][1]


def test_folds_by_case_by_slab_and_random():
    labels = np.r_[np.ones(20), np.zeros(20)]
    groups = np.repeat(["a", "b", "c", "d"], 10)
    result = cross_validated_auc(np.random.default_rng(0).normal(size=(40, 2)), labels, groups=groups, n_boot=50)
    assert result["scheme"] == "by case" and result["n_folds"] == 4
    centres = np.c_[np.arange(40.0), np.zeros(40), np.zeros(40)]
    folds = spatial_folds(centres, n_folds=4)
    assert np.bincount(folds).tolist() == [10, 10, 10, 10]
    assert all(np.ptp(np.flatnonzero(folds == f)) == 9 for f in range(4))  # contiguous slabs
    random_folds = stratified_folds(labels, n_folds=4)
    assert all(np.sum(labels[random_folds == f]) == 5 for f in range(4))


def test_bootstrap_interval_narrows_with_more_lesions():
    rng = np.random.default_rng(4)
    def interval(n):
        scores = np.r_[rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)]
        labels = np.r_[np.ones(n), np.zeros(n)]
        low, high = bootstrap_auc(scores, labels, n_boot=500)
        assert low < roc_auc(scores, labels) < high
        return high - low
    assert interval(400) < interval(40)


def test_logistic_ignores_class_imbalance_and_constant_features():
    rng = np.random.default_rng(5)
    features = np.c_[np.r_[rng.normal(1, 1, 30), rng.normal(-1, 1, 300)], np.ones(330)]
    labels = np.r_[np.ones(30), np.zeros(300)]
    model = fit_logistic(features, labels)
    assert np.all(np.isfinite(model.weights)) and model.weights[0] > 0
    # Balanced class weights: the decision boundary sits between the class means, near 0.
    assert abs(-model.bias / model.weights[0] * model.scale[0] + model.mean[0]) < 0.5
