"""A real-versus-synthetic classifier on lesion features, and its cross-validated ROC AUC.

Two models (numpy + scipy, no scikit-learn): an L2-regularised logistic regression on
standardised features, fitted with L-BFGS, and gradient-boosted shallow trees
(:mod:`synth.realism.boosting`), which also catch differences that are not linear in the features.
The AUC is computed from ranks (the Mann-Whitney
statistic) on out-of-fold scores: every lesion is scored by a model that never saw it, nor any
lesion of its case (several cases) or of its spatial block (one case), so a classifier cannot
win by recognising a scan or a neighbourhood. 0.5 means real and synthetic lesions cannot be told
apart from these features; 1.0 means they always can.

The bootstrap interval resamples the out-of-fold scores (real and synthetic separately); it
reflects the finite number of lesions, not the variability of refitting the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import optimize, stats


class FittedModel(Protocol):
    """What every fitted classifier offers: log-odds of the positive class, and its parameters."""

    def decision(self, features: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict: ...


@dataclass(frozen=True)
class LogisticModel:
    """Feature centring and scaling, then ``sigmoid(x @ weights + bias)``."""

    mean: np.ndarray
    scale: np.ndarray
    fill: np.ndarray  # value that replaces a missing (NaN) feature: the training median
    weights: np.ndarray
    bias: float

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Log-odds of the positive class for each row of ``features``."""
        x = np.where(np.isfinite(features), features, self.fill)
        return ((x - self.mean) / self.scale) @ self.weights + self.bias

    def to_dict(self) -> dict:
        """JSON-ready parameters (plain lists); :meth:`from_dict` reads them back."""
        return {"kind": "logistic", "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "fill": self.fill.tolist(), "weights": self.weights.tolist(), "bias": float(self.bias)}

    @classmethod
    def from_dict(cls, params: dict) -> LogisticModel:
        """The model of :meth:`to_dict`'s output; ValueError when the arrays disagree in length."""
        arrays = [np.asarray(params[k], dtype=np.float64) for k in ("mean", "scale", "fill", "weights")]
        if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
            raise ValueError(f"logistic parameters disagree in shape: {[a.shape for a in arrays]}")
        mean, scale, fill, weights = arrays
        return cls(mean, scale, fill, weights, float(params["bias"]))


def fit_logistic(features: np.ndarray, labels: np.ndarray, *, l2: float = 1.0) -> LogisticModel:
    """Fit an L2-penalised logistic regression (penalty ``l2 * |w|^2 / 2``; bias unpenalised).

    Classes are weighted to equal total weight, so an imbalance of real and synthetic lesions does
    not move the decision. NaN features are replaced by the training median.
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    fill = np.nanmedian(features, axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    x = np.where(np.isfinite(features), features, fill)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    x = (x - mean) / scale
    positives = labels.sum()
    sample_weight = np.where(labels > 0, 0.5 / max(positives, 1.0), 0.5 / max(labels.size - positives, 1.0))

    def loss(params):
        w, b = params[:-1], params[-1]
        z = x @ w + b
        # log(1 + exp(z)) - y z, written to stay finite for large |z|.
        per_sample = np.logaddexp(0.0, z) - labels * z
        residual = sample_weight * (1.0 / (1.0 + np.exp(-z)) - labels)
        value = sample_weight @ per_sample + 0.5 * l2 * (w @ w) / labels.size
        gradient = np.append(x.T @ residual + l2 * w / labels.size, residual.sum())
        return value, gradient

    result = optimize.minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B")
    return LogisticModel(mean, scale, fill, result.x[:-1], float(result.x[-1]))


def fit_classifier(features: np.ndarray, labels: np.ndarray, *, kind: str = "logistic") -> Any:
    """Fit the classifier named ``kind`` (a key of :data:`CLASSIFIERS`); returns a model with
    ``decision(features)`` (log-odds of the positive class) and ``to_dict()``."""
    if kind == "logistic":
        return fit_logistic(features, labels)
    if kind == "boosting":
        from .boosting import fit_boosting

        return fit_boosting(features, labels)
    raise ValueError(f"classifier must be one of {CLASSIFIERS}; got {kind!r}")


CLASSIFIERS = ("logistic", "boosting")


def model_from_dict(params: dict) -> FittedModel:
    """A fitted model from its ``to_dict()`` output (``kind`` says which)."""
    from .boosting import BoostedTrees

    kinds: dict[str, Any] = {"logistic": LogisticModel, "boosting": BoostedTrees}
    kind = params.get("kind") if isinstance(params, dict) else None
    if kind not in kinds:
        raise ValueError(f"model kind must be one of {sorted(kinds)}; got {kind!r}")
    return kinds[kind].from_dict(params)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 positive), from ranks.

    Equals the probability that a random positive scores above a random negative, ties counting
    one half (the Mann-Whitney U statistic over the product of the class sizes).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every threshold, from (0, 0) to (1, 1)."""
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = labels[order]
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(hits.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~hits) / max((~hits).sum(), 1)])
    return fpr, tpr


def bootstrap_auc(scores, labels, *, n_boot: int = 2000, level: float = 0.95, seed=0) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, resampling each class separately."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(seed)
    positive, negative = np.flatnonzero(labels), np.flatnonzero(~labels)
    if positive.size == 0 or negative.size == 0:
        return float("nan"), float("nan")
    values = np.empty(n_boot)
    for i in range(n_boot):
        pick = np.concatenate([rng.choice(positive, positive.size), rng.choice(negative, negative.size)])
        values[i] = roc_auc(scores[pick], labels[pick])
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def spatial_folds(centers_mm: np.ndarray, *, n_folds: int = 5) -> np.ndarray:
    """Fold ids of contiguous slabs along the centres' first principal axis, equal in count.

    With a single case, lesions near one another share tissue, noise and vessels; holding out a
    slab at a time keeps a lesion's neighbours out of the model that scores it.
    """
    centers = np.asarray(centers_mm, dtype=np.float64)
    centred = centers - centers.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0] if centers.shape[0] > 1 else np.zeros(3)
    order = np.argsort(centred @ axis, kind="stable")
    folds = np.empty(centers.shape[0], dtype=np.int64)
    folds[order] = np.arange(centers.shape[0]) * n_folds // max(centers.shape[0], 1)
    return folds


def stratified_folds(labels: np.ndarray, *, n_folds: int = 5, seed=0) -> np.ndarray:
    """Random fold ids with each class spread evenly over the folds."""
    labels = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(seed)
    folds = np.empty(labels.size, dtype=np.int64)
    for members in (np.flatnonzero(labels), np.flatnonzero(~labels)):
        folds[rng.permutation(members)] = np.arange(members.size) % n_folds
    return folds


def case_or_slab_folds(labels, *, groups=None, centers_mm=None, n_folds: int = 5, seed=0) -> tuple[np.ndarray, str]:
    """Fold ids and how they were made: whole cases with two or more cases, else spatial slabs of
    the centres, else random stratified folds."""
    labels = np.asarray(labels).astype(int)
    if groups is not None and len(set(groups)) >= 2:
        names = sorted(set(groups))
        fold_of = {name: i % n_folds for i, name in enumerate(names)}
        return np.array([fold_of[g] for g in groups]), "by case"
    if centers_mm is not None:
        return spatial_folds(centers_mm, n_folds=n_folds), "by spatial slab"
    return stratified_folds(labels, n_folds=n_folds, seed=seed), "random stratified"


def out_of_fold_scores(features, labels, folds, *, kind: str = "logistic") -> np.ndarray:
    """Each row's score from a model fitted on the other folds (NaN where a fold cannot be fitted)."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    scores = np.full(labels.size, np.nan)
    for fold in np.unique(folds):
        held_out = folds == fold
        train = ~held_out
        if len(np.unique(labels[train])) < 2:  # a fold without both classes cannot be fitted
            continue
        scores[held_out] = fit_classifier(features[train], labels[train], kind=kind).decision(features[held_out])
    return scores


def cross_validated_auc(features, labels, *, groups=None, centers_mm=None, n_folds: int = 5,
                        l2: float = 1.0, n_boot: int = 2000, seed=0, classifier: str = "logistic") -> dict:
    """Out-of-fold ROC AUC of a classifier (``"logistic"`` or ``"boosting"``) with a bootstrap
    95 % interval.

    Parameters
    ----------
    features : (N, F) array
        One row per lesion (NaNs allowed).
    labels : (N,) array
        1 for real, 0 for synthetic (or any two classes).
    groups : (N,) array, optional
        Case of each lesion. With two or more distinct cases, folds are whole cases
        (leave-one-case-out, up to ``n_folds`` folds).
    centers_mm : (N, 3) array, optional
        Lesion centres; used for spatial-slab folds when there is a single case.
    n_folds : int
        Number of folds; random stratified folds when neither cases nor centres separate lesions.

    Returns
    -------
    dict
        ``auc``, ``ci`` (low, high), ``scheme`` (how folds were made), ``n_folds``, ``scores``
        (out-of-fold log-odds), ``labels`` and ``weights``: for the logistic model the standardised
        coefficients of a model fitted on all lesions (which features separate the classes, and in
        which direction); for boosting each feature's share of the total split gain.
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    folds, scheme = case_or_slab_folds(labels, groups=groups, centers_mm=centers_mm, n_folds=n_folds, seed=seed)
    if classifier == "logistic":
        scores = np.full(labels.size, np.nan)
        for fold in np.unique(folds):
            train = folds != fold
            if len(np.unique(labels[train])) >= 2:
                scores[~train] = fit_logistic(features[train], labels[train], l2=l2).decision(features[~train])
    else:
        scores = out_of_fold_scores(features, labels, folds, kind=classifier)
    scored = np.isfinite(scores)
    auc = roc_auc(scores[scored], labels[scored])
    low, high = bootstrap_auc(scores[scored], labels[scored], n_boot=n_boot, seed=seed)
    if classifier == "logistic":
        weights = fit_logistic(features, labels, l2=l2).weights
    else:
        gain = fit_classifier(features, labels, kind=classifier).gain
        weights = gain / max(float(gain.sum()), 1e-12)
    return {"auc": auc, "ci": (low, high), "scheme": scheme, "n_folds": int(np.unique(folds).size),
            "n_positive": int(labels[scored].sum()), "n_negative": int((1 - labels[scored]).sum()),
            "scores": scores, "labels": labels, "weights": weights}
