"""Blending a lesion into the host: the soft edge and the label rule.

The soft edge is a logistic profile of the signed distance to the surface, with a 10-90 % width of
``edge_mm``; it is cut to zero one edge width outside the surface so the image changes only near
the lesion. The label is the set of voxels where the edge weight is above one half, i.e. exactly
the voxels whose intensity moved more than half of the lesion's change: no label on tissue that did
not change, no changed tissue left unlabelled. On thick slices the weight is averaged over each
slice's sub-slices and the label follows the volume fraction (``synth.heuristic.partial_volume``).
"""

from __future__ import annotations

import numpy as np

_LOGISTIC_10_90 = 2.0 * np.log(9.0)  # 10-90 % width of a logistic in units of its scale


def soft_edge(distance_mm: np.ndarray, edge_mm: float) -> np.ndarray:
    """Weight in [0, 1]: 1 deep inside, 0.5 on the surface, 0 beyond ``edge_mm`` outside."""
    scale = edge_mm / _LOGISTIC_10_90
    weight = 1.0 / (1.0 + np.exp(np.clip(distance_mm / np.float32(scale), -60.0, 60.0)))
    weight[distance_mm > edge_mm] = 0.0
    return weight.astype(np.float32, copy=False)


def to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast float HU back to the scan's dtype, rounding and clipping for integer scans."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)
