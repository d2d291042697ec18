"""``tumorsynth realism``: the realism report on a data set's labelled cases (docs/realism.md)."""

from __future__ import annotations

import argparse
import json

from ..errors import UsageError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tumorsynth realism``."""
    parser.description = ("Compare real liver tumours with synthetic ones inserted into the same livers: "
                          "feature distributions, a real-vs-synthetic classifier (ROC AUC), figures.")
    parser.add_argument("--data", required=True, help="labelled cases: a LiTS, MSD or images/ + masks/ folder, "
                        "or a CSV manifest")
    parser.add_argument("--out", required=True, help="output folder (realism.json, realism.md, PNGs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of insertions and bootstrap (default 0)")
    parser.add_argument("--per-real", type=int, default=2, help="synthetic lesions per real lesion (default 2)")
    parser.add_argument("--match", choices=("class", "diameter"), default="class",
                        help="size matching: the real lesion's class (default) or its diameter +-10 %%")
    parser.add_argument("--max-cases", type=int, default=None, help="use at most this many cases")
    parser.add_argument("--max-real", type=int, default=None, help="at most this many real lesions per case")
    parser.add_argument("--synth-options", default="{}",
                        help='JSON dict of synthesiser options, e.g. \'{"edge_mm": [1.5, 3.0]}\'')
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Read the cases, write the report and print its headline; returns the exit status."""
    from ..cases import read_cases
    from .report import realism_report

    try:
        options = json.loads(args.synth_options)
    except ValueError as exc:
        raise UsageError(f"--synth-options is not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise UsageError(f"--synth-options must be a JSON object (a dict); got {args.synth_options!r}")
    try:
        cases = read_cases(args.data, limit=args.max_cases)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(f"--data {exc}") from None
    summary = realism_report(cases, out_dir=args.out, seed=args.seed, per_real=args.per_real, match=args.match,
                             synth_options=options, max_real_per_case=args.max_real,
                             figures_on=not args.no_figures, progress=not args.quiet)
    best = summary["classifier"]["all features"]
    print(f"realism: {summary['counts']['real']} real, {summary['counts']['synthetic']} synthetic lesions; "
          f"classifier AUC {best['auc']:.2f} [{best['ci95'][0]:.2f}, {best['ci95'][1]:.2f}]; "
          f"report in {args.out}/realism.md")
    return 0
