"""The host scan's contrast phase, which sets how dark a lesion should look against its liver.

A liver lesion's contrast is a property of the phase as much as of the lesion: without contrast
agent most tumours are only mildly darker than the liver (10-15 HU), while in the portal-venous
phase the parenchyma enhances by 50-70 HU and hypovascular tumours, which enhance little, end up
40-60 HU below it. The phase is either given (``phase="portal-venous"``) or estimated from the
host liver's median HU:

- below :data:`UNENHANCED_BELOW_HU` (80 HU): ``"unenhanced"`` (unenhanced liver is about
  50-65 HU; the TotalSegmentator example is about 46 HU);
- otherwise ``"portal-venous"`` (about 100-130 HU; LiTS-117 is about 118 HU).

The late arterial phase (liver about 70-90 HU, bright hypervascular tumours) cannot be told from
the liver's level alone, so it is never estimated: ask for it with ``phase="arterial"``.
"""

from __future__ import annotations

from typing import get_args

from ..types import TypePhase

PHASES: tuple[str, ...] = get_args(TypePhase)
UNENHANCED_BELOW_HU = 80.0  # liver median between unenhanced (50-65) and portal-venous (100-130)


def check_phase(phase) -> str:
    """Validate a ``phase`` option (one of :data:`PHASES`) and return it."""
    if not isinstance(phase, str) or phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(repr(p) for p in PHASES)}; got {phase!r}")
    return phase


def estimate_phase(liver_median_hu: float) -> str:
    """``"unenhanced"`` or ``"portal-venous"`` from the tumour-free liver's median in HU."""
    return "unenhanced" if liver_median_hu < UNENHANCED_BELOW_HU else "portal-venous"


def resolve_phase(phase: str, liver_median_hu: float) -> str:
    """The phase to draw contrast for: ``phase`` itself, or the estimate when it is ``"auto"``."""
    phase = check_phase(phase)
    return estimate_phase(liver_median_hu) if phase == "auto" else phase
