"""The settings of a diffusion model, stored beside its weights as ``config.json``.

Everything that decides what the weights mean lives here: the network's size, the crop it sees
(voxels and mm), the HU window and its normalisation, the noise schedule and the default sampler.
Loading checks ``format`` and ``format_version`` first, so weights written by an incompatible
version are refused with a message instead of producing garbage.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

FORMAT = "tumorsynth-diffusion"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
SAMPLERS = ("ddim", "dpm-solver")
# The largest crop side accepted, in voxels: a config.json asking for more (a typo, a damaged
# file) would otherwise allocate crop_size ** 3 voxels per channel when sampling.
MAX_CROP_SIZE = 128

# Conditioning channels after the noisy crop, in order: the crop with the region to generate
# set to 0 (mid-window), the region to generate (lesion plus a margin for its edge), and the
# lesion mask itself (empty on healthy-liver training crops, which teach parenchyma and vessels).
CONDITIONING = ("masked_crop", "region", "lesion")


@dataclass(frozen=True)
class DiffusionConfig:
    """Settings of one model; every length in voxels of the model grid or in mm as named.

    Attributes
    ----------
    crop_size : int
        Side of the cubic crop in voxels (16-64 are sensible; 8 to ``MAX_CROP_SIZE`` = 128, a
        multiple of 2 ** (levels - 1)).
    spacing_mm : float
        Isotropic voxel size of the model grid in mm. A lesion whose box does not fit in
        ``crop_size * spacing_mm`` is seen on a coarser grid (the crop grows, the voxel count not).
    hu_window : (float, float)
        HU range mapped linearly onto [-1, 1]; values outside are clipped.
    region_margin_mm : float
        The region the model generates is the lesion grown by this much (room for its soft edge).
    channels, num_res_blocks, attention_levels, norm_num_groups, num_head_channels
        MONAI ``DiffusionModelUNet`` arguments (``spatial_dims=3``, ``out_channels=1``). The
        network may have at most ``synth.diffusion.weights.MAX_PARAMETERS`` (500 M) parameters,
        checked before it is built.
    train_timesteps, beta_schedule, beta_start, beta_end
        The DDPM noise schedule (diffusers ``DDPMScheduler``); the samplers reuse it.
    sampler : str
        Default sampler: ``"ddim"`` (diffusers ``DDIMScheduler``) or ``"dpm-solver"``
        (``DPMSolverMultistepScheduler``).
    sampling_steps : int
        Default number of sampling steps (4-50 are sensible).
    """

    crop_size: int = 32
    spacing_mm: float = 1.0
    hu_window: tuple[float, float] = (-200.0, 300.0)
    region_margin_mm: float = 3.0
    channels: tuple[int, ...] = (32, 64, 64)
    num_res_blocks: int = 1
    attention_levels: tuple[bool, ...] = (False, False, False)
    norm_num_groups: int = 16
    num_head_channels: int = 8
    train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    sampler: str = "ddim"
    sampling_steps: int = 10
    conditioning: tuple[str, ...] = field(default=CONDITIONING)

    def __post_init__(self):
        # Lists from JSON become tuples, so configs compare equal and stay hashable.
        for name in ("hu_window", "channels", "attention_levels", "conditioning"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    @property
    def in_channels(self) -> int:
        return 1 + len(self.conditioning)

    @property
    def field_of_view_mm(self) -> float:
        return self.crop_size * self.spacing_mm

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        levels = len(self.channels)
        if levels < 1 or any(int(c) < 1 for c in self.channels):
            raise ValueError(f"channels must be positive integers; got {self.channels}")
        if any(int(c) % self.norm_num_groups for c in self.channels):
            raise ValueError(f"every entry of channels {self.channels} must be a multiple of "
                             f"norm_num_groups ({self.norm_num_groups})")
        if len(self.attention_levels) != levels:
            raise ValueError(f"attention_levels needs one entry per level ({levels}); got "
                             f"{self.attention_levels}")
        step = 2 ** (levels - 1)
        if self.crop_size < 8 or self.crop_size % step:
            raise ValueError(f"crop_size must be at least 8 and a multiple of {step} for {levels} "
                             f"levels; got {self.crop_size}")
        if self.crop_size > MAX_CROP_SIZE:
            raise ValueError(f"crop_size {self.crop_size} is above the limit of {MAX_CROP_SIZE} voxels "
                             f"(16-64 are sensible; a lesion too large for the crop is seen on a "
                             f"coarser grid)")
        if not (math.isfinite(self.spacing_mm) and self.spacing_mm > 0):
            raise ValueError(f"spacing_mm must be a positive number; got {self.spacing_mm}")
        low, high = self.hu_window
        if not low < high:
            raise ValueError(f"hu_window must be (low, high) with low < high; got {self.hu_window}")
        if self.region_margin_mm < 0:
            raise ValueError(f"region_margin_mm must be >= 0; got {self.region_margin_mm}")
        if self.num_res_blocks < 1 or self.train_timesteps < 2:
            raise ValueError("num_res_blocks must be >= 1 and train_timesteps >= 2")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {self.sampler!r}")
        check_steps(self.sampling_steps, self.train_timesteps)
        if self.conditioning != CONDITIONING:
            raise ValueError(f"conditioning must be {CONDITIONING}; got {self.conditioning}")

    def unet_arguments(self) -> dict:
        """Keyword arguments of MONAI's ``DiffusionModelUNet``."""
        return dict(spatial_dims=3, in_channels=self.in_channels, out_channels=1,
                    channels=tuple(int(c) for c in self.channels),
                    num_res_blocks=(int(self.num_res_blocks),) * len(self.channels),
                    attention_levels=tuple(bool(a) for a in self.attention_levels),
                    norm_num_groups=int(self.norm_num_groups),
                    num_head_channels=int(self.num_head_channels))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION,
                "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "config") -> DiffusionConfig:
        """Build from :meth:`to_dict`'s output; a ValueError names ``source`` and the problem."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{source}: not a tumorsynth diffusion model config (format is "
                             f"{data.get('format') if isinstance(data, dict) else None!r}, "
                             f"expected {FORMAT!r})")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{source}: format_version {version!r} is not supported (this version "
                             f"of tumorsynth reads {FORMAT_VERSION}); retrain or convert the model")
        values = data.get("config")
        known = {f.name for f in fields(cls)}
        if not isinstance(values, dict):
            raise ValueError(f"{source}: 'config' must be an object")
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown settings {unknown}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {error}") from None

    def save(self, folder: Path, extra: dict | None = None) -> Path:
        """Write ``config.json`` into ``folder`` atomically (``extra`` adds e.g. training info)."""
        from ..io import write_json_atomic

        return write_json_atomic({**self.to_dict(), **(extra or {})}, Path(folder) / CONFIG_NAME)

    @classmethod
    def load(cls, folder: Path) -> DiffusionConfig:
        return cls.from_dict(read_config_json(folder), source=str(Path(folder) / CONFIG_NAME))


def read_config_json(folder: Path) -> dict:
    """The parsed ``config.json`` of a model folder (settings and the recorded ``info``);
    FileNotFoundError or ValueError naming the file when it is missing or not JSON."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model config (expected {CONFIG_NAME} beside "
                                f"{WEIGHTS_NAME})")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: corrupt model config, not valid JSON ({error})") from None


def check_steps(steps, train_timesteps: int) -> int:
    """Validate a number of sampling steps."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= train_timesteps:
        raise ValueError(f"sampling steps must be an integer in [1, {train_timesteps}]; got {steps!r}")
    return steps


TINY: dict[str, Any] = dict(crop_size=16, channels=(8, 16), attention_levels=(False, False), norm_num_groups=8,
                            num_res_blocks=1, train_timesteps=1000, sampling_steps=4)
"""A model small enough for tests and CPU smoke runs."""
