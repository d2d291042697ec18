"""A lesion's connected components and its size, defined once for the whole project.

Two tumour voxels belong to the same lesion when they share a face, an edge or a corner
(26-connectivity, as in the LiTS evaluation). The size of a lesion is its equivalent diameter:
the diameter of the sphere of the same volume. cc3d is imported when components are first asked
for, so importing :mod:`synth` stays numpy + scipy.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

__all__ = ["CONNECTIVITY", "equivalent_diameter_mm", "lesion_components"]

CONNECTIVITY: Final = 26


def lesion_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components of a boolean mask: ``(labels, count)``, labels ``1..count`` in
    raster order of each component's first voxel, 0 outside."""
    import cc3d

    labels, count = cc3d.connected_components(np.ascontiguousarray(mask, dtype=bool), connectivity=CONNECTIVITY,
                                              return_N=True)
    return labels, int(count)


def equivalent_diameter_mm(volume_mm3: float) -> float:
    """Diameter in mm of the sphere whose volume is ``volume_mm3``: ``(6 V / pi) ** (1/3)``."""
    return float((6.0 * volume_mm3 / math.pi) ** (1.0 / 3.0))
