"""``tumorsynth ablate``: run an ablation from a configuration file or a bundled profile.

    tumorsynth ablate --profile cpu-quick
    tumorsynth ablate --config my-ablation.json --out results/ --data /data/LiTS

Rerunning with the same ``--out`` skips the finished runs and resumes an interrupted one;
``--reevaluate`` scores the finished runs again from their saved models (after a change of
post-processing) without training them again.
"""

from __future__ import annotations

import argparse
import sys

from .config import PROFILES, ConfigError

DEFAULT_OUT = "tumorsynth-ablation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``ablate`` options to ``parser``."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", metavar="FILE", help="ablation configuration (JSON; see docs/ablation.md)")
    which.add_argument("--profile", choices=PROFILES,
                       help="bundled configuration: cpu-quick (LiTS-117 in 3-fold axial cross-validation, "
                            "about 10 min on 2 CPU cores), gpu-sample (the same data, a larger model and 3 seeds "
                            "on one GPU) or gpu (a LiTS-sized folder)")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"output folder (default ./{DEFAULT_OUT}); rerun to resume")
    parser.add_argument("--data", metavar="PATH",
                        help="data folder: overrides data.path (the gpu profile needs it; for "
                             "cpu-quick and gpu-sample, a folder holding volume-117.nii.gz and "
                             "segmentation-117.nii.gz)")
    parser.add_argument("--reevaluate", action="store_true",
                        help="evaluate the finished runs of --out again from their saved models, with this "
                             "configuration's post-processing; their training is kept")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the ablation; prints where ``results.md`` is. Returns the exit status."""
    from .config import load_config

    try:
        cfg = load_config(args.profile or args.config)
    except ConfigError as exc:
        print(f"tumorsynth ablate: {exc}", file=sys.stderr)
        return 2
    if cfg["data"]["source"] == "folder" and args.data is None and args.profile == "gpu":
        print("tumorsynth ablate: the gpu profile needs --data PATH (a LiTS, MSD Task03 or manifest "
              "folder)", file=sys.stderr)
        return 2
    from .runner import run_ablation

    try:
        results = run_ablation(cfg, args.out, progress=not args.no_progress, data_path=args.data,
                               reevaluate=args.reevaluate)
    except (ValueError, FileNotFoundError) as exc:
        print(f"tumorsynth ablate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ntumorsynth ablate: interrupted; rerun the same command (same --out {args.out}) "
              "to resume: finished runs are kept", file=sys.stderr)
        return 130
    total = results["timings"]["total_s"]
    print(f"ablation {cfg['name']!r} finished in {total:.0f} s; report: {results['report']['markdown']}")
    return 0
