"""TorchIO (and MONAI) transforms over tumorsynth's synthesiser.

>>> import torchio as tio
>>> from augment import RandomTumorInsertion
>>> transform = tio.Compose([RandomTumorInsertion(size="small"), tio.RandomNoise()])

The transforms are thin wrappers: every lesion comes from :mod:`synth`. torch and TorchIO are
imported here; MONAI only when :class:`RandTumorInsertiond` is first used, so TorchIO users do not
need it installed.
"""

from .contrast_phase import ContrastPhase, RandomContrastPhase
from .ct_noise import CTNoise, RandomCTNoise
from .hu_window import HUWindow
from .tumor_insertion import RandomTumorInsertion, TumorInsertion

__all__ = [
    "CTNoise",
    "ContrastPhase",
    "HUWindow",
    "RandTumorInsertiond",
    "RandomCTNoise",
    "RandomContrastPhase",
    "RandomTumorInsertion",
    "TumorInsertion",
]


def __getattr__(name):
    # MONAI is optional: import its transform on first use only.
    if name == "RandTumorInsertiond":
        from .monai_transforms import RandTumorInsertiond

        return RandTumorInsertiond
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
