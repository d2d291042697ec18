"""tumorsynth's front door: the ``tumorsynth`` command line (:mod:`tumorsynth.cli`).

The library is in the packages below it: :mod:`synth` (the synthesiser, its realism measures and
the diffusion model), :mod:`augment` (TorchIO and MONAI transforms) and :mod:`train` (trainer,
evaluator, ablation). Imports only point down: synth <- augment <- train <- tumorsynth.
"""

from synth import __version__

__all__ = ["__version__"]
