"""Connected components and the matching of ground-truth lesions to predicted components.

Components are :func:`synth.components.lesion_components` (cc3d, 26-connected): two tumour voxels
belong to the same lesion when they share a face, an edge or a corner. Everything is computed
from voxel counts (component sizes and the GT x prediction overlap table), never from per-lesion
masks, so a case with hundreds of lesions costs a few passes over the volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth.components import equivalent_diameter_mm, lesion_components

# Size bins, in mm. Each is (key, lower bound inclusive, upper bound exclusive or None).
DIAMETER_BINS: tuple[tuple[str, float, float | None], ...] = (
    ("<10", 0.0, 10.0),
    ("10-20", 10.0, 20.0),
    (">=20", 20.0, None),
)
RADIUS_BINS: tuple[tuple[str, float, float | None], ...] = (
    ("[0,5)", 0.0, 5.0),
    ("[5,10)", 5.0, 10.0),
    ("[10,15)", 10.0, 15.0),
    ("[15,20)", 15.0, 20.0),
    (">=20", 20.0, None),
)


@dataclass(frozen=True)
class LesionResult:
    """One ground-truth lesion. All fields are JSON-ready."""

    lesion_id: int  # 1-based, in cc3d's label order (raster order of first voxel)
    voxels: int
    volume_mm3: float
    diameter_mm: float  # equivalent diameter: the sphere of the same volume
    radius_mm: float  # diameter_mm / 2
    detected: bool  # any predicted tumour voxel inside the lesion
    detected_iou50: bool  # LiTS rule: IoU(lesion, union of overlapping components) > 0.5
    iou: float
    dice: float  # lesion vs the union of the predicted components that overlap it (0 if missed)
    matched_components: int  # how many predicted components overlap it


components = lesion_components  # the name this module's users know


def bin_key(value_mm: float, bins) -> str:
    """The key of the bin that holds ``value_mm`` (lower bound inclusive, upper exclusive)."""
    for key, low, high in bins:
        if value_mm >= low and (high is None or value_mm < high):
            return key
    raise ValueError(f"{value_mm} mm is below every bin")


def match_lesions(
    gt_mask: np.ndarray, pred_mask: np.ndarray, voxel_volume_mm3: float
) -> tuple[list[LesionResult], int, int]:
    """Match GT lesions to predicted components.

    Returns (lesions, number of predicted components, false-positive components), where a false
    positive is a predicted component that overlaps no GT lesion.
    """
    gt_lab, n_gt = components(gt_mask)
    pred_lab, n_pred = components(pred_mask)
    gt_sizes = np.bincount(gt_lab.ravel(), minlength=n_gt + 1)
    pred_sizes = np.bincount(pred_lab.ravel(), minlength=n_pred + 1)

    # Overlap table: (GT lesion, predicted component) pairs with their shared voxel counts.
    both = (gt_lab > 0) & (pred_lab > 0)
    keys = gt_lab[both].astype(np.int64) * (n_pred + 1) + pred_lab[both]
    keys, counts = np.unique(keys, return_counts=True)
    pairs = np.stack([keys // (n_pred + 1), keys % (n_pred + 1)])

    # Per GT lesion: voxels covered by prediction, and the summed size of overlapping components.
    inter = np.bincount(pairs[0], weights=counts, minlength=n_gt + 1)
    union_pred = np.bincount(pairs[0], weights=pred_sizes[pairs[1]], minlength=n_gt + 1)
    n_match = np.bincount(pairs[0], minlength=n_gt + 1)
    matched_pred = np.unique(pairs[1])
    false_positives = n_pred - matched_pred.size

    lesions = []
    for i in range(1, n_gt + 1):
        g, p, x = int(gt_sizes[i]), int(union_pred[i]), int(inter[i])
        volume = g * voxel_volume_mm3
        diameter = equivalent_diameter_mm(volume)
        iou = x / (g + p - x)
        lesions.append(
            LesionResult(
                lesion_id=i,
                voxels=g,
                volume_mm3=float(volume),
                diameter_mm=diameter,
                radius_mm=diameter / 2.0,
                detected=x > 0,
                detected_iou50=iou > 0.5,
                iou=float(iou),
                dice=float(2.0 * x / (g + p)),
                matched_components=int(n_match[i]),
            )
        )
    return lesions, n_pred, int(false_positives)


def sensitivity_by_bin(lesions, bins, *, attr: str, detected: str = "detected") -> dict:
    """Share of lesions detected in each bin of ``attr`` (mm); None for a bin with no lesion."""
    out: dict[str, float | None] = {}
    for key, _, _ in bins:
        hits = [getattr(les, detected) for les in lesions if bin_key(getattr(les, attr), bins) == key]
        out[key] = float(np.mean(hits)) if hits else None
    return out


def counts_by_bin(lesions, bins, *, attr: str, detected: str = "detected") -> dict:
    """{bin: [detected, total]}: the raw counts behind :func:`sensitivity_by_bin`, for pooling."""
    out = {key: [0, 0] for key, _, _ in bins}
    for les in lesions:
        key = bin_key(getattr(les, attr), bins)
        out[key][0] += int(getattr(les, detected))
        out[key][1] += 1
    return out
