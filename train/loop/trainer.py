"""The training loop: patches, SGD with a poly rate, AMP on CUDA, validation, resumable checkpoints.

Files in ``out_dir`` (written by rank 0 only, each atomically):

``checkpoint.pt``  model, optimizer and GradScaler states, step, config dict, history, best Dice
``best.pt``        weights and config at the best validation tumour Dice
``model.pt``       final weights and config
``log.csv``, ``log.json``  one row per step: step, loss, lr, val_dice, seconds
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..losses import build_loss, head_outputs
from ..model import build_model, deep_supervision_heads
from .augmentation import augment_on_device, device_augmentation_generator
from .config import RESUMABLE_CHANGES, TrainConfig
from .distributed import setup_distributed
from .files import load_torch, save_torch, write_logs
from .inference import validate
from .sampling import PatchSampler, check_diffusion_folder, load_bank, load_diffusion_model, load_quality_gate

__all__ = ["TrainResult", "poly_learning_rate", "train_model"]

log = logging.getLogger(__name__)

MOMENTUM = 0.99
GRADIENT_CLIP = 12.0  # nnU-Net's gradient-norm clip


@dataclass
class TrainResult:
    """Where a run's files are and what it did.

    ``model_path`` is ``model.pt`` once the run reached ``config.steps``, else ``checkpoint.pt``.
    ``steps`` counts the steps done in the whole run so far (all calls together).
    """

    out_dir: Path
    model_path: Path
    steps: int
    history: list[dict] = field(default_factory=list)


def poly_learning_rate(config: TrainConfig, step: int) -> float:
    """``learning_rate * (1 - step / steps) ** poly_power`` for the 0-based ``step``."""
    return config.learning_rate * (1.0 - step / config.steps) ** config.poly_power


class _StepBatches(torch.utils.data.Dataset):
    """Item ``s`` is the whole batch of step ``s``: loader workers cannot change what a step sees."""

    def __init__(self, sampler: PatchSampler, rank: int, steps: int):
        self.sampler, self.rank, self.steps = sampler, rank, steps

    def __len__(self):
        return self.steps

    def __getitem__(self, step):
        images, labels, spacing = self.sampler.batch_with_spacing(step, self.rank)
        return torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(spacing)


@contextlib.contextmanager
def _deterministic(enabled: bool):
    """Deterministic algorithms for the duration of the run, restoring the caller's setting."""
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def _checkpoint_state(net, optimizer, scaler, step, config, history, best):
    return {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "step": step, "config": config.to_dict(), "history": history, "best_dice": best}


def _resume_state(path: Path, config: TrainConfig, device: torch.device) -> dict:
    state = load_torch(path, device, advice=(
        "delete it to start the run over from step 0 (best.pt and model.pt, where present, hold "
        "weights only and cannot be resumed from)"))
    saved = TrainConfig.from_dict(state["config"])
    changed = [name for name in config.differences(saved) if name not in RESUMABLE_CHANGES]
    if changed:
        raise ValueError(f"cannot resume {path}: the config differs in {', '.join(changed)} "
                         f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change)")
    if state["step"] > config.steps:
        raise ValueError(f"cannot resume {path}: it is at step {state['step']}, beyond steps={config.steps}")
    return state


def train_model(config: TrainConfig, train_cases: Sequence, *, val_cases: Sequence = (),
                hosts: Sequence = (), out_dir, resume: bool = False, stop_after: int | None = None,
                progress: bool = True) -> TrainResult:
    """Train a DynUNet on patches of ``train_cases`` (and synthetic tumours in ``hosts``).

    Args:
        config: all settings (:class:`TrainConfig`).
        train_cases: :class:`train.data.Case` records with liver/tumour labels.
        val_cases: cases for sliding-window validation (mean tumour Dice) every
            ``config.val_every`` steps and at the end; ``best.pt`` keeps the best.
        hosts: cases whose livers receive synthetic tumours with ``config.synthetic_probability``,
            drawn by ``config.synthetic_method`` (the diffusion model is loaded once, here).
        out_dir: folder for checkpoints and logs (created).
        resume: continue the run in ``out_dir`` from its ``checkpoint.pt`` (a fresh start when
            there is none). Without it, a folder that already holds a checkpoint is an error.
        stop_after: return after this many steps in this call, checkpoint written (an
            interruption); ``resume=True`` later continues to ``config.steps``.
        progress: show a tqdm bar (rank 0 only).

    Every random draw of step ``s`` derives from ``(config.seed, s, rank)`` and the initial weights
    from ``torch.manual_seed(config.seed)``, so an interrupted and resumed run ends with the same
    weights as an uninterrupted one (bit-identical on CPU).
    """
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be a positive number of steps or None; got {stop_after}")
    out_dir = Path(out_dir)
    checkpoint_path = out_dir / "checkpoint.pt"
    if not resume and checkpoint_path.exists():
        raise ValueError(f"{out_dir} already holds a run (checkpoint.pt); pass resume=True "
                         f"to continue it or choose another folder")
    if config.synthetic_method == "diffusion":
        # Checked here, not when the first synthetic sample is drawn hundreds of steps later.
        check_diffusion_folder(config.synthetic_model)
    if config.synthetic_method == "copy-paste":
        load_bank(config.synthetic_bank)  # a missing or corrupt bank fails now, not at the first patch
    if config.synthetic_quality_gate is not None:
        load_quality_gate(config.synthetic_quality_gate)  # likewise a missing or bad gate
    ddp, device = setup_distributed(config.device)
    try:
        if ddp.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        with _deterministic(device.type == "cpu"):
            return _train(config, train_cases, val_cases, hosts, out_dir, resume, stop_after,
                          progress, ddp, device)
    finally:
        ddp.close()


def training_spacing(*groups: Sequence) -> list[float] | None:
    """The voxel size (mm) every training case and host shares, recorded in ``model.pt`` so that
    prediction resamples new scans to it; None when they differ (or there are none)."""
    spacings = {tuple(round(float(s), 4) for s in case.spacing) for group in groups for case in group}
    return list(spacings.pop()) if len(spacings) == 1 else None


def _train(config, train_cases, val_cases, hosts, out_dir, resume, stop_after, progress, ddp, device):
    from tqdm.auto import tqdm

    checkpoint_path = out_dir / "checkpoint.pt"
    diffusion_model = None
    if config.synthetic_method == "diffusion" and config.synthetic_probability > 0 and hosts:
        # Loaded once for the whole run. DataLoader workers are forked processes that cannot use
        # CUDA, so with workers the model samples on the CPU.
        diffusion_model = load_diffusion_model(
            config.synthetic_model, device=device if config.num_workers == 0 else "cpu")
    sampler = PatchSampler(train_cases, config, hosts, diffusion_model=diffusion_model)
    torch.manual_seed(config.seed)
    net = build_model(network=config.network, filters=config.filters,
                      deep_supervision=config.deep_supervision, patch_size=config.patch_size).to(device)
    if config.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate,
                                                             weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(net.parameters(), lr=config.learning_rate, momentum=MOMENTUM,
                                    nesterov=True, weight_decay=config.weight_decay)
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start, history, best = 0, [], -math.inf
    if resume and checkpoint_path.exists():
        state = _resume_state(checkpoint_path, config, device)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start, history = int(state["step"]), list(state["history"])
        best = -math.inf if state["best_dice"] is None else float(state["best_dice"])
    elif resume and ddp.is_main:
        log.warning("resume requested but %s has no checkpoint.pt: starting a new run", out_dir)

    model = net
    if ddp.active:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    heads = 1 + deep_supervision_heads(len(config.filters)) if config.deep_supervision else 1
    loss_fn = build_loss(config.loss, heads=heads)
    end = config.steps if stop_after is None else min(config.steps, start + stop_after)
    loader = torch.utils.data.DataLoader(
        _StepBatches(sampler, ddp.rank, config.steps), batch_size=None,
        sampler=range(start, end), num_workers=config.num_workers)

    def save_checkpoint(step):
        save_torch(checkpoint_path, _checkpoint_state(net, optimizer, scaler, step, config, history,
                                                      None if best == -math.inf else best))
        write_logs(out_dir, history)

    bar = tqdm(total=config.steps, initial=start, desc="train", unit="step",
               disable=not (progress and ddp.is_main))
    device_augmenter = None
    if config.augmentation == "device":
        from augment.device import DeviceAugmenter

        device_augmenter = DeviceAugmenter(config.patch_size, config.hu_window)
    model.train()
    step = start
    tick = time.perf_counter()
    for step, (images, labels, spacing) in zip(range(start, end), loader):
        lr = poly_learning_rate(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True).long()
        if device_augmenter is not None:  # the sampler cut larger blocks: augment, cut the patches
            images, labels = augment_on_device(
                device_augmenter, images, labels, spacing, config.hu_window,
                device_augmentation_generator(config.seed, step, ddp.rank))
        if config.network == "unet2d":  # the slice model predicts the centre slice of its stack
            middle = labels.shape[-1] // 2
            labels = labels[..., middle:middle + 1]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(images)
        loss = loss_fn(head_outputs(logits.float(), labels), labels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower learning_rate "
                                     f"(now {config.learning_rate}) or check the labels")
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(net.parameters(), GRADIENT_CLIP)
        scaler.step(optimizer)
        scaler.update()
        done = step + 1
        row = {"step": done, "loss": float(loss.detach()), "lr": lr, "val_dice": None,
               "seconds": round(time.perf_counter() - tick, 4)}
        if val_cases and ddp.is_main and (
                (config.val_every and done % config.val_every == 0) or done == config.steps):
            row["val_dice"] = validate(net, val_cases, config, device=device)
            if row["val_dice"] > best:
                best = row["val_dice"]
                save_torch(out_dir / "best.pt", {"model": net.state_dict(), "config": config.to_dict(),
                                                 "step": done, "val_dice": best})
        history.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}")
        if ddp.is_main and (done % config.checkpoint_every == 0 or done == end):
            save_checkpoint(done)
        step = done
        tick = time.perf_counter()
    bar.close()

    finished = step >= config.steps
    # A finished run resumed again changes nothing, but still gets its model.pt if a crash came
    # between the last checkpoint and the final weights.
    if ddp.is_main and finished and (start < end or not (out_dir / "model.pt").exists()):
        save_torch(out_dir / "model.pt", {"model": net.state_dict(), "config": config.to_dict(),
                                          "step": step, "spacing_mm": training_spacing(train_cases, hosts)})
    ddp.barrier()
    model_path = out_dir / ("model.pt" if finished else "checkpoint.pt")
    return TrainResult(out_dir=out_dir, model_path=model_path, steps=step, history=history)
