"""Geometry for the phantom: the voxel grid, boxes on it, rotations and analytic shapes in mm.

Shapes are evaluated by broadcasting 1-D coordinate arrays ((nx,1,1), (1,ny,1), (1,1,nz)) over the
bounding box of each structure instead of over the whole volume; that is what keeps the phantom
fast. Every shape works in world mm, so the same shape gives the same anatomy on any grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Grid(NamedTuple):
    """Voxel-centre coordinates in mm along each axis (1-D, ascending) of a (sub-)volume."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def shape(self):
        return (self.x.size, self.y.size, self.z.size)


def make_grid(shape, spacing) -> Grid:
    """The grid of a volume centred on the world origin."""
    x, y, z = (((np.arange(n) - (n - 1) / 2) * s).astype(np.float32) for n, s in zip(shape, spacing))
    return Grid(x, y, z, spacing)


class Box(NamedTuple):
    """The voxels of a grid inside an axis-aligned mm box: slices plus broadcastable coordinates."""

    sl: tuple[slice, slice, slice]
    x: np.ndarray  # (nx, 1, 1)
    y: np.ndarray  # (1, ny, 1)
    z: np.ndarray  # (1, 1, nz)

    def grid(self, spacing) -> Grid:
        return Grid(self.x.ravel(), self.y.ravel(), self.z.ravel(), spacing)


def voxels_in_box(grid: Grid, lo, hi) -> Box | None:
    """Voxels whose centres lie in [lo, hi] (mm); None when the box misses the grid."""
    sl: list[slice] = []
    for axis, a, b in zip((grid.x, grid.y, grid.z), lo, hi):
        i0, i1 = np.searchsorted(axis, a, "left"), np.searchsorted(axis, b, "right")
        if i1 <= i0:
            return None
        sl.append(slice(int(i0), int(i1)))
    return Box(
        (sl[0], sl[1], sl[2]),
        grid.x[sl[0], None, None],
        grid.y[None, sl[1], None],
        grid.z[None, None, sl[2]],
    )


def rotation(rx=0.0, ry=0.0, rz=0.0) -> np.ndarray:
    """Rotation matrix (columns = local axes in world coordinates) from angles in degrees."""
    a, b, c = np.radians([rx, ry, rz])
    mx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    my = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    mz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return mz @ my @ mx


def unit(v) -> np.ndarray:
    """`v` scaled to length 1 along its last axis."""
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@dataclass(frozen=True)
class Ellipsoid:
    centre: np.ndarray  # mm
    semi: np.ndarray  # semi-axes along the local axes, mm
    rot: np.ndarray  # 3x3, columns are the local axes in world coordinates

    def extent(self) -> np.ndarray:
        """Half-size of the world-axis-aligned bounding box."""
        return np.sqrt(((self.rot * self.semi) ** 2).sum(axis=1))

    def box(self, grid: Grid, pad=0.0) -> Box | None:
        e = self.extent() + pad
        return voxels_in_box(grid, self.centre - e, self.centre + e)

    def rho(self, x, y, z) -> np.ndarray:
        """Normalised radius (1 on the surface); broadcasts."""
        # Python floats keep float32 coordinate arrays in float32.
        cx, cy, cz = self.centre.tolist()
        r = self.rot.tolist()
        d = (x - cx, y - cy, z - cz)
        total = 0.0
        for j, semi in enumerate(self.semi.tolist()):
            u = r[0][j] * d[0] + r[1][j] * d[1] + r[2][j] * d[2]
            total = total + (u / semi) ** 2
        return np.sqrt(total)

    def signed(self, x, y, z) -> np.ndarray:
        """Approximate signed distance in mm (negative inside); exact on the smallest axis."""
        return (self.rho(x, y, z) - 1.0) * float(self.semi.min())


def ellipsoid(centre, semi, rot=(0.0, 0.0, 0.0)) -> Ellipsoid:
    """An Ellipsoid from its centre and semi-axes (mm) and rotation angles (degrees)."""
    return Ellipsoid(np.asarray(centre, float), np.asarray(semi, float), rotation(*rot))


@dataclass(frozen=True)
class Tube:
    """A straight tube from a to b whose radius tapers linearly from r0 to r1 (mm)."""

    a: np.ndarray
    b: np.ndarray
    r0: float
    r1: float

    def box(self, grid: Grid, pad=0.0) -> Box | None:
        r = max(self.r0, self.r1) + pad
        return voxels_in_box(grid, np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r)

    def signed(self, x, y, z) -> np.ndarray:
        """Distance to the axis minus the local radius (mm, negative inside); broadcasts."""
        ax, ay, az = (self.b - self.a).tolist()
        length2 = ax * ax + ay * ay + az * az or 1e-9
        x0, y0, z0 = self.a.tolist()
        dx, dy, dz = x - x0, y - y0, z - z0
        t = np.clip((dx * ax + dy * ay + dz * az) / length2, 0.0, 1.0)
        dist = np.sqrt((dx - t * ax) ** 2 + (dy - t * ay) ** 2 + (dz - t * az) ** 2)
        return dist - (self.r0 + (self.r1 - self.r0) * t)


def tube(a, b, r0, r1=None) -> Tube:
    """A Tube from a to b (mm); constant radius r0 unless r1 is given."""
    r1 = r0 if r1 is None else r1
    return Tube(np.asarray(a, float), np.asarray(b, float), float(r0), float(r1))


def polyline(points, radius) -> list[Tube]:
    """Tubes of one radius joining consecutive points."""
    return [tube(p, q, radius) for p, q in zip(points[:-1], points[1:])]


class SmoothField:
    """A smooth random function of position (mm): a sum of random plane waves.

    Defined analytically in world space, so it is the same at any voxel grid and can be evaluated
    at single points (vessel growth) as well as over a box (broadcast 1-D coordinates).
    """

    def __init__(self, rng, n_waves, wavelength_mm, sd):
        self.k = unit(rng.normal(size=(n_waves, 3))) * (
            2 * np.pi / rng.uniform(*wavelength_mm, size=(n_waves, 1))
        )
        self.phase = rng.uniform(0, 2 * np.pi, n_waves)
        self.amp = sd * math.sqrt(2.0 / n_waves)  # each cosine has variance 1/2

    def __call__(self, x, y, z):
        if np.ndim(x) == 1 and np.shape(x) == np.shape(y) == np.shape(z):
            # A list of points: one matrix product instead of a loop over waves.
            phases = np.stack([x, y, z], axis=-1) @ self.k.T + self.phase
            return self.amp * np.cos(phases).sum(axis=-1)
        out = 0.0
        for (kx, ky, kz), phase in zip(self.k.tolist(), self.phase.tolist()):
            out = out + np.cos(kx * x + ky * y + kz * z + phase)
        return self.amp * out


def smooth_min(values, k):
    """Log-sum-exp soft minimum with a blending length k (mm); exact far from ties."""
    m = values[0]
    for v in values[1:]:
        m = np.minimum(m, v)
    total = 0.0
    for v in values:
        total = total + np.exp(-(v - m) / k)
    return m - k * np.log(total)
