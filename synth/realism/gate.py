"""A quality gate: a small real-vs-synthetic classifier that rejects unrealistic synthetic lesions.

``tumorsynth realism --save-gate gate.json`` trains it on the **tune** part of the real lesions
(see :func:`synth.realism.compare.realism_part`) against synthetic lesions inserted into the same
livers, on the classifier features without size, and writes it as JSON (no pickle): the feature
names, :data:`~synth.realism.features.FEATURE_VERSION`, the model's parameters and a threshold.

The threshold is the out-of-fold probability "real" that 90 % of the real tune lesions reach
(their 10th percentile, ``real_pass=0.9``): a lesion that scores below it looks less real than
nine real lesions in ten. Insertion with ``quality_filter=gate`` redraws a lesion scoring below it.

>>> from synth import insert_tumor
>>> ct2, label2 = insert_tumor(ct, liver, spacing=(0.8, 0.8, 2.5), quality_filter="gate.json")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import write_json_atomic
from .classifier import FittedModel, case_or_slab_folds, fit_classifier, model_from_dict, out_of_fold_scores
from .features import FEATURE_VERSION, lesion_features

__all__ = ["GATE_FORMAT", "QualityGate", "as_gate", "cached_gate", "train_gate"]

GATE_FORMAT = "tumorsynth-quality-gate"
DEFAULT_MAX_TRIES = 5


@dataclass(frozen=True)
class QualityGate:
    """A fitted real-vs-synthetic model and the probability "real" a lesion must reach.

    Attributes
    ----------
    model
        A fitted :class:`~synth.realism.classifier.LogisticModel` or
        :class:`~synth.realism.boosting.BoostedTrees` (anything with ``decision`` and ``to_dict``).
    feature_names : tuple of str
        The :func:`~synth.realism.features.lesion_features` the model reads, in column order.
    threshold : float
        Probability "real" in [0, 1] a lesion must reach to pass.
    feature_version : int
        The features' :data:`~synth.realism.features.FEATURE_VERSION` at training time.
    max_tries : int
        Draws per lesion during insertion before the best-scoring one is kept.
    info : dict
        How it was trained (counts, pass rates), for people.
    """

    model: FittedModel
    feature_names: tuple[str, ...]
    threshold: float
    feature_version: int = FEATURE_VERSION
    max_tries: int = DEFAULT_MAX_TRIES
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a probability in [0, 1]; got {self.threshold}")
        if self.max_tries < 1:
            raise ValueError(f"max_tries must be at least 1; got {self.max_tries}")
        if self.feature_version != FEATURE_VERSION:
            raise ValueError(f"this quality gate was trained on lesion features version {self.feature_version}, "
                             f"but this tumorsynth measures version {FEATURE_VERSION}; train a new gate with "
                             f"`tumorsynth realism --save-gate PATH`")

    def score(self, volume_crop: np.ndarray, lesion_mask: np.ndarray, liver_mask: np.ndarray,
              spacing: tuple[float, float, float]) -> float:
        """Probability that the lesion is real (0 to 1).

        Parameters
        ----------
        volume_crop : (X, Y, Z) array
            CT crop in HU around the lesion (a margin of about 8 mm, as the training crops).
        lesion_mask : (X, Y, Z) bool array
            The lesion's voxels.
        liver_mask : (X, Y, Z) bool array
            Tumour-free liver voxels of the crop.
        spacing : three floats
            Voxel size in mm.
        """
        return self.score_features(lesion_features(volume_crop, lesion_mask, spacing, liver=liver_mask))

    def score_inserted(self, volume: np.ndarray, label: np.ndarray, record, spacing) -> float:
        """Probability "real" of a lesion just inserted into ``volume`` / ``label`` (whole scan
        arrays), cut as the realism report cuts synthetic lesions (its record's box + 8 mm)."""
        from ..labels import Label
        from .compare import inserted_lesion

        crop, lesion = inserted_lesion(label, record, spacing)
        return self.score(volume[crop], lesion, label[crop] == Label.LIVER, spacing)

    def score_features(self, features: dict[str, float]) -> float:
        """Probability "real" from measured features (a :func:`lesion_features` dict)."""
        row = np.array([[features[name] for name in self.feature_names]], dtype=np.float64)
        log_odds = float(self.model.decision(row)[0])
        return 1.0 / (1.0 + math.exp(-log_odds)) if log_odds > -700 else 0.0

    def passes(self, score: float) -> bool:
        """Whether a score reaches the threshold."""
        return score >= self.threshold

    def to_dict(self) -> dict:
        """The JSON document :meth:`save` writes."""
        return {"format": GATE_FORMAT, "feature_version": self.feature_version,
                "feature_names": list(self.feature_names), "threshold": float(self.threshold),
                "model": self.model.to_dict(), "info": self.info}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the gate as JSON, atomically."""
        return write_json_atomic(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, max_tries: int = DEFAULT_MAX_TRIES) -> QualityGate:
        """Read a gate written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            No such file.
        ValueError
            The file is empty, not JSON, not a gate, or trained on another feature version (both
            versions are named).
        """
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise ValueError(f"quality gate file {path} is empty; train one with `tumorsynth realism --save-gate`")
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"quality gate file {path} is not valid JSON ({exc}); it may be truncated: "
                             f"train it again with `tumorsynth realism --save-gate`") from None
        if not isinstance(document, dict) or document.get("format") != GATE_FORMAT:
            raise ValueError(f"{path} is not a tumorsynth quality gate (no \"format\": \"{GATE_FORMAT}\")")
        version = document.get("feature_version")
        if version != FEATURE_VERSION:
            raise ValueError(f"quality gate {path} was trained on lesion features version {version}, but this "
                             f"tumorsynth measures version {FEATURE_VERSION}; train a new gate with "
                             f"`tumorsynth realism --save-gate PATH`")
        try:
            model = model_from_dict(document["model"])
            names = tuple(str(n) for n in document["feature_names"])
            threshold = float(document["threshold"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"quality gate {path} is corrupt: {exc!r}") from None
        width = np.asarray(model.to_dict()["fill"]).size  # both models keep one fill value per feature
        if width != len(names):
            raise ValueError(f"quality gate {path} is corrupt: the model reads {width} features, "
                             f"the file names {len(names)}")
        return cls(model, names, threshold, version, max_tries, dict(document.get("info", {})))


def as_gate(gate: QualityGate | str | os.PathLike[str]) -> QualityGate:
    """A gate as given, or loaded from a path (once per process: :func:`cached_gate`)."""
    if isinstance(gate, QualityGate):
        return gate
    if isinstance(gate, (str, os.PathLike)):
        return cached_gate(gate)
    raise TypeError(f"quality_filter must be a QualityGate or the path of a gate JSON file; "
                    f"got {type(gate).__name__}")


# Loaded gates by (resolved path, modification time, size): a data loader or a data set worker that
# inserts thousands of lesions with quality_filter=PATH reads and checks the file once. A gate is
# frozen, so sharing one object between insertions is safe.
_LOADED: dict[tuple[str, int, int], QualityGate] = {}
_MAX_CACHED = 8


def cached_gate(path: str | os.PathLike[str]) -> QualityGate:
    """:meth:`QualityGate.load` with a per-process cache; a file rewritten since is read again."""
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"quality gate file {path} not found; train one with "
                                f"`tumorsynth realism --save-gate PATH`") from None
    key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    if key not in _LOADED:
        gate = QualityGate.load(resolved)
        if len(_LOADED) >= _MAX_CACHED:
            _LOADED.clear()
        _LOADED[key] = gate
    return _LOADED[key]


def train_gate(table: dict[str, np.ndarray], feature_names, *, classifier: str = "logistic",
               real_pass: float = 0.9, max_tries: int = DEFAULT_MAX_TRIES) -> QualityGate:
    """Fit a gate on a feature table of real and synthetic lesions (the tune part).

    Parameters
    ----------
    table : dict of columns
        A :func:`~synth.realism.compare.feature_table` (``source``, ``case``, ``center_mm`` and the
        features).
    feature_names : sequence of str
        Features the model reads (without size: sizes are the caller's choice, not a defect).
    classifier : ``"logistic"`` (default) or ``"boosting"``
    real_pass : float
        Share of real lesions that pass, out of fold: the threshold is their ``1 - real_pass``
        quantile of the probability "real".
    """
    if not 0.0 < real_pass < 1.0:
        raise ValueError(f"real_pass is a share in (0, 1); got {real_pass}")
    is_real = (table["source"] == "real").astype(int)
    if is_real.sum() < 5 or (1 - is_real).sum() < 5:
        raise ValueError(f"a gate needs at least 5 real and 5 synthetic lesions; got {int(is_real.sum())} and "
                         f"{int((1 - is_real).sum())}")
    features = np.stack([table[f] for f in feature_names], axis=1)
    folds, scheme = case_or_slab_folds(is_real, groups=table["case"], centers_mm=table["center_mm"])
    oof = out_of_fold_scores(features, is_real, folds, kind=classifier)
    probability = 1.0 / (1.0 + np.exp(-np.clip(oof, -700, 700)))
    real_scores = probability[(is_real == 1) & np.isfinite(oof)]
    # "lower": a real lesion's own score, so that at least real_pass of them pass (ties included).
    threshold = float(np.quantile(real_scores, 1.0 - real_pass, method="lower"))
    synthetic_scores = probability[(is_real == 0) & np.isfinite(oof)]
    model = fit_classifier(features, is_real, kind=classifier)
    info = {"classifier": classifier, "trained_on": "tune part", "folds": scheme,
            "n_real": int(is_real.sum()), "n_synthetic": int((1 - is_real).sum()),
            "real_pass_out_of_fold": float(np.mean(real_scores >= threshold)),
            "synthetic_pass_out_of_fold": float(np.mean(synthetic_scores >= threshold)),
            "threshold_rule": f"{real_pass:.0%} of real tune lesions pass out of fold"}
    return QualityGate(model, tuple(feature_names), threshold, FEATURE_VERSION, max_tries, info)
