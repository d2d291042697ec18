"""``tumorsynth train``: train the DynUNet on a data set, optionally with synthetic tumours.

Heavy imports (torch, MONAI, the data loaders) happen inside :func:`run`, so building the CLI
parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_arguments", "run"]


def _patch(text: str) -> tuple[int, int, int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--patch {text!r}: expected N or X,Y,Z voxels") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"--patch {text!r}: expected N or X,Y,Z positive voxels")
    return values[0], values[1], values[2]


def _hosts(text: str) -> int:
    kind, _, count = text.partition(":")
    if kind != "phantom" or not count.isdigit():
        raise argparse.ArgumentTypeError(f"--hosts {text!r}: expected phantom:N, e.g. phantom:4")
    return int(count)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``tumorsynth train``."""
    parser.add_argument("--data", type=Path, required=True,
                        help="LiTS folder, MSD Task03 folder or CSV manifest (train.data.load_cases)")
    parser.add_argument("--out", type=Path, required=True,
                        help="run folder: checkpoint.pt, best.pt, model.pt, log.csv, log.json, config.json")
    parser.add_argument("--config", type=Path, help="JSON file of TrainConfig fields")
    parser.add_argument("--steps", type=int, help="training steps (overrides the config)")
    parser.add_argument("--patch", type=_patch, help="patch size in voxels: N or X,Y,Z")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--hosts", type=_hosts, metavar="phantom:N",
                        help="add N phantom livers as hosts for synthetic tumours (besides the "
                             "tumour-free training cases)")
    parser.add_argument("--synthetic-probability", type=float,
                        help="share of samples with synthetic tumours (overrides the config)")
    parser.add_argument("--synthetic-method", choices=("heuristic", "diffusion", "copy-paste"),
                        help="synthesiser of the synthetic tumours (overrides the config)")
    parser.add_argument("--synthetic-model", type=Path,
                        help="diffusion model folder for --synthetic-method diffusion (overrides the config)")
    parser.add_argument("--synthetic-bank", type=Path,
                        help="lesion bank folder for --synthetic-method copy-paste (tumorsynth bank build; "
                             "overrides the config)")
    parser.add_argument("--synthetic-quality-gate", type=Path, metavar="GATE_JSON",
                        help="quality gate that redraws unrealistic synthetic lesions (tumorsynth realism "
                             "--save-gate; overrides the config)")
    # The values of train.loop.config.AUGMENTATIONS (not imported: that loads torch).
    parser.add_argument("--augmentation", choices=("none", "torchio", "device"),
                        help="spatial and intensity augmentation of every patch: 'torchio' on the CPU, "
                             "'device' batched on the training device (overrides the config)")
    parser.add_argument("--seed", type=int, help="seed of the run and of the case split (overrides the config)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of cases for validation")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="share of cases held out for testing (not used here; recorded in split.json)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides the config)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _config(args):
    from .config import TrainConfig

    fields = {}
    if args.config is not None:
        try:
            fields = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"--config {args.config}: {exc}") from None
        if not isinstance(fields, dict):
            raise ValueError(f"--config {args.config}: expected a JSON object of TrainConfig fields")
    overrides = {"steps": args.steps, "patch_size": args.patch, "seed": args.seed, "device": args.device,
                 "synthetic_probability": args.synthetic_probability,
                 "synthetic_method": args.synthetic_method, "augmentation": args.augmentation,
                 "synthetic_model": None if args.synthetic_model is None else str(args.synthetic_model),
                 "synthetic_bank": None if args.synthetic_bank is None else str(args.synthetic_bank),
                 "synthetic_quality_gate": (None if args.synthetic_quality_gate is None
                                            else str(args.synthetic_quality_gate))}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(fields)


def run(args) -> int:
    """Load and split the cases, train, and print where the model is. Returns the exit code."""
    import os
    import sys

    from train.data import healthy_hosts, load_cases, phantom_hosts, split_cases

    from .files import atomic_write_bytes
    from .trainer import train_model

    try:
        config = _config(args)
        if config.synthetic_quality_gate is not None:  # before the cases are loaded, not after
            from .sampling import load_quality_gate

            load_quality_gate(config.synthetic_quality_gate)
    except (TypeError, ValueError) as exc:
        print(f"tumorsynth train: {exc}", file=sys.stderr)
        return 2
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes and reports
    cases = load_cases(args.data, progress=main and not args.quiet)
    if not cases:
        print(f"tumorsynth train: no cases found in {args.data}", file=sys.stderr)
        return 2
    split = split_cases([c.case_id for c in cases], val_fraction=args.val_fraction,
                        test_fraction=args.test_fraction, seed=config.seed)
    by_id = {c.case_id: c for c in cases}
    train_cases = [by_id[i] for i in split.train]
    val_cases = [by_id[i] for i in split.val]
    hosts = healthy_hosts(train_cases)
    if args.hosts:
        spacing = tuple(float(s) for s in train_cases[0].spacing)
        hosts += phantom_hosts(args.hosts, spacing=spacing, seed=config.seed)
    if config.synthetic_probability > 0 and not hosts:
        print("tumorsynth train: synthetic tumours need hosts: no tumour-free training case; "
              "add --hosts phantom:N", file=sys.stderr)
        return 2
    if main:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.out / "config.json", (json.dumps(config.to_dict(), indent=1) + "\n").encode())
        atomic_write_bytes(args.out / "split.json", (json.dumps(
            {"train": split.train, "val": split.val, "test": split.test}, indent=1) + "\n").encode())
    try:
        result = train_model(config, train_cases, val_cases=val_cases, hosts=hosts, out_dir=args.out,
                             resume=args.resume, progress=not args.quiet)
    except ValueError as exc:
        print(f"tumorsynth train: {exc}", file=sys.stderr)
        return 2
    if not main:
        return 0
    last = result.history[-1] if result.history else {}
    print(f"trained {result.steps} steps ({len(train_cases)} training, {len(val_cases)} validation cases, "
          f"{len(hosts)} hosts); final loss {last.get('loss', float('nan')):.4f}, "
          f"validation tumour Dice {last.get('val_dice')}")
    print(f"model: {result.model_path}")
    return 0
