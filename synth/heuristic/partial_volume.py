"""Thick slices: a lesion drawn on sub-slices and averaged over each slice's sensitivity profile.

A CT slice is not a plane: each slice reports the mean attenuation over its slice sensitivity
profile along z, whose full width at half maximum is the nominal slice thickness. A lesion that only
grazes a 3 or 5 mm slice therefore shows there at a fraction of its contrast (partial volume), and a
small lesion fades in and out over neighbouring slices instead of starting with a step. Drawing the
lesion directly on the coarse grid samples it at the slice centre only, so on thick slices a 5 mm
lesion becomes a block with a hard step along z.

On such hosts the lesion is drawn on ``n`` sub-slices per slice (evenly spaced at the centres of
``n`` equal parts of the slice) and every slice takes the mean of its sub-slices: the slice
profile is modelled as a box of width the slice spacing, i.e. contiguous slices whose thickness
equals their spacing. (Helical scanners have bell-shaped profiles with the same FWHM; the box is
the usual first-order model and needs no thickness beyond the spacing, which NIfTI headers give.)
What is averaged is the lesion's change, soft-edge weight times intensity change, and its
occupancy, which makes the lesion's volume fraction in each voxel. The lesion keeps the volume of
the requested voxel count, and the label is that many voxels of largest volume fraction: for a
lesion a few slices thick, the "at least half inside" rule moved to the nearest cut that keeps the
size (measured cuts 0.37-0.57), so sizes and records stay those of the label, as on thin slices;
a lesion thinner than a slice, which no voxel holds by half, is labelled on its most occupied
voxels.

The sub-slices only refine z, and only inside the lesion's box: the in-plane grid is already fine
on the scans this is for (under 1 mm in-plane, 2.5-5 mm slices). The lesion's centre is placed at a
random sub-slice of its centre slice, since real lesions do not sit on slice centres.
"""

from __future__ import annotations

import math

import numpy as np

from .blend import soft_edge
from .shape import (
    FAR,
    LesionShape,
    LesionStencil,
    SubSlices,
    body_scale,
    rasterize,
    scaled_surface,
    surface_cells,
)
from .size import equivalent_diameter
from .texture import Appearance, lesion_pattern

# Automatic rule: sub-slices when the slices are at least THICK_RATIO times the in-plane pixel
# and at least THICK_FROM_MM thick. Thinner slices are narrower than the 1.5-3 mm soft edge, which
# already blurs them; on near-isotropic grids the lesion is as blocky in-plane as along z, and
# blurring z alone would make it look stretched.
THICK_RATIO = 2.0
THICK_FROM_MM = 2.5
# Sub-slices are at most SUB_SLICE_MM thick, two thirds of the thinnest soft edge: measured on 5-15 mm
# lesions with a 1.5 mm edge on 3 and 5 mm slices, the change is then within 0.3 HU RMS (of 40 HU)
# of 31 sub-slices a slice; at most MAX_SUB_SLICES per slice.
SUB_SLICE_MM = 1.0
MAX_SUB_SLICES = 8


def sub_slice_count(spacing, partial_volume: bool | None) -> int:
    """Sub-slices per slice for a host of ``spacing`` (mm, X Y Z); 1 means none.

    ``partial_volume`` None applies the automatic rule (slices at least twice the in-plane pixel
    and at least 2.5 mm), True draws on sub-slices whenever the slices are thicker than
    ``SUB_SLICE_MM`` (1 mm), False never does. Raises TypeError for anything else.
    """
    if partial_volume is not None and not isinstance(partial_volume, (bool, np.bool_)):
        raise TypeError(f"partial_volume must be True, False or None (automatic); got {partial_volume!r}")
    in_plane, slice_mm = min(float(spacing[0]), float(spacing[1])), float(spacing[2])
    if partial_volume is None:
        partial_volume = slice_mm >= THICK_RATIO * in_plane and slice_mm >= THICK_FROM_MM
    if not partial_volume:
        return 1
    return min(MAX_SUB_SLICES, math.ceil(slice_mm / SUB_SLICE_MM - 1e-9))


def lesion_stencil(shape: LesionShape, voxel_count: int, spacing, *, pad_mm: float, sub_slices: int,
                   rng: np.random.Generator) -> LesionStencil:
    """The stencil of ``shape`` with ``voxel_count`` label voxels: rasterised directly with one
    sub-slice (``rng`` untouched), else on ``sub_slices`` sub-slices with the centre on a random one."""
    if sub_slices == 1:
        return rasterize(shape, voxel_count, spacing, pad_mm=pad_mm)
    return rasterize_on_sub_slices(shape, voxel_count, spacing, pad_mm=pad_mm, sub_slices=sub_slices,
                                   centre_sub_slice=int(rng.integers(sub_slices)))


def rasterize_on_sub_slices(shape: LesionShape, voxel_count: int, spacing, *, pad_mm: float, sub_slices: int,
                            centre_sub_slice: int) -> LesionStencil:
    """Rasterise ``shape`` on ``sub_slices`` sub-slices per slice with the volume of ``voxel_count``
    voxels, and label the ``voxel_count`` voxels of largest volume fraction.

    The lesion's centre lies at sub-slice ``centre_sub_slice`` (0 to ``sub_slices - 1``, along +z)
    of the stencil's centre voxel. The returned stencil is on the host's grid; its ``distance_mm``
    and ``depth`` are the minimum over each voxel's sub-slices (what placement needs: a voxel is as
    close to the lesion as its closest part), and ``sub_slices`` holds the values per sub-slice.
    ``pad_mm`` is as in :func:`~synth.heuristic.shape.rasterize`.
    """
    n, a = int(sub_slices), int(centre_sub_slice)
    if not 0 <= a < n:
        raise ValueError(f"centre_sub_slice must be in [0, {n - 1}]; got {a}")
    spacing = np.asarray(spacing, dtype=np.float64)
    steps = spacing / np.array([1.0, 1.0, n])  # the sub-slice grid
    voxel_volume = float(np.prod(spacing))
    scale, extent, reach = body_scale(shape, voxel_count * voxel_volume)
    # Half a slice more along z: the centre may sit anywhere within its slice.
    half = [int(np.ceil((r + 0.5 * s + pad_mm) / s)) + 1 for r, s in zip(extent, spacing)]
    half[2] += 1
    hx, hy, hz = half
    # Sub-slice m of slice k (0-based in the box) is at index k * n + m; the centre is sub-slice a of
    # slice hz, index 0.
    first = -(hz * n + a)
    indices = [np.arange(-hx, hx + 1), np.arange(-hy, hy + 1), np.arange(first, first + (2 * hz + 1) * n)]
    limit = reach + 0.5 * float(spacing.max()) + pad_mm
    rho, near, rho_near, surface = scaled_surface(shape, scale, indices, steps, surface_cells(shape, scale, steps),
                                                  limit)
    fine_shape = rho.shape
    relative = rho_near / surface
    # The lesion keeps its volume: voxel_count voxels' worth of sub-slices lie inside.
    fine_count = voxel_count * n
    if fine_count >= relative.size:
        raise ValueError("lesion stencil too small for its voxel count")  # a bug, not user input
    last_in, first_out = np.partition(relative, (fine_count - 1, fine_count))[[fine_count - 1, fine_count]]
    level = np.float32(0.5 * (last_in + first_out))
    distance = np.full(fine_shape, FAR, dtype=np.float32)
    distance.reshape(-1)[near] = rho_near - level * surface
    depth = np.full(fine_shape, FAR, dtype=np.float32)
    depth.reshape(-1)[near] = relative / level
    coarse_shape = (2 * hx + 1, 2 * hy + 1, 2 * hz + 1)
    fraction = _profile_mean(_occupancy(distance, float(steps[2])), n)
    nearest = _profile_min(distance, n)
    # The label: the voxel_count voxels of largest volume fraction, ties to the voxel whose nearest
    # sub-slice lies deeper inside. Their volume is the lesion's, so where the lesion is a few
    # slices thick the cut falls at a fraction of about one half (docs/synthesis.md, "Thick
    # slices"); a lesion thinner than a slice is labelled on its most occupied voxels.
    # Only voxels the lesion occupies at all can be among them: rank those alone.
    occupied = np.flatnonzero(fraction > 0)
    if occupied.size < voxel_count:
        occupied = np.arange(fraction.size)
    order = np.lexsort((nearest.reshape(-1)[occupied], -fraction.reshape(-1)[occupied]))
    inside = np.zeros(coarse_shape, dtype=bool)
    inside.reshape(-1)[occupied[order[:voxel_count]]] = True
    count = int(np.count_nonzero(inside))
    # Distance of each voxel's centre (the mean of its sub-slices) from the lesion's centre.
    centre_z = (np.arange(-hz, hz + 1) + ((n - 1) / 2.0 - a) / n) * spacing[2]
    rho_voxels = np.sqrt((np.arange(-hx, hx + 1)[:, None, None] * spacing[0]) ** 2
                         + (np.arange(-hy, hy + 1)[None, :, None] * spacing[1]) ** 2 + centre_z[None, None, :] ** 2)
    body = np.nonzero(inside)
    bx, by, bz = (slice(int(i.min()), int(i.max()) + 1) for i in body)
    return LesionStencil(
        half_size=(hx, hy, hz),
        distance_mm=nearest,
        depth=_profile_min(depth, n),
        inside=inside,
        voxel_count=count,
        diameter_mm=equivalent_diameter(count, voxel_volume),
        inner_radius_mm=float(rho_voxels[~inside].min()),
        body_box=(bx, by, bz),
        sub_slices=SubSlices(count=n, distance_mm=distance, depth=depth),
    )


def edge_weight(stencil: LesionStencil, edge_mm: float) -> np.ndarray:
    """The soft-edge weight of each voxel (``edge_mm`` the 10-90 % width): on sub-slices, its mean
    over the slice profile."""
    if stencil.sub_slices is None:
        return soft_edge(stencil.distance_mm, edge_mm)
    return _profile_mean(soft_edge(stencil.sub_slices.distance_mm, edge_mm), stencil.sub_slices.count)


def lesion_change(appearance: Appearance, stencil: LesionStencil, spacing, rng: np.random.Generator) -> np.ndarray:
    """The lesion's HU pattern before the soft edge (:func:`~.texture.lesion_pattern`: body, ring,
    core, centre, mottling), such that ``edge_weight * lesion_change`` is its change in each voxel:
    on sub-slices, the slice-profile mean of weight times pattern, over the mean weight (zero where
    the weight is)."""
    if stencil.sub_slices is None:
        return lesion_pattern(appearance, stencil.distance_mm, stencil.depth, spacing, rng)
    fine = stencil.sub_slices
    steps = (float(spacing[0]), float(spacing[1]), float(spacing[2]) / fine.count)
    weight = soft_edge(fine.distance_mm, appearance.edge_mm)
    weighted = _profile_mean(weight * lesion_pattern(appearance, fine.distance_mm, fine.depth, steps, rng),
                             fine.count)
    mean_weight = _profile_mean(weight, fine.count)
    return np.divide(weighted, mean_weight, out=np.zeros_like(weighted), where=mean_weight > 0)


def volume_fraction(stencil: LesionStencil, spacing) -> np.ndarray:
    """The lesion's volume fraction in each voxel along z, from its sub-slices (0 or 1 without
    sub-slices); ``spacing`` is the host's, in mm."""
    if stencil.sub_slices is None:
        return stencil.inside.astype(np.float32)
    fine = stencil.sub_slices
    return _profile_mean(_occupancy(fine.distance_mm, float(spacing[2]) / fine.count), fine.count)


def _occupancy(distance_mm: np.ndarray, thickness_mm: float) -> np.ndarray:
    """Share of a sub-slice of ``thickness_mm`` inside a surface at signed distance ``distance_mm``
    from its centre: exact for a surface across the slice, and finer than in or out."""
    return np.clip(0.5 - distance_mm / np.float32(thickness_mm), 0.0, 1.0).astype(np.float32, copy=False)


def _profile_mean(values: np.ndarray, count: int) -> np.ndarray:
    """Mean of consecutive groups of ``count`` sub-slices along z: the box slice profile."""
    # A sum of strided views: several times faster than a mean over a short last axis.
    total = values[:, :, 0::count].astype(np.float32)
    for m in range(1, count):
        total += values[:, :, m::count]
    total *= np.float32(1.0 / count)
    return total


def _profile_min(values: np.ndarray, count: int) -> np.ndarray:
    """Minimum of consecutive groups of ``count`` sub-slices along z."""
    lowest = values[:, :, 0::count].copy()
    for m in range(1, count):
        np.minimum(lowest, values[:, :, m::count], out=lowest)
    return lowest
