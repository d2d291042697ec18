"""Realism measurement: how close synthetic liver lesions are to real ones.

Features per lesion (:mod:`realism.features`), real and synthetic lesions from the same livers and
their distribution distances (:mod:`realism.compare`), a real-versus-synthetic classifier
(:mod:`realism.classifier`) and the report with its figures (:mod:`realism.report`).

>>> from realism import load_cases, realism_report
>>> realism_report(load_cases("data/"), out_dir="realism_out", seed=0)  # doctest: +SKIP

Command line: ``python -m realism --data DIR --out DIR [--seed N]``.
"""

from .classifier import cross_validated_auc, fit_logistic, roc_auc
from .compare import LesionSample, compare_tables, extract_real_lesions, feature_table, synthesize_lesions
from .features import FEATURE_NAMES, lesion_features
from .report import Case, load_cases, realism_report

__all__ = [
    "Case",
    "FEATURE_NAMES",
    "LesionSample",
    "compare_tables",
    "cross_validated_auc",
    "extract_real_lesions",
    "feature_table",
    "fit_logistic",
    "lesion_features",
    "load_cases",
    "realism_report",
    "roc_auc",
    "synthesize_lesions",
]
