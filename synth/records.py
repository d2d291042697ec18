"""What an insertion returns: the new arrays and one record per lesion."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Lesion:
    """One inserted lesion, measured on the voxels it was given (nothing is recomputed later).

    ``center_mm`` is the centre voxel times the spacing (voxel-grid millimetres; the CLI adds world
    coordinates from the affine). ``bbox`` is the box of voxels the insertion may have changed,
    as ``(start, stop)`` per axis; every voxel outside all boxes is unchanged.
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

    def to_dict(self) -> dict:
        """A JSON-ready dict (plain floats, ints and lists)."""
        out = asdict(self)
        out["center_voxel"] = list(self.center_voxel)
        out["center_mm"] = [round(float(v), 3) for v in self.center_mm]
        out["bbox"] = [list(pair) for pair in self.bbox]
        for key in ("diameter_mm", "mean_hu_change", "edge_mm"):
            out[key] = round(float(out[key]), 3)
        return out


@dataclass(frozen=True)
class InsertionResult:
    """New volume (input dtype), new uint8 label map (0/1/2) and the lesion records."""

    volume: np.ndarray
    label: np.ndarray
    lesions: list[Lesion] = field(default_factory=list)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
