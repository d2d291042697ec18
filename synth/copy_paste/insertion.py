"""The copy-paste painter: what ``synthesize(..., method="copy-paste", bank=...)`` uses instead of
the heuristic shape and texture.

For each lesion the heuristic draws a diameter (and a placement round's rules) as usual; here
a real donor lesion of about that size is taken from the bank, turned by a random rotation and
scaled in mm to the drawn diameter on the host's voxel grid (one ``scipy.ndimage.affine_transform``
of the donor's CT crop and masks). The turned donor mask is the lesion's stencil, so the
heuristic's placement rules (inside the liver, clear of the capsule, vessels and other tumours)
and its mass effect apply unchanged, and the label is exactly the stencil.

Intensity: the donor's contrast to its own liver is kept. A voxel's target is the host liver's
level (median HU) plus the donor's HU minus the donor liver's level. Inside the lesion the target
replaces the host's value (weight 1), so the donor's own texture and noise come with it and the
host's noise is not added on top; outside, the donor's surrounding liver fades out over the edge
width, linearly, so that no seam is left. Noise: resampling is split so that the donor's noise
keeps its amplitude (a linear interpolation of the whole crop would about halve it), and that
amplitude is scaled to the host's noise level, so a pasted lesion is neither smoother nor noisier
than the liver around it. Donor voxels that were not tumour-free liver (other
tumours, background, beyond the donor's crop) never reach the host: the host keeps its own values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from .._arrays import bounding_slices
from ..components import lesion_components
from ..heuristic.shape import LesionStencil
from ..heuristic.size import equivalent_diameter
from .bank import BankLesion, LesionBank, cached_bank, noise_hu_of

__all__ = ["MAX_SCALE", "NOISE_SCALE_LIMITS", "CopyPastePainter", "DonorStencil", "donor_parts", "donor_stencil"]

#: Donors are preferably chosen among those whose equivalent diameter is within this factor of the
#: drawn one (so a donor is scaled by at most 1.5x or 1/1.5x); when the bank holds none, the donor
#: nearest in size is scaled to the drawn size whatever the factor.
MAX_SCALE = 1.5
#: The donor's noise is brought to the host's (ratio of the two noise levels, measured on the host's
#: grid), by a factor within these limits.
NOISE_SCALE_LIMITS = (0.5, 2.0)
_SMOOTH_VOXELS = 1.0  # Gaussian sigma, in donor voxels, of the donor's smooth part
_FAR_MM = 1e6  # distance given to stencil voxels beyond the pad


@dataclass(frozen=True)
class DonorStencil(LesionStencil):
    """A lesion stencil cut from a real donor: the donor's turned, scaled mask, plus
    ``contrast_hu`` (donor HU minus the donor liver's level on the stencil's grid; NaN where the
    host keeps its own values) and the donor's id."""

    contrast_hu: np.ndarray | None = None
    donor: str = ""
    scale: float = 1.0  # donor size factor: drawn diameter / donor diameter

    def crop(self, local: tuple[slice, slice, slice]) -> DonorStencil:
        cropped = cast(DonorStencil, super().crop(local))  # dataclasses.replace keeps the class
        return replace(cropped, contrast_hu=None if self.contrast_hu is None else self.contrast_hu[local])


def donor_stencil(donor: BankLesion, diameter_mm: float, voxel_count: int, spacing, *, pad_mm: float,
                  rng: np.random.Generator, noise_hu: float | None = None, parts=None) -> DonorStencil:
    """Turn ``donor`` by a random rotation and scale it to ``voxel_count`` voxels of ``spacing`` (mm).

    The stencil's box is centred on the donor's centroid and keeps ``pad_mm`` (plus one voxel)
    around the lesion, as :func:`synth.heuristic.shape.rasterize` does. ``noise_hu`` is the host's
    noise (HU): the donor's voxel-to-voxel fluctuations are scaled to it (None keeps them).
    ``parts`` is :func:`donor_parts` of the donor when the caller keeps it.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    donor_spacing = np.asarray(donor.spacing, dtype=np.float64)
    scale = diameter_mm / donor.diameter_mm
    rotation = Rotation.random(random_state=rng).as_matrix()
    centroid_mm = donor.centroid_mm
    reach_mm = float(np.sqrt(((np.argwhere(donor.lesion) * donor_spacing - centroid_mm) ** 2).sum(axis=1)).max())
    reach_mm = reach_mm * scale + float(donor_spacing.max()) * scale + 0.5 * float(spacing.max())
    half = np.array([int(np.ceil((reach_mm + pad_mm) / s)) + 1 for s in spacing])
    shape = tuple(int(2 * h + 1) for h in half)
    # Output voxel i lies at (i - half) * spacing mm from the centre; it reads the donor at
    # centroid + rotation @ offset / scale, in donor voxels.
    matrix = np.diag(1.0 / donor_spacing) @ (rotation / scale) @ np.diag(spacing)
    offset = centroid_mm / donor_spacing - matrix @ half

    def warp(array, order, box=None, mode="constant"):
        """``array`` (donor grid) resampled on the stencil's grid, or on its ``box`` alone."""
        start = np.zeros(3) if box is None else np.array([b.start for b in box], dtype=np.float64)
        size = shape if box is None else tuple(b.stop - b.start for b in box)
        return ndimage.affine_transform(array.astype(np.float32), matrix, offset=offset + matrix @ start,
                                        output_shape=size, order=order, mode=mode, cval=0.0)

    inside = _top_voxels(warp(donor.lesion, order=1), voxel_count)
    components, count = lesion_components(inside)
    if count > 1:  # a thin bridge lost in the turn: keep the lesion one component
        inside = components == np.argmax(np.bincount(components.ravel())[1:]) + 1
    found = bounding_slices(inside)
    if found is None:  # the turned mask always keeps its centre voxel: a bug, not user input
        raise RuntimeError(f"donor {donor.lesion_id} vanished when turned and scaled by {scale:.2f}")
    body = (found[0], found[1], found[2])
    # Only voxels within the pad of the body can change (the paint box); nothing is resampled
    # beyond it, nor the lesion's own field beyond the body.
    grow = [int(np.ceil(pad_mm / s)) + 1 for s in spacing]
    near = tuple(slice(max(b.start - g, 0), min(b.stop + g, n)) for b, g, n in zip(body, grow, shape))
    local_body = tuple(slice(b.start - n.start, b.stop - n.start) for b, n in zip(body, near))
    inside_near = inside[near]
    liver = warp(donor.liver, order=0, box=near) > 0.5
    # Linear interpolation averages neighbours: across the lesion's edge it would mix lesion and
    # liver (a lesion paler than its donor), and everywhere it would about halve the donor's noise.
    # So the donor is split into a smooth field of the lesion, one of its surroundings (each
    # smoothed within its own region and extended beyond it), interpolated linearly and joined
    # at the turned lesion's surface, and the rest (noise and fine texture), taken from the nearest
    # donor voxel, which keeps its amplitude; that part is scaled so that the noise, measured on
    # the host's grid as the host's is, matches ``noise_hu``.
    lesion_field, around_field, fine = donor_parts(donor) if parts is None else parts
    donor_hu = warp(around_field, order=1, box=near, mode="nearest")
    on_body = inside_near[local_body]
    donor_hu[local_body][on_body] = warp(lesion_field, order=1, box=body, mode="nearest")[on_body]
    fine = warp(fine, order=0, box=near, mode="nearest")
    measured = noise_hu_of(donor_hu + fine, inside_near | liver)
    scale_noise = 1.0
    if noise_hu is not None and measured > 0:
        scale_noise = float(np.clip(noise_hu / measured, *NOISE_SCALE_LIMITS))
    donor_hu += np.float32(scale_noise) * fine
    contrast = np.full(shape, np.nan, dtype=np.float32)
    contrast[near] = np.where(inside_near | liver, donor_hu - np.float32(donor.liver_hu), np.float32(np.nan))

    # Signed distance to the surface, which lies half a voxel beyond the last voxel in: negative
    # inside (measured on the body's box alone, which holds every inside voxel), positive outside.
    # Beyond the pad nothing reads the distance but to see that it is large (as rasterize's box).
    half_voxel = 0.5 * float(spacing.min())
    outer = np.full(shape, _FAR_MM, dtype=np.float64)
    outer[near] = ndimage.distance_transform_edt(~inside_near, sampling=spacing)
    ring = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(body, shape))
    inner = np.zeros(shape, dtype=np.float64)
    inner[ring] = ndimage.distance_transform_edt(inside[ring], sampling=spacing)
    distance = np.where(inside, -(inner - half_voxel), outer - half_voxel).astype(np.float32)
    count = int(np.count_nonzero(inside))
    diameter = equivalent_diameter(count, float(np.prod(spacing)))
    depth = np.clip(1.0 + distance / np.float32(diameter / 2.0), 0.0, None).astype(np.float32)
    centre = tuple(int(h) for h in half)
    return DonorStencil(
        half_size=(int(half[0]), int(half[1]), int(half[2])),
        distance_mm=distance,
        depth=depth,
        inside=inside,
        voxel_count=count,
        diameter_mm=diameter,
        inner_radius_mm=float(inner[centre]),
        body_box=body,
        contrast_hu=contrast,
        donor=donor.lesion_id,
        scale=float(scale),
    )


def donor_parts(donor: BankLesion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The donor crop as a smooth field of the lesion, one of its surroundings, and the rest
    (noise and fine texture): on the lesion, lesion field + rest is the crop; around it, the
    surroundings' field + rest."""
    lesion_field, around_field = (_smooth_within(donor.volume, part) for part in (donor.lesion, ~donor.lesion))
    return lesion_field, around_field, donor.volume - np.where(donor.lesion, lesion_field, around_field)


def _smooth_within(volume: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``volume`` smoothed within ``region`` alone (normalised convolution) and extended beyond it:
    far from the region, where no weight reaches, the region's mean."""
    weight = region.astype(np.float32)
    total = ndimage.gaussian_filter(volume * weight, _SMOOTH_VOXELS, mode="nearest")
    norm = ndimage.gaussian_filter(weight, _SMOOTH_VOXELS, mode="nearest")
    mean = float(volume[region].mean()) if region.any() else 0.0
    reached = norm > 1e-3
    return np.where(reached, total / np.where(reached, norm, 1.0), np.float32(mean)).astype(np.float32)


def _top_voxels(field: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` voxels of highest ``field`` (the turned mask's interpolated values), cut
    halfway between the last voxel in and the first voxel out, so that the lesion has exactly the
    drawn size whenever the turned mask can give it."""
    flat = field.reshape(-1)
    count = min(max(int(count), 1), int(np.count_nonzero(flat > 0)))
    if count >= flat.size:
        return field > 0
    order = np.partition(flat, (flat.size - count - 1, flat.size - count))
    level = 0.5 * (order[flat.size - count - 1] + order[flat.size - count])
    inside = field > level
    if np.count_nonzero(inside) == 0:
        inside = field >= order[flat.size - count]
    return inside


class CopyPastePainter:
    """Provides a donor-shaped stencil per lesion (:meth:`stencil`) and its HU target
    (:meth:`__call__`); used by :func:`synth.insert.synthesize` for ``method="copy-paste"``.

    Parameters
    ----------
    bank : bank folder or LesionBank
        The donors (read once per process for a folder).
    liver_hu : float
        The host liver's level (median HU), which the donor's contrast is added to.
    noise_hu : float, optional
        The host's noise (HU, robust SD); the donor's noise is scaled to it (within
        :data:`NOISE_SCALE_LIMITS`). None keeps the donor's.
    max_scale : float
        Donors within this size factor of the drawn diameter are preferred (see :data:`MAX_SCALE`).
    """

    phenotype = "copy-paste"  # the lesion record's phenotype: the donor decides the appearance

    def __init__(self, bank: LesionBank | str, *, liver_hu: float, noise_hu: float | None = None,
                 max_scale: float = MAX_SCALE):
        self.bank = cached_bank(bank)
        if not max_scale >= 1.0:
            raise ValueError(f"max_scale must be >= 1 (a size factor); got {max_scale!r}")
        self.liver_hu = float(liver_hu)
        self.noise_hu = None if noise_hu is None else float(noise_hu)
        self.max_scale = float(max_scale)

    def stencil(self, diameter_mm: float, voxel_count: int, spacing, *, pad_mm: float, rng: np.random.Generator,
                size_range: tuple[float, float] | None = None) -> DonorStencil:
        """A random donor of about ``diameter_mm`` (of the requested ``size_range`` in mm when the
        bank has one), turned and scaled to ``voxel_count`` voxels."""
        donor = self.bank.donor_for(diameter_mm, rng, max_scale=self.max_scale, size_range=size_range)
        key = f"parts:{donor.lesion_id}"
        if key not in self.bank.derived:
            self.bank.derived[key] = donor_parts(donor)
        return donor_stencil(donor, diameter_mm, voxel_count, spacing, pad_mm=pad_mm, rng=rng,
                             noise_hu=self.noise_hu, parts=self.bank.derived[key])

    def __call__(self, volume: np.ndarray, paint_box, center, stencil: DonorStencil, spacing, rng) -> np.ndarray:
        """HU values (float32, the paint box's shape) that the lesion gives its box: the host liver's
        level plus the donor's contrast; the host's own values where the donor has none."""
        host = volume[paint_box].astype(np.float32)
        target = np.float32(self.liver_hu) + stencil.contrast_hu
        keep = np.isnan(target)
        target[keep] = host[keep]
        return target

    @staticmethod
    def edge_weight(distance_mm: np.ndarray, edge_mm: float) -> np.ndarray:
        """Weight of the target: 1 on the lesion (the donor replaces the host, its noise is not
        added to the host's), falling linearly to 0 at ``edge_mm`` outside the surface, where the
        donor's surrounding liver gives way to the host's."""
        weight = np.clip(1.0 - distance_mm / np.float32(edge_mm), 0.0, 1.0).astype(np.float32)
        weight[distance_mm < 0] = 1.0
        return weight
