"""The trainer's commands are reachable from ``tumorsynth`` and load the trainer only when run."""

import subprocess
import sys

import pytest

from synth.cli import TRAINER_COMMANDS, main


@pytest.mark.parametrize("command", sorted(TRAINER_COMMANDS))
def test_trainer_command_help_is_its_own(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tumorsynth {command}")


def test_trainer_command_rejects_unknown_option(capsys):
    assert main(["ablate", "--profile", "cpu-quick", "--no-such-option"]) == 2
    assert "--no-such-option" in capsys.readouterr().err


def test_cli_parser_does_not_import_the_trainer():
    code = ("import sys; from synth.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'monai', 'train') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
