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
width, linearly, so that no seam is left. Donor voxels that were not tumour-free liver (other
tumours, background, beyond the donor's crop) never reach the host: the host keeps its own values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from .._arrays import bounding_slices
from ..components import lesion_components
from ..heuristic.shape import LesionStencil
from ..heuristic.size import equivalent_diameter
from .bank import BankLesion, LesionBank, cached_bank

__all__ = ["MAX_SCALE", "CopyPastePainter", "DonorStencil", "donor_stencil"]

#: Donors are preferably chosen among those whose equivalent diameter is within this factor of the
#: drawn one (so a donor is scaled by at most 1.5x or 1/1.5x); when the bank holds none, the donor
#: nearest in size is scaled to the drawn size whatever the factor.
MAX_SCALE = 1.5


@dataclass(frozen=True)
class DonorStencil(LesionStencil):
    """A lesion stencil cut from a real donor: the donor's turned, scaled mask, plus
    ``contrast_hu`` (donor HU minus the donor liver's level on the stencil's grid; NaN where the
    host keeps its own values) and the donor's id."""

    contrast_hu: np.ndarray | None = None
    donor: str = ""
    scale: float = 1.0  # donor size factor: drawn diameter / donor diameter

    def crop(self, local: tuple[slice, slice, slice]) -> DonorStencil:
        cropped = super().crop(local)
        return replace(cropped, contrast_hu=self.contrast_hu[local])


def donor_stencil(donor: BankLesion, diameter_mm: float, voxel_count: int, spacing, *, pad_mm: float,
                  rng: np.random.Generator) -> DonorStencil:
    """Turn ``donor`` by a random rotation and scale it to ``voxel_count`` voxels of ``spacing`` (mm).

    The stencil's box is centred on the donor's centroid and keeps ``pad_mm`` (plus one voxel)
    around the lesion, as :func:`synth.heuristic.shape.rasterize` does.
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

    def warp(array, order, mode="constant"):
        return ndimage.affine_transform(array.astype(np.float32), matrix, offset=offset, output_shape=shape,
                                        order=order, mode=mode, cval=0.0)

    field = warp(donor.lesion, order=1)
    inside = _top_voxels(field, voxel_count)
    parts, count = lesion_components(inside)
    if count > 1:  # a thin bridge lost in the turn: keep the lesion one component
        inside = parts == np.argmax(np.bincount(parts.ravel())[1:]) + 1
    liver = warp(donor.liver, order=0) > 0.5
    donor_hu = warp(donor.volume, order=1, mode="nearest")
    contrast = donor_hu - np.float32(donor.liver_hu)
    contrast[~(inside | liver)] = np.nan

    voxel_mm = float(spacing.min())
    inner = ndimage.distance_transform_edt(inside, sampling=spacing)
    outer = ndimage.distance_transform_edt(~inside, sampling=spacing)
    # The surface lies half a voxel beyond the last voxel in: negative inside, positive outside.
    distance = np.where(inside, -(inner - 0.5 * voxel_mm), outer - 0.5 * voxel_mm).astype(np.float32)
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
        body_box=bounding_slices(inside),
        contrast_hu=contrast.astype(np.float32),
        donor=donor.lesion_id,
        scale=float(scale),
    )


def _top_voxels(field: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` voxels of highest ``field`` (the turned mask's interpolated values), cut
    halfway between the last voxel in and the first voxel out, so that the lesion has exactly the
    drawn size whenever the turned mask can give it."""
    flat = field.reshape(-1)
    count = int(min(max(count, 1), np.count_nonzero(flat > 0)))
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
    max_scale : float
        Donors within this size factor of the drawn diameter are preferred (see :data:`MAX_SCALE`).
    """

    phenotype = "copy-paste"  # the lesion record's phenotype: the donor decides the appearance

    def __init__(self, bank: LesionBank | str, *, liver_hu: float, max_scale: float = MAX_SCALE):
        self.bank = cached_bank(bank)
        if not max_scale >= 1.0:
            raise ValueError(f"max_scale must be >= 1 (a size factor); got {max_scale!r}")
        self.liver_hu = float(liver_hu)
        self.max_scale = float(max_scale)

    def stencil(self, diameter_mm: float, voxel_count: int, spacing, *, pad_mm: float,
                rng: np.random.Generator) -> DonorStencil:
        """A random donor of about ``diameter_mm``, turned and scaled to ``voxel_count`` voxels."""
        donor = self.bank.donor_for(diameter_mm, rng, max_scale=self.max_scale)
        return donor_stencil(donor, diameter_mm, voxel_count, spacing, pad_mm=pad_mm, rng=rng)

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
