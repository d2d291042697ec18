"""``tumorsynth evaluate``: lesion-wise evaluation of predictions against ground truth (NIfTI).

Takes two files, or two folders whose NIfTI files are paired by name, checks that each pair shares
one grid, and writes the per-case and summary JSON of :mod:`train.metrics` (schema in
docs/evaluation.md). Cases are evaluated one at a time so that a large folder never sits in memory.
Label maps are checked: a CT image passed as ``--pred`` or ``--gt`` is refused, not scored.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synth.cases import nifti_stem
from synth.deprecation import warn_renamed
from synth.errors import UsageError, input_errors, warn
from synth.io import check_same_space, load_nifti, write_json_atomic
from synth.labels import Label


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


def _check_distinct(pred: Path, gt: Path, out_json: Path) -> None:
    if out_json.exists() and any(out_json.resolve() == p.resolve() for p in (pred, gt)):
        raise UsageError(f"--json {out_json} is one of the inputs; choose another report path")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tumorsynth evaluate``."""
    parser.description = (
        "Score predicted tumour labels against ground truth lesion by lesion (detection per size bin, "
        "per-lesion Dice, false positives, Dice, ASSD, HD95); two NIfTI files or two folders of "
        "matching names. Schema in docs/evaluation.md.")
    parser.add_argument("--pred", required=True, type=Path, help="predicted label map(s)")
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth label map(s)")
    parser.add_argument("--json", required=True, type=Path, help="output JSON report")
    parser.add_argument("--tumor-label", "--tumour-label", dest="tumor_label", type=int, default=int(Label.TUMOR),
                        action=_TumorLabel,
                        help="tumour label value (default 2; --tumour-label is a deprecated spelling)")


class _TumorLabel(argparse.Action):
    """Store the value; the deprecated spelling ``--tumour-label`` also warns, on stderr too
    (Python hides a DeprecationWarning from a command line by default)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == "--tumour-label":
            warn("--tumour-label is deprecated and will be removed in the next release; use --tumor-label")
            warn_renamed("--tumour-label", "--tumor-label")
        setattr(namespace, self.dest, values)


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the report and print its headline; returns the exit status."""
    summary = run_evaluate(args.pred, args.gt, args.json, tumor_label=args.tumor_label)
    print(f"{summary['n_cases']} case(s): global Dice {summary['global_dice']:.3f}, "
          f"{summary['detected']}/{summary['n_lesions']} lesions detected, "
          f"{summary['false_positives']} false positives; report in {args.json}")
    return 0


def run_evaluate(pred: Path, gt: Path, out_json: Path, *, tumor_label: int = Label.TUMOR) -> dict:
    """Evaluate every pair, write the JSON report and return its summary."""
    from tqdm import tqdm

    from . import aggregate, evaluate_case

    _check_distinct(pred, gt, out_json)
    results = []
    for name, pred_path, gt_path in tqdm(nifti_pairs(pred, gt), desc="evaluate", unit="case"):
        with input_errors():  # unreadable files, mismatched grids, bad labels: exit status 2
            prediction, truth = load_nifti(pred_path), load_nifti(gt_path)
            check_same_space(prediction, truth)
            results.append(evaluate_case(prediction.array, truth.array, spacing=truth.spacing,
                                         tumor_label=tumor_label, case_id=name))
    cases = [r.to_dict() for r in results]
    summary = aggregate(results)
    write_json_atomic({"cases": cases, "summary": summary}, out_json)
    return summary


def _stem(path: Path) -> str:
    return nifti_stem(path.name) or path.stem


def _by_stem(folder: Path) -> dict[str, Path]:
    return {stem: p for p in folder.iterdir() if (stem := nifti_stem(p.name)) and p.is_file()}
