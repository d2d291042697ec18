"""Training: DDPM noise prediction on tumour and healthy-liver crops, EMA weights, checkpoints.

Each step draws a batch of crops (random flips along each axis), a random timestep per crop and
Gaussian noise, and minimises the mean squared error between the predicted and the true noise
over the voxels of the region to generate only (the rest of the crop is known at sampling time
and replaced, so the network's output there is never used). AdamW with gradient clipping;
bfloat16 autocast on CUDA; an exponential moving average (EMA) of the weights with the usual
warm-up ``min(decay, (1 + step) / (10 + step))`` is what gets saved as the model.

Every random draw of step ``k`` comes from generators seeded by ``(seed, k)``, so a resumed run
continues exactly as an uninterrupted one would. Checkpoints (``OUT/checkpoint/``: network, EMA,
optimiser state as safetensors, the step and the settings as JSON) are written to a temporary
folder and swapped in, so an interrupted write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_output_path
from ..seeding import derive_seed, rng_for
from .config import DiffusionConfig
from .sampling import conditioning_channels, training_scheduler
from .training_data import CropSet, case_arrays, collect_crops
from .weights import DiffusionModel, build_unet, check_tensors, read_tensors, save_model, save_tensors_atomic

CHECKPOINT = "checkpoint"
LOSSES_CSV = "losses.csv"
LOSS_PNG = "loss_curve.png"


@dataclass
class TrainingResult:
    """What :func:`train_diffusion` returns: the EMA model (also saved in ``out_dir``) and the
    per-step losses of the whole run (resumed steps included)."""

    model: DiffusionModel
    out_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    n_crops: int = 0
    n_tumor_crops: int = 0
    n_healthy_crops: int = 0

    @property
    def final_loss(self) -> float:
        """Mean loss over the last 10 % of steps (at least one)."""
        return _tail_mean(self.losses)


def train_diffusion(data, out_dir, *, config: DiffusionConfig | None = None, steps: int = 2000,
                    batch_size: int = 4, learning_rate: float = 2e-4, weight_decay: float = 1e-4,
                    ema_decay: float = 0.999, healthy_crops: int | None = None, seed: int = 0,
                    resume: bool = False, checkpoint_every: int = 250, device=None,
                    progress: bool = True, crops: CropSet | None = None) -> TrainingResult:
    """Train a diffusion model and write it to ``out_dir``.

    Parameters
    ----------
    data : folder, or sequence of cases
        See :func:`synth.diffusion.training_data.case_arrays`: a data set folder or manifest, NIfTI
        path pairs, ``(volume, label, spacing)`` triples or :mod:`synth.cases` records; labels
        0 background / 1 liver / 2 tumour. Ignored when ``crops`` is given.
    out_dir : folder
        Receives ``config.json`` and ``weights.safetensors`` (the EMA weights), ``losses.csv``,
        ``loss_curve.png`` and ``checkpoint/``.
    config : DiffusionConfig
        Network and crop settings (default :class:`DiffusionConfig()`; on resume, the
        checkpoint's, and a different one given here is an error).
    steps : int
        Total optimiser steps, resumed ones included.
    batch_size, learning_rate, weight_decay, ema_decay
        AdamW and EMA settings.
    healthy_crops : int, optional
        Number of healthy-liver crops (default: half the tumour crops, at least 4).
    seed : int
        Seeds the crops, the network's initialisation and every batch.
    resume : bool
        Continue from ``out_dir/checkpoint``.
    checkpoint_every : int
        Steps between checkpoints (one is always written at the end).
    device : str, optional
        Default CUDA when available, else CPU.
    crops : CropSet, optional
        Precomputed crops (tests, repeated runs).
    """
    out_dir = Path(out_dir)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    if batch_size < 1 or checkpoint_every < 1:
        raise ValueError("batch_size and checkpoint_every must be at least 1")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1); got {ema_decay}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    state = _read_checkpoint(out_dir / CHECKPOINT) if resume else None
    if resume and state is None:
        raise FileNotFoundError(f"{out_dir / CHECKPOINT}: no checkpoint to resume from")
    if state is not None:
        saved = DiffusionConfig.from_dict(state["trainer"]["config"], source=str(out_dir / CHECKPOINT))
        if config is not None and config != saved:
            raise ValueError(f"{out_dir / CHECKPOINT}: the checkpoint was trained with another config; "
                             f"resume without config= (or the same one)")
        config, seed = saved, state["trainer"]["seed"]
    config = config or DiffusionConfig()
    if crops is None:
        crops = collect_crops(case_arrays(data), config, healthy_crops=healthy_crops, seed=seed)
    if crops.image.shape[1:] != (config.crop_size,) * 3:
        raise ValueError(f"crops are {crops.image.shape[1:]}, the config needs {config.crop_size}^3")

    unet = build_unet(config, seed=seed).to(device)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=learning_rate, weight_decay=weight_decay)
    start, losses = 0, []
    if state is not None:
        start, losses = _restore(state, unet, ema, optimiser, out_dir / CHECKPOINT)
    scheduler = training_scheduler(config)
    image, region, lesion = (torch.from_numpy(a.astype(np.float32)) for a in (crops.image, crops.region, crops.lesion))
    info = dict(crops=len(crops), tumor_crops=crops.n_tumor, healthy_crops=crops.n_healthy,
                batch_size=batch_size, learning_rate=learning_rate, ema_decay=ema_decay, seed=seed)
    trainer = dict(config=config.to_dict(), **info)

    from tqdm.auto import tqdm

    bar = tqdm(range(start, steps), initial=start, total=steps, desc="diffusion train", unit="step",
               disable=not progress)
    unet.train()
    for step in bar:
        batch = _batch(step, seed, batch_size, image, region, lesion)
        loss = _loss(unet, scheduler, batch, step, seed, device)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimiser.step()
        _update_ema(ema, unet, min(ema_decay, (1 + step) / (10 + step)))
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            _write_checkpoint(out_dir, unet, ema, optimiser, losses, dict(trainer, step=step + 1))
    final_loss = round(_tail_mean(losses), 6) if losses else None
    model = DiffusionModel(config, ema, dict(info, steps=steps, final_loss=final_loss))
    save_model(model, out_dir)
    _write_losses(out_dir, losses)
    return TrainingResult(model, out_dir, steps, losses, len(crops), crops.n_tumor, crops.n_healthy)


def _batch(step: int, seed: int, batch_size: int, image, region, lesion):
    """The crops of step ``step``, each flipped along a random set of axes."""
    rng = rng_for(seed, step)
    picks = rng.integers(0, image.shape[0], size=batch_size)
    flips = rng.random((batch_size, 3)) < 0.5
    out = []
    for source in (image, region, lesion):
        crops = []
        for i, f in zip(picks, flips):
            axes = [a for a in range(3) if f[a]]
            crops.append(source[i].flip(axes) if axes else source[i])
        out.append(torch.stack(crops)[:, None])
    return out


def _loss(unet, scheduler, batch, step: int, seed: int, device) -> torch.Tensor:
    """Noise-prediction MSE over the region to generate, for one batch at step ``step``."""
    x0, region, lesion = batch
    generator = torch.Generator("cpu").manual_seed(derive_seed(seed, step, 1, bits=32))
    noise = torch.randn(x0.shape, generator=generator)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator)
    noisy = scheduler.add_noise(x0, noise, timesteps)
    inputs = torch.cat([noisy, conditioning_channels(x0, region, lesion)], dim=1).to(device)
    noise, region = noise.to(device), region.to(device)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        predicted = unet(inputs, timesteps=timesteps.to(device))
    squared = (predicted.float() - noise) ** 2 * region
    return squared.sum() / region.sum().clamp(min=1.0)


@torch.no_grad()
def evaluation_loss(model: DiffusionModel, crops: CropSet, *, seed: int = 0, batches: int = 4,
                    batch_size: int = 4) -> float:
    """The training loss of ``model`` on fixed batches of ``crops`` (same noise and timesteps for
    any model): comparable before and after training."""
    scheduler = training_scheduler(model.config)
    image, region, lesion = (torch.from_numpy(a.astype(np.float32)) for a in (crops.image, crops.region, crops.lesion))
    was_training = model.unet.training
    model.unet.eval()
    total = [float(_loss(model.unet, scheduler, _batch(k, seed, batch_size, image, region, lesion), k,
                         seed, model.device)) for k in range(batches)]
    model.unet.train(was_training)
    return float(np.mean(total))


@torch.no_grad()
def _update_ema(ema, unet, decay: float) -> None:
    for target, source in zip(ema.parameters(), unet.parameters()):
        target.lerp_(source.detach(), 1.0 - decay)
    for target, source in zip(ema.buffers(), unet.buffers()):
        target.copy_(source)


def _tail_mean(losses) -> float:
    """Mean of the last 10 % of ``losses`` (at least one); NaN when there are none."""
    tail = losses[-max(1, len(losses) // 10):]
    return float(np.mean(tail)) if tail else float("nan")


# --- checkpoints ----------------------------------------------------------------------------
def _write_checkpoint(out_dir: Path, unet, ema, optimiser, losses, trainer: dict) -> None:
    """Write checkpoint/ via a temporary folder swapped in, then losses.csv and the curve."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final, tmp, old = (out_dir / name for name in (CHECKPOINT, f".{CHECKPOINT}.tmp", f".{CHECKPOINT}.old"))
    for folder in (tmp, old):
        shutil.rmtree(folder, ignore_errors=True)
    tmp.mkdir()
    save_tensors_atomic(dict(unet.state_dict()), tmp / "model.safetensors")
    save_tensors_atomic(dict(ema.state_dict()), tmp / "ema.safetensors")
    opt_state = optimiser.state_dict()
    tensors = {"losses": torch.tensor(losses, dtype=torch.float64)}
    for pid, values in opt_state["state"].items():
        for name, value in values.items():
            tensors[f"{pid}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    save_tensors_atomic(tensors, tmp / "optimizer.safetensors")
    (tmp / "trainer.json").write_text(json.dumps(dict(trainer, param_groups=opt_state["param_groups"]), indent=2))
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    _write_losses(out_dir, losses)


def _read_checkpoint(folder: Path) -> dict | None:
    if not folder.is_dir():
        old = folder.with_name(f".{CHECKPOINT}.old")  # a swap interrupted halfway
        if not old.is_dir():
            return None
        folder = old
    path = folder / "trainer.json"
    try:
        trainer = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: unreadable checkpoint state ({error})") from None
    return {"folder": folder, "trainer": trainer}


def _restore(state, unet, ema, optimiser, where: Path):
    folder = state["folder"]
    for module, name in ((unet, "model.safetensors"), (ema, "ema.safetensors")):
        tensors = read_tensors(folder / name)
        check_tensors(tensors, module.state_dict(), folder / name)
        module.load_state_dict(tensors)
    tensors = read_tensors(folder / "optimizer.safetensors")
    losses = [float(v) for v in tensors.pop("losses")]
    opt_state: dict = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        opt_state.setdefault(int(pid), {})[name] = value
    optimiser.load_state_dict({"state": opt_state, "param_groups": state["trainer"]["param_groups"]})
    step = int(state["trainer"]["step"])
    if len(losses) != step:
        raise ValueError(f"{where}: checkpoint holds {len(losses)} losses for {step} steps")
    return step, losses


def _write_losses(out_dir: Path, losses) -> None:
    """losses.csv (step, loss, 50-step running mean) and loss_curve.png, each atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["step", "loss", "running_mean_50"])
    values = np.asarray(losses, dtype=np.float64)
    running = _running_mean(values, 50)
    for k, (v, r) in enumerate(zip(values, running), start=1):
        writer.writerow([k, f"{v:.6f}", f"{r:.6f}"])
    with atomic_output_path(out_dir / LOSSES_CSV) as tmp:
        tmp.write_text(text.getvalue())

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = np.arange(1, values.size + 1)
    ax.plot(steps, values, lw=0.6, alpha=0.4, label="loss per step")
    ax.plot(steps, running, lw=1.5, label="running mean (50 steps)")
    ax.set_xlabel("step")
    ax.set_ylabel("noise MSE over the generated region")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    with atomic_output_path(out_dir / LOSS_PNG) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    if values.size == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    k = np.arange(1, values.size + 1)
    lo = np.maximum(0, k - window)
    return (cumulative[k] - cumulative[lo]) / (k - lo)
