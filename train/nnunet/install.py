"""Make ``nnUNetv2_train -tr nnUNetTrainerTumorSynth`` find the trainer.

nnU-Net looks a trainer up by class name among the modules of its own package folder
``nnunetv2/training/nnUNetTrainer/`` (searched recursively, top-level modules first). So the
trainer is installed as one small module there, ``<TrainerName>.py``, which imports
:class:`train.nnunet.trainer.nnUNetTrainerTumorSynth` and subclasses it with the chosen options
as class attributes. Several such modules (different names, different options) can live side by
side. The module carries a marker line: only a file with it is ever replaced or removed, and a
different one of ours only with ``force``. Should tumorsynth be uninstalled while the module
stays, the module defines nothing instead of breaking nnU-Net's search for other trainers.

nnunetv2 is found with ``importlib.util.find_spec``, without importing it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from augment import _core
from synth.options import DEFAULT_COUNT
from synth.types import TypeCount, TypePhenotype, TypeSize

from . import DEFAULT_PROBABILITY, TRAINER_NAME

__all__ = ["MARKER", "install_trainer", "trainer_folder", "trainer_module_text", "uninstall_trainer"]

MARKER = "# tumorsynth nnunet install-trainer module"
_NAME = re.compile(rf"^{TRAINER_NAME}[A-Za-z0-9_]*$")


def trainer_folder() -> Path:
    """nnU-Net's trainer folder, ``<nnunetv2>/training/nnUNetTrainer``.

    Raises:
        ModuleNotFoundError: nnunetv2 is not installed in this Python environment.
    """
    spec = importlib.util.find_spec("nnunetv2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("nnunetv2 is not installed in this Python environment; install it with "
                                  "pip install 'tumorsynth[nnunet]'", name="nnunetv2")
    folder = Path(list(spec.submodule_search_locations)[0]) / "training" / "nnUNetTrainer"
    if not (folder / "nnUNetTrainer.py").is_file():
        raise ModuleNotFoundError(f"{folder} holds no nnUNetTrainer.py: this nnunetv2 is not a version 2 layout "
                                  f"tumorsynth knows (2.5 or later)", name="nnunetv2")
    return folder


def check_trainer_name(name: str) -> str:
    """Return ``name`` if it is a trainer name this module may install, else raise ValueError."""
    if not isinstance(name, str) or not _NAME.match(name) or not name.isidentifier():
        raise ValueError(f"trainer name {name!r} must start with {TRAINER_NAME} and go on with letters, digits or "
                         f"'_' only (e.g. {TRAINER_NAME}Small), so that it never shadows one of nnU-Net's trainers")
    return name


def trainer_module_text(name: str = TRAINER_NAME, *, probability: float = DEFAULT_PROBABILITY,
                        size: TypeSize = "mix", count: TypeCount = DEFAULT_COUNT,
                        phenotype: TypePhenotype = "mix") -> str:
    """The source of the module that defines trainer ``name`` with these options (validated here)."""
    check_trainer_name(name)
    if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
        raise ValueError(f"probability must be a number in [0, 1]; got {probability!r}")
    _core.check_settings(size=size, count=count, phenotype=phenotype, liver_label=1, tumor_label=2,
                         on_failure="ignore", synthesis_options=None)
    return f'''"""nnU-Net trainer {name}: nnU-Net v2 with synthetic liver tumours inserted on the fly by tumorsynth.

Written by 'tumorsynth nnunet install-trainer'; remove it with
'tumorsynth nnunet install-trainer --uninstall --trainer-name {name}'.
"""
{MARKER}

try:
    from train.nnunet.trainer import nnUNetTrainerTumorSynth as _TumorSynthTrainer
except ModuleNotFoundError as error:
    if error.name not in ("train", "train.nnunet", "train.nnunet.trainer"):
        raise
    _TumorSynthTrainer = None  # tumorsynth is gone from this environment: leave nnU-Net's other trainers usable

if _TumorSynthTrainer is not None:

    class {name}(_TumorSynthTrainer):
        tumor_probability = {float(probability)!r}
        tumor_size = {size!r}
        tumor_count = {count!r}
        tumor_phenotype = {phenotype!r}
'''


def _module_path(name: str) -> Path:
    return trainer_folder() / f"{check_trainer_name(name)}.py"


def install_trainer(name: str = TRAINER_NAME, *, probability: float = DEFAULT_PROBABILITY,
                    size: TypeSize = "mix", count: TypeCount = DEFAULT_COUNT, phenotype: TypePhenotype = "mix",
                    force: bool = False) -> tuple[Path, bool]:
    """Write the trainer module into nnU-Net's trainer folder, atomically.

    Returns:
        ``(path, written)``; ``written`` is False when the same module was already there.

    Raises:
        ModuleNotFoundError: nnunetv2 is not installed.
        ValueError: bad name or options, or a different file is at that path and ``force`` is
            False (a file without tumorsynth's marker is never replaced).
    """
    from synth.io import atomic_output_path

    text = trainer_module_text(name, probability=probability, size=size, count=count, phenotype=phenotype)
    path = _module_path(name)
    if path.exists():
        existing = path.read_text(encoding="utf-8", errors="replace")
        if existing == text:
            return path, False
        if MARKER not in existing:
            raise ValueError(f"{path} exists and was not written by tumorsynth; choose another --trainer-name")
        if not force:
            raise ValueError(f"{path} already defines {name} with other options; give --force to replace it, or "
                             f"choose another --trainer-name")
    with atomic_output_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path, True


def uninstall_trainer(name: str = TRAINER_NAME) -> Path | None:
    """Remove the trainer module that :func:`install_trainer` wrote; return its path, or None when
    there was none.

    Raises:
        ValueError: the file at that path was not written by tumorsynth (it is left alone).
    """
    path = _module_path(name)
    if not path.exists():
        return None
    if MARKER not in path.read_text(encoding="utf-8", errors="replace"):
        raise ValueError(f"{path} was not written by tumorsynth; it is left alone")
    path.unlink()
    return path
