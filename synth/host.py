"""A host scan prepared once for many insertions.

Preparing a scan validates it, estimates the liver's intensity statistics from a random sample of
liver voxels, and sets up a vessel map that is computed lazily, block by block, only where lesions
are tried. Nothing is done over the whole scan that a single lesion does not need, so the first
insertion is fast, and later insertions on the same scan reuse every block already computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ._arrays import bounding_slices
from .defaults import EDGE_MM, MAX_ATTEMPTS, SUBCAPSULAR_PROBABILITY
from .labels import Label
from .records import InsertionResult
from .types import TypeCount, TypeMethod, TypeModel, TypePhenotype, TypeRange, TypeSampler, TypeSize
from .validation import check_label_map, check_spacing, check_volume

_BLOCK_MM = 16.0  # side of a vessel-map block: about one small lesion
_CLEARANCE_CELL_MM = 4.0  # grid of the coarse clearance map
_STATS_SAMPLES = 20_000
_MIN_LIVER_HITS = 256


@dataclass(frozen=True)
class LiverStats:
    """Robust intensity statistics of the tumour-free liver, in HU."""

    median_hu: float
    spread_hu: float  # robust standard deviation (1.4826 MAD) of parenchyma intensities
    noise_hu: float  # robust standard deviation of the voxel-to-voxel noise
    volume_ml: float  # tumour-free liver volume


class HostScan:
    """A CT volume and its label map, validated and ready for repeated insertions.

    Build one with :func:`prepare_host`. The object keeps references to the caller's arrays (and
    caches maps derived from them) and never writes to them; :meth:`insert` returns new arrays.
    Modify the caller's arrays and the cached maps go stale: prepare the scan again instead.
    """

    def __init__(self, volume: np.ndarray, label: np.ndarray, spacing: tuple[float, float, float]):
        self.volume = volume
        self.label = label  # uint8, 0/1/2, C order; never written to
        self.spacing = spacing
        self._liver_voxels: np.ndarray | None = None  # flat indices, only for sparse livers
        self._liver_fraction, sample = self._sample_liver(np.random.default_rng(0), _STATS_SAMPLES)
        self.stats = self._liver_stats(sample)
        self._vessel_blocks: dict[tuple[int, int, int], np.ndarray] = {}
        self._block = tuple(max(8, int(round(_BLOCK_MM / s))) for s in spacing)
        self._clearance: tuple[np.ndarray, np.ndarray] | None = None
        self._clearance_stride = tuple(max(1, int(round(_CLEARANCE_CELL_MM / s))) for s in spacing)

    # --- liver sampling -------------------------------------------------------------------
    def _sample_liver(self, rng: np.random.Generator, draws: int) -> tuple[float, np.ndarray]:
        """Draw random tumour-free liver voxels by rejection from the whole scan.

        Rejection costs nothing per scan voxel; only when the liver is a tiny share of the scan
        are the liver's voxel indices listed once.
        """
        flat_label = self.label.reshape(-1)
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
        """About ``count`` random voxels that were tumour-free liver in the input, as (N, 3) indices."""
        if self._liver_voxels is not None:
            flat = self._liver_voxels[rng.integers(0, self._liver_voxels.size, size=count)]
        else:
            draws = int(np.ceil(count / self._liver_fraction * 1.5)) + 8
            flat = rng.integers(0, self.label.size, size=draws)
            flat = flat[self.label.reshape(-1)[flat] == 1]
        return np.stack(np.unravel_index(flat, self.label.shape), axis=1)

    def sample_clear_voxels(self, rng: np.random.Generator, count: int, clearance_mm: float) -> np.ndarray:
        """Random voxels whose coarse clearance (distance to capsule, tumour or scan border) is at
        least ``clearance_mm``, as (N, 3) indices; empty when no place is that clear.

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
        return np.minimum(voxels, np.array(self.label.shape) - 1)

    @property
    def clearance_cell_mm(self) -> float:
        """Half the diagonal of a clearance-map cell: the map's worst-case error in mm."""
        return 0.5 * float(np.linalg.norm([s * k for s, k in zip(self.spacing, self._clearance_stride)]))

    def clearance_map(self) -> tuple[np.ndarray, np.ndarray]:
        """Distance in mm from each coarse cell to the nearest voxel that is not free liver, over
        the free liver's bounding box, and that box's first cell.

        Computed once, on a grid of about 4 mm, from the input labels; lesions inserted later are
        handled by the exact test of each candidate.
        """
        if self._clearance is None:
            stride = self._clearance_stride
            free = self.label[::stride[0], ::stride[1], ::stride[2]] == Label.LIVER
            box = bounding_slices(free) or (slice(0, 0),) * 3  # a liver smaller than a cell: no clear place
            padded = np.pad(free[box], 1)  # beyond the box (and the scan border) is an obstacle
            distance = ndimage.distance_transform_edt(padded, sampling=[s * k for s, k in zip(self.spacing, stride)])
            self._clearance = (distance[1:-1, 1:-1, 1:-1].astype(np.float32), np.array([b.start for b in box]))
        return self._clearance

    def _liver_stats(self, flat_sample: np.ndarray) -> LiverStats:
        index = np.stack(np.unravel_index(flat_sample, self.label.shape), axis=1)
        values = self.volume[tuple(index.T)].astype(np.float64)
        median = float(np.median(values))
        spread = 1.4826 * float(np.median(np.abs(values - median)))
        # Noise from differences of neighbours along the first axis, both in the liver.
        index = index[index[:, 0] + 1 < self.label.shape[0]]
        index_next = index + (1, 0, 0)
        both = self.label[tuple(index_next.T)] == Label.LIVER
        diffs = (self.volume[tuple(index_next[both].T)].astype(np.float64)
                 - self.volume[tuple(index[both].T)].astype(np.float64))
        noise = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / np.sqrt(2) if diffs.size else spread
        voxel_ml = float(np.prod(self.spacing)) / 1000.0
        return LiverStats(median, spread, noise, self._liver_fraction * self.label.size * voxel_ml)

    # --- vessels ----------------------------------------------------------------------------
    @property
    def vessel_threshold_hu(self) -> float:
        """Smoothed intensity above which liver tissue counts as vessel.

        Portal-venous vessels are 40-100 HU brighter than parenchyma; two robust standard
        deviations (at least 25 HU) above the median separates them without flagging texture.
        """
        return self.stats.median_hu + max(2.0 * self.stats.spread_hu, 25.0)

    def vessel_mask(self, box: tuple[slice, slice, slice]) -> np.ndarray:
        """Boolean vessel map of a box (slices inside the scan).

        Small boxes (small lesions, tried many times over a scan's life) are assembled from cached
        blocks; a box larger than a few blocks (a large lesion) is computed directly, which costs
        less than filling all the blocks it spans.
        """
        starts = [s.start for s in box]
        stops = [s.stop for s in box]
        size = self._block
        first = [a // n for a, n in zip(starts, size)]
        last = [(b - 1) // n for b, n in zip(stops, size)]
        if np.prod([b - a + 1 for a, b in zip(first, last)]) > 8:
            return self._vessels_in(box)
        out = np.empty([b - a for a, b in zip(starts, stops)], dtype=bool)
        for bx in range(first[0], last[0] + 1):
            for by in range(first[1], last[1] + 1):
                for bz in range(first[2], last[2] + 1):
                    key = (bx, by, bz)
                    block = self._vessel_blocks.get(key)
                    if block is None:
                        cx, cy, cz = (slice(k * n, min((k + 1) * n, m)) for k, n, m in zip(key, size, self.label.shape))
                        block = self._vessel_blocks[key] = self._vessels_in((cx, cy, cz))
                    lo = [max(a, k * n) for a, k, n in zip(starts, key, size)]
                    hi = [min(b, (k + 1) * n) for b, k, n in zip(stops, key, size)]
                    out[tuple(slice(lesion - a, h - a) for lesion, h, a in zip(lo, hi, starts))] = block[
                        tuple(slice(lesion - k * n, h - k * n) for lesion, h, k, n in zip(lo, hi, key, size))
                    ]
        return out

    def _vessels_in(self, core: tuple[slice, slice, slice]) -> np.ndarray:
        """Vessel map of one box, smoothed with a halo so its edges match a whole-scan filter."""
        sigma = [1.0 / s for s in self.spacing]  # 1 mm smoothing: suppresses noise, keeps 2 mm vessels
        halo = [int(np.ceil(3 * s)) for s in sigma]
        shape = self.label.shape
        padded = [slice(max(c.start - h, 0), min(c.stop + h, n)) for c, h, n in zip(core, halo, shape)]
        smoothed = ndimage.gaussian_filter(self.volume[tuple(padded)].astype(np.float32), sigma, mode="nearest")
        inner = tuple(slice(c.start - p.start, c.stop - p.start) for c, p in zip(core, padded))
        return (smoothed[inner] > self.vessel_threshold_hu) & (self.label[tuple(core)] == Label.LIVER)

    # --- insertion --------------------------------------------------------------------------
    def insert(
        self,
        *,
        size: TypeSize = "mix",
        count: TypeCount = (1, 3),
        phenotype: TypePhenotype = "mix",
        seed: int | None = None,
        rng: np.random.Generator | None = None,
        edge_mm: TypeRange = EDGE_MM,
        subcapsular_probability: float = SUBCAPSULAR_PROBABILITY,
        mass_effect: bool = True,
        max_attempts: int = MAX_ATTEMPTS,
        method: TypeMethod = "heuristic",
        model: TypeModel = None,
        sampling_steps: int | None = None,
        sampler: TypeSampler | None = None,
    ) -> InsertionResult:
        """Insert lesions into this scan; the options and their defaults are those of
        :func:`synth.insert.synthesize` (and :func:`synth.insert_tumor`)."""
        from .insert import synthesize

        return synthesize(self, size=size, count=count, phenotype=phenotype, seed=seed, rng=rng, edge_mm=edge_mm,
                          subcapsular_probability=subcapsular_probability, mass_effect=mass_effect,
                          max_attempts=max_attempts, method=method, model=model, sampling_steps=sampling_steps,
                          sampler=sampler)


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
