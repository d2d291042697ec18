"""Lesion sizes, always as equivalent diameter in mm (the diameter of a sphere of equal volume).

Size classes follow the small-lesion literature: tiny < 5 mm, small 5-10 mm, medium 10-20 mm,
large 20-50 mm. The ``"mix"`` distribution follows one expert-annotated public liver-tumour set
(117 lesions): 4 % tiny, 30 % small, 40 % medium, 26 % large, median about 12.5 mm. Within a class
diameters are log-uniform, which gives a mixture median of about 13 mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..components import equivalent_diameter_mm

# Tiny lesions are sampled from 3 mm: below that a lesion is one or two voxels even at 1 mm.
SIZE_CLASSES: dict[str, tuple[float, float]] = {
    "tiny": (3.0, 5.0),
    "small": (5.0, 10.0),
    "medium": (10.0, 20.0),
    "large": (20.0, 50.0),
}
MIX_WEIGHTS: dict[str, float] = {"tiny": 0.04, "small": 0.30, "medium": 0.40, "large": 0.26}


@dataclass(frozen=True)
class SizeSpec:
    """A size request: one range per class with the probability of drawing it."""

    ranges: tuple[tuple[float, float], ...]
    weights: tuple[float, ...]

    @property
    def smallest_mm(self) -> float:
        return min(low for low, _ in self.ranges)


def parse_size(size) -> SizeSpec:
    """Turn a class name, ``"mix"`` or a ``(min_mm, max_mm)`` pair into a :class:`SizeSpec`."""
    if isinstance(size, str):
        if size == "mix":
            names = list(MIX_WEIGHTS)
            return SizeSpec(tuple(SIZE_CLASSES[n] for n in names), tuple(MIX_WEIGHTS[n] for n in names))
        if size not in SIZE_CLASSES:
            raise ValueError(f"unknown size {size!r}; use one of {', '.join(SIZE_CLASSES)}, "
                             f"'mix' or a (min_mm, max_mm) pair")
        return SizeSpec((SIZE_CLASSES[size],), (1.0,))
    try:
        low, high = (float(v) for v in size)
    except (TypeError, ValueError):
        raise TypeError(f"size must be a class name, 'mix' or a (min_mm, max_mm) pair; got {size!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high < low:
        raise ValueError(f"size range must satisfy 0 < min_mm <= max_mm; got {size!r}")
    return SizeSpec(((low, high),), (1.0,))


def size_class(diameter_mm: float) -> str:
    """Name of the class an equivalent diameter falls in (``"tiny"`` below 5 mm)."""
    if diameter_mm < 5.0:
        return "tiny"
    if diameter_mm < 10.0:
        return "small"
    if diameter_mm < 20.0:
        return "medium"
    return "large"


def sample_diameter(spec: SizeSpec, rng: np.random.Generator) -> tuple[float, tuple[float, float]]:
    """Draw a diameter in mm and return it with the range it was drawn from."""
    cumulative = np.cumsum(spec.weights)
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    low, high = spec.ranges[index]
    diameter = math.exp(rng.uniform(math.log(low), math.log(high))) if high > low else low
    return diameter, (low, high)


def equivalent_diameter(voxel_count: int, voxel_volume_mm3: float) -> float:
    """Diameter in mm of the sphere whose volume equals ``voxel_count`` voxels."""
    return equivalent_diameter_mm(voxel_count * voxel_volume_mm3)


def voxel_count_for(diameter_mm: float, size_range: tuple[float, float], voxel_volume_mm3: float) -> int:
    """Voxel count whose equivalent diameter is closest to ``diameter_mm`` inside ``size_range``.

    Raises ``ValueError`` when no whole number of voxels lands in the range, which happens when the
    voxels are too large for the class (a 4 mm lesion on 5 mm isotropic voxels).
    """
    low, high = size_range
    volume = lambda d: math.pi * d**3 / 6.0  # noqa: E731
    count = max(1, round(volume(diameter_mm) / voxel_volume_mm3))
    smallest = max(1, math.ceil(volume(low) / voxel_volume_mm3 - 1e-9))
    largest = math.ceil(volume(high) / voxel_volume_mm3 - 1e-9) - 1 if high > low else smallest
    if high == low:  # a fixed size: nearest representable count
        return count
    if smallest > largest:
        raise ValueError(
            f"a lesion of {low:g}-{high:g} mm cannot be drawn at this spacing: one voxel is "
            f"{voxel_volume_mm3:.1f} mm^3 ({equivalent_diameter(1, voxel_volume_mm3):.1f} mm equivalent "
            f"diameter); choose a larger size or a finer scan"
        )
    return int(min(max(count, smallest), largest))
