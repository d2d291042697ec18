"""The training loop: patch sampling with synthetic tumours (heuristic or diffusion) and optional
TorchIO augmentation (``train.loop.augmentation``), resumable training, prediction.

See ``docs/training.md``.
"""

from .config import TrainConfig
from .inference import load_model, predict_case, tumor_dice, validate
from .sampling import PatchSampler, normalise_hu, step_rng
from .trainer import TrainResult, poly_learning_rate, train_model

__all__ = ["PatchSampler", "TrainConfig", "TrainResult", "load_model", "normalise_hu",
           "poly_learning_rate", "predict_case", "step_rng", "train_model", "tumor_dice", "validate"]


def __getattr__(name: str):
    if name == "tumour_dice":  # deprecated spelling
        from synth.deprecation import warn_renamed

        warn_renamed("train.loop.tumour_dice", "train.loop.tumor_dice")
        return tumor_dice
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
