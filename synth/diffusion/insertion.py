"""The diffusion painter: what ``synthesize(..., method="diffusion")`` uses instead of the
heuristic texture.

Everything else is the heuristic path's: size, shape, location rules, mass effect, the soft edge
and the label rule. Here, for one placed lesion, the host (as changed so far) is cut onto the
model grid around the lesion's centre, the model inpaints the lesion and its margin, and the
generated change is resampled back onto the scan voxels of the lesion's paint box. The caller
blends that target in with the soft edge, so voxels beyond one edge width of the surface, and
voxels that are not tumour-free liver, keep their values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..hu_window import range_to_window, window_to_range
from .config import check_steps
from .crops import MODEL_RANGE, crop_coordinates, crop_spacing, region_around, resample_from_crop, resample_to_crop
from .sampling import inpaint, sampling_scheduler
from .weights import DiffusionModel, load_model

_FAR_MM = 1e6  # distance given to scan voxels outside the stencil's box
_LOADED: dict[tuple, DiffusionModel] = {}


def cached_model(model) -> DiffusionModel:
    """``load_model`` with a per-process cache keyed by folder and file times, so repeated
    insertions (a data loader, the CLI's data set builder) read the weights once."""
    if isinstance(model, DiffusionModel):
        return model
    if model is None:
        return load_model(None)
    folder = Path(model).resolve()
    try:
        key = (str(folder), *(p.stat().st_mtime_ns for p in sorted(folder.iterdir()) if p.is_file()))
    except FileNotFoundError:
        return load_model(folder)  # raises the clear error
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_model(folder)
    return _LOADED[key]


class DiffusionPainter:
    """Callable that returns the HU target of one lesion's paint box (see :meth:`__call__`).

    Parameters
    ----------
    model : model folder or DiffusionModel
    steps : int, optional
        Sampling steps (default: the model's, 10 unless trained otherwise).
    sampler : ``"ddim"`` or ``"dpm-solver"``, optional
    """

    phenotype = "diffusion"  # the lesion record's phenotype: the model decides the appearance

    def __init__(self, model, *, steps: int | None = None, sampler: str | None = None):
        self.model = cached_model(model)
        config = self.model.config
        self.steps = check_steps(config.sampling_steps if steps is None else steps, config.train_timesteps)
        sampling_scheduler(config, sampler)  # validates the name now, not at the first lesion
        self.sampler = sampler or config.sampler

    def __call__(self, volume: np.ndarray, paint_box, center, stencil, spacing, rng) -> np.ndarray:
        """HU values (float32, the paint box's shape) that the lesion should give its box.

        ``volume`` is the scan as changed so far (read only); ``stencil`` the lesion's stencil
        cropped to ``paint_box``; ``rng`` the insertion's numpy generator, from which the
        sampler's seed is drawn (so the whole insertion depends on one seed).
        """
        config = self.model.config
        seed = int(rng.integers(0, 2**63 - 1))
        extent = [(b.stop - b.start) * s for b, s in zip(stencil.body_box, spacing)]
        step_mm = crop_spacing(config, extent)
        axes = crop_coordinates(center, spacing, config.crop_size, step_mm)
        known_hu = resample_to_crop(volume, axes)
        # The lesion on the crop: its signed distance, sampled from the stencil's box.
        local_axes = [a - b.start for a, b in zip(axes, paint_box)]
        distance = resample_to_crop(stencil.distance_mm, local_axes, cval=_FAR_MM)
        lesion = distance < 0
        if not lesion.any():  # a lesion smaller than one crop voxel: keep its centre voxel
            lesion[(config.crop_size // 2,) * 3] = True
        region = region_around(lesion, step_mm, config.region_margin_mm)
        known = window_to_range(known_hu, config.hu_window, MODEL_RANGE)
        generated = inpaint(self.model, _batch_of_one(known), _batch_of_one(region), _batch_of_one(lesion),
                            seed=seed, steps=self.steps, sampler=self.sampler)[0, 0].cpu().numpy()
        # Resample the change, not the crop: outside the region it is exactly zero, so the scan's
        # own voxels are not blurred by the round trip through the model grid.
        change = (range_to_window(generated, config.hu_window, MODEL_RANGE)
                  - range_to_window(known, config.hu_window, MODEL_RANGE))
        change *= region
        return volume[paint_box].astype(np.float32) + resample_from_crop(change, paint_box, center, spacing, step_mm)


def _batch_of_one(array: np.ndarray) -> torch.Tensor:
    """A (1, 1, n, n, n) float32 tensor of an (n, n, n) array."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
