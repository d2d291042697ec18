"""The intrahepatic vessel trees: growing them in mm, drawing them on a grid, distances to them.

A tree is an (n, 8) float array of tapering tube segments: start xyz, end xyz, start radius and end
radius (mm). A plain array rather than a list of Tubes keeps the whole-tree distance query
(``distance_to_vessels``) vectorised.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from .geometry import Grid, tube, unit

if TYPE_CHECKING:
    from .anatomy import LiverShape


def grow_vessel_tree(rng, liver: LiverShape, root, directions, radii, max_segments) -> np.ndarray:
    """Grow a tree of tapering tubes from `root` inside the liver.

    Each segment runs 3-6 radii along its direction (jittered; a few tries to stay inside the
    liver with a margin), then splits in two with Murray's law (r^3 = r1^3 + r2^3):
    a main child that keeps most of the calibre and a thinner side branch that turns more, as
    portal and hepatic veins do. Breadth-first growth, so the segment cap trims the finest twigs.
    Returns an (n, 8) array: start xyz, end xyz, start and end radius (mm).
    """
    segments: list[tuple[float, ...]] = []
    queue = deque((np.asarray(root, float), unit(d), r) for d, r in zip(directions, radii))
    while queue and len(segments) < max_segments:
        start, direction, radius = queue.popleft()
        length = float(np.clip(radius * rng.uniform(3.0, 6.0), 4.0, 25.0))
        tries = unit(direction + rng.normal(0.0, 0.3, (6, 3)))
        # End and mid points of each try must lie inside the liver, clear of the capsule.
        probe = np.concatenate([start + length * tries, start + 0.5 * length * tries])
        depth = liver.signed(probe[:, 0], probe[:, 1], probe[:, 2])
        ok = (depth[:6] < -(radius + 1.0)) & (depth[6:] < -radius)
        if not ok.any():
            continue
        k = int(np.argmax(ok))
        end, direction = probe[k], tries[k]
        # Drawn with a slight taper; the children's calibre follows from the parent's (the taper
        # is cosmetic, so it does not drain the tree).
        segments.append((*start, *end, radius, max(0.93 * radius, 0.8)))
        if radius < 1.2:
            continue
        share = rng.uniform(0.1, 0.45)
        axis = unit(np.cross(direction, rng.normal(size=3)))
        for frac, angle in ((1 - share, rng.uniform(5, 25)), (share, -rng.uniform(35, 70))):
            t = math.radians(angle)
            child = direction * math.cos(t) + np.cross(axis, direction) * math.sin(t)
            queue.append((end, unit(child), radius * frac ** (1 / 3)))
    return np.array(segments, dtype=float).reshape(-1, 8)


def vessel_fraction(grid: Grid, segments: np.ndarray) -> np.ndarray:
    """Partial-volume fraction (0..1) of the vessel tubes over `grid` (a box-sized sub-grid).

    Each tube is drawn only in its own bounding box; the one-voxel ramp across the wall keeps
    1-2 mm vessels visible on coarse grids instead of breaking them into dots.
    """
    frac = np.zeros(grid.shape, dtype=np.float32)
    ramp = float(np.mean(grid.spacing[:2]))
    for seg in segments:
        segment = tube(seg[0:3], seg[3:6], seg[6], seg[7])
        box = segment.box(grid, pad=ramp)
        if box is None:
            continue
        f = np.clip(0.5 - segment.signed(box.x, box.y, box.z) / ramp, 0.0, 1.0)
        np.maximum(frac[box.sl], f, out=frac[box.sl])
    return frac


def distance_to_vessels(point, segments) -> float:
    """Distance (mm) from a point to the nearest vessel wall (negative inside a vessel)."""
    if len(segments) == 0:
        return np.inf
    a, b = segments[:, 0:3], segments[:, 3:6]
    ab = b - a
    t = np.clip(((point - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-9), 0, 1)
    dist = np.linalg.norm(point - (a + t[:, None] * ab), axis=1)
    return float((dist - (segments[:, 6] + (segments[:, 7] - segments[:, 6]) * t)).min())
