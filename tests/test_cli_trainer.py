"""The trainer's commands are reachable from ``tumorsynth`` and load the trainer only when run."""

import subprocess
import sys

import pytest

from tumorsynth.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_is_its_own(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tumorsynth {command}")


def test_trainer_command_rejects_unknown_option(capsys):
    assert main(["ablate", "--profile", "cpu-quick", "--no-such-option"]) == 2
    assert "--no-such-option" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["insert", "--help"], ["synthesize", "--help"]])
def test_front_door_and_synth_commands_do_not_import_the_trainer(argv):
    code = ("import sys, contextlib, io\n"
            "from tumorsynth.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main({argv!r})\n"
            "print(sorted(m for m in ('torch', 'monai', 'train', 'augment') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
