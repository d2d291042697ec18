"""``tumorsynth nnunet``: nnU-Net v2 with synthetic tumours on the fly.

    tumorsynth nnunet install-trainer [--probability P] [--size S] [--count N] [--phenotype P]
                                      [--trainer-name NAME] [--force]
    tumorsynth nnunet install-trainer --uninstall [--trainer-name NAME]

``install-trainer`` writes the module through which ``nnUNetv2_train ... -tr
nnUNetTrainerTumorSynth`` finds the trainer (:mod:`train.nnunet.install`). Sub-commands keep the
front door's pattern: this module adds a sub-parser per action. nnunetv2 is looked up, not
imported, so ``--help`` needs nothing beyond the core install.
"""

from __future__ import annotations

import argparse

from synth.errors import UsageError
from synth.options import DEFAULT_COUNT, add_synthesis_options

from . import DEFAULT_PROBABILITY, TRAINER_NAME

__all__ = ["add_arguments", "run"]


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"probability {text!r} must be a number in [0, 1]") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"probability must be in [0, 1], got {value:g}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tumorsynth nnunet``: one sub-parser per action."""
    parser.description = "nnU-Net v2 with synthetic liver tumours inserted on the fly (see docs/nnunet.md)."
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = actions.add_parser(
        "install-trainer", help=f"make 'nnUNetv2_train -tr {TRAINER_NAME}' find the trainer",
        description="Write a small module into nnU-Net's trainer folder (nnunetv2/training/nnUNetTrainer/"
                    "<NAME>.py) that defines the trainer NAME with these options, so that nnUNetv2_train -tr NAME "
                    "finds it. Each training patch gets synthetic tumours in its liver with the given probability.")
    install.add_argument("--probability", type=_probability, default=DEFAULT_PROBABILITY,
                         help=f"chance that a training patch gets lesions (default: {DEFAULT_PROBABILITY})")
    add_synthesis_options(install, count_default=DEFAULT_COUNT)
    install.add_argument("--trainer-name", default=TRAINER_NAME,
                         help=f"class name, {TRAINER_NAME} or a longer name starting with it, for several option "
                              f"sets side by side (default: {TRAINER_NAME})")
    install.add_argument("--force", action="store_true", help="replace a module of that name with other options")
    install.add_argument("--uninstall", action="store_true", help="remove the module of that name instead")


def run(args: argparse.Namespace) -> int:
    """Install or remove the trainer module; returns the exit status."""
    from .install import install_trainer, uninstall_trainer

    try:
        if args.uninstall:
            removed = uninstall_trainer(args.trainer_name)
            print(f"removed {removed}" if removed else f"{args.trainer_name} was not installed; nothing to remove")
            return 0
        path, written = install_trainer(args.trainer_name, probability=args.probability, size=args.size,
                                        count=args.count, phenotype=args.phenotype, force=args.force)
    except (ModuleNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    state = "installed" if written else "already installed with these options"
    print(f"{args.trainer_name} {state}: {path}\nTrain with: nnUNetv2_train DATASET 3d_fullres FOLD -tr "
          f"{args.trainer_name}\nRemove with: tumorsynth nnunet install-trainer --uninstall --trainer-name "
          f"{args.trainer_name}")
    return 0
