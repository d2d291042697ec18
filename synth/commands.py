"""The synthesiser's commands: ``insert``, ``demo`` and ``synthesize`` (registered by the
``tumorsynth`` front door, :mod:`tumorsynth.cli`).

- ``insert`` puts synthetic tumours into one CT (NIfTI) inside its liver mask and writes the new
  CT, the label map, a JSON record of the lesions and a PNG preview (:mod:`synth.insert_files`).
- ``demo`` writes the built-in phantom to NIfTI and runs exactly the ``insert`` path on it.
- ``synthesize`` builds an offline synthetic data set from a folder of cases, in parallel and
  resumable (:mod:`synth.dataset`).

The synthesiser and matplotlib are imported by the modules that run a command, so ``--help`` and
argument errors answer at once.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

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

__all__ = ["Command", "demo", "insert", "synthesize"]

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


def _run_synthesize(args: argparse.Namespace) -> int:
    from .dataset import run_synthesize

    return run_synthesize(args.data, args.out, args.variants, workers=args.workers,
                          options=SynthesisOptions.from_args(args), base_seed=args.seed, engine=args.engine,
                          scheduler=args.scheduler, scheduler_timeout_s=args.scheduler_timeout)


insert = Command(_insert_arguments, _run_insert)
demo = Command(_demo_arguments, _run_demo)
synthesize = Command(_synthesize_arguments, _run_synthesize)
