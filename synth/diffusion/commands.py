"""``tumorsynth diffusion train``: train the diffusion synthesiser on a folder of cases.

torch, MONAI and diffusers are imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError, input_errors
from ..options import parse_positive_int, parse_seed


def _train(args: argparse.Namespace) -> int:
    from ..cases import find_cases
    from . import TINY, DiffusionConfig, train_diffusion

    try:
        cases = find_cases(args.data)
    except ValueError as exc:
        raise UsageError(f"--data {exc}") from None
    settings = dict(TINY) if args.tiny else {}
    if args.crop is not None:
        settings["crop_size"] = args.crop
    if args.spacing is not None:
        settings["spacing_mm"] = args.spacing
    with input_errors():
        config = DiffusionConfig(**settings)
        result = train_diffusion(cases, args.out, config=config,
                                 steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                                 resume=args.resume, learning_rate=args.lr)
    print(f"trained {result.steps} steps on {result.n_crops} crops "
          f"(final loss {result.final_loss:.4f}); model in {args.out}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` subcommand to the ``diffusion`` parser."""
    parser.description = "The diffusion synthesiser (docs/diffusion.md)."
    sub = parser.add_subparsers(dest="diffusion_command", required=True, metavar="COMMAND")
    train = sub.add_parser(
        "train",
        help="train a model on a folder of annotated cases",
        description="Train on crops around the annotated tumours (label 2) of every case, plus "
        "healthy-liver crops with random lesion-shaped masks. Writes config.json, "
        "weights.safetensors (EMA), losses.csv, loss_curve.png and checkpoint/.",
    )
    train.add_argument("--data", required=True, type=Path, help="folder of cases (LiTS, MSD, "
                       "images/ + masks/) or CSV manifest")
    train.add_argument("--out", required=True, type=Path, help="model folder")
    train.add_argument("--steps", type=parse_positive_int, default=2000, help="optimiser steps "
                       "(total, also when resuming; default: 2000)")
    train.add_argument("--crop", type=parse_positive_int, help="crop side in voxels (default 32)")
    train.add_argument("--spacing", type=float, help="model voxel size in mm (default 1.0)")
    train.add_argument("--batch-size", type=parse_positive_int, default=4, help="default: 4")
    train.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate (default 2e-4)")
    train.add_argument("--seed", type=parse_seed, default=0, help="default: 0")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    train.add_argument("--tiny", action="store_true", help="the tiny test-size network")


def run(args: argparse.Namespace) -> int:
    """Run the ``diffusion`` subcommand parsed by :func:`add_arguments`."""
    if args.diffusion_command == "train":
        return _train(args)
    raise UsageError(f"unknown diffusion command {args.diffusion_command!r}")
