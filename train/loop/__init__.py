"""The training loop: patch sampling with synthetic tumours (heuristic or diffusion) and optional
TorchIO augmentation (``train.loop.augmentation``), resumable training, prediction.

See ``docs/training.md``.
"""

from .config import TrainConfig
from .inference import load_model, predict_case, tumour_dice, validate
from .sampling import PatchSampler, normalise_hu, step_rng
from .trainer import TrainResult, poly_learning_rate, train_model

__all__ = ["PatchSampler", "TrainConfig", "TrainResult", "load_model", "normalise_hu",
           "poly_learning_rate", "predict_case", "step_rng", "train_model", "tumour_dice", "validate"]
