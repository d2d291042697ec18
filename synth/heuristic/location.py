"""Where a lesion goes: inside the liver, clear of the capsule, vessels and other tumours.

A candidate centre is a random tumour-free liver voxel; it is accepted when, with the lesion's
stencil laid on the scan there,
- everything within ``capsule_margin_mm`` of the lesion's surface is liver (the lesion sits inside
  the organ, away from its capsule; subcapsular lesions use a margin of zero),
- nothing within the edge width plus ``gap_mm`` is tumour (existing or just inserted),
- at most ``vessel_tolerance`` of the lesion's voxels are vessel in the host scan.
Each test reads only the lesion's box, so its cost does not grow with the scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._arrays import dilate_cube
from ..labels import Label
from .shape import LesionStencil

GUIDED_FROM_MM = 15.0


@dataclass(frozen=True)
class PlacementRules:
    """How far a lesion must stay from the capsule and other tumours (mm), and vessel overlap."""

    capsule_margin_mm: float
    gap_mm: float
    vessel_tolerance: float


def box_at(center, half_size, shape):
    """The stencil box centred on ``center``, clipped to the scan.

    Returns the box in scan coordinates and the matching slices of the stencil's arrays.
    """
    box, local = [], []
    for c, h, n in zip(center, half_size, shape):
        lo, hi = max(c - h, 0), min(c + h + 1, n)
        box.append(slice(lo, hi))
        local.append(slice(lo - (c - h), hi - (c - h)))
    return tuple(box), tuple(local)


def sample_location(host, label: np.ndarray, stencil: LesionStencil, rules: PlacementRules,
                    edge_mm: float, rng: np.random.Generator, *, attempts: int):
    """Return an accepted centre voxel (3 ints), its box and the stencil slices matching the box,
    or ``None`` after ``attempts`` tries.

    ``label`` is the label map being built, so lesions placed earlier in the call are avoided.
    """
    distance = stencil.distance_mm
    needs_liver = distance <= rules.capsule_margin_mm
    needs_liver_count = np.count_nonzero(needs_liver)
    # Most rejected candidates fail at the footprint's outer layer (the capsule): test that layer
    # first, by flat offsets into the label map, and read the whole footprint only for survivors.
    layer = needs_liver & (distance > rules.capsule_margin_mm - 2.0 * float(max(host.spacing)))
    layer_offsets = _flat_offsets(layer, stencil.half_size, label.shape)
    flat_label = label.reshape(-1)  # a view: the label map is C-ordered
    # Tumours must stay clear of the changed zone and, on voxels coarser than that zone, of every
    # voxel touching the body (26-connected), so that lesions never merge into one component.
    needs_free = distance <= edge_mm + rules.gap_mm
    body_box = stencil.body_box
    ring = tuple(slice(b.start - 1, b.stop + 1) for b in body_box)  # the pad keeps one voxel spare
    needs_free[ring] |= dilate_cube(stencil.inside[ring])
    # A crowded liver rejects candidates for touching other tumours: every second voxel along each
    # axis finds any tumour two voxels across at an eighth of the cost of the full test below.
    sparse_free = np.zeros_like(needs_free)
    sparse_free[::2, ::2, ::2] = needs_free[::2, ::2, ::2]
    free_offsets = _flat_offsets(sparse_free, stencil.half_size, label.shape)
    # Vessels matter only under the lesion's body: read the vessel map on the body's box alone.
    body = stencil.inside[body_box]
    max_vessel_voxels = rules.vessel_tolerance * stencil.voxel_count
    # Large lesions draw candidates from the clearance map: few places can hold them.
    guided = stencil.diameter_mm >= GUIDED_FROM_MM
    clearance = stencil.inner_radius_mm + min(rules.capsule_margin_mm, edge_mm + rules.gap_mm) - host.clearance_cell_mm
    tried, batch = 0, 4  # most lesions take one of the first few candidates: start small
    while tried < attempts:
        batch = min(batch * 2, 32, attempts - tried)
        candidates = (host.sample_clear_voxels(rng, batch, clearance) if guided
                      else host.sample_liver_voxels(rng, batch))
        if len(candidates) == 0:
            if guided:
                return None  # no place in the liver is clear enough
            tried += batch  # rejection sampling missed the liver this time; try again
            continue
        screened = _screen(candidates, stencil.half_size, flat_label, label.shape, layer_offsets, free_offsets)
        for center, plausible in zip(candidates, screened):
            tried += 1
            if not plausible:
                continue
            box, local = box_at(center, stencil.half_size, label.shape)
            region = label[box]
            liver_part = needs_liver[local]
            # Where the box was clipped, the part of the footprint beyond the scan is not liver.
            if np.count_nonzero(liver_part) < needs_liver_count or not region[liver_part].all():
                continue
            if (region[needs_free[local]] == Label.TUMOR).any():
                continue
            # The body lies inside the liver footprint, which the test above kept inside the scan.
            vessels = host.vessel_mask(tuple(slice(c - h + b.start, c - h + b.stop)
                                             for c, h, b in zip(center, stencil.half_size, body_box)))
            if np.count_nonzero(vessels[body]) > max_vessel_voxels:
                continue
            return tuple(int(c) for c in center), box, local
    return None


def _screen(candidates: np.ndarray, half_size, flat_label: np.ndarray, shape, layer_offsets: np.ndarray,
            free_offsets: np.ndarray) -> np.ndarray:
    """False for candidates that certainly fail: some voxel of the footprint's outer layer is not
    liver, or a sparse sample of the footprint's clear zone holds tumour. One gather for the whole
    batch; candidates whose box the scan's border clips are left to the full test (True)."""
    half = np.array(half_size)
    whole = np.all((candidates >= half) & (candidates + half < np.array(shape)), axis=1)
    plausible = np.ones(len(candidates), dtype=bool)
    at = candidates[whole] @ np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    if at.size:
        liver_ok = flat_label[at[:, None] + layer_offsets[None, :]].all(axis=1)
        free_ok = ~(flat_label[at[:, None] + free_offsets[None, :]] == Label.TUMOR).any(axis=1)
        plausible[whole] = liver_ok & free_ok
    return plausible


def _flat_offsets(mask: np.ndarray, half_size, shape) -> np.ndarray:
    """Offsets, in a C-ordered array of ``shape``, from the stencil's centre to its ``mask`` voxels."""
    index = np.nonzero(mask)
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    return sum((i - h) * k for i, h, k in zip(index, half_size, strides))
