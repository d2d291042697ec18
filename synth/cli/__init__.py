"""The ``tumorsynth`` command line: ``insert``, ``demo``, ``synthesize``, ``realism``, ``evaluate``,
``diffusion``, ``data``, ``train``, ``ablate``.

- ``insert`` puts synthetic tumours into one CT (NIfTI) inside its liver mask and writes the new
  CT, the label map, a JSON record of the lesions and a PNG preview.
- ``demo`` writes the built-in phantom to NIfTI and runs exactly the ``insert`` path on it.
- ``synthesize`` builds an offline synthetic data set from a folder of cases, in parallel and
  resumable (a variant whose ``lesions.json`` exists is done; it is written last).
- ``realism`` hands its arguments to the realism report (package ``realism``), imported only
  when the command runs: the synthesiser itself never depends on it.
- ``evaluate`` scores predicted tumour labels lesion by lesion (package ``train``, imported only
  when the command runs).
- ``data``, ``train`` and ``ablate`` hand their arguments to the trainer's own command modules
  (``train.data.commands``, ``train.loop.commands``, ``train.ablation.commands``), imported only
  when the command runs.
- ``diffusion train`` trains the diffusion synthesiser (``insert --method diffusion --model``
  uses it); torch is imported only when it runs.

This module holds the argument parser and :func:`main`; the work is done in

- :mod:`.options`: the values of ``--size``, ``--count``, ``--seed`` ... and ``SynthesisOptions``;
- :mod:`.insert`: one case, files in to files out (``insert``, ``demo``);
- :mod:`.cases`: finding the cases of a data set folder (``synthesize``);
- :mod:`.synthesize`: the data set builder (seeds, chunks, process pool, resume, manifest);
- :mod:`.errors`: ``UsageError`` and the ``tumorsynth: ...`` messages.

Bad input (missing file, mismatched image and mask, a size the synthesiser refuses) ends with a
one-line ``tumorsynth: error: ...`` on stderr and exit status 2, never a traceback. A failed case
in ``synthesize`` is reported by name and the others go on; the exit status is then 1.

The synthesiser and matplotlib are imported inside the functions that use them, so ``--help`` and
argument errors answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from .errors import PROG, UsageError
from .insert import run_demo, run_insert
from .options import (
    DEFAULT_COUNT,
    SynthesisOptions,
    add_method_options,
    add_synthesis_options,
    parse_positive_int,
    parse_seed,
)
from .synthesize import run_synthesize

__all__ = ["build_parser", "main"]

DEMO_COUNT = 3


def _insert_command(args: argparse.Namespace) -> int:
    run_insert(args.image, args.mask, args.out, SynthesisOptions.from_args(args), args.seed)
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    run_demo(args.out, SynthesisOptions.from_args(args), args.seed)
    return 0


def _synthesize_command(args: argparse.Namespace) -> int:
    return run_synthesize(
        args.data, args.out, args.variants, workers=args.workers,
        options=SynthesisOptions.from_args(args), base_seed=args.seed,
    )


def _realism_command(args: argparse.Namespace) -> int:
    from realism.cli import main as realism_main

    return realism_main(args.forwarded, prog=f"{PROG} realism")


def _evaluate_command(args: argparse.Namespace) -> int:
    from .evaluate import run_evaluate

    summary = run_evaluate(args.pred, args.gt, args.json, tumour_label=args.tumour_label)
    print(f"{summary['n_cases']} case(s): global Dice {summary['global_dice']:.3f}, "
          f"{summary['detected']}/{summary['n_lesions']} lesions detected, "
          f"{summary['false_positives']} false positives; report in {args.json}")
    return 0


# Trainer commands: (module, one-line help). Each module has add_arguments(parser) and run(args);
# it is imported only when its command runs, so the synthesiser never loads torch or the trainer.
TRAINER_COMMANDS = {
    "data": ("train.data.commands", "fetch the LiTS-117 sample; check a data set's files"),
    "train": ("train.loop.commands", "train the bundled 3D U-Net (DynUNet)"),
    "ablate": ("train.ablation.commands", "train with and without synthetic tumours; report per size"),
}


def _trainer_command(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(TRAINER_COMMANDS[args.command][0])
    parser = argparse.ArgumentParser(prog=f"{PROG} {args.command}",
                                     description=TRAINER_COMMANDS[args.command][1])
    module.add_arguments(parser)
    try:
        options = parser.parse_args(args.forwarded)
    except SystemExit as exc:  # --help, or argparse already printed the problem
        return int(exc.code or 0)
    return int(module.run(options))


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for all subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Insert realistic synthetic liver tumours into CT (NIfTI)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    insert = commands.add_parser(
        "insert",
        help="insert tumours into one CT",
        description="Insert synthetic tumours into one CT inside its liver mask.",
    )
    insert.add_argument("--image", required=True, type=Path, help="CT in HU (.nii or .nii.gz)")
    insert.add_argument(
        "--mask", required=True, type=Path, help="liver mask or 0/1/2 label map, same grid"
    )
    insert.add_argument("--out", required=True, type=Path, help="output folder")
    add_synthesis_options(insert, count_default=DEFAULT_COUNT)
    add_method_options(insert)
    insert.add_argument("--seed", type=parse_seed, help="random seed (default: random, recorded)")
    insert.set_defaults(handler=_insert_command)

    demo = commands.add_parser(
        "demo",
        help="run insert on the built-in phantom",
        description="Write the built-in phantom as NIfTI and run 'insert' on it.",
    )
    demo.add_argument("--out", type=Path, default=Path("tumorsynth-demo"), help="output folder")
    add_synthesis_options(demo, count_default=DEMO_COUNT)
    add_method_options(demo)
    demo.add_argument("--seed", type=parse_seed, default=0, help="random seed (default: 0)")
    demo.set_defaults(handler=_demo_command)

    synth = commands.add_parser(
        "synthesize",
        help="build a synthetic data set from a folder of cases",
        description="Write N synthetic variants of every case in a folder (LiTS volume-N / "
        "segmentation-N, MSD imagesTr/labelsTr, or images/ + masks/). Resumable.",
    )
    synth.add_argument("--data", required=True, type=Path, help="folder of cases")
    synth.add_argument("--out", required=True, type=Path, help="output folder")
    synth.add_argument(
        "--variants", required=True, type=parse_positive_int, help="variants per case"
    )
    synth.add_argument(
        "--workers",
        type=parse_positive_int,
        default=min(4, os.cpu_count() or 1),
        help="worker processes; 1 runs in this process (default: min(4, CPUs))",
    )
    add_synthesis_options(synth, count_default=DEFAULT_COUNT)
    add_method_options(synth)
    synth.add_argument(
        "--seed",
        type=parse_seed,
        default=0,
        help="base seed; each variant's seed derives from it, the case name and the variant "
        "number (default: 0)",
    )
    synth.set_defaults(handler=_synthesize_command)

    realism = commands.add_parser(
        "realism",
        help="measure how close synthetic lesions are to real ones",
        description="Compare real tumours with synthetic ones inserted into the same livers "
        "(run 'tumorsynth realism --help' for the options).",
        add_help=False,
    )
    realism.set_defaults(handler=_realism_command, forwards_arguments=True)

    evaluate = commands.add_parser(
        "evaluate",
        help="lesion-wise evaluation of predicted tumours",
        description="Score predicted tumour labels against ground truth lesion by lesion "
        "(detection per size bin, per-lesion Dice, false positives, Dice, ASSD, HD95); "
        "two NIfTI files or two folders of matching names. Schema in docs/evaluation.md.",
    )
    evaluate.add_argument("--pred", required=True, type=Path, help="predicted label map(s)")
    evaluate.add_argument("--gt", required=True, type=Path, help="ground-truth label map(s)")
    evaluate.add_argument("--json", required=True, type=Path, help="output JSON report")
    evaluate.add_argument("--tumour-label", type=int, default=2, help="tumour label value (default 2)")
    evaluate.set_defaults(handler=_evaluate_command)

    for name, (_, help_text) in TRAINER_COMMANDS.items():
        trainer = commands.add_parser(name, help=help_text, add_help=False,
                                      description=f"{help_text} (run '{PROG} {name} --help').")
        trainer.set_defaults(handler=_trainer_command, forwards_arguments=True)

    from .diffusion import add_diffusion_parser

    add_diffusion_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 some cases failed, 2 bad input)."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown and not getattr(args, "forwards_arguments", False):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # argparse already printed usage and the message
        return int(exc.code or 0)
    args.forwarded = unknown  # realism and the trainer commands parse their own options
    try:
        return int(args.handler(args))
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an output folder that cannot be written
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
