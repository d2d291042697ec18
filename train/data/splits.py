"""Splitting data for training and testing: by case, or one case along its axial axis."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from synth.cases import Case
from synth.components import lesion_components
from synth.labels import Label

__all__ = ["AxialFold", "Split", "axial_folds", "split_axial", "split_cases"]


@dataclass(frozen=True)
class Split:
    """Case ids for training, validation and testing (disjoint; each id in exactly one)."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


def _check_fraction(name: str, value) -> float:
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


def split_cases(case_ids, *, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """Split case ids at random into train, validation and test sets.

    The ids are sorted before shuffling with ``numpy.random.default_rng(seed)``, so the result
    depends only on the set of ids and the seed (not on their order, the process or the platform).
    Set sizes are ``round(n * fraction)`` for validation and test, reduced when needed so that at
    least one case is left for training. Each list comes back sorted.

    Raises:
        ValueError: no ids, duplicate ids, fractions outside [0, 1) or summing to 1 or more.
    """
    ids = [str(c) for c in case_ids]
    if not ids:
        raise ValueError("split_cases needs at least one case id")
    if len(set(ids)) != len(ids):
        duplicates = sorted({c for c in ids if ids.count(c) > 1})
        raise ValueError(f"duplicate case ids: {duplicates[:10]}")
    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be below 1 so that cases are left for "
                         f"training; got {val_fraction} + {test_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    n = len(ids)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    while n_test + n_val > n - 1:  # keep one for training: take from the larger of the two
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    order = np.random.default_rng(int(seed)).permutation(n)
    ordered = sorted(ids)
    shuffled = [ordered[i] for i in order]
    test = tuple(sorted(shuffled[:n_test]))
    val = tuple(sorted(shuffled[n_test:n_test + n_val]))
    train = tuple(sorted(shuffled[n_test + n_val:]))
    return Split(train=train, val=val, test=test)


def _crossing_lesions(label: np.ndarray, low: int, high: int) -> int:
    """Tumour components (26-connected) with voxels both below slice ``low`` and at/after ``high``."""
    components, _ = lesion_components(label == Label.TUMOR)
    below = np.unique(components[:, :, :low])
    above = np.unique(components[:, :, high:])
    return int(np.count_nonzero(np.intersect1d(below[below > 0], above[above > 0])))


def split_axial(case: Case, *, train_fraction: float = 0.6, gap_mm: float = 5.0) -> tuple[Case, Case]:
    """Cut one case along axis 2 into a training part (lower slices) and a test part (upper).

    ``gap_mm`` of slices between the two parts is dropped (rounded up to whole slices), so no voxel of
    the test part touches one of the training part, not even diagonally. A tumour crossing the cut
    is split between the parts (its pieces count as separate lesions); the notes say how many were.
    Affines are updated so that both parts stay in the original world coordinates. Ids become
    ``"<id>-train"`` and ``"<id>-test"``.

    Raises:
        ValueError: a fraction outside (0, 1), a negative gap, or a case too thin for both parts.
    """
    train_fraction = float(train_fraction)
    if not (0.0 < train_fraction < 1.0):
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    gap_mm = float(gap_mm)
    if not (math.isfinite(gap_mm) and gap_mm >= 0):
        raise ValueError(f"gap_mm must be >= 0 mm, got {gap_mm!r}")
    depth = case.image.shape[2]
    gap = int(math.ceil(gap_mm / case.spacing[2] - 1e-9))
    gap = max(gap, 1)  # at least one slice, so the two parts never touch
    cut = int(round(depth * train_fraction))
    start = cut + gap
    if cut < 1 or start >= depth:
        raise ValueError(f"case {case.case_id!r}: {depth} slices are too few to cut at {train_fraction} "
                         f"with a gap of {gap} slices ({gap_mm} mm)")
    crossing = _crossing_lesions(case.label, cut, start)
    where = (f"axial split of {case.case_id}: slices [0, {cut}) train, [{start}, {depth}) test, "
             f"{gap} slices ({gap * case.spacing[2]:.3g} mm) dropped between; a lesion crossing the cut "
             f"is split between the parts (tumour components crossing it: {crossing})")
    test_affine = np.array(case.affine, dtype=np.float64)
    test_affine[:3, 3] = test_affine[:3, 3] + test_affine[:3, 2] * start
    train_part = replace(case, case_id=f"{case.case_id}-train", image=case.image[:, :, :cut].copy(),
                         label=case.label[:, :, :cut].copy(), affine=np.array(case.affine, dtype=np.float64),
                         notes=tuple(case.notes) + (where,))
    test_part = replace(case, case_id=f"{case.case_id}-test", image=case.image[:, :, start:].copy(),
                        label=case.label[:, :, start:].copy(), affine=test_affine,
                        notes=tuple(case.notes) + (where,))
    return train_part, test_part


@dataclass(frozen=True)
class AxialFold:
    """One fold of :func:`axial_folds`: its test slab and the training slabs around it."""

    index: int
    train: tuple[Case, ...]  # the slabs below and above the test slab (one at either end)
    test: Case
    notes: tuple[str, ...]


def _slab(case: Case, start: int, stop: int, case_id: str, note: str) -> Case:
    """Slices ``[start, stop)`` of ``case`` along axis 2, in the original world coordinates."""
    affine = np.array(case.affine, dtype=np.float64)
    affine[:3, 3] = affine[:3, 3] + affine[:3, 2] * start
    return replace(case, case_id=case_id, image=case.image[:, :, start:stop].copy(),
                   label=case.label[:, :, start:stop].copy(), affine=affine, notes=tuple(case.notes) + (note,))


def axial_folds(case: Case, *, folds: int = 3, gap_mm: float = 5.0) -> list[AxialFold]:
    """k-fold cross-validation of one case along its axial axis: every slice is tested once.

    The case is cut into ``folds`` slabs of (nearly) equal thickness. Fold ``k`` tests slab ``k``
    and trains on the slabs below and above it, each shortened by ``gap_mm`` (rounded up to whole
    slices, at least one) next to the test slab, so no training voxel touches a test voxel, not even
    diagonally. A tumour crossing a cut is split (its pieces count as separate lesions); the notes
    say how many were. Ids: ``"<id>-fold<k>-test"``, ``"<id>-fold<k>-below"``, ``"<id>-fold<k>-above"``.

    Raises:
        ValueError: fewer than 2 folds, a negative gap, or a case too thin for its slabs.
    """
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be a whole number >= 2, got {folds!r}")
    gap_mm = float(gap_mm)
    if not (math.isfinite(gap_mm) and gap_mm >= 0):
        raise ValueError(f"gap_mm must be >= 0 mm, got {gap_mm!r}")
    depth = case.image.shape[2]
    gap = max(1, int(math.ceil(gap_mm / case.spacing[2] - 1e-9)))
    edges = [int(round(depth * k / folds)) for k in range(folds + 1)]
    if min(b - a for a, b in zip(edges, edges[1:])) <= 2 * gap:
        raise ValueError(f"case {case.case_id!r}: {depth} slices are too few for {folds} slabs with a gap of "
                         f"{gap} slices ({gap_mm:g} mm) on each side of a test slab")
    result = []
    for k in range(folds):
        low, high = edges[k], edges[k + 1]
        crossing = (_crossing_lesions(case.label, low - gap, low) if low > 0 else 0) + (
            _crossing_lesions(case.label, high, high + gap) if high < depth else 0)
        note = (f"fold {k} of {folds} of {case.case_id}: slices [{low}, {high}) test, {gap} slices "
                f"({gap * case.spacing[2]:.3g} mm) dropped on each side; tumour components crossing a cut: "
                f"{crossing}")
        train = []
        if low - gap > 0:
            train.append(_slab(case, 0, low - gap, f"{case.case_id}-fold{k}-below", note))
        if high + gap < depth:
            train.append(_slab(case, high + gap, depth, f"{case.case_id}-fold{k}-above", note))
        test = _slab(case, low, high, f"{case.case_id}-fold{k}-test", note)
        result.append(AxialFold(k, tuple(train), test, (note,)))
    return result
