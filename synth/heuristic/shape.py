"""Lesion shapes: a randomly rotated ellipsoid whose surface is deformed by smooth waves.

A shape is a *star-shaped* body: along each direction ``u`` from the centre its surface lies at
radius ``b(u) = r_eq * (1 + f(u)) / |A^-1 u|``, where ``A`` holds the ellipsoid's relative semi-axes
(product 1, so ``r_eq`` is the equivalent radius before deformation) and ``f`` is a sum of a few
cosine waves over the unit sphere. Low-frequency waves make every lesion slightly irregular; large
lesions add higher-frequency waves, which read as lobulation.

Being star-shaped gives two things for free: the body is connected, and the signed distance to the
surface along the ray, ``rho - b(u)``, is exact radially, which is what the soft edge needs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .._arrays import bounding_slices
from .size import equivalent_diameter

LOBULATION_FROM_MM = 0.0  # every lesion gets lobes, stronger as it grows (docs/realism.md)


@dataclass(frozen=True)
class LesionShape:
    """A lesion's shape in its own frame, independent of any voxel grid."""

    radius_mm: float  # equivalent radius of the undeformed ellipsoid
    semi_axes: np.ndarray  # (3,) relative semi-axes, product 1
    rotation: np.ndarray  # (3, 3); column j is the lesion's axis j in scan (mm) coordinates
    wave_vectors: np.ndarray  # (K, 3) in the lesion frame, for f(u)
    wave_amplitudes: np.ndarray  # (K,)
    wave_phases: np.ndarray  # (K,)


def sample_shape(diameter_mm: float, rng: np.random.Generator, *, elongation_sd: float = 0.25) -> LesionShape:
    """Draw a random shape whose undeformed equivalent diameter is ``diameter_mm``.

    ``elongation_sd`` is the standard deviation of the log semi-axes: 0.25 gives longest-to-shortest
    axis ratios mostly between 1.2 and 2.0; measured on LiTS-117, real tumours have a median of
    1.56 (docs/realism.md), which 0.15 undershot.
    """
    log_axes = rng.normal(0.0, elongation_sd, size=3)
    semi_axes = np.exp(log_axes - log_axes.mean())  # product 1: volume kept
    rotation = _random_rotation(rng)
    # Few waves suffice (each costs a cosine per voxel): three gentle ones (6-15 % of the radius)
    # and two to four lobes (12-27 %), scaled from 40 % at 0 mm to full strength at 20 mm. Weaker
    # waves left synthetic lesions measurably smoother and rounder than real ones (realism report).
    frequency_sets = [rng.uniform(1.0, 2.0, size=3)]
    amplitudes = [rng.uniform(0.06, 0.15, size=3)]
    if diameter_mm >= LOBULATION_FROM_MM:
        count = int(rng.integers(2, 5))
        strength = min(1.0, 0.4 + 0.6 * (diameter_mm - LOBULATION_FROM_MM) / 20.0)
        frequency_sets.append(rng.uniform(3.0, 5.0, size=count))
        amplitudes.append(strength * rng.uniform(0.12, 0.27, size=count))
    frequencies = np.concatenate(frequency_sets)
    directions = rng.normal(size=(frequencies.size, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return LesionShape(
        radius_mm=diameter_mm / 2.0,
        semi_axes=semi_axes,
        rotation=rotation,
        wave_vectors=directions * frequencies[:, None],
        wave_amplitudes=np.concatenate(amplitudes),
        wave_phases=rng.uniform(0.0, 2.0 * np.pi, size=frequencies.size),
    )


@dataclass(frozen=True)
class LesionStencil:
    """A shape rasterised on a voxel box centred on a voxel; the box is ``2 * half_size + 1`` wide.

    ``distance_mm`` is the signed distance to the surface along the ray from the centre (negative
    inside), ``depth`` the relative radius (0 at the centre, 1 on the surface, used by phenotypes
    with a core), and ``inside`` the lesion's voxels: exactly ``voxel_count`` of them.
    """

    half_size: tuple[int, int, int]
    distance_mm: np.ndarray
    depth: np.ndarray
    inside: np.ndarray
    voxel_count: int
    diameter_mm: float  # equivalent diameter of ``inside``
    inner_radius_mm: float  # distance from the centre to the nearest voxel outside
    body_box: tuple[slice, slice, slice]  # the box of the ``inside`` voxels
    offset: tuple[slice, slice, slice] | None = None  # set by crop: where this part came from
    # Thick-slice hosts only (synth.heuristic.partial_volume): the lesion on sub-slices; then
    # ``distance_mm`` and ``depth`` are their minimum over each slice's sub-slices.
    sub_slices: SubSlices | None = None

    def crop(self, local: tuple[slice, slice, slice]) -> LesionStencil:
        """The part of the stencil inside ``local`` (which must hold the whole body); sizes and
        counts describe the whole lesion."""
        bx, by, bz = (slice(b.start - c.start, b.stop - c.start) for b, c in zip(self.body_box, local))
        body_box = (bx, by, bz)
        sub_slices = None if self.sub_slices is None else self.sub_slices.crop(local)
        return replace(self, distance_mm=self.distance_mm[local], depth=self.depth[local],
                       inside=self.inside[local], body_box=body_box, offset=local, sub_slices=sub_slices)

    def around_body(self, margin_mm: float, spacing) -> tuple[slice, slice, slice]:
        """The body's box grown by ``margin_mm`` (and one voxel), clipped to the stencil.

        Every voxel within ``margin_mm`` of the surface lies in it: the radial distance to the
        surface is never shorter than the straight one. On sub-slices the body is every voxel
        that any of its sub-slices puts inside (more than ``inside`` holds)."""
        body: tuple[slice, ...] = self.body_box
        if self.sub_slices is not None:
            body = bounding_slices(self.distance_mm < 0) or body  # never empty: it holds the body
        grow = [int(np.ceil(margin_mm / s)) + 1 for s in spacing]
        gx, gy, gz = (slice(max(b.start - g, 0), min(b.stop + g, n))
                      for b, g, n in zip(body, grow, self.inside.shape))
        return gx, gy, gz


@dataclass(frozen=True)
class SubSlices:
    """A lesion drawn on ``count`` sub-slices per slice: the arrays are ``count`` times longer along
    z than the stencil's, sub-slice ``m`` of slice ``k`` at index ``k * count + m``."""

    count: int
    distance_mm: np.ndarray  # signed distance to the surface at each sub-slice's centre
    depth: np.ndarray  # relative radius at each sub-slice's centre

    def crop(self, local: tuple[slice, slice, slice]) -> SubSlices:
        """The sub-slices of the slices ``local`` selects."""
        x, y, z = local
        fine = (x, y, slice(z.start * self.count, z.stop * self.count))
        return replace(self, distance_mm=self.distance_mm[fine], depth=self.depth[fine])


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix: a normalised 4-D Gaussian is a uniform unit quaternion."""
    w, x, y, z = _unit_quaternion(rng)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _unit_quaternion(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


def surface_radius(shape: LesionShape, directions: np.ndarray) -> np.ndarray:
    """Radius in mm of the surface along unit ``directions`` ((N, 3), lesion frame)."""
    scaled = directions / shape.semi_axes.astype(np.float32)
    ellipsoid_norm = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
    waves = directions @ shape.wave_vectors.T.astype(np.float32)
    waves += shape.wave_phases.astype(np.float32)
    np.cos(waves, out=waves)
    wave = waves @ shape.wave_amplitudes.astype(np.float32)
    wave += 1.0
    np.maximum(wave, 0.5, out=wave)
    wave *= np.float32(shape.radius_mm)
    return wave / ellipsoid_norm


def _sphere_directions(count: int = 128) -> np.ndarray:
    # A Fibonacci lattice: nearly uniform directions, deterministic.
    i = np.arange(count) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / count)
    azimuth = np.pi * (1.0 + 5.0**0.5) * i
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)],
                    axis=1).astype(np.float32)


_DIRECTIONS = _sphere_directions()


# The surface radius is a smooth function of direction, so for lesions several voxels across it is
# evaluated on a coarser grid (cells of about a sixth of the radius: a step of 1/6 rad at the
# surface) and interpolated linearly to the voxels; the radius of each voxel, and so the inside
# and the voxel count, stay exact. Measured on 20-50 mm lesions, the interpolated surface moves by
# well under a voxel, and rasterising costs several times less (docs/benchmarks.md).
_CELL_PER_RADIUS = 1.0 / 8.0
FAR = np.float32(1e6)  # distance and depth of voxels too far out to matter


def rasterize(shape: LesionShape, voxel_count: int, spacing, *, pad_mm: float) -> LesionStencil:
    """Rasterise ``shape`` scaled so that exactly ``voxel_count`` voxels lie inside.

    The surface is then placed halfway (in relative radius) between the last voxel in and the first
    voxel out, so a soft edge centred on it is above one half exactly on the ``inside`` voxels.
    ``pad_mm`` is the margin kept around the body for edges and location checks; one more voxel
    on each side holds the ring of voxels touching the body.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    voxel_volume = float(np.prod(spacing))
    scale, extent, reach = body_scale(shape, voxel_count * voxel_volume)
    reach_per_axis = extent + 0.5 * spacing
    reach = reach + 0.5 * float(spacing.max())
    # Coarse cells along each axis, in voxels; a half-size that is a multiple of it puts a node on
    # both ends of the box.
    cell = surface_cells(shape, scale, spacing)
    half = tuple(int(np.ceil((int(np.ceil((r + pad_mm) / s)) + 1) / k) * k)
                 for r, s, k in zip(reach_per_axis, spacing, cell))
    indices = [np.arange(-h, h + 1) for h in half]
    rho, near, rho_near, surface = scaled_surface(shape, scale, indices, spacing, cell, reach + pad_mm)
    relative = rho_near / surface

    if voxel_count >= relative.size:
        raise ValueError("lesion stencil too small for its voxel count")  # a bug, not user input
    last_in, first_out = np.partition(relative, (voxel_count - 1, voxel_count))[[voxel_count - 1, voxel_count]]
    level = np.float32(0.5 * (last_in + first_out))
    distance = np.full(rho.size, FAR, dtype=np.float32)
    distance_near = rho_near - level * surface
    distance[near] = distance_near
    depth = np.full(rho.size, FAR, dtype=np.float32)
    depth[near] = relative / level
    inside = (distance < 0).reshape(rho.shape)
    body = near[distance_near < 0]
    count = body.size
    box_shape = rho.shape
    body_index = (body // (box_shape[1] * box_shape[2]), (body // box_shape[2]) % box_shape[1], body % box_shape[2])
    bx, by, bz = (slice(int(i.min()), int(i.max()) + 1) for i in body_index)
    return LesionStencil(
        half_size=(half[0], half[1], half[2]),
        distance_mm=distance.reshape(box_shape),
        depth=depth.reshape(box_shape),
        inside=inside,
        voxel_count=count,
        diameter_mm=equivalent_diameter(count, voxel_volume),
        inner_radius_mm=float(rho[~inside].min()),
        body_box=(bx, by, bz),
    )


def body_scale(shape: LesionShape, volume_mm3: float) -> tuple[float, np.ndarray, float]:
    """The factor that gives ``shape`` a body of about ``volume_mm3``, and the scaled body's reach
    in mm along each scan axis and in any direction (10 % spare for the sampled directions)."""
    # The body's volume is (1/3) * integral of radius^3 over directions, so the scale is known
    # before rasterising.
    radii = surface_radius(shape, _DIRECTIONS)
    body_volume = 4.0 / 3.0 * np.pi * float(np.mean(radii.astype(np.float64) ** 3))
    scale = (volume_mm3 / body_volume) ** (1.0 / 3.0)
    # Extent along each scan axis (an elongated lesion needs a box, not a cube).
    extent = (np.abs(_DIRECTIONS @ shape.rotation.T.astype(np.float32)) * radii[:, None]).max(axis=0)
    return scale, extent * scale * 1.1, float(radii.max()) * scale * 1.1


def surface_cells(shape: LesionShape, scale: float, steps) -> np.ndarray:
    """Voxels per coarse cell along each axis, for grid steps ``steps`` (mm)."""
    return np.maximum(1, np.round(_CELL_PER_RADIUS * shape.radius_mm * scale / steps)).astype(int)


def scaled_surface(shape: LesionShape, scale: float, indices: list[np.ndarray], steps, cell: np.ndarray,
                   limit_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scaled surface radius along the directions of a grid's voxels near the centre.

    ``indices`` are the consecutive voxel indices of the grid along each axis (0 at the lesion's
    centre) and ``steps`` its voxel size in mm. Returns the radius of every voxel (mm), the flat
    indices of the voxels within ``limit_mm`` of the centre, their radius, and the surface radius
    along their direction (mm).
    """
    axes = [i.astype(np.float32) * np.float32(s) for i, s in zip(indices, steps)]
    rho = _radius_on_grid(axes)
    # Only voxels within the limit of the centre can matter: the box's corners (about half of
    # it) stay "far outside" without evaluating the surface there.
    near = np.flatnonzero(rho <= limit_mm)
    rho_near = rho.reshape(-1)[near]
    if (cell == 1).all():
        surface = _surface_at(shape, axes, near, rho_near)
    else:
        # Nodes up to one cell beyond the limit are evaluated, so that every voxel that matters
        # interpolates between evaluated nodes (the others hold a placeholder never read). A
        # last node past the grid's end closes an axis whose length is not a whole number of cells.
        node_axes = [(i[0] + k * np.arange(-(-(i.size - 1) // k) + 1)).astype(np.float32) * np.float32(s)
                     for i, k, s in zip(indices, cell, steps)]
        node_rho = _radius_on_grid(node_axes)
        node_near = np.flatnonzero(node_rho <= limit_mm + float(np.linalg.norm(cell * np.asarray(steps))))
        nodes = np.ones(node_rho.shape, dtype=np.float32)
        nodes.reshape(-1)[node_near] = _surface_at(shape, node_axes, node_near, node_rho.reshape(-1)[node_near])
        for axis, k in enumerate(cell):
            nodes = _upsample_linear(nodes, int(k), axis)
        nodes = nodes[: rho.shape[0], : rho.shape[1], : rho.shape[2]]
        surface = nodes.reshape(-1)[near]
    surface *= np.float32(scale)
    return rho, near, rho_near, surface


def _radius_on_grid(axes: list[np.ndarray]) -> np.ndarray:
    """Distance (mm) of every node of the grid ``axes`` (offsets in mm) from the centre."""
    return np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)


def _surface_at(shape: LesionShape, axes: list[np.ndarray], flat: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Unscaled surface radius (mm) along the direction of the grid nodes ``flat`` (flat indices
    into the grid of ``axes``, offsets in mm), whose distances from the centre are ``rho``."""
    # Unravel by hand and gather the float32 axes: several times cheaper than unravel_index and
    # float64 arithmetic on large grids.
    ny, nz = axes[1].size, axes[2].size
    offsets = np.stack([axes[0][flat // (ny * nz)], axes[1][(flat // nz) % ny], axes[2][flat % nz]], axis=1)
    # Unit direction in the lesion frame (the centre, with no direction, gets +x).
    directions = offsets @ shape.rotation.astype(np.float32)
    directions /= np.maximum(rho, np.float32(1e-6))[:, None]
    directions[rho == 0] = (1.0, 0.0, 0.0)
    return surface_radius(shape, directions)


def _upsample_linear(values: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` between nodes ``factor`` voxels apart (first and last
    nodes kept): ``n`` nodes become ``(n - 1) * factor + 1`` values."""
    if factor == 1:
        return values
    fine = np.arange((values.shape[axis] - 1) * factor + 1)
    node = np.minimum(fine // factor, values.shape[axis] - 2)
    weight = ((fine - node * factor) / factor).astype(np.float32)
    weight = weight.reshape([-1 if a == axis else 1 for a in range(values.ndim)])
    low = np.take(values, node, axis=axis)
    return low + (np.take(values, node + 1, axis=axis) - low) * weight
