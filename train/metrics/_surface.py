"""Surface distances in millimetres: ASSD and HD95.

The surface of a mask is the set of its voxels that have at least one 6-connected neighbour outside
it (``mask & ~binary_erosion(mask)`` with scipy's default cross-shaped structure; voxels on the
array border count as surface, as if the volume were padded with background). The distance from a
surface voxel of A to B is ``distance_transform_edt(~surface_B, sampling=spacing)`` read at that
voxel, i.e. the exact Euclidean distance in mm to the nearest surface voxel of B.

* ASSD: the mean of all distances of both directions pooled together,
  ``(sum d(S_A, S_B) + sum d(S_B, S_A)) / (|S_A| + |S_B|)`` (the 2007 MICCAI liver challenge
  definition, and what MONAI's ``compute_average_surface_distance(symmetric=True)`` computes).
* HD95: the larger of the two directed 95th percentiles (linear interpolation), as MONAI's
  ``compute_hausdorff_distance(percentile=95)`` computes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def surface(mask: np.ndarray) -> np.ndarray:
    """Boolean surface voxels of ``mask`` (6-connected erosion, array border counts as outside)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _crop_pad(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to the bounding box of their union, with one voxel of background padding."""
    union = a | b
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(union))
    return np.pad(a[box], 1), np.pad(b[box], 1)


def directed_distances(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each surface voxel of ``a`` to the surface of ``b``, and the reverse.

    Both masks must be non-empty. Works on the union's bounding box (padded by one background
    voxel, which leaves the surfaces and the distances unchanged).
    """
    a, b = _crop_pad(np.asarray(a, dtype=bool), np.asarray(b, dtype=bool))
    sa, sb = surface(a), surface(b)
    d_ab = ndimage.distance_transform_edt(~sb, sampling=spacing)[sa]
    d_ba = ndimage.distance_transform_edt(~sa, sampling=spacing)[sb]
    return d_ab, d_ba


def assd_hd95(pred: np.ndarray, gt: np.ndarray, spacing) -> tuple[float | None, float | None]:
    """(ASSD, HD95) in mm between two boolean masks, with the empty-case rules of the package.

    Both empty: (0.0, 0.0). Exactly one empty: (None, None), undefined, left out of the means.
    """
    pred_any, gt_any = bool(pred.any()), bool(gt.any())
    if not pred_any and not gt_any:
        return 0.0, 0.0
    if not pred_any or not gt_any:
        return None, None
    d_pg, d_gp = directed_distances(pred, gt, spacing)
    assd = float((d_pg.sum() + d_gp.sum()) / (d_pg.size + d_gp.size))
    hd95 = float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))
    return assd, hd95
