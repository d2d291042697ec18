"""Realism measurement: how close synthetic liver lesions are to real ones.

It measures the synthesiser's output and depends only on it (and numpy, scipy, scikit-image):
features per lesion (:mod:`.features`), real and synthetic lesions from the same livers and their
distribution distances (:mod:`.compare`), a real-versus-synthetic classifier (:mod:`.classifier`)
and the report with its figures (:mod:`.report`).

>>> from synth.cases import read_cases
>>> from synth.realism import realism_report
>>> realism_report(read_cases("data/"), out_dir="realism_out", seed=0)  # doctest: +SKIP

Command line: ``tumorsynth realism --data DIR --out DIR [--seed N]``.
"""

from .classifier import cross_validated_auc, fit_logistic, roc_auc
from .compare import LesionSample, compare_tables, extract_real_lesions, feature_table, synthesize_lesions
from .features import FEATURE_NAMES, lesion_features
from .report import realism_report

__all__ = [
    "FEATURE_NAMES",
    "LesionSample",
    "compare_tables",
    "cross_validated_auc",
    "extract_real_lesions",
    "feature_table",
    "fit_logistic",
    "lesion_features",
    "realism_report",
    "roc_auc",
    "synthesize_lesions",
]
