"""The synthesiser's commands: ``insert``, ``demo`` and ``synthesize`` (registered by the
``tumorsynth`` front door, :mod:`tumorsynth.cli`).

- ``insert`` puts synthetic tumours into one CT (NIfTI) inside its liver mask and writes the new
  CT, the label map, a JSON record of the lesions and a PNG preview (:mod:`synth.insert_files`).
- ``demo`` writes the built-in phantom to NIfTI and runs exactly the ``insert`` path on it.
- ``synthesize`` builds an offline synthetic data set from a folder of cases, in parallel and
  resumable (:mod:`synth.dataset`); with ``--nnunet-raw`` it also exports the real cases and the
  variants as an nnU-Net v2 data set.
- ``export nnunet`` writes a data set in nnU-Net v2's raw layout (:mod:`synth.nnunet_export`).
  ``export`` takes the format as a sub-command, so that other layouts can join it.

The synthesiser and matplotlib are imported by the modules that run a command, so ``--help`` and
argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from .nnunet_export import DATASET_JSON, DEFAULT_FOLD_SEED, DEFAULT_FOLDS, check_dataset_id, check_dataset_name
from .options import (
    DEFAULT_COUNT,
    DEFAULT_SCHEDULER_TIMEOUT_S,
    ENGINES,
    SynthesisOptions,
    add_method_options,
    add_synthesis_options,
    parse_positive_int,
    parse_positive_seconds,
    parse_seed,
)

__all__ = ["Command", "demo", "export", "insert", "synthesize"]

DEMO_COUNT = 3


class Command(NamedTuple):
    """A command as the front door takes it: its options and what it does (exit status)."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _insert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Insert synthetic tumours into one CT inside its liver mask."
    parser.add_argument("--image", required=True, type=Path, help="CT in HU (.nii or .nii.gz)")
    parser.add_argument("--mask", required=True, type=Path, help="liver mask or 0/1/2 label map, same grid")
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not hold the inputs' "
                        "output names: ct.nii.gz, label.nii.gz)")
    add_synthesis_options(parser, count_default=DEFAULT_COUNT)
    add_method_options(parser)
    parser.add_argument("--seed", type=parse_seed, help="random seed (default: random, recorded)")


def _run_insert(args: argparse.Namespace) -> int:
    from .insert_files import run_insert

    run_insert(args.image, args.mask, args.out, SynthesisOptions.from_args(args), args.seed)
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Write the built-in phantom as NIfTI and run 'insert' on it."
    parser.add_argument("--out", type=Path, default=Path("tumorsynth-demo"), help="output folder")
    add_synthesis_options(parser, count_default=DEMO_COUNT)
    add_method_options(parser)
    parser.add_argument("--seed", type=parse_seed, default=0, help="random seed (default: 0)")


def _run_demo(args: argparse.Namespace) -> int:
    from .insert_files import run_demo

    run_demo(args.out, SynthesisOptions.from_args(args), args.seed)
    return 0


def _synthesize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write N synthetic variants of every case of a data set (LiTS volume-N / segmentation-N, "
        "MSD imagesTr/labelsTr, images/ + masks/, or a CSV manifest), and a manifest.csv that "
        "'tumorsynth train --data' reads. Resumable.")
    parser.add_argument("--data", required=True, type=Path, help="folder of cases or CSV manifest")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--variants", required=True, type=parse_positive_int, help="variants per case")
    parser.add_argument("--workers", type=parse_positive_int, default=min(4, os.cpu_count() or 1),
                        help="worker processes (of the process pool or the local Dask cluster); 1 runs in "
                             "this process (default: min(4, CPUs))")
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="where the chunks run: a Dask cluster (dask), a process pool (processes), or "
                             "auto: Dask when dask.distributed is installed, else the process pool; the "
                             "files are the same bytes either way (default: auto)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="a running Dask scheduler, e.g. tcp://HOST:8786, instead of a local cluster; "
                             "its workers must see --data and --out at the same paths (docs/cluster.md)")
    parser.add_argument("--scheduler-timeout", type=parse_positive_seconds, default=DEFAULT_SCHEDULER_TIMEOUT_S,
                        metavar="SECONDS",
                        help=f"how long to wait for --scheduler to answer (default: {DEFAULT_SCHEDULER_TIMEOUT_S:g})")
    add_synthesis_options(parser, count_default=DEFAULT_COUNT)
    add_method_options(parser)
    parser.add_argument("--seed", type=parse_seed, default=0,
                        help="base seed; each variant's seed derives from it, the case id and the variant "
                             "number (default: 0)")
    nnunet = parser.add_argument_group(
        "nnU-Net", "also write the real cases and their variants as an nnU-Net v2 data set (as 'export nnunet' "
        "does), once every variant is written")
    nnunet.add_argument("--nnunet-raw", type=Path, metavar="DIR", help="nnU-Net's raw data folder (nnUNet_raw)")
    nnunet.add_argument("--nnunet-id", type=parse_dataset_id, metavar="N", help="dataset id, 1-999")
    nnunet.add_argument("--nnunet-name", type=parse_dataset_name, metavar="NAME", help="dataset name")
    nnunet.add_argument("--nnunet-folds", type=parse_positive_int, default=DEFAULT_FOLDS, metavar="K",
                        help=f"cross-validation folds in splits_final.json (default: {DEFAULT_FOLDS})")


def _run_synthesize(args: argparse.Namespace) -> int:
    from .dataset import MANIFEST_NAME, run_synthesize
    from .errors import UsageError, input_errors

    nnunet = (args.nnunet_raw, args.nnunet_id, args.nnunet_name)
    if any(value is not None for value in nnunet) and any(value is None for value in nnunet):
        raise UsageError("--nnunet-raw, --nnunet-id and --nnunet-name go together; give all three or none")
    if args.nnunet_raw is not None:
        from .cases import find_cases
        from .nnunet_export import check_target_free, export_cases, fold_splits

        with input_errors():  # before hours of synthesis, not after
            check_target_free(args.nnunet_raw, args.nnunet_id, args.nnunet_name)
            fold_splits(export_cases(find_cases(args.data), args.data), args.nnunet_folds)
    status = run_synthesize(args.data, args.out, args.variants, workers=args.workers,
                            options=SynthesisOptions.from_args(args), base_seed=args.seed, engine=args.engine,
                            scheduler=args.scheduler, scheduler_timeout_s=args.scheduler_timeout)
    if args.nnunet_raw is None:
        return status
    if status != 0:
        print("nnU-Net data set not written: some variants failed; run the same command again to finish them "
              "and export")
        return status
    return _export_nnunet([args.data, args.out / MANIFEST_NAME], args.nnunet_raw, args.nnunet_id,
                          args.nnunet_name, folds=args.nnunet_folds, seed=DEFAULT_FOLD_SEED, copy=False)


def parse_dataset_id(text: str) -> int:
    """``--dataset-id``: nnU-Net's dataset number, 1-999."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"dataset id {text!r} must be a whole number from 1 to 999") from None
    try:
        return check_dataset_id(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_dataset_name(text: str) -> str:
    """``--name``: a dataset name nnU-Net accepts."""
    try:
        return check_dataset_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Write a data set in another tool's layout."
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    nnunet = formats.add_parser(
        "nnunet", help="nnU-Net v2 raw data set (imagesTr, labelsTr, dataset.json, splits_final.json)",
        description="Write the cases of one or more data sets as nnU-Net v2's DatasetNNN_NAME/ (imagesTr/"
                    "<case>_0000.nii.gz, labelsTr/<case>.nii.gz, dataset.json) with a splits_final.json whose "
                    "folds keep each real case together with its synthetic variants. .nii.gz files are linked, "
                    "not copied, unless --copy.")
    nnunet.add_argument("--data", required=True, type=Path, action="append",
                        help="a folder of cases or a CSV manifest; repeat it to add synthesize's output "
                             "(its manifest.csv groups each variant with its real case)")
    nnunet.add_argument("--out", required=True, type=Path, help="nnU-Net's raw data folder (nnUNet_raw)")
    nnunet.add_argument("--dataset-id", required=True, type=parse_dataset_id, metavar="N", help="dataset id, 1-999")
    nnunet.add_argument("--name", required=True, type=parse_dataset_name,
                        help="dataset name: letters, digits, '-' and '_'")
    nnunet.add_argument("--folds", type=parse_positive_int, default=DEFAULT_FOLDS,
                        help=f"cross-validation folds in splits_final.json (default: {DEFAULT_FOLDS})")
    nnunet.add_argument("--seed", type=parse_seed, default=DEFAULT_FOLD_SEED,
                        help=f"seed of the fold assignment (default: {DEFAULT_FOLD_SEED}, as synthesize --nnunet-raw "
                             f"uses)")
    nnunet.add_argument("--copy", action="store_true", help="copy .nii.gz files instead of linking them")


def _run_export(args: argparse.Namespace) -> int:
    return _export_nnunet(args.data, args.out, args.dataset_id, args.name, folds=args.folds, seed=args.seed,
                          copy=args.copy)


def _export_nnunet(data: list[Path], raw_dir: Path, dataset_id: int, name: str, *, folds: int, seed: int,
                   copy: bool) -> int:
    from .errors import input_errors
    from .nnunet_export import export_nnunet

    with input_errors():
        folder, written = export_nnunet(data, raw_dir, dataset_id, name, folds=folds, seed=seed, copy=copy)
    summary = json.loads((folder / DATASET_JSON).read_text(encoding="utf-8"))
    state = "written" if written else "already there with the same content; left as it is"
    print(f"nnU-Net data set {folder} ({summary['numTraining']} cases, {folds} folds): {state}")
    return 0


insert = Command(_insert_arguments, _run_insert)
demo = Command(_demo_arguments, _run_demo)
synthesize = Command(_synthesize_arguments, _run_synthesize)
export = Command(_export_arguments, _run_export)
