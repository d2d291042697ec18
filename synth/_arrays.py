"""Small array helpers shared by the host preparation and the lesion steps."""

from __future__ import annotations

import numpy as np


def bounding_slices(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every True voxel of ``mask``; None when there is none."""
    if not mask.any():
        return None
    out = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


def dilate_cube(mask: np.ndarray) -> np.ndarray:
    """Dilation by the 3x3x3 cube (26-neighbourhood), done as three separable passes of shifted
    ORs: far cheaper than a generic morphology call on the small boxes used here."""
    out = mask.copy()
    for axis in range(3):
        grown = out.copy()
        lead = [slice(None)] * 3
        lag = [slice(None)] * 3
        lead[axis], lag[axis] = slice(1, None), slice(None, -1)
        grown[tuple(lead)] |= out[tuple(lag)]
        grown[tuple(lag)] |= out[tuple(lead)]
        out = grown
    return out
