"""Multinodular lesions: a main body with one to three smaller nodules fused to it.

Large real liver tumours are seldom one smooth oval: many are a main mass with satellite nodules
or a confluent cluster of several (LiTS-117's tumours of 20 mm and more: solidity about 0.72,
sphericity about 0.73). A cluster is built from ordinary shapes (:func:`~.shape.sample_shape`),
each rasterised on the scan's grid; each nodule's centre lies 0-40 % of its radius outside the
main body's surface in a random direction, so it bulges out yet overlaps the body, and the lesion
is one connected component (checked; a cluster that would split is drawn as a single body). The
union's signed distance is the smallest of the parts' (exact outside each part, the deeper one
inside), and its level is moved so that exactly the requested number of voxels is
inside, as for a single shape: the lesion's size is the one asked for.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..components import lesion_components
from .shape import LesionStencil, rasterize, sample_shape
from .size import equivalent_diameter

CLUSTER_FROM_MM = 20.0  # smaller lesions are single bodies
CLUSTER_PROBABILITY = 0.8  # share of lesions of CLUSTER_FROM_MM and more that are multinodular
_MAIN_SHARE = (0.35, 0.7)  # the main body's share of the lesion's volume
_FAR = np.float32(1e6)


def sample_body(diameter_mm: float, voxel_count: int, spacing, rng: np.random.Generator, *,
                pad_mm: float, cluster_probability: float = CLUSTER_PROBABILITY) -> LesionStencil:
    """A lesion's stencil: a single shape, or for lesions of 20 mm and more (with probability
    ``cluster_probability``) a main body with one to three nodules; exactly ``voxel_count``
    voxels inside either way."""
    if diameter_mm < CLUSTER_FROM_MM or rng.random() >= cluster_probability:
        return rasterize(sample_shape(diameter_mm, rng), voxel_count, spacing, pad_mm=pad_mm)
    return sample_cluster(diameter_mm, voxel_count, spacing, rng, pad_mm=pad_mm)


def sample_cluster(diameter_mm: float, voxel_count: int, spacing, rng: np.random.Generator, *,
                   pad_mm: float) -> LesionStencil:
    """A main body plus one to three nodules (see the module docstring); one connected lesion."""
    spacing = np.asarray(spacing, dtype=np.float64)
    voxel_volume = float(np.prod(spacing))
    nodules = int(rng.integers(1, 4))
    main_share = float(rng.uniform(*_MAIN_SHARE))
    shares = rng.dirichlet(np.full(nodules, 2.0)) * (1.0 - main_share)
    # Parts overlap, so together they are drawn a little larger than the lesion.
    counts = [max(8, int(round(1.15 * share * voxel_count))) for share in (main_share, *shares)]
    shapes = [sample_shape(equivalent_diameter(count, voxel_volume), rng) for count in counts]
    parts = [rasterize(shape, count, spacing, pad_mm=pad_mm) for shape, count in zip(shapes, counts)]
    main = parts[0]
    offsets = [np.zeros(3, dtype=int)]
    for part in parts[1:]:
        radius = 0.5 * part.diameter_mm
        # Centred outside the body by a share of its radius: it bulges out, and still overlaps.
        offsets.append(_offset_beyond_surface(main, rng.normal(size=3), beyond_mm=float(rng.uniform(0.0, 0.4)) * radius,
                                              spacing=spacing))
    union = _union(main, parts, offsets, voxel_count, spacing)
    if union is None:  # rare (a thin overlap lost when the union is levelled): never a split lesion
        return rasterize(shapes[0], voxel_count, spacing, pad_mm=pad_mm)
    return union


def _offset_beyond_surface(main: LesionStencil, direction: np.ndarray, *, beyond_mm: float, spacing) -> np.ndarray:
    """Voxel offset from the main centre, along ``direction``, of the point ``beyond_mm`` outside
    the main body's surface (the last voxel inside it, moved on by ``beyond_mm``)."""
    direction = direction / np.linalg.norm(direction)
    centre = np.array(main.half_size)
    step = 0.5 * float(min(spacing))
    surface_mm = 0.0
    for t in np.arange(step, 10.0 * max(main.half_size) * float(max(spacing)), step):
        index = np.rint(centre + direction * t / spacing).astype(int)
        if np.any(index < 0) or np.any(index >= main.distance_mm.shape) or main.distance_mm[tuple(index)] > 0:
            break
        surface_mm = t
    return np.rint(direction * (surface_mm + beyond_mm) / spacing).astype(int)


def _union(main: LesionStencil, parts, offsets, voxel_count: int, spacing) -> LesionStencil | None:
    """The parts laid at their offsets in one box centred on the main centre, levelled to hold
    exactly ``voxel_count`` voxels; None when the result is not one connected body."""
    half = np.max([np.abs(o) + np.array(p.half_size) for p, o in zip(parts, offsets)], axis=0)
    shape = tuple(int(2 * h + 1) for h in half)
    distance = np.full(shape, _FAR, dtype=np.float32)
    depth = np.full(shape, _FAR, dtype=np.float32)
    for part, offset in zip(parts, offsets):
        start = half + offset - np.array(part.half_size)
        box = tuple(slice(int(s), int(s) + n) for s, n in zip(start, part.distance_mm.shape))
        np.minimum(distance[box], part.distance_mm, out=distance[box])
        np.minimum(depth[box], part.depth, out=depth[box])
    flat = distance.reshape(-1)
    if voxel_count >= flat.size:
        raise ValueError("cluster stencil too small for its voxel count")  # a bug, not user input
    last_in, first_out = np.partition(flat, (voxel_count - 1, voxel_count))[[voxel_count - 1, voxel_count]]
    level = np.float32(0.5 * (last_in + first_out))
    distance -= level
    inside = distance < 0
    _, count_parts = lesion_components(inside)
    if count_parts != 1:
        return None
    index = np.nonzero(inside)
    bx, by, bz = (slice(int(i.min()), int(i.max()) + 1) for i in index)
    axes = [(np.arange(n) - h) * s for n, h, s in zip(shape, half, spacing)]
    rho = np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)
    count = int(np.count_nonzero(inside))
    return replace(
        main,
        half_size=(int(half[0]), int(half[1]), int(half[2])),
        distance_mm=distance,
        depth=depth,
        inside=inside,
        voxel_count=count,
        diameter_mm=equivalent_diameter(count, float(np.prod(spacing))),
        inner_radius_mm=float(rho[~inside].min()),
        body_box=(bx, by, bz),
        offset=None,
    )

