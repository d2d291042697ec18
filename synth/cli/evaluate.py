"""``tumorsynth evaluate``: lesion-wise evaluation of predictions against ground truth (NIfTI).

Takes two files, or two folders whose NIfTI files are paired by name, checks that each pair shares
one grid, and writes the per-case and summary JSON of :mod:`train.metrics` (schema in
docs/evaluation.md). Cases are evaluated one at a time so that a large folder never sits in memory.
The evaluator lives in the ``train`` package and is imported only when this command runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..io import check_same_space, load_nifti, write_json_atomic
from .errors import UsageError, input_errors

_NIFTI = re.compile(r"^(?P<stem>[^.].*?)\.nii(\.gz)?$")


def nifti_pairs(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    """(case name, prediction, ground truth) for two files or two folders of matching names."""
    if pred.is_file() and gt.is_file():
        return [(_stem(gt), pred, gt)]
    if pred.is_dir() and gt.is_dir():
        preds = _by_stem(pred)
        pairs = [(stem, preds[stem], path) for stem, path in sorted(_by_stem(gt).items()) if stem in preds]
        if not pairs:
            raise UsageError(f"no NIfTI file names in common between {pred} and {gt}")
        return pairs
    raise UsageError(f"--pred and --gt must be two existing files or two existing folders; got {pred} and {gt}")


def run_evaluate(pred: Path, gt: Path, out_json: Path, *, tumour_label: int = 2) -> dict:
    """Evaluate every pair, write the JSON report and return its summary."""
    from tqdm import tqdm

    from train.metrics import aggregate, evaluate_case

    results = []
    for name, pred_path, gt_path in tqdm(nifti_pairs(pred, gt), desc="evaluate", unit="case"):
        with input_errors():  # unreadable files, mismatched grids, bad labels: exit status 2
            prediction, truth = load_nifti(pred_path), load_nifti(gt_path)
            check_same_space(prediction, truth)
            results.append(evaluate_case(prediction.array, truth.array, spacing=truth.spacing,
                                         tumour_label=tumour_label, case_id=name))
    report = {"cases": [r.to_dict() for r in results], "summary": aggregate(results)}
    write_json_atomic(report, out_json)
    return report["summary"]


def _stem(path: Path) -> str:
    match = _NIFTI.match(path.name)
    return match.group("stem") if match else path.stem


def _by_stem(folder: Path) -> dict[str, Path]:
    return {m.group("stem"): p for p in folder.iterdir() if (m := _NIFTI.match(p.name)) and p.is_file()}
