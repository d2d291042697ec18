"""Model crops: cut a cube around a lesion out of a scan onto the model grid, and back.

The model sees ``crop_size ** 3`` voxels of ``spacing_mm`` (isotropic) centred on the lesion's
centre voxel, whatever the scan's spacing: the scan is resampled (trilinear) onto that grid. A
lesion whose box (plus the generated margin) does not fit in the field of view is seen on a
coarser grid, so large tumours are generated at a lower resolution than small ones.
Intensities are clipped to the HU window and mapped linearly onto [-1, 1].
Only numpy and scipy here: the crops feed both training and insertion.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .config import DiffusionConfig

FIT_FACTOR = 1.15  # the field of view is at least this much larger than the lesion's region


# The network works on [-1, 1]: HU are mapped by synth.hu_window with this range.
MODEL_RANGE = (-1.0, 1.0)


def crop_spacing(config: DiffusionConfig, extent_mm) -> float:
    """Voxel size in mm of the crop that holds a lesion whose box spans ``extent_mm`` per axis
    (without the margin): the model spacing, or coarser when the lesion would not fit."""
    needed = (float(np.max(extent_mm)) + 2.0 * config.region_margin_mm) * FIT_FACTOR
    return max(config.spacing_mm, needed / config.crop_size)


def crop_coordinates(center, scan_spacing, crop_size: int, step_mm: float) -> list[np.ndarray]:
    """Per axis, the scan's (fractional) voxel index of each crop voxel, centred on ``center``."""
    offsets = (np.arange(crop_size, dtype=np.float64) - (crop_size - 1) / 2.0) * step_mm
    return [c + offsets / s for c, s in zip(center, scan_spacing)]


def resample_to_crop(array: np.ndarray, axes: list[np.ndarray], *, order: int = 1,
                     cval: float | None = None) -> np.ndarray:
    """Sample ``array`` on the grid ``axes`` (scan voxel indices per axis); float32.

    Outside the scan the nearest border value is used, or ``cval`` when given.
    """
    # Read only the part of the scan the grid touches (one voxel spare for the interpolation):
    # converting a whole scan to float per lesion would cost more than the lesion.
    window, shifted = [], []
    for a, n in zip(axes, array.shape):
        lo, hi = max(int(np.floor(a.min())) - 1, 0), min(int(np.ceil(a.max())) + 2, n)
        if hi <= lo:  # the grid misses the array along this axis
            if cval is None:
                lo, hi = (0, 1) if a.max() < 0 else (n - 1, n)
            else:
                return np.full([x.size for x in axes], cval, dtype=np.float32)
        window.append(slice(lo, hi))
        shifted.append(a - lo)
    grid = np.meshgrid(*shifted, indexing="ij")
    mode = "nearest" if cval is None else "constant"
    return ndimage.map_coordinates(np.asarray(array[tuple(window)], dtype=np.float32), grid, order=order,
                                   mode=mode, cval=0.0 if cval is None else cval,
                                   prefilter=False).astype(np.float32)


def resample_from_crop(crop: np.ndarray, box, center, scan_spacing, step_mm: float) -> np.ndarray:
    """Sample a crop (made by :func:`crop_coordinates` with the same centre and step) at the scan
    voxels of ``box``; float32. Beyond the crop the value is 0."""
    n = crop.shape[0]
    axes = [(np.arange(b.start, b.stop, dtype=np.float64) - c) * s / step_mm + (n - 1) / 2.0
            for b, c, s in zip(box, center, scan_spacing)]
    grid = np.meshgrid(*axes, indexing="ij")
    return ndimage.map_coordinates(crop.astype(np.float32), grid, order=1, mode="constant", cval=0.0,
                                   prefilter=False).astype(np.float32)


def region_around(lesion: np.ndarray, step_mm: float, margin_mm: float) -> np.ndarray:
    """The region the model generates: the lesion and every voxel within ``margin_mm`` of it."""
    if not lesion.any():
        return lesion.copy()
    return ndimage.distance_transform_edt(~lesion, sampling=step_mm) <= margin_mm
