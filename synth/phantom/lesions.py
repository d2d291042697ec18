"""Simple hypodense demo lesions for the phantom (the real synthesiser is synth.insert)."""

from __future__ import annotations

import math

import numpy as np

from .geometry import Box, Ellipsoid, Grid, rotation
from .vessels import distance_to_vessels


def add_lesions(rng, hu, label, grid: Grid, liver_box: Box, segments, n):
    """Put up to n hypodense ellipsoids (5-30 mm) in the liver, away from capsule, vessels and
    each other; each darkens the image by 30-80 HU with a ~1.5 mm soft edge and is labelled 2
    where the change is at least half its depth. Changes `hu` and `label` in place."""
    from scipy import ndimage

    liver = label[liver_box.sl] == 1
    if not liver.any():
        return
    depth = ndimage.distance_transform_edt(liver, sampling=grid.spacing)
    sub = liver_box.grid(grid.spacing)
    placed: list[tuple[np.ndarray, float]] = []  # (centre, radius)
    for _ in range(n):
        radius = 0.5 * math.exp(rng.uniform(math.log(5.0), math.log(30.0)))
        centre = None
        # Shrink the lesion until it fits: 40 random deep-enough voxels per size.
        while centre is None and radius >= 2.5:
            candidates = np.argwhere(depth > radius + 2.0)
            for _try in range(40 if len(candidates) else 0):
                i, j, k = candidates[rng.integers(len(candidates))]
                c = np.array([sub.x[i], sub.y[j], sub.z[k]], float)
                if distance_to_vessels(c, segments) > radius + 2.0 and all(
                    np.linalg.norm(c - c2) > radius + r2 + 3.0 for c2, r2 in placed
                ):
                    centre = c
                    break
            else:
                radius *= 0.8
        if centre is None:
            continue
        shape = Ellipsoid(centre, radius * rng.uniform(0.85, 1.15, 3),
                          rotation(*rng.uniform(0, 360, 3)))
        box = shape.box(grid, pad=3.0)
        assert box is not None, "a lesion centred on a voxel of the grid always has a box on it"
        edge = 1.5
        f = np.clip(0.5 - (shape.rho(box.x, box.y, box.z) - 1.0) * radius / (2 * edge), 0, 1)
        f = f * f * (3 - 2 * f)  # smoothstep
        in_liver = label[box.sl] >= 1
        drop = rng.uniform(30.0, 80.0)
        hu[box.sl] -= np.float32(drop) * f * in_liver
        label[box.sl][(f >= 0.5) & in_liver] = 2
        placed.append((centre, radius))
