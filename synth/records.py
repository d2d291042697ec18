"""What an insertion returns: the new arrays and one record per lesion."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Lesion:
    """One inserted lesion, measured on the voxels it was given (nothing is recomputed later).

    ``center_mm`` is the centre voxel times the spacing (voxel-grid millimetres; the CLI adds world
    coordinates from the affine). ``bbox`` is the box of voxels the insertion may have changed,
    as ``(start, stop)`` per axis; every voxel outside all boxes is unchanged. With a quality gate
    (``quality_filter=``), ``quality_tries`` counts the draws (0 without a gate) and
    ``quality_score`` is the kept draw's probability "real" (None without a gate).
    """

    index: int
    center_voxel: tuple[int, int, int]
    center_mm: tuple[float, float, float]
    diameter_mm: float
    voxel_count: int
    size_class: str
    phenotype: str
    mean_hu_change: float
    edge_mm: float
    subcapsular: bool
    mass_effect: bool
    bbox: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    # Requested lesion-minus-liver contrast (HU), as the realism features measure it (lesion
    # mean minus the tumour-free liver 1-4 mm around); NaN when a model painted the lesion.
    contrast_hu: float = float("nan")
    donor: str | None = None  # copy-paste: the bank lesion it was made from
    quality_tries: int = 0
    quality_score: float | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict (plain floats, ints and lists); the quality fields only when a gate ran."""
        out = asdict(self)
        out["center_voxel"] = list(self.center_voxel)
        out["center_mm"] = [round(float(v), 3) for v in self.center_mm]
        out["bbox"] = [list(pair) for pair in self.bbox]
        for key in ("diameter_mm", "mean_hu_change", "edge_mm", "contrast_hu"):
            out[key] = round(float(out[key]), 3)
        if out["contrast_hu"] != out["contrast_hu"]:  # NaN (a model painted it): JSON has no NaN
            out["contrast_hu"] = None
        if self.donor is None:  # only copy-paste lesions have a donor
            del out["donor"]
        if self.quality_tries == 0:  # no quality gate: the record reads as it always did
            del out["quality_tries"], out["quality_score"]
        else:
            out["quality_score"] = None if self.quality_score is None else round(float(self.quality_score), 4)
        return out


@dataclass(frozen=True)
class InsertionResult:
    """Volume (input dtype), uint8 label map (0/1/2) and the lesion records.

    The arrays are new unless the insertion was told where to write (``out=``).
    """

    volume: np.ndarray
    label: np.ndarray
    lesions: list[Lesion] = field(default_factory=list)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def changed_boxes(self) -> list[tuple[slice, slice, slice]]:
        """One box of voxels per lesion, as slices: every voxel outside them is unchanged."""
        boxes = []
        for lesion in self.lesions:
            (x0, x1), (y0, y1), (z0, z1) = lesion.bbox
            boxes.append((slice(x0, x1), slice(y0, y1), slice(z0, z1)))
        return boxes
