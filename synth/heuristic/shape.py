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

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .size import equivalent_diameter

LOBULATION_FROM_MM = 20.0  # large lesions are lobulated


@dataclass(frozen=True)
class LesionShape:
    """A lesion's shape in its own frame, independent of any voxel grid."""

    radius_mm: float  # equivalent radius of the undeformed ellipsoid
    semi_axes: np.ndarray  # (3,) relative semi-axes, product 1
    rotation: np.ndarray  # (3, 3); column j is the lesion's axis j in scan (mm) coordinates
    wave_vectors: np.ndarray  # (K, 3) in the lesion frame, for f(u)
    wave_amplitudes: np.ndarray  # (K,)
    wave_phases: np.ndarray  # (K,)

    @property
    def max_radius_mm(self) -> float:
        """An upper bound of the surface radius in any direction."""
        return self.radius_mm * float(self.semi_axes.max()) * (1.0 + float(np.abs(self.wave_amplitudes).sum()))


def sample_shape(diameter_mm: float, rng: np.random.Generator, *, elongation_sd: float = 0.15) -> LesionShape:
    """Draw a random shape whose undeformed equivalent diameter is ``diameter_mm``.

    ``elongation_sd`` is the standard deviation of the log semi-axes: 0.15 gives longest-to-shortest
    axis ratios mostly between 1.1 and 1.7, as seen for liver metastases and HCC.
    """
    log_axes = rng.normal(0.0, elongation_sd, size=3)
    semi_axes = np.exp(log_axes - log_axes.mean())  # product 1: volume kept
    # A normalised 4-D Gaussian is a uniformly random unit quaternion, i.e. a uniform rotation.
    rotation = Rotation.from_quat(rng.normal(size=4)).as_matrix()
    # Gentle irregularity for every lesion, lobes for large ones.
    frequencies = [rng.uniform(1.0, 2.0, size=4)]
    amplitudes = [rng.uniform(0.01, 0.04, size=4)]
    if diameter_mm >= LOBULATION_FROM_MM:
        count = int(rng.integers(3, 6))
        frequencies.append(rng.uniform(3.0, 5.0, size=count))
        amplitudes.append(rng.uniform(0.03, 0.08, size=count))
    frequencies = np.concatenate(frequencies)
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


def rasterize(shape: LesionShape, voxel_count: int, spacing, *, pad_mm: float) -> LesionStencil:
    """Rasterise ``shape`` scaled so that exactly ``voxel_count`` voxels lie inside.

    The surface is then placed halfway (in relative radius) between the last voxel in and the first
    voxel out, so a soft edge centred on it is above one half exactly on the ``inside`` voxels.
    ``pad_mm`` is the margin kept around the body for edges and location checks.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    voxel_volume = float(np.prod(spacing))
    # The scale that matches the voxel count is near the one that matches the volume; give room.
    reach = shape.max_radius_mm * 1.3 * max(1.0, (voxel_count * voxel_volume / _volume(shape)) ** (1 / 3))
    half = tuple(int(np.ceil((reach + pad_mm) / s)) for s in spacing)
    axes = [np.arange(-h, h + 1, dtype=np.float32) * np.float32(s) for h, s in zip(half, spacing)]
    grid = (axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :])
    rho = np.sqrt(grid[0] ** 2 + grid[1] ** 2 + grid[2] ** 2)
    safe_rho = np.maximum(rho, np.float32(1e-6))
    rot = shape.rotation.astype(np.float32)
    # Unit direction in the lesion frame: u_j = (R^T x)_j / rho.
    u = [(rot[0, j] * grid[0] + rot[1, j] * grid[1] + rot[2, j] * grid[2]) / safe_rho for j in range(3)]
    inv_axes = (1.0 / shape.semi_axes).astype(np.float32)
    ellipsoid_norm = np.sqrt((u[0] * inv_axes[0]) ** 2 + (u[1] * inv_axes[1]) ** 2 + (u[2] * inv_axes[2]) ** 2)
    # The centre voxel has no direction; a tiny norm puts its surface far away: deep inside.
    ellipsoid_norm = np.maximum(ellipsoid_norm, np.float32(1e-6))
    wave = np.zeros_like(rho)
    for k_vec, amp, phase in zip(shape.wave_vectors, shape.wave_amplitudes, shape.wave_phases):
        wave += np.float32(amp) * np.cos(k_vec[0] * u[0] + k_vec[1] * u[1] + k_vec[2] * u[2] + phase)
    surface = np.float32(shape.radius_mm) * np.maximum(1.0 + wave, 0.5) / ellipsoid_norm
    relative = rho / surface

    flat = relative.ravel()
    if voxel_count >= flat.size:
        raise ValueError("lesion stencil too small for its voxel count")  # a bug, not user input
    last_in, first_out = np.partition(flat, (voxel_count - 1, voxel_count))[[voxel_count - 1, voxel_count]]
    level = 0.5 * (last_in + first_out)
    inside = relative < level
    count = int(np.count_nonzero(inside))
    return LesionStencil(
        half_size=half,
        distance_mm=rho - level * surface,
        depth=relative / level,
        inside=inside,
        voxel_count=count,
        diameter_mm=equivalent_diameter(count, voxel_volume),
        inner_radius_mm=float(rho[~inside].min()),
    )


def _volume(shape: LesionShape) -> float:
    return 4.0 / 3.0 * np.pi * shape.radius_mm**3
