"""Defaults of the insertion options, defined once for ``insert_tumor``, ``synthesize`` and
``HostScan.insert``."""

from __future__ import annotations

EDGE_MM = (1.5, 3.0)  # range of the soft edge's 10-90 % width, mm
SUBCAPSULAR_PROBABILITY = 0.1  # chance that a lesion may touch the liver capsule
MAX_ATTEMPTS = 300  # candidate centres tried per lesion
