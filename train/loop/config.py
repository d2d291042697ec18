"""Training settings: one frozen dataclass that round-trips through JSON."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from synth.deprecation import warn_renamed

__all__ = ["AUGMENTATIONS", "SYNTHETIC_METHODS", "TrainConfig", "parse_synthetic_size"]

#: Values of ``TrainConfig.synthetic_method``: the synthesiser that draws a lesion's appearance.
SYNTHETIC_METHODS = ("heuristic", "diffusion", "copy-paste")
#: Values of ``TrainConfig.augmentation``: what happens to every patch after it is drawn.
AUGMENTATIONS = ("none", "torchio", "device")
NETWORKS = ("dynunet", "unet2d")  # train.model.build_model's networks (defined here: no torch import)
OPTIMIZERS = ("sgd", "adamw")
HOST_TUMORS = ("keep", "ignore")
SYNTHETIC_CENTRES = ("lesion", "shares")

# Settings that may change when a run is resumed (they do not change what is learned at a step).
RESUMABLE_CHANGES = frozenset({"steps", "val_every", "checkpoint_every", "device", "num_workers"})


def parse_synthetic_size(size: str):
    """``"mix"``/class name stays a string; ``"a,b"`` becomes ``(a, b)`` mm for :mod:`synth`."""
    if "," in size:
        try:
            low, high = (float(v) for v in size.split(","))
        except ValueError:
            raise ValueError(f"synthetic_size {size!r}: expected 'min_mm,max_mm' like '3,10'") from None
        if not 0 < low <= high:
            raise ValueError(f"synthetic_size {size!r}: need 0 < min_mm <= max_mm")
        return (low, high)
    return size


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; sizes in voxels unless named ``_mm``.

    Attributes:
        network: ``"dynunet"`` (3D) or ``"unet2d"`` (2.5D slice model; see :mod:`train.model`).
        patch_size: training patch (X, Y, Z) in voxels; also the sliding-window size. For
            ``"unet2d"``, Z is the odd number of neighbouring slices the network sees.
        batch_size: patches per step (per process under DDP).
        steps: optimiser steps of the whole run.
        optimizer: ``"sgd"`` (Nesterov momentum 0.99, nnU-Net's recipe) or ``"adamw"`` (which
            converges in fewer steps, for short CPU runs).
        learning_rate, weight_decay, poly_power: the rate at step s is
            ``learning_rate * (1 - s / steps) ** poly_power``.
        loss: ``"dice_ce"`` or ``"composite"`` (:func:`train.losses.build_loss`).
        filters, deep_supervision: the DynUNet (:func:`train.model.build_model`).
        hu_window: CT is clipped to this HU range, then scaled linearly to [0, 1].
        foreground_share: share of patches centred on a liver (or tumour) voxel.
        tumor_share: share of patches centred on a tumour voxel; for a case without tumour these
            are centred on liver instead. The rest are centred on any voxel.
        synthetic_probability: chance that a sample is a host patch with synthetic tumours.
        synthetic_size: :mod:`synth` size class (tiny/small/medium/large/mix) or ``"a,b"`` mm.
        synthetic_count: (min, max) synthetic lesions per sample.
        synthetic_centre: where a synthetic sample's patch is centred: ``"lesion"`` (default) on
            one of its inserted lesions, always; ``"shares"`` as a real patch is, on an inserted
            lesion with ``tumor_share``, on a liver voxel with ``foreground_share`` and anywhere
            otherwise, so that adding synthetic samples changes what tumours look like and not how
            much of the training is liver or background (what an ablation against real data
            alone should compare; docs/ablation.md, "Synthetic patches change the patch mix").
        host_tumors: what a host's own real tumours are in its synthetic patches: ``"keep"``
            (labelled tumour, as they are) or ``"ignore"`` (left out of the loss,
            :class:`train.losses.IgnoreRegion`), so that a model trained with
            ``synthetic_probability=1`` on real livers never learns from a real tumour.
        synthetic_method: ``"heuristic"`` (:mod:`synth`'s numpy synthesiser), ``"diffusion"``
            (:mod:`synth.diffusion`: lesion appearance inpainted by a trained model) or
            ``"copy-paste"`` (:mod:`synth.copy_paste`: real lesions from ``synthetic_bank``).
        synthetic_model: folder of a diffusion model (``config.json`` + ``weights.safetensors``);
            required with ``synthetic_method="diffusion"``, not allowed otherwise. Loaded once per
            run; a missing folder is an error when :func:`train.loop.train_model` starts.
        synthetic_bank: folder of a lesion bank (``tumorsynth bank build``, :mod:`synth.copy_paste`);
            required with ``synthetic_method="copy-paste"`` (real lesions turned, scaled and pasted
            into the hosts), not allowed otherwise. Loaded and checked when
            :func:`train.loop.train_model` starts.
        synthetic_quality_gate: a quality gate JSON file (``tumorsynth realism --save-gate``,
            :mod:`synth.realism.gate`): every synthetic lesion it scores below its threshold is
            drawn again (at most 5 draws, the best kept), whatever the ``synthetic_method``. Read
            and checked when :func:`train.loop.train_model` starts. None (default): no gate.
        augmentation: ``"none"``, ``"torchio"`` or ``"device"``: every training patch (real or
            synthetic) goes through the spatial and intensity steps of
            :func:`augment.pipelines.training_pipeline` (affine, elastic, CT noise, gamma, blur,
            bias field), seeded from the step: with TorchIO on the CPU, in the sampler
            (``"torchio"``), or batched on the training device after the batch is moved there
            (``"device"``, :mod:`augment.device`; a GPU stays busy).
        val_every: validate every this many steps; 0 validates only at the end.
        checkpoint_every: write ``checkpoint.pt`` every this many steps (and at the end).
        sw_overlap: sliding-window overlap at validation and prediction.
        amp: mixed precision (float16 autocast + GradScaler), on CUDA only.
        seed: every random draw derives from it (initial weights; sampling at each step).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        num_workers: DataLoader workers building batches (0: in the training process).
    """

    network: str = "dynunet"
    patch_size: tuple[int, int, int] = (96, 96, 96)
    batch_size: int = 2
    optimizer: str = "sgd"
    steps: int = 1000
    learning_rate: float = 1e-2
    weight_decay: float = 3e-5
    poly_power: float = 0.9
    loss: str = "dice_ce"
    filters: tuple[int, ...] = (16, 32, 64, 128, 256)
    deep_supervision: bool = False
    hu_window: tuple[float, float] = (-200.0, 300.0)
    foreground_share: float = 0.5
    tumor_share: float = 0.33
    synthetic_probability: float = 0.0
    synthetic_size: str = "mix"
    synthetic_count: tuple[int, int] = (1, 3)
    synthetic_centre: str = "lesion"
    host_tumors: str = "keep"
    synthetic_method: str = "heuristic"
    synthetic_model: str | None = None
    synthetic_bank: str | None = None
    synthetic_quality_gate: str | None = None
    augmentation: str = "none"
    val_every: int = 0
    checkpoint_every: int = 100
    sw_overlap: float = 0.25
    amp: bool = True
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0

    def __post_init__(self):
        # Lists from JSON become tuples so that configs compare and hash reliably.
        for name in ("patch_size", "filters", "hu_window", "synthetic_count"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.patch_size) != 3 or any(int(p) < 1 for p in self.patch_size):
            raise ValueError(f"patch_size must be three positive voxel counts; got {self.patch_size}")
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        object.__setattr__(self, "filters", tuple(int(f) for f in self.filters))
        if self.batch_size < 1 or self.steps < 1:
            raise ValueError(f"batch_size and steps must be at least 1; got {self.batch_size}, {self.steps}")
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.poly_power < 0:
            raise ValueError("learning_rate must be positive, weight_decay and poly_power non-negative")
        low, high = self.hu_window
        if not low < high:
            raise ValueError(f"hu_window must be (low, high) HU with low < high; got {self.hu_window}")
        for name in ("foreground_share", "tumor_share", "synthetic_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]; got {getattr(self, name)}")
        if self.foreground_share + self.tumor_share > 1.0 + 1e-9:
            raise ValueError(f"foreground_share + tumor_share must be at most 1; got "
                             f"{self.foreground_share} + {self.tumor_share}")
        if len(self.synthetic_count) != 2 or not 0 <= self.synthetic_count[0] <= self.synthetic_count[1]:
            raise ValueError(f"synthetic_count must be (min, max) with 0 <= min <= max; got {self.synthetic_count}")
        parse_synthetic_size(self.synthetic_size)
        if self.synthetic_method not in SYNTHETIC_METHODS:
            raise ValueError(f"synthetic_method must be one of {', '.join(SYNTHETIC_METHODS)}; "
                             f"got {self.synthetic_method!r}")
        if self.synthetic_model is not None:
            # A pathlib.Path is accepted but stored as a string, so that the config stays JSON-safe.
            object.__setattr__(self, "synthetic_model", str(self.synthetic_model))
        if self.synthetic_method == "diffusion" and not self.synthetic_model:
            raise ValueError("synthetic_method='diffusion' needs synthetic_model: the folder of a "
                             "trained diffusion model (config.json + weights.safetensors)")
        if self.synthetic_method != "diffusion" and self.synthetic_model is not None:
            raise ValueError(f"synthetic_model is only used with synthetic_method='diffusion'; "
                             f"got synthetic_method={self.synthetic_method!r}")
        if self.synthetic_bank is not None:
            object.__setattr__(self, "synthetic_bank", str(self.synthetic_bank))
        if self.synthetic_quality_gate is not None:
            if not isinstance(self.synthetic_quality_gate, (str, os.PathLike)) or not str(self.synthetic_quality_gate):
                raise ValueError(f"synthetic_quality_gate must be the path of a quality gate JSON file "
                                 f"(tumorsynth realism --save-gate); got {self.synthetic_quality_gate!r}")
            object.__setattr__(self, "synthetic_quality_gate", os.fspath(self.synthetic_quality_gate))
        if self.synthetic_method == "copy-paste" and not self.synthetic_bank:
            raise ValueError("synthetic_method='copy-paste' needs synthetic_bank: the folder of a lesion bank "
                             "(tumorsynth bank build)")
        if self.synthetic_method != "copy-paste" and self.synthetic_bank is not None:
            raise ValueError(f"synthetic_bank is only used with synthetic_method='copy-paste'; "
                             f"got synthetic_method={self.synthetic_method!r}")
        if self.network not in NETWORKS:
            raise ValueError(f"network must be one of {', '.join(NETWORKS)}; got {self.network!r}")
        if self.network == "unet2d" and self.patch_size[2] % 2 == 0:
            raise ValueError(f"network 'unet2d' needs an odd number of slices as patch_size's third side "
                             f"(the centre slice is predicted); got {self.patch_size}")
        if self.synthetic_centre not in SYNTHETIC_CENTRES:
            raise ValueError(f"synthetic_centre must be one of {', '.join(SYNTHETIC_CENTRES)}; "
                             f"got {self.synthetic_centre!r}")
        if self.host_tumors not in HOST_TUMORS:
            raise ValueError(f"host_tumors must be one of {', '.join(HOST_TUMORS)}; got {self.host_tumors!r}")
        if self.host_tumors == "ignore" and self.loss != "dice_ce":
            raise ValueError("host_tumors='ignore' needs loss='dice_ce' (the loss that leaves voxels out)")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}; "
                             f"got {self.augmentation!r}")
        if self.val_every < 0 or self.checkpoint_every < 1:
            raise ValueError("val_every must be >= 0 and checkpoint_every >= 1")
        if not 0.0 <= self.sw_overlap < 1.0:
            raise ValueError(f"sw_overlap must be in [0, 1); got {self.sw_overlap}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0; got {self.num_workers}")

    def to_dict(self) -> dict:
        """JSON-safe dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        if "tumour_share" in d:  # deprecated spelling, also in config.json files of earlier runs
            d = dict(d)
            if "tumor_share" in d:
                raise ValueError("give tumor_share only (tumour_share is its deprecated spelling), not both")
            warn_renamed("TrainConfig key 'tumour_share'", "'tumor_share'")
            d["tumor_share"] = d.pop("tumour_share")
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**d)

    def differences(self, other: TrainConfig) -> list[str]:
        """Names of the settings that differ from ``other``."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)]
