"""Mass effect: a large lesion pushes the surrounding parenchyma outward.

The displacement is that of an incompressible expansion: tissue at distance ``rho0`` from the centre
moves to ``rho = (rho0^3 + k r^3)^(1/3)``, as if a fraction ``k`` of the lesion's volume had been
added to the liver rather than replacing it. The image is warped backward: the voxel at ``rho`` takes
the value found at ``rho0 = (rho^3 - k r^3)^(1/3)``. The shift decays like ``1 / rho^2``, is tapered to
zero at the edge of the box (the image changes only inside the lesion's box) and is faded out inside
the lesion, whose own voxels keep the host's noise rather than a stretched copy of its centre. Only
liver parenchyma moves; tissue outside the liver and existing tumours stay where they are.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MASS_EFFECT_FROM_MM = 20.0
REACH = 1.5  # the box reaches REACH lesion radii from the centre


def displacement_box(center, radius_mm: float, spacing, shape) -> tuple[slice, slice, slice]:
    """The box (clipped to the scan) in which the mass effect of a lesion acts."""
    half = [int(np.ceil(REACH * radius_mm / s)) for s in spacing]
    sx, sy, sz = (slice(max(c - h, 0), min(c + h + 1, n)) for c, h, n in zip(center, half, shape))
    return sx, sy, sz


def push_outward(
    image: np.ndarray,
    movable: np.ndarray,
    center_in_box,
    radius_mm: float,
    spacing,
    *,
    fraction: float = 0.2,
) -> np.ndarray:
    """Warp ``image`` (a float box) as if a sphere of ``radius_mm`` grew at ``center_in_box``.

    ``movable`` marks voxels allowed to change (liver parenchyma); ``fraction`` is ``k`` above.
    Returns a new array.
    """
    radius = np.float32(radius_mm)
    reach = REACH * radius
    # Only parenchyma between 0.6 and REACH radii moves; find it before any per-voxel maths.
    axes = [(np.arange(n, dtype=np.float32) - np.float32(c)) * np.float32(s)
            for n, c, s in zip(image.shape, center_in_box, spacing)]
    rho_box = np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)
    index = np.nonzero(movable & (rho_box > 0.6 * radius) & (rho_box < reach))
    rho = rho_box[index]
    source = np.cbrt(np.maximum(rho**3 - np.float32(fraction) * radius**3, 0.0))
    taper = np.clip((reach - rho) / (0.3 * reach), 0.0, 1.0)  # 1 up to 1.05 r, 0 at 1.5 r
    taper *= np.clip((rho - 0.6 * radius) / (0.4 * radius), 0.0, 1.0)  # 0 inside 0.6 r, 1 from r
    # Backward warp along each voxel's own ray: the source index is
    # index - (1 - source / rho) * (index - centre) in voxel units.
    pull = (rho - source) * taper / rho
    coords = np.stack([i - pull * (i - np.float32(c)) for i, c in zip(index, center_in_box)])
    out = image.copy()
    out[index] = ndimage.map_coordinates(image, coords, order=1, mode="nearest")
    return out
