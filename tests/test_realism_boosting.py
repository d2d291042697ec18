"""realism.boosting: gradient-boosted trees see non-linear rules the logistic model cannot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synth.realism.boosting import BoostedTrees, fit_boosting
from synth.realism.classifier import cross_validated_auc, model_from_dict, roc_auc


def xor_data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    labels = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)
    return x, labels


def shell_data(n=300, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, (np.abs(x[:, 0]) > 1.0).astype(int)


@pytest.mark.parametrize("make", [xor_data, shell_data])
def test_boosting_finds_a_rule_the_logistic_model_misses(make):
    x, labels = make()
    logistic = cross_validated_auc(x, labels, n_boot=200, classifier="logistic")
    boosting = cross_validated_auc(x, labels, n_boot=200, classifier="boosting")
    assert abs(logistic["auc"] - 0.5) < 0.12
    assert boosting["auc"] > 0.85
    assert int(np.argmax(boosting["weights"])) in (0, 1)  # the gain sits on the features of the rule


def test_boosting_on_null_data_is_near_half():
    rng = np.random.default_rng(4)
    aucs = [cross_validated_auc(rng.normal(size=(160, 6)), np.r_[np.ones(80), np.zeros(80)], n_boot=50,
                                classifier="boosting", seed=i)["auc"] for i in range(5)]
    assert abs(np.mean(aucs) - 0.5) < 0.06


def test_boosting_fills_missing_values_and_ignores_imbalance():
    x, labels = shell_data(400, seed=5)
    x[::7, 1] = np.nan
    keep = (labels == 1) | (np.arange(labels.size) % 3 == 0)  # fewer negatives than positives
    model = fit_boosting(x[keep], labels[keep])
    scores = model.decision(x)
    assert np.all(np.isfinite(scores))
    assert roc_auc(scores, labels) > 0.9
    # Class weighting: the mean predicted probability is balanced, not the positives' share.
    assert abs(np.mean(scores[labels == 1] > 0) - np.mean(scores[labels == 0] <= 0)) < 0.2


def test_boosting_respects_min_samples_leaf_and_depth():
    x, labels = xor_data(100, seed=6)
    model = fit_boosting(x, labels, rounds=5, depth=3, min_samples_leaf=30)
    leaves = model.leaves(x)
    for t in range(5):
        _, counts = np.unique(leaves[:, t], return_counts=True)
        assert counts.min() >= 30 and counts.size <= 3  # 100 samples in leaves of >= 30
    assert np.any(model.feature[:, 0] >= 0)  # yet the trees did split
    assert model.feature.shape == (5, 2**4 - 1)


def test_boosting_round_trips_through_json_and_is_deterministic():
    x, labels = xor_data(200, seed=7)
    model = fit_boosting(x, labels)
    again = model_from_dict(json.loads(json.dumps(model.to_dict())))
    assert isinstance(again, BoostedTrees)
    np.testing.assert_array_equal(again.decision(x), model.decision(x))
    np.testing.assert_array_equal(fit_boosting(x, labels).decision(x), model.decision(x))


def test_boosting_bad_input():
    with pytest.raises(ValueError, match="depth"):
        fit_boosting(np.zeros((10, 2)), np.zeros(10), depth=0)
    with pytest.raises(ValueError, match="features must be"):
        fit_boosting(np.zeros((10, 2)), np.zeros(9))
    with pytest.raises(ValueError, match="model kind"):
        model_from_dict({"kind": "forest"})
