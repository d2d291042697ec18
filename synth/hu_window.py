"""The HU window map, defined once: Hounsfield units in a window <-> a normalised range.

>>> import numpy as np
>>> from synth.hu_window import range_to_window, window_to_range
>>> window_to_range(np.array([-1000.0, 40.0, 500.0], np.float32), (-160, 240))
array([0. , 0.5, 1. ], dtype=float32)

Forward, values are clipped to the window ``(low, high)`` HU and mapped linearly onto
``out_range`` (default ``(0, 1)``; the diffusion model uses ``(-1, 1)``). The inverse is exact on
everything the window did not clip. Both work on numpy arrays (float32 out) and torch tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_window", "range_to_window", "window_to_range"]

UNIT_RANGE = (0.0, 1.0)


def check_window(window: Sequence[float], name: str = "window_hu") -> tuple[float, float]:
    """``window`` as a finite ``(low, high)`` pair with low < high, or ValueError naming ``name``."""
    try:
        low, high = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair of numbers; got {window!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"{name} must be finite with low < high; got {window!r}")
    return low, high


def _is_tensor(values: Any) -> bool:
    return hasattr(values, "clamp") and not isinstance(values, np.ndarray)


def window_to_range(values: Any, window_hu: Sequence[float], out_range: Sequence[float] = UNIT_RANGE,
                    *, clip_high: bool = True) -> Any:
    """HU -> ``out_range``: clip to the window (only its lower edge with ``clip_high=False``, for
    intensity transforms that must keep values above it), then map linearly."""
    low, high = check_window(window_hu)
    out_low, out_high = check_window(out_range, "out_range")
    if _is_tensor(values):
        clipped = values.float().clamp(low, high if clip_high else None)
    else:
        clipped = np.clip(np.asarray(values, dtype=np.float32), low, high if clip_high else None)
    scaled = (clipped - low) / (high - low)
    if (out_low, out_high) == UNIT_RANGE:
        return scaled
    return scaled * (out_high - out_low) + out_low


def range_to_window(values: Any, window_hu: Sequence[float], out_range: Sequence[float] = UNIT_RANGE) -> Any:
    """``out_range`` -> HU, the inverse of :func:`window_to_range` (values it clipped stay at the
    window's edges: that information is gone)."""
    low, high = check_window(window_hu)
    out_low, out_high = check_window(out_range, "out_range")
    if not _is_tensor(values):
        values = np.asarray(values, dtype=np.float32)
    if (out_low, out_high) != UNIT_RANGE:
        values = (values - out_low) / (out_high - out_low)
    return values * (high - low) + low
