"""``tumorsynth data``: ``fetch lits117`` (the real sample) and ``check PATH`` (a data set's problems)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``fetch`` and ``check`` subcommands to the ``data`` parser."""
    sub = parser.add_subparsers(dest="data_command", metavar="{fetch,check}", required=True)
    fetch = sub.add_parser("fetch", help="download a real sample into the user cache and print its folder")
    fetch.add_argument("dataset", choices=["lits117"],
                       help="lits117: LiTS case 117 (128^3, about 1.4 mm, CC BY-SA 4.0) from a PyPI wheel")
    fetch.add_argument("--cache", type=Path, default=None,
                       help="cache folder (default $TUMORSYNTH_CACHE, else $XDG_CACHE_HOME/tumorsynth, "
                            "else ~/.cache/tumorsynth)")
    fetch.add_argument("--wheel", type=Path, default=None,
                       help="a copy of liver-ct-segmentation-package 1.6.0's wheel already on disk (offline)")
    check = sub.add_parser("check", help="list the problems of every case of a LiTS/MSD folder or CSV manifest")
    check.add_argument("path", type=Path, help="a LiTS folder, an MSD Task03 folder or a CSV manifest")


def _fetch(args) -> int:
    from .fetch import FetchError, fetch_lits117

    try:
        folder = fetch_lits117(args.cache, wheel=args.wheel, progress=sys.stderr.isatty())
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(folder)
    return 0


def _check(args) -> int:
    from tqdm.auto import tqdm

    from synth.cases import find_cases

    from .checks import find_problems

    try:
        cases = find_cases(args.path)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    fatal = warned = 0
    for files in tqdm(cases, desc="checking cases", unit="case", disable=not sys.stderr.isatty()):
        for problem in find_problems(files):
            print(f"{'ERROR' if problem.fatal else 'warning'}: {problem.message}")
            fatal += problem.fatal
            warned += not problem.fatal
    print(f"{len(cases)} cases checked: {fatal} fatal problems, {warned} warnings")
    return 1 if fatal else 0


def run(args) -> int:
    """Run the ``data`` subcommand parsed by ``add_arguments``; returns the exit status."""
    if args.data_command == "fetch":
        return _fetch(args)
    if args.data_command == "check":
        return _check(args)
    raise ValueError(f"unknown data command {args.data_command!r}")
