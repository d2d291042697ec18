"""Gradient-boosted shallow trees: the non-linear real-versus-synthetic classifier (numpy only).

A logistic regression only sees differences that move one feature's mean; a synthesiser can match
every mean and still be told apart by a combination (too smooth *and* too bright, contrast right
for small lesions but not for large ones). Boosted trees find such rules. The model is the sum of
``rounds`` regression trees of depth ``depth``, each fitted by a Newton step to the gradient of
the logistic loss and shrunk by ``learning_rate``; splits are searched on quantile bins of each
feature (at most ``n_bins``), so a fit costs a few histogram sums per node.

Missing (NaN) features are replaced by the training median, as in
:func:`synth.realism.classifier.fit_logistic`, and classes are weighted to equal total weight.
The fitted model's ``decision`` returns log-odds of the positive class, like the logistic one's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BoostedTrees", "fit_boosting"]


@dataclass(frozen=True)
class BoostedTrees:
    """A fitted model: ``bias + sum of the trees' leaf values`` is the log-odds of the positive class.

    Every tree is stored as flat node arrays (``feature``, ``threshold``, ``left``, ``right``,
    ``value``), node 0 the root; a node with ``feature == -1`` is a leaf. A row goes left when its
    feature is at most the threshold.
    """

    fill: np.ndarray  # value that replaces a missing (NaN) feature: the training median
    bias: float
    feature: np.ndarray  # (trees, nodes) int
    threshold: np.ndarray  # (trees, nodes) float
    left: np.ndarray  # (trees, nodes) int
    right: np.ndarray  # (trees, nodes) int
    value: np.ndarray  # (trees, nodes) float, leaf values already multiplied by the learning rate
    gain: np.ndarray  # (features,) total split gain per feature: which features the trees use

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Log-odds of the positive class for each row of ``features`` (NaNs allowed)."""
        leaves = self.leaves(features)
        return self.bias + self.value[np.arange(self.value.shape[0]), leaves].sum(axis=1)

    def leaves(self, features: np.ndarray) -> np.ndarray:
        """(N, trees) index of the leaf each row reaches in each tree."""
        features = np.asarray(features, dtype=np.float64)
        x = np.where(np.isfinite(features), features, self.fill)
        rows = np.arange(x.shape[0])
        out = np.zeros((x.shape[0], self.feature.shape[0]), dtype=np.int64)
        depth = int(np.log2(self.feature.shape[1] + 1)) - 1
        for t in range(self.feature.shape[0]):
            node = np.zeros(x.shape[0], dtype=np.int64)
            for _ in range(depth):
                split = self.feature[t, node]
                go_left = x[rows, np.maximum(split, 0)] <= self.threshold[t, node]
                node = np.where(split >= 0, np.where(go_left, self.left[t, node], self.right[t, node]), node)
            out[:, t] = node
        return out

    def to_dict(self) -> dict:
        """JSON-ready parameters (plain lists); :meth:`from_dict` reads them back."""
        return {"kind": "boosting", "fill": self.fill.tolist(), "bias": float(self.bias),
                "feature": self.feature.tolist(), "threshold": self.threshold.tolist(),
                "left": self.left.tolist(), "right": self.right.tolist(), "value": self.value.tolist(),
                "gain": self.gain.tolist()}

    @classmethod
    def from_dict(cls, params: dict) -> BoostedTrees:
        """The model of :meth:`to_dict`'s output; ValueError when arrays disagree in shape."""
        model = cls(fill=np.asarray(params["fill"], dtype=np.float64), bias=float(params["bias"]),
                    feature=np.asarray(params["feature"], dtype=np.int64),
                    threshold=np.asarray(params["threshold"], dtype=np.float64),
                    left=np.asarray(params["left"], dtype=np.int64),
                    right=np.asarray(params["right"], dtype=np.int64),
                    value=np.asarray(params["value"], dtype=np.float64),
                    gain=np.asarray(params["gain"], dtype=np.float64))
        shapes = {a.shape for a in (model.feature, model.threshold, model.left, model.right, model.value)}
        if len(shapes) != 1 or model.feature.ndim != 2:
            raise ValueError(f"boosted-tree arrays disagree in shape: {sorted(shapes)}")
        return model


def fit_boosting(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    rounds: int = 100,
    depth: int = 2,
    learning_rate: float = 0.1,
    min_samples_leaf: int = 5,
    n_bins: int = 32,
    l2: float = 1.0,
) -> BoostedTrees:
    """Fit gradient-boosted regression trees with the logistic loss.

    Parameters
    ----------
    features : (N, F) array
        One row per sample; NaNs are replaced by the column's median.
    labels : (N,) array
        1 for the positive class, 0 for the other.
    rounds : int
        Number of trees (no early stopping: a fixed number keeps the fit reproducible and cheap).
    depth : int
        Depth of every tree (2 or 3: interactions of two or three features).
    learning_rate : float
        Shrinkage of each tree's leaf values.
    min_samples_leaf : int
        A split is only made when both children keep at least this many samples.
    n_bins : int
        Quantile bins per feature in which split thresholds are searched.
    l2 : float
        Penalty on leaf values (in units of the Hessian, with sample weights of mean 1).
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"features must be (N, F) and labels (N,); got {features.shape} and {labels.shape}")
    if not 1 <= depth <= 6 or rounds < 1 or min_samples_leaf < 1 or not 0 < learning_rate <= 1:
        raise ValueError(f"need 1 <= depth <= 6, rounds >= 1, min_samples_leaf >= 1, 0 < learning_rate <= 1; "
                         f"got depth={depth}, rounds={rounds}, min_samples_leaf={min_samples_leaf}, "
                         f"learning_rate={learning_rate}")
    n, n_features = features.shape
    fill = np.nanmedian(features, axis=0) if n else np.zeros(n_features)
    fill = np.where(np.isfinite(fill), fill, 0.0)
    x = np.where(np.isfinite(features), features, fill)
    edges = [_quantile_edges(x[:, f], n_bins) for f in range(n_features)]
    codes = np.stack([np.searchsorted(e, x[:, f], side="left") for f, e in enumerate(edges)], axis=1) \
        if n_features else np.zeros((n, 0), dtype=np.int64)
    width = max((e.size + 1 for e in edges), default=1)

    positives = labels.sum()
    # Equal total weight per class, mean weight 1 (so l2 is on the scale of one sample's Hessian).
    weight = np.where(labels > 0, n / (2.0 * max(positives, 1.0)), n / (2.0 * max(n - positives, 1.0)))
    prior = np.clip((weight * labels).sum() / weight.sum(), 1e-6, 1 - 1e-6)
    bias = float(np.log(prior / (1.0 - prior)))
    nodes = 2 ** (depth + 1) - 1
    shape = (rounds, nodes)
    tree = {"feature": np.full(shape, -1, dtype=np.int64), "threshold": np.zeros(shape),
            "left": np.zeros(shape, dtype=np.int64), "right": np.zeros(shape, dtype=np.int64),
            "value": np.zeros(shape)}
    gain = np.zeros(n_features)
    score = np.full(n, bias)
    for t in range(rounds):
        p = 1.0 / (1.0 + np.exp(-score))
        grad, hess = weight * (p - labels), weight * p * (1.0 - p)
        leaf_of = np.zeros(n, dtype=np.int64)
        _grow(tree, t, codes, edges, width, grad, hess, leaf_of, gain, depth=depth,
              min_samples_leaf=min_samples_leaf, l2=l2, learning_rate=learning_rate)
        score += tree["value"][t, leaf_of]
    return BoostedTrees(fill=fill, bias=bias, gain=gain, **tree)


def _quantile_edges(column: np.ndarray, n_bins: int) -> np.ndarray:
    """Distinct inner quantiles of a column: the candidate thresholds (a row goes left at or below)."""
    if column.size == 0:
        return np.zeros(0)
    return np.unique(np.quantile(column, np.linspace(0.0, 1.0, n_bins + 1)[1:-1]))


def _grow(tree, t, codes, edges, width, grad, hess, leaf_of, gain, *, depth, min_samples_leaf, l2,
          learning_rate) -> None:
    """Grow tree ``t`` breadth-first in place; ``leaf_of`` receives each sample's final node."""
    n_features = codes.shape[1]
    offsets = np.arange(n_features) * width
    next_free = 1
    frontier = [(0, np.arange(grad.size))]
    for level in range(depth + 1):
        children = []
        for node, members in frontier:
            g, h = grad[members].sum(), hess[members].sum()
            tree["value"][t, node] = -learning_rate * g / (h + l2)
            leaf_of[members] = node
            if level == depth or members.size < 2 * min_samples_leaf or n_features == 0:
                continue
            flat = (codes[members] + offsets).ravel()
            size = n_features * width
            g_hist = np.bincount(flat, np.repeat(grad[members], n_features), size).reshape(n_features, width)
            h_hist = np.bincount(flat, np.repeat(hess[members], n_features), size).reshape(n_features, width)
            c_hist = np.bincount(flat, minlength=size).reshape(n_features, width)
            g_left, h_left, c_left = (np.cumsum(a, axis=1)[:, :-1] for a in (g_hist, h_hist, c_hist))
            split_gain = (g_left**2 / (h_left + l2) + (g - g_left) ** 2 / (h - h_left + l2) - g**2 / (h + l2))
            allowed = (c_left >= min_samples_leaf) & (members.size - c_left >= min_samples_leaf)
            # Only bins that have a threshold (an edge) can be split after.
            allowed &= np.arange(width - 1)[None, :] < np.array([e.size for e in edges])[:, None]
            split_gain = np.where(allowed, split_gain, -np.inf)
            best = int(np.argmax(split_gain))
            f, k = divmod(best, width - 1)
            if not np.isfinite(split_gain[f, k]) or split_gain[f, k] <= 1e-12:
                continue
            goes_left = codes[members, f] <= k
            left, right = next_free, next_free + 1
            next_free += 2
            tree["feature"][t, node], tree["threshold"][t, node] = f, edges[f][k]
            tree["left"][t, node], tree["right"][t, node] = left, right
            gain[f] += split_gain[f, k]
            children += [(left, members[goes_left]), (right, members[~goes_left])]
        frontier = children
