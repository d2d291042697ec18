"""Seeded inpainting with a trained model: diffusers samplers on 5-D (B, C, X, Y, Z) tensors.

The known part of the crop reaches the model twice: as the masked-crop conditioning channel, and
by replacement: after every sampler step, the voxels outside the region to generate are set to
the host crop noised to the level of the next step (the RePaint-style "known region" rule, without
resampling loops), and after the last step to the host crop itself. The model thus only ever
invents the region it was asked for, and what it invents is consistent with the surroundings.
"""

from __future__ import annotations

import torch

from .config import DiffusionConfig, check_steps

_SCHEDULE_KEYS = ("beta_schedule", "beta_start", "beta_end")


def training_scheduler(config: DiffusionConfig):
    """diffusers ``DDPMScheduler`` with the model's noise schedule (noise prediction)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=config.train_timesteps, prediction_type="epsilon",
                         clip_sample=False, **{k: getattr(config, k) for k in _SCHEDULE_KEYS})


def sampling_scheduler(config: DiffusionConfig, sampler: str | None = None):
    """diffusers ``DDIMScheduler`` (``"ddim"``) or ``DPMSolverMultistepScheduler``
    (``"dpm-solver"``) on the model's schedule, with trailing timesteps (the first step starts
    from pure noise even with 4 steps)."""
    sampler = sampler or config.sampler
    common = dict(num_train_timesteps=config.train_timesteps, prediction_type="epsilon",
                  timestep_spacing="trailing", **{k: getattr(config, k) for k in _SCHEDULE_KEYS})
    if sampler == "ddim":
        from diffusers import DDIMScheduler

        return DDIMScheduler(clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True, **common)
    if sampler == "dpm-solver":
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **common)
    raise ValueError(f"sampler must be 'ddim' or 'dpm-solver'; got {sampler!r}")


def conditioning_channels(known: torch.Tensor, region: torch.Tensor, lesion: torch.Tensor) -> torch.Tensor:
    """The network's conditioning input (``config.CONDITIONING``), (B, 3, n, n, n): the crop with
    the region to generate zeroed, the region, the lesion. Training and sampling both use it."""
    return torch.cat([known * (1 - region), region, lesion], dim=1)


@torch.no_grad()
def inpaint(model, known: torch.Tensor, region: torch.Tensor, lesion: torch.Tensor, *, seed: int,
            steps: int | None = None, sampler: str | None = None) -> torch.Tensor:
    """Generate the ``region`` of ``known`` crops.

    Parameters
    ----------
    model : DiffusionModel
    known : (B, 1, n, n, n) float tensor in [-1, 1]
        Host crops (normalised HU); the values inside ``region`` are ignored.
    region, lesion : (B, 1, n, n, n) tensors of 0/1
        Where to generate, and the lesion's voxels inside it.
    seed : int
        Seeds a CPU ``torch.Generator``: the same seed gives the same output on a given device.
    steps, sampler
        Default to the model config's ``sampling_steps`` and ``sampler``.

    Returns
    -------
    (B, 1, n, n, n) float32 tensor in [-1, 1] on the model's device, equal to ``known`` outside
    ``region``.
    """
    config = model.config
    steps = check_steps(config.sampling_steps if steps is None else steps, config.train_timesteps)
    n = config.crop_size
    if known.ndim != 5 or known.shape[1] != 1 or tuple(known.shape[2:]) != (n, n, n):
        raise ValueError(f"known must be (B, 1, {n}, {n}, {n}); got {tuple(known.shape)}")
    for name, value in (("region", region), ("lesion", lesion)):
        if value.shape != known.shape:
            raise ValueError(f"{name} must have the shape of known {tuple(known.shape)}; got {tuple(value.shape)}")
    device = model.device
    generator = torch.Generator("cpu").manual_seed(int(seed))
    known, region, lesion = (t.to(device, torch.float32) for t in (known, region, lesion))
    conditioning = conditioning_channels(known, region, lesion)
    scheduler = sampling_scheduler(config, sampler)
    scheduler.set_timesteps(steps, device=device)
    timesteps = list(scheduler.timesteps)
    # All noise comes from the CPU generator, so CPU and GPU runs draw the same numbers.
    x = torch.randn(known.shape, generator=generator).to(device)
    x = x * scheduler.init_noise_sigma
    model.unet.eval()
    for i, t in enumerate(timesteps):
        model_input = scheduler.scale_model_input(x, t)
        eps = model.unet(torch.cat([model_input, conditioning], dim=1),
                         timesteps=t.reshape(1).expand(known.shape[0]).to(device))
        x = scheduler.step(eps, t, x).prev_sample
        if i + 1 < len(timesteps):
            noise = torch.randn(known.shape, generator=generator).to(device)
            noised_known = scheduler.add_noise(known, noise, timesteps[i + 1].reshape(1))
            x = region * x + (1 - region) * noised_known
    x = region * x.clamp(-1.0, 1.0) + (1 - region) * known
    return x.float()
