"""Sliding-window prediction, tumour Dice for validation, and loading saved models."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from synth.labels import Label

from ..model import build_model
from .config import TrainConfig
from .files import load_torch
from .sampling import normalise_hu

__all__ = ["load_model", "predict_case", "tumor_dice", "validate"]


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=enabled and device.type == "cuda")


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The module a DataParallel / DistributedDataParallel wrapper holds (its ``.module``), else ``model``."""
    inner = model.module if hasattr(model, "module") else model
    assert isinstance(inner, torch.nn.Module), f"{type(model).__name__}.module is not a torch.nn.Module"
    return inner


@torch.no_grad()
def predict_case(model: torch.nn.Module, case, config: TrainConfig, *, device="cpu") -> np.ndarray:
    """uint8 label map (0/1/2) of ``case.image``'s shape.

    MONAI ``sliding_window_inference`` with ``config.patch_size`` windows, ``config.sw_overlap``
    overlap and Gaussian blending, then the argmax over classes (the argmax of the softmax).
    The model is put in eval mode; inputs are not changed.
    """
    from monai.inferers import sliding_window_inference

    device = torch.device(device)
    module = _unwrapped(model)
    module.eval()
    if config.network == "unet2d":
        return _predict_slices(module, case, config, device)
    image = torch.from_numpy(normalise_hu(case.image, config.hu_window))[None, None].to(device)
    with _autocast(device, config.amp):
        logits = sliding_window_inference(image, roi_size=tuple(config.patch_size), sw_batch_size=2,
                                          predictor=module, overlap=config.sw_overlap, mode="gaussian")
    assert isinstance(logits, torch.Tensor), "a segmentation model in eval mode returns one tensor"
    return logits.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()


def _predict_slices(module: torch.nn.Module, case, config: TrainConfig, device: torch.device,
                    chunk: int = 16) -> np.ndarray:
    """The 2.5D slice model, slice by slice: each axial slice with its neighbours as channels (the
    volume's end slices repeated beyond it), a 2D sliding window over the plane."""
    from monai.inferers import sliding_window_inference

    unet = module.unet
    assert isinstance(unet, torch.nn.Module), "network 'unet2d' is a SliceUNet with a 2D .unet"
    slices = config.patch_size[2]
    half = slices // 2
    image = np.pad(normalise_hu(case.image, config.hu_window), ((0, 0), (0, 0), (half, half)), mode="edge")
    depth = case.image.shape[2]
    out = np.empty(case.image.shape, dtype=np.uint8)
    for start in range(0, depth, chunk):
        stop = min(depth, start + chunk)
        stacks = np.stack([image[:, :, z:z + slices] for z in range(start, stop)])  # (n, X, Y, S)
        x = torch.from_numpy(stacks).permute(0, 3, 1, 2).to(device)
        with _autocast(device, config.amp):
            logits = sliding_window_inference(x, roi_size=tuple(config.patch_size[:2]), sw_batch_size=4,
                                              predictor=unet, overlap=config.sw_overlap, mode="gaussian")
        assert isinstance(logits, torch.Tensor), "a segmentation model in eval mode returns one tensor"
        out[:, :, start:stop] = logits.argmax(dim=1).permute(1, 2, 0).to(torch.uint8).cpu().numpy()
    return out


def tumor_dice(prediction: np.ndarray, label: np.ndarray) -> float:
    """Dice of tumour (label 2) voxels; 1.0 when neither has tumour (nothing to find, none found)."""
    pred, truth = prediction == Label.TUMOR, label == Label.TUMOR
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def validate(model: torch.nn.Module, cases: Sequence, config: TrainConfig, *, device="cpu") -> float:
    """Mean tumour Dice over ``cases`` (NaN without cases); leaves the model in training mode."""
    if not cases:
        return float("nan")
    module = _unwrapped(model)
    try:
        scores = [tumor_dice(predict_case(module, c, config, device=device), c.label) for c in cases]
    finally:
        module.train()
    return float(np.mean(scores))


def load_model(path, device="cpu") -> tuple[torch.nn.Module, TrainConfig]:
    """Model and config from ``model.pt``, ``best.pt`` or ``checkpoint.pt`` (eval mode).

    Files are read with ``torch.load(weights_only=True)``: only tensors and plain containers,
    never arbitrary pickled objects. A truncated or corrupt file is a ValueError naming it.
    """
    model, config, _ = load_model_file(path, device)
    return model, config


def load_model_file(path, device="cpu") -> tuple[torch.nn.Module, TrainConfig, dict]:
    """:func:`load_model`, plus the file's whole content (e.g. ``spacing_mm``), read once."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no model file at {path}")
    state = load_torch(path, device, advice=(
        "copy it again, or load another file of its run folder (model.pt, best.pt or checkpoint.pt)"))
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not a tumorsynth model file (needs 'model' and 'config' entries)")
    config = TrainConfig.from_dict(state["config"])
    model = build_model(network=config.network, filters=config.filters,
                        deep_supervision=config.deep_supervision, patch_size=config.patch_size)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, state
