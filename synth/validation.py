"""Checks on user input, done once at the top of the public functions.

Every message names the problem and the value that caused it, because a wrong mask or spacing is
the most common reason a synthesiser silently produces garbage.
"""

from __future__ import annotations

import numbers
from typing import Literal, cast, overload

import numpy as np

from .labels import LABEL_VALUES

# Values a CT in Hounsfield units can hold: what 16-bit CT storage (int16 and uint16) can hold,
# wider than any scanner's scale. Anything beyond is not HU (unscaled raw data, garbage, 1e308).
PLAUSIBLE_HU = (-32768.0, 65535.0)
EMPTY_MASK = "mask is empty: it has no liver voxels (label 1 or 2)"


def check_volume(volume) -> np.ndarray:
    """Return ``volume`` as a 3-D numeric array (no copy), or raise.

    Float values must be finite, and every value must lie in ``PLAUSIBLE_HU`` ([-32768, 65535]);
    8- and 16-bit integer volumes always do.
    """
    volume = np.asarray(volume)
    if volume.dtype == bool or not (
        np.issubdtype(volume.dtype, np.integer) or np.issubdtype(volume.dtype, np.floating)
    ):
        raise TypeError(
            f"volume must be a numeric CT array in Hounsfield units (integer or float); "
            f"got dtype {volume.dtype}"
        )
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D (X, Y, Z); got {volume.ndim}-D shape {volume.shape}")
    if min(volume.shape) < 1:
        raise ValueError(f"volume is empty: shape {volume.shape}")
    if volume.dtype.kind == "f" or volume.dtype.itemsize > 2:
        _check_hu_values(volume)
    return volume


def _check_hu_values(volume: np.ndarray) -> None:
    """Raise ValueError for NaN or infinite values, or values outside ``PLAUSIBLE_HU``."""
    low, high = PLAUSIBLE_HU
    # Overflow is expected here (a sum of huge values; float16 cannot hold 65535): never a warning,
    # nor an error under TorchIO's np.errstate(all="raise").
    with np.errstate(over="ignore", invalid="ignore"):
        # Two reductions are cheaper than an isfinite mask, and NaN or inf fail them too (min and
        # max propagate NaN); the precise counts are only computed on failure.
        if low <= volume.min() and volume.max() <= high:
            return
        finite = np.isfinite(volume) if volume.dtype.kind == "f" else np.ones(volume.shape, bool)
        outside = finite & ((volume < low) | (volume > high))
    non_finite = int(finite.size - np.count_nonzero(finite))
    n_outside = int(np.count_nonzero(outside))
    hu_range = f"[{low:g}, {high:g}]"
    if non_finite:
        also = (f", and {n_outside} values outside the plausible HU range {hu_range}" if n_outside
                else "")
        raise ValueError(f"volume contains {non_finite} NaN or infinite values{also}; CT must be "
                         f"finite HU")
    values = volume[outside]
    raise ValueError(
        f"volume contains {n_outside} values outside the plausible HU range {hu_range} (lowest "
        f"{values.min():g}, highest {values.max():g}); CT must be in Hounsfield units: check the "
        f"file's rescale slope and intercept, or the units of the array")


def check_label_map(mask, shape: tuple[int, ...]) -> np.ndarray:
    """Return the mask as a C-ordered uint8 label map with values in {0, 1, 2}, or raise.

    A mask that is already C-ordered uint8 is returned as it is (no copy); callers write to it
    only when asked to insert in place.

    A binary liver mask (bool or 0/1) is accepted; float masks are accepted when they hold whole
    numbers, since ``nibabel``'s ``get_fdata`` returns labels as floats.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3-D (X, Y, Z); got {mask.ndim}-D shape {mask.shape}")
    if mask.shape != tuple(shape):
        raise ValueError(f"mask shape {mask.shape} does not match volume shape {tuple(shape)}")
    if mask.dtype == bool:
        return np.array(mask, dtype=np.uint8, order="C")
    if check_label_values(mask, name="mask") == 0:
        raise ValueError(EMPTY_MASK)
    # C order: the synthesiser indexes the label map through flat indices.
    return np.asarray(mask, dtype=np.uint8, order="C")


def check_label_values(labels: np.ndarray, *, name: str = "mask", high: int = max(LABEL_VALUES)) -> float:
    """Raise unless ``labels`` holds whole numbers in ``0 .. high`` (by default the label values
    0 background, 1 liver, 2 tumour); return the largest value found (0 for an empty array).

    Float arrays are accepted when they hold whole numbers, since ``nibabel``'s ``get_fdata``
    returns labels as floats. The message names the values found, so that a CT passed where a
    label map belongs is recognised as such.
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return float(labels.any())
    expected = f"expected labels 0 (background), 1 (liver), 2 (tumour){'' if high == 2 else f' up to {high}'}"
    if np.issubdtype(labels.dtype, np.floating):
        if not np.isfinite(labels.sum(dtype=np.float64)):
            raise ValueError(f"{name} contains NaN or infinite values; {expected}")
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError(f"{name} has non-integer values (is it a CT image?); {expected}")
    elif not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must be a bool or integer label map; got dtype {labels.dtype}")
    if not labels.size:
        return 0.0
    # One pass each; an unsigned map cannot hold negative values, so it needs only one.
    highest = labels.max()
    if highest > high or (labels.dtype.kind != "u" and labels.min() < 0):
        found = np.unique(labels)
        shown = ", ".join(f"{v:g}" for v in found[:8]) + (", ..." if found.size > 8 else "")
        allowed = "{" + ", ".join(str(v) for v in range(high + 1)) + "}" if high <= 5 else f"0..{high}"
        raise ValueError(f"{name} has label values outside {allowed}: found {shown} (is it a CT image?); "
                         f"{expected} (or a binary liver mask)")
    return float(highest)


@overload
def check_spacing(spacing, *, ndim: Literal[3] = 3, name: str = "spacing") -> tuple[float, float, float]: ...
@overload
def check_spacing(spacing, *, ndim: int, name: str = "spacing") -> tuple[float, ...]: ...
def check_spacing(spacing, *, ndim: int = 3, name: str = "spacing") -> tuple[float, ...]:
    """Return ``spacing`` as ``ndim`` positive finite floats in mm, or raise naming ``name``.

    One number (or a one-element sequence) means isotropic voxels. This is the project's one
    spacing check: arrays, NIfTI headers, configurations and transforms all go through it.
    """
    if isinstance(spacing, numbers.Number):
        spacing = (spacing,) * ndim
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {'three' if ndim == 3 else ndim} numbers in mm; got {spacing!r}") from None
    if len(values) == 1:
        values = values * ndim
    if len(values) != ndim:
        axes = "X, Y, Z" if ndim == 3 else "each axis"
        raise ValueError(f"{name} must have {ndim} values (mm along {axes}); got {len(values)}: {values}")
    if not all(np.isfinite(values)) or min(values) <= 0:
        raise ValueError(f"{name} must be positive and finite (mm); got {values}")
    return values


def check_count(count) -> tuple[int, int]:
    """Return ``count`` as an inclusive ``(min, max)`` pair of non-negative ints, or raise."""
    pair = (count, count) if isinstance(count, numbers.Integral) else count
    try:
        low, high = pair
    except (TypeError, ValueError):
        raise TypeError(f"count must be an int or a (min, max) pair of ints; got {count!r}") from None
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (low, high)):
        raise TypeError(f"count must be whole numbers; got {count!r}")
    low, high = int(low), int(high)
    if low < 0 or high < low:
        raise ValueError(f"count must satisfy 0 <= min <= max; got {count!r}")
    if high > 1000:
        raise ValueError(f"count {high} is impossible: at most 1000 lesions per call")
    return low, high


def check_seed(seed, rng) -> np.random.Generator:
    """Turn ``seed`` or ``rng`` (not both) into a numpy Generator."""
    if seed is not None and rng is not None:
        raise ValueError("give either seed or rng, not both")
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        return rng
    if seed is not None and not isinstance(seed, (numbers.Integral, np.random.SeedSequence)):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}")
    # numbers.Integral admits numpy integers, which default_rng takes; the stubs only know int.
    return np.random.default_rng(cast("int | np.random.SeedSequence | None", seed))


def affine_disagreement_mm(shape, affine_a, affine_b) -> float:
    """Largest distance in mm at which two affines place the same voxel of a grid of ``shape``.

    The corners are enough: affine maps are linear, so the largest disagreement over the grid is
    at one of its eight corners. NaN when an affine holds NaN.
    """
    last = [max(int(n) - 1, 0) for n in tuple(shape)[:3]]
    corners = np.array([[i, j, k, 1.0] for i in (0, last[0]) for j in (0, last[1]) for k in (0, last[2])])
    world_a = corners @ np.asarray(affine_a, dtype=np.float64).T
    world_b = corners @ np.asarray(affine_b, dtype=np.float64).T
    return float(np.linalg.norm(world_a[:, :3] - world_b[:, :3], axis=1).max())
