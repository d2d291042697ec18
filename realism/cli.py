"""Command line of the realism report (``python -m realism``)."""

from __future__ import annotations

import argparse
import json
import sys


def build_parser(prog: str = "python -m realism") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Compare real liver tumours with synthetic ones inserted into the same livers: "
                    "feature distributions, a real-vs-synthetic classifier (ROC AUC), figures.")
    parser.add_argument("--data", required=True, help="folder with LiTS volume-N/segmentation-N pairs "
                        "or Decathlon imagesTr/labelsTr")
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
    return parser


def main(argv=None, *, prog: str = "python -m realism") -> int:
    args = build_parser(prog).parse_args(argv)
    from .report import load_cases, realism_report

    try:
        options = json.loads(args.synth_options)
        if not isinstance(options, dict):
            raise ValueError("not a JSON object")
        cases = load_cases(args.data, limit=args.max_cases)
    except (ValueError, FileNotFoundError) as error:
        print(f"realism: {error}", file=sys.stderr)
        return 2
    summary = realism_report(cases, out_dir=args.out, seed=args.seed, per_real=args.per_real, match=args.match,
                             synth_options=options, max_real_per_case=args.max_real,
                             figures_on=not args.no_figures, progress=not args.quiet)
    best = summary["classifier"]["all features"]
    print(f"realism: {summary['counts']['real']} real, {summary['counts']['synthetic']} synthetic lesions; "
          f"classifier AUC {best['auc']:.2f} [{best['ci95'][0]:.2f}, {best['ci95'][1]:.2f}]; "
          f"report in {args.out}/realism.md")
    return 0
