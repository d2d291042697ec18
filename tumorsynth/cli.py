"""The ``tumorsynth`` command line: the front door over the library packages' own commands.

Each command lives beside the code it runs, in its package's ``commands`` module (as diffusers'
``commands/``): a command is an object (a module, or a record) with

* ``add_arguments(parser)``: add its options to an ``argparse.ArgumentParser``;
* ``run(args) -> int``: do the work and return the exit status.

This front door only knows the table :data:`COMMANDS` (name, where the command lives, one line of
help) and imports a command's module when that command runs, so ``tumorsynth --help`` answers at
once and ``tumorsynth insert`` never loads torch or the trainer.

Bad input ends with one line ``tumorsynth: error: ...`` on stderr and exit status 2 (commands
raise :class:`synth.errors.UsageError`); an output folder that cannot be written with status 1;
Ctrl-C with status 130. Never a traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple

from synth import __version__
from synth.errors import PROG, UsageError

__all__ = ["COMMANDS", "CommandEntry", "build_parser", "main"]


class CommandEntry(NamedTuple):
    """Where a command lives: ``"package.module"`` or ``"package.module:attribute"``, and its help."""

    target: str
    help: str


# Bottom layer first: the synthesiser's commands, then the trainer's.
COMMANDS: dict[str, CommandEntry] = {
    "insert": CommandEntry("synth.commands:insert", "insert tumours into one CT (NIfTI)"),
    "demo": CommandEntry("synth.commands:demo", "run insert on the built-in phantom"),
    "synthesize": CommandEntry("synth.commands:synthesize",
                               "build a synthetic data set from a folder of cases (resumable)"),
    "export": CommandEntry("synth.commands:export", "write a data set in nnU-Net v2's layout ('export nnunet')"),
    "bank": CommandEntry("synth.copy_paste.commands", "build a bank of real lesions for copy-paste ('bank build')"),
    "realism": CommandEntry("synth.realism.commands", "measure how close synthetic lesions are to real ones"),
    "diffusion": CommandEntry("synth.diffusion.commands", "train the diffusion synthesiser"),
    "evaluate": CommandEntry("train.metrics.commands", "lesion-wise evaluation of predicted tumours"),
    "data": CommandEntry("train.data.commands", "fetch the LiTS-117 sample; check a data set's files"),
    "train": CommandEntry("train.loop.commands", "train the bundled U-Net (3D DynUNet or 2.5D slice model)"),
    "predict": CommandEntry("train.predict.commands", "segment new scans with a trained model"),
    "ablate": CommandEntry("train.ablation.commands",
                           "train with and without synthetic tumours; report per lesion size"),
    "nnunet": CommandEntry("train.nnunet.commands",
                           "nnU-Net v2 with on-the-fly synthetic tumours ('nnunet install-trainer')"),
}


def load_command(name: str) -> Any:
    """The command object of ``name`` (imports its module)."""
    module_name, _, attribute = COMMANDS[name].target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: one entry per command, whose own options are parsed by the command."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Realistic synthetic liver tumours for CT: insert, build data sets, "
        "measure realism, train and evaluate (run 'tumorsynth COMMAND --help').")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, entry in COMMANDS.items():
        # add_help=False: '--help' goes on to the command's own parser, which knows its options.
        commands.add_parser(name, help=entry.help, add_help=False)
    return parser


def command_parser(name: str, command: Any) -> argparse.ArgumentParser:
    """The parser of one command, with its options."""
    parser = argparse.ArgumentParser(prog=f"{PROG} {name}", description=COMMANDS[name].help)
    command.add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 some work failed, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # The command's name only: its options belong to its own parser.
        name = build_parser().parse_args(argv[:1] if argv and not argv[0].startswith("-") else argv).command
        command = load_command(name)
        args = command_parser(name, command).parse_args(argv[1:])
    except SystemExit as exc:  # --help, or argparse already printed the problem
        return int(exc.code or 0)
    try:
        return int(command.run(args))
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an output folder that cannot be written
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
