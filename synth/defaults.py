"""Defaults of the insertion options, defined once for ``insert_tumor``, ``synthesize`` and
``HostScan.insert``."""

from __future__ import annotations

import math

from .types import TypePhase

# The soft edge's 10-90 % width grows with the lesion: real tumours of 20 mm and more have
# measurably softer margins (about 4 mm against 2.5-3 mm; docs/synthesis.md, "Large lesions").
# ``edge_mm=None`` draws from these ranges (mm) by equivalent diameter; a (min, max) pair
# overrides them for every size.
EDGE_MM = None
EDGE_MM_BY_SIZE: tuple[tuple[float, tuple[float, float]], ...] = (
    (10.0, (2.1, 3.1)),  # below 10 mm
    (20.0, (2.5, 3.5)),  # 10-20 mm
    (math.inf, (4.25, 5.25)),  # 20 mm and more
)
PHASE: TypePhase = "auto"  # contrast phase of the host: estimated from its liver (synth.heuristic.phase)
SUBCAPSULAR_PROBABILITY = 0.1  # chance that a lesion may touch the liver capsule
MAX_ATTEMPTS = 300  # candidate centres tried per lesion
