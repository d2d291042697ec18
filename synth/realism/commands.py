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
    parser.add_argument("--match", choices=("diameter", "class"), default="diameter",
                        help="size matching: the real lesion's diameter +-10 %% (default) or only its class")
    parser.add_argument("--part", choices=("report", "tune", "all"), default="report",
                        help="real lesions compared: the report part (liver slabs 1 and 3 of 4 along z; default, "
                             "for quoted results), the tune part (slabs 0 and 2; for choosing defaults) or all")
    parser.add_argument("--thick-slice", type=float, default=None, metavar="MM",
                        help="also compare on a thick-slice version of every labelled case (axial slices "
                             "averaged to about MM mm), real lesions with real partial volume")
    parser.add_argument("--host", action="append", default=[], metavar="DIR",
                        help="a healthy scan folder (one CT + one liver mask, or a data set folder) to insert "
                             "into and compare with the labelled cases' real lesions; may be repeated")
    parser.add_argument("--classifier", choices=("both", "logistic", "boosting"), default="both",
                        help="real-vs-synthetic classifiers (default both)")
    parser.add_argument("--real-vs-real", type=int, default=5, metavar="N",
                        help="random halvings of the real lesions for the noise floor (default 5; 0 skips)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples of the AUC intervals "
                        "(default 2000)")
    parser.add_argument("--save-gate", default=None, metavar="PATH",
                        help="also train a quality gate on the tune part and write it as JSON "
                             "(use with insert_tumor(..., quality_filter=PATH))")
    parser.add_argument("--gate-classifier", choices=("logistic", "boosting"), default="logistic",
                        help="classifier of the quality gate (default logistic: on LiTS-117's tune part it "
                             "separates better out of fold than the boosted trees)")
    parser.add_argument("--max-cases", type=int, default=None, help="use at most this many cases")
    parser.add_argument("--max-real", type=int, default=None, help="at most this many real lesions per case")
    parser.add_argument("--synth-options", default="{}",
                        help='JSON dict of synthesiser options, e.g. \'{"edge_mm": [1.5, 3.0]}\'')
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Read the cases, write the report and print its headline; returns the exit status."""
    from ..cases import read_cases
    from .hosts import read_host
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
    hosts = []
    for folder in args.host:
        try:
            hosts += read_host(folder)
        except (ValueError, FileNotFoundError) as exc:
            raise UsageError(f"--host {exc}") from None
    classifiers = ("logistic", "boosting") if args.classifier == "both" else (args.classifier,)
    try:
        summary = realism_report(cases, out_dir=args.out, seed=args.seed, per_real=args.per_real, match=args.match,
                                 part=args.part, thick_slice_mm=args.thick_slice, hosts=hosts,
                                 classifiers=classifiers, real_vs_real_repeats=args.real_vs_real, n_boot=args.n_boot,
                                 save_gate=args.save_gate, gate_classifier=args.gate_classifier,
                                 synth_options=options, max_real_per_case=args.max_real,
                                 figures_on=not args.no_figures, progress=not args.quiet)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for host, analysis in summary["hosts"].items():
        cells = [f"{kind} AUC {r['all features']['auc']:.2f} [{r['all features']['ci95'][0]:.2f}, "
                 f"{r['all features']['ci95'][1]:.2f}]" for kind, r in analysis["classifiers"].items()]
        floor = [f"{kind} {r['auc_mean']:.2f}" for kind, r in analysis["real_vs_real"].items()]
        print(f"realism ({args.part} part, {host}): {analysis['counts']['real']} real, "
              f"{analysis['counts']['synthetic']} synthetic lesions; classifier {'; '.join(cells)}"
              + (f"; real vs real {', '.join(floor)}" if floor else ""))
    if args.save_gate:
        print(f"quality gate written to {args.save_gate} (threshold {summary['gate']['threshold']:.3f})")
    print(f"report in {args.out}/realism.md")
    return 0
