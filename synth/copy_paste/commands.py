"""``tumorsynth bank build``: cut the real tumours of labelled cases into a lesion bank, which
``--method copy-paste --bank BANK`` pastes into other livers (docs/copy_paste.md).

``bank`` takes the action as a sub-command, so that others (``bank show``) can join it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError, input_errors
from ..options import parse_non_negative_mm

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tumorsynth bank``."""
    parser.description = "Lesion banks of real tumours for copy-paste synthesis."
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build", help="cut every real tumour of labelled cases into a new bank folder",
        description="Cut every real tumour (26-connected component of label 2) of labelled cases, with a "
                    "margin of liver, into a new bank folder: one file per lesion and index.json with each "
                    "lesion's statistics. Written atomically.")
    build.add_argument("--data", required=True, type=Path,
                       help="labelled cases: a LiTS, MSD Task03 or images/ + masks/ folder, or a CSV manifest")
    build.add_argument("--out", required=True, type=Path, help="the new bank folder (must not exist, or be empty)")
    build.add_argument("--margin-mm", type=parse_non_negative_mm, default=8.0,
                       help="liver kept around each lesion's box, mm (default: 8)")
    build.add_argument("--min-diameter-mm", type=parse_non_negative_mm, default=3.0,
                       help="skip lesions of a smaller equivalent diameter, mm (default: 3)")
    build.add_argument("--format", choices=("npz", "nifti"), default="npz",
                       help="one .npz per lesion, or a CT and a mask NIfTI per lesion (default: npz)")
    build.add_argument("--include-border", action="store_true",
                       help="keep lesions that touch the scan's border (their shape is cut off)")


def run(args: argparse.Namespace) -> int:
    """Build the bank and print what it holds; returns the exit status."""
    from .bank import LesionBank, build_bank

    if args.action != "build":  # argparse allows only the actions above
        raise UsageError(f"unknown bank action {args.action!r}")
    with input_errors():
        out = build_bank(args.data, args.out, margin_mm=args.margin_mm, min_diameter_mm=args.min_diameter_mm,
                         exclude_border=not args.include_border, file_format=args.format)
        bank = LesionBank.load(out)
    classes: dict[str, int] = {}
    for entry in bank.index["lesions"]:
        classes[entry["size_class"]] = classes.get(entry["size_class"], 0) + 1
    counts = ", ".join(f"{classes[name]} {name}" for name in ("tiny", "small", "medium", "large") if name in classes)
    print(f"lesion bank {out}: {len(bank)} lesions from {len(bank.index['cases'])} case(s) ({counts})")
    return 0
