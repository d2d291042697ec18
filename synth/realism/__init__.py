"""Realism measurement: how close synthetic liver lesions are to real ones.

It measures the synthesiser's output and depends only on it (and numpy, scipy, scikit-image):
features per lesion (:mod:`.features`), real and synthetic lesions from the same livers and their
distribution distances and the fixed tune/report split (:mod:`.compare`), real-versus-synthetic
classifiers (:mod:`.classifier`, :mod:`.boosting`), further hosts (:mod:`.hosts`), the report with
its figures (:mod:`.report`) and the quality gate that insertion can use (:mod:`.gate`).

>>> from synth.cases import read_cases
>>> from synth.realism import realism_report
>>> realism_report(read_cases("data/"), out_dir="realism_out", seed=0)  # doctest: +SKIP

Command line: ``tumorsynth realism --data DIR --out DIR [--seed N] [--part report|tune|all]
[--thick-slice MM] [--host DIR] [--save-gate PATH]`` (docs/realism.md).
"""

from .boosting import BoostedTrees, fit_boosting
from .classifier import cross_validated_auc, fit_logistic, roc_auc
from .compare import (
    LesionSample,
    compare_tables,
    extract_real_lesions,
    feature_table,
    liver_slab,
    realism_part,
    synthesize_lesions,
)
from .features import FEATURE_NAMES, FEATURE_VERSION, lesion_features
from .gate import QualityGate, train_gate
from .hosts import read_host, thick_slice_case
from .report import realism_report

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_VERSION",
    "BoostedTrees",
    "QualityGate",
    "fit_boosting",
    "read_host",
    "liver_slab",
    "realism_part",
    "thick_slice_case",
    "train_gate",
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
