"""A host scan prepared once for many insertions.

Preparing a scan validates it, finds the liver's bounding box (one pass over the label map),
copies that box (the only copy of scan data it makes), estimates the liver's intensity statistics
from a random sample of its voxels, and sets up a vessel map that is computed lazily, block by
block, only where lesions are tried. Nothing after preparation reads outside the liver's box, so
an insertion costs the same in a 100-slice abdomen and a 300-slice whole-body scan, and later
insertions on the same scan reuse every block already computed.

Every decision (statistics, vessels, candidate centres, clearance) reads the host's private copy
of the box, so inserting in place (``out=`` the host's own arrays) never changes what the host
decides later, and :meth:`HostScan.restore` can put the scan back as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from ._arrays import bounding_slices
from .defaults import EDGE_MM, MAX_ATTEMPTS, PHASE, SUBCAPSULAR_PROBABILITY
from .labels import Label
from .records import InsertionResult
from .types import (
    TypeBank,
    TypeCount,
    TypeMethod,
    TypeModel,
    TypeOut,
    TypePhase,
    TypePhenotype,
    TypeRange,
    TypeSampler,
    TypeSize,
)
from .validation import EMPTY_MASK, check_label_map, check_spacing, check_volume

if TYPE_CHECKING:
    from .realism.gate import QualityGate

_BLOCK_MM = 16.0  # side of a vessel-map block: about one small lesion
_CLEARANCE_CELL_MM = 4.0  # grid of the coarse clearance map
_STATS_SAMPLES = 20_000
_MIN_LIVER_HITS = 256
_VESSEL_TRUNCATE = 4.0  # the vessel filter's reach, in standard deviations (scipy's default)
# Room kept around the liver's box: more than the vessel filter's reach (4 sigma of 1 mm, plus
# half a voxel), so the vessel map of the box equals that of the whole scan.
_BOX_MARGIN_MM = 5.0

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class LiverStats:
    """Robust intensity statistics of the tumour-free liver, in HU."""

    median_hu: float
    spread_hu: float  # robust standard deviation (1.4826 MAD) of parenchyma intensities
    noise_hu: float  # robust standard deviation of the voxel-to-voxel noise
    volume_ml: float  # tumour-free liver volume


class HostScan:
    """A CT volume and its label map, validated and ready for repeated insertions.

    Build one with :func:`prepare_host`. The object keeps references to the caller's arrays (the
    source of every result, and the target of an in-place insertion) and a private copy of the
    liver's bounding box (plus 5 mm), from which it decides where lesions go. :meth:`insert`
    returns new arrays unless told to write elsewhere (``out=``).
    """

    def __init__(self, volume: np.ndarray, label: np.ndarray, spacing: tuple[float, float, float]):
        self.volume = volume
        self.label = label  # uint8, 0/1/2, C order; written only by an in-place insertion
        self.spacing = spacing
        liver = bounding_slices(label)
        if liver is None:
            raise ValueError(EMPTY_MASK)  # a HostScan built without prepare_host
        grow = [int(np.ceil(_BOX_MARGIN_MM / s)) for s in spacing]
        bx, by, bz = (slice(max(b.start - g, 0), min(b.stop + g, n)) for b, g, n in zip(liver, grow, label.shape))
        self.box: Box = (bx, by, bz)  # every voxel an insertion may change lies in it
        self.origin = np.array([b.start for b in self.box])
        # Copies, never views (ascontiguousarray would alias a box that covers the whole scan).
        self._box_volume = volume[self.box].copy(order="C")
        self._box_label = label[self.box].copy(order="C")
        self._liver_voxels: np.ndarray | None = None  # flat indices in the box, only for sparse livers
        self._liver_fraction, sample = self._sample_liver(np.random.default_rng(0), _STATS_SAMPLES)
        self.stats = self._liver_stats(sample)
        # The vessel map of the box, filled block by block where lesions are tried.
        self._block = tuple(max(8, int(round(_BLOCK_MM / s))) for s in spacing)
        self._vessels = np.zeros(self._box_label.shape, dtype=bool)
        self._vessels_done = np.zeros([-(-n // b) for n, b in zip(self._box_label.shape, self._block)], dtype=bool)
        self._clearance: tuple[np.ndarray, np.ndarray] | None = None
        self._clearance_stride = tuple(max(1, int(round(_CLEARANCE_CELL_MM / s))) for s in spacing)

    # --- liver sampling (box coordinates inside, scan coordinates out) ----------------------
    def _sample_liver(self, rng: np.random.Generator, draws: int) -> tuple[float, np.ndarray]:
        """Draw random tumour-free liver voxels of the box by rejection, as flat box indices.

        Rejection costs nothing per voxel; only when the liver is a tiny share of its box are its
        voxel indices listed once.
        """
        flat_label = self._box_label.reshape(-1)
        candidates = rng.integers(0, flat_label.size, size=draws)
        hits = candidates[flat_label[candidates] == Label.LIVER]
        if hits.size >= _MIN_LIVER_HITS:
            return hits.size / draws, hits
        self._liver_voxels = np.flatnonzero(flat_label == Label.LIVER)
        if self._liver_voxels.size == 0:
            raise ValueError("mask has no tumour-free liver voxels (label 1): nowhere to insert a lesion")
        picked = rng.choice(self._liver_voxels, size=min(draws, self._liver_voxels.size))
        return self._liver_voxels.size / flat_label.size, picked

    def sample_liver_voxels(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """About ``count`` random voxels that were tumour-free liver in the input, as (N, 3) scan
        indices."""
        if self._liver_voxels is not None:
            flat = self._liver_voxels[rng.integers(0, self._liver_voxels.size, size=count)]
        else:
            draws = int(np.ceil(count / self._liver_fraction * 1.5)) + 8
            flat = rng.integers(0, self._box_label.size, size=draws)
            flat = flat[self._box_label.reshape(-1)[flat] == Label.LIVER]
        return np.stack(np.unravel_index(flat, self._box_label.shape), axis=1) + self.origin

    def sample_clear_voxels(self, rng: np.random.Generator, count: int, clearance_mm: float) -> np.ndarray:
        """Random voxels whose coarse clearance (distance to capsule, tumour or scan border) is at
        least ``clearance_mm``, as (N, 3) scan indices; empty when no place is that clear.

        Large lesions fit in few places; drawing their candidates from a coarse distance map finds
        those places at once instead of trying thousands of random liver voxels.
        """
        clearance, origin = self.clearance_map()
        stride = np.array(self._clearance_stride)
        cells = np.flatnonzero(clearance >= clearance_mm)
        if cells.size == 0:
            return np.empty((0, 3), dtype=np.int64)
        cells = np.stack(np.unravel_index(cells[rng.integers(0, cells.size, size=count)], clearance.shape), axis=1)
        voxels = (cells + origin) * stride + rng.integers(0, stride, size=(count, 3))
        return np.minimum(voxels, np.array(self._box_label.shape) - 1) + self.origin

    @property
    def clearance_cell_mm(self) -> float:
        """Half the diagonal of a clearance-map cell: the map's worst-case error in mm."""
        return 0.5 * float(np.linalg.norm([s * k for s, k in zip(self.spacing, self._clearance_stride)]))

    def clearance_map(self) -> tuple[np.ndarray, np.ndarray]:
        """Distance in mm from each coarse cell to the nearest voxel that is not free liver, over
        the free liver's bounding box, and that box's first cell (cells of the host's box).

        Computed once, on a grid of about 4 mm, from the input labels; lesions inserted later are
        handled by the exact test of each candidate.
        """
        if self._clearance is None:
            stride = self._clearance_stride
            free = self._box_label[::stride[0], ::stride[1], ::stride[2]] == Label.LIVER
            box = bounding_slices(free) or (slice(0, 0),) * 3  # a liver smaller than a cell: no clear place
            padded = np.pad(free[box], 1)  # beyond the box (and the scan border) is an obstacle
            distance = ndimage.distance_transform_edt(padded, sampling=[s * k for s, k in zip(self.spacing, stride)])
            self._clearance = (distance[1:-1, 1:-1, 1:-1].astype(np.float32), np.array([b.start for b in box]))
        return self._clearance

    def _liver_stats(self, flat_sample: np.ndarray) -> LiverStats:
        label, volume = self._box_label, self._box_volume
        index = np.stack(np.unravel_index(flat_sample, label.shape), axis=1)
        values = volume[tuple(index.T)].astype(np.float64)
        median = float(np.median(values))
        spread = 1.4826 * float(np.median(np.abs(values - median)))
        # Noise from differences of neighbours along the first axis, both in the liver.
        index = index[index[:, 0] + 1 < label.shape[0]]
        index_next = index + (1, 0, 0)
        both = label[tuple(index_next.T)] == Label.LIVER
        diffs = (volume[tuple(index_next[both].T)].astype(np.float64)
                 - volume[tuple(index[both].T)].astype(np.float64))
        noise = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / np.sqrt(2) if diffs.size else spread
        voxel_ml = float(np.prod(self.spacing)) / 1000.0
        return LiverStats(median, spread, noise, self._liver_fraction * label.size * voxel_ml)

    # --- undoing an in-place insertion ------------------------------------------------------
    def restore(self, result: InsertionResult) -> None:
        """Put the scan back into ``result``'s arrays where its lesions changed them.

        After an insertion into the host's own arrays (``out=(host.volume, host.label)``), this
        makes them the scan as prepared again, at the cost of copying the changed boxes: the way to
        draw many variants of one scan without ever copying the whole scan.
        """
        for box in result.changed_boxes:
            inside = tuple(slice(max(b.start, h.start), min(b.stop, h.stop)) for b, h in zip(box, self.box))
            if any(s.start >= s.stop for s in inside):
                continue
            local = tuple(slice(s.start - o, s.stop - o) for s, o in zip(inside, self.origin))
            result.volume[inside] = self._box_volume[local]
            result.label[inside] = self._box_label[local]

    # --- vessels ----------------------------------------------------------------------------
    @property
    def vessel_threshold_hu(self) -> float:
        """Smoothed intensity above which liver tissue counts as vessel.

        Portal-venous vessels are 40-100 HU brighter than parenchyma; two robust standard
        deviations (at least 25 HU) above the median separates them without flagging texture.
        """
        return self.stats.median_hu + max(2.0 * self.stats.spread_hu, 25.0)

    def vessel_mask(self, box: Box) -> np.ndarray:
        """Boolean vessel map of a box of scan voxels inside the host's box (:attr:`box`), as a
        read-only view.

        Small boxes (small lesions, tried many times over a scan's life) read the cached map,
        filling the blocks (about 16 mm) they touch first; a box larger than a few blocks (a large
        lesion) is computed directly, which costs less than filling all the blocks it spans.
        """
        starts = [s.start - o for s, o in zip(box, self.origin)]
        stops = [s.stop - o for s, o in zip(box, self.origin)]
        if min(starts) < 0 or any(b > n for b, n in zip(stops, self._box_label.shape)):
            raise ValueError(f"vessel_mask: box {box} reaches outside the liver's box {self.box}")
        local = tuple(slice(a, b) for a, b in zip(starts, stops))
        blocks = tuple(slice(a // n, (b - 1) // n + 1) for a, b, n in zip(starts, stops, self._block))
        missing = np.argwhere(~self._vessels_done[blocks])
        if missing.size:
            first = np.array([b.start for b in blocks])
            if np.prod([b.stop - b.start for b in blocks]) > 8 and len(missing) > 8:
                out = self._vessels_in(local)
                out.flags.writeable = False
                return out
            shape = self._vessels.shape
            for key in missing + first:
                core = tuple(slice(k * n, min((k + 1) * n, m)) for k, n, m in zip(key, self._block, shape))
                self._vessels[core] = self._vessels_in(core)
                self._vessels_done[tuple(key)] = True
        view = self._vessels[local]
        view.flags.writeable = False
        return view

    def _vessels_in(self, core: tuple[slice, ...]) -> np.ndarray:
        """Vessel map of one box (box coordinates), smoothed with a halo so its edges match a
        whole-scan filter (the host's box keeps 5 mm around the liver for that halo)."""
        sigma = [1.0 / s for s in self.spacing]  # 1 mm smoothing: suppresses noise, keeps 2 mm vessels
        # The halo is the filter's whole reach, so a voxel's value never depends on where the box
        # ends: a block of the cached map and a box computed directly agree bit for bit.
        halo = [int(_VESSEL_TRUNCATE * s + 0.5) for s in sigma]
        shape = self._box_label.shape
        padded = [slice(max(c.start - h, 0), min(c.stop + h, n)) for c, h, n in zip(core, halo, shape)]
        smoothed = ndimage.gaussian_filter(self._box_volume[tuple(padded)].astype(np.float32), sigma, mode="nearest",
                                           truncate=_VESSEL_TRUNCATE)
        inner = tuple(slice(c.start - p.start, c.stop - p.start) for c, p in zip(core, padded))
        return (smoothed[inner] > self.vessel_threshold_hu) & (self._box_label[tuple(core)] == Label.LIVER)

    # --- insertion --------------------------------------------------------------------------
    def insert(
        self,
        *,
        size: TypeSize = "mix",
        count: TypeCount = (1, 3),
        phenotype: TypePhenotype = "mix",
        seed: int | None = None,
        rng: np.random.Generator | None = None,
        edge_mm: TypeRange | None = EDGE_MM,
        phase: TypePhase = PHASE,
        subcapsular_probability: float = SUBCAPSULAR_PROBABILITY,
        mass_effect: bool = True,
        partial_volume: bool | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        method: TypeMethod = "heuristic",
        model: TypeModel = None,
        sampling_steps: int | None = None,
        sampler: TypeSampler | None = None,
        bank: TypeBank = None,
        out: TypeOut | None = None,
        quality_filter: QualityGate | str | os.PathLike[str] | None = None,
    ) -> InsertionResult:
        """Insert lesions into this scan; the options and their defaults are those of
        :func:`synth.insert.synthesize` (and :func:`synth.insert_tumor`)."""
        from .insert import synthesize

        return synthesize(self, size=size, count=count, phenotype=phenotype, seed=seed, rng=rng, edge_mm=edge_mm,
                          phase=phase, subcapsular_probability=subcapsular_probability, mass_effect=mass_effect,
                          partial_volume=partial_volume, max_attempts=max_attempts, method=method, model=model,
                          sampling_steps=sampling_steps, sampler=sampler, bank=bank, out=out,
                          quality_filter=quality_filter)


def prepare_host(volume, mask, *, spacing=(1.0, 1.0, 1.0)) -> HostScan:
    """Validate a CT volume and its liver (or liver + tumour) mask for insertion.

    Parameters
    ----------
    volume : (X, Y, Z) array
        CT in Hounsfield units, integer or float. Not modified.
    mask : (X, Y, Z) array
        0 background, 1 liver, 2 tumour; a binary liver mask is accepted.
    spacing : three floats, keyword-only
        Voxel size in mm along X, Y, Z.

    Returns
    -------
    HostScan
        Reusable for any number of :meth:`HostScan.insert` calls.
    """
    volume = check_volume(volume)
    label = check_label_map(mask, volume.shape)
    spacing = check_spacing(spacing)
    return HostScan(volume, label, spacing)
