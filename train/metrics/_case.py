"""Per-case evaluation and the aggregation over a list of cases."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from synth.deprecation import UNSET, renamed_keyword
from synth.labels import Label
from synth.validation import check_label_values, check_spacing

from ._lesions import (
    DIAMETER_BINS,
    RADIUS_BINS,
    LesionResult,
    counts_by_bin,
    match_lesions,
    sensitivity_by_bin,
)
from ._surface import assd_hd95


@dataclass(frozen=True)
class CaseResult:
    """Lesion-wise and voxel-wise results of one case. ``to_dict()`` is JSON-ready (no NaN)."""

    case_id: str | None
    spacing: tuple[float, ...]
    dice: float
    gt_voxels: int
    pred_voxels: int
    intersection_voxels: int
    n_lesions: int
    n_pred_components: int
    false_positives: int  # predicted components overlapping no GT lesion
    sensitivity: float | None  # None when the case has no GT lesion
    sensitivity_iou50: float | None
    sensitivity_by_diameter: dict
    sensitivity_by_radius: dict
    sensitivity_iou50_by_diameter: dict
    sensitivity_iou50_by_radius: dict
    assd_mm: float | None  # None when exactly one of GT and prediction is empty
    hd95_mm: float | None
    lesions: list[LesionResult] = field(default_factory=list)
    # Dice of the liver (label >= 1, tumour included) when both are label maps; None for masks.
    liver_dice: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _tumor_mask(arr, label: int, name: str) -> np.ndarray:
    """The tumour mask of a boolean mask (itself) or of a label map (checked: whole numbers from 0
    to the tumour label, so that a CT passed by mistake is refused)."""
    arr = np.asarray(arr)
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be a numeric label map or a boolean mask; got {arr.dtype}")
    check_label_values(arr, name=name, high=max(int(label), int(Label.TUMOR)))
    return arr == label


def evaluate_case(
    pred,
    gt,
    *,
    spacing=None,
    tumor_label: int = Label.TUMOR,
    case_id: str | None = None,
    tumour_label: int = UNSET,
) -> CaseResult:
    """Evaluate one predicted label map against its ground truth.

    ``pred`` and ``gt`` are arrays of the same shape (2-D or 3-D); the tumour is ``== tumor_label``
    (default 2, the LiTS/MSD convention), or the array itself when it is boolean. A label map must
    hold whole numbers from 0 to the tumour label (a CT passed by mistake raises ValueError).
    ``spacing`` is the voxel size in mm along each array axis (one number for isotropic; default
    1 mm). ``tumour_label`` is the deprecated spelling of ``tumor_label``.
    """
    tumor_label = renamed_keyword(tumor_label, tumour_label, new="tumor_label", old="tumour_label",
                                  default=Label.TUMOR)
    gt_m = _tumor_mask(gt, tumor_label, "gt")
    pred_m = _tumor_mask(pred, tumor_label, "pred")
    liver_dice = None
    if np.asarray(gt).dtype != bool and np.asarray(pred).dtype != bool and gt_m.shape == pred_m.shape:
        liver_gt, liver_pred = np.asarray(gt) >= Label.LIVER, np.asarray(pred) >= Label.LIVER
        total = int(liver_gt.sum()) + int(liver_pred.sum())
        liver_dice = 1.0 if total == 0 else 2.0 * int(np.count_nonzero(liver_gt & liver_pred)) / total
    if gt_m.shape != pred_m.shape:
        raise ValueError(f"pred and gt shapes differ: {pred_m.shape} vs {gt_m.shape}")
    if gt_m.ndim not in (2, 3):
        raise ValueError(f"pred and gt must be 2-D or 3-D; got shape {gt_m.shape}")
    spacing = check_spacing(1.0 if spacing is None else np.atleast_1d(spacing), ndim=gt_m.ndim)

    n_gt, n_pred = int(gt_m.sum()), int(pred_m.sum())
    n_inter = int(np.count_nonzero(gt_m & pred_m))
    dice = 1.0 if n_gt + n_pred == 0 else 2.0 * n_inter / (n_gt + n_pred)

    lesions, n_comp, fps = match_lesions(gt_m, pred_m, float(np.prod(spacing)))
    assd, hd95 = assd_hd95(pred_m, gt_m, spacing)
    return CaseResult(
        case_id=case_id,
        spacing=spacing,
        dice=float(dice),
        gt_voxels=n_gt,
        pred_voxels=n_pred,
        intersection_voxels=n_inter,
        n_lesions=len(lesions),
        n_pred_components=n_comp,
        false_positives=fps,
        sensitivity=float(np.mean([lesion.detected for lesion in lesions])) if lesions else None,
        sensitivity_iou50=float(np.mean([lesion.detected_iou50 for lesion in lesions])) if lesions else None,
        sensitivity_by_diameter=sensitivity_by_bin(lesions, DIAMETER_BINS, attr="diameter_mm"),
        sensitivity_by_radius=sensitivity_by_bin(lesions, RADIUS_BINS, attr="radius_mm"),
        sensitivity_iou50_by_diameter=sensitivity_by_bin(
            lesions, DIAMETER_BINS, attr="diameter_mm", detected="detected_iou50"
        ),
        sensitivity_iou50_by_radius=sensitivity_by_bin(
            lesions, RADIUS_BINS, attr="radius_mm", detected="detected_iou50"
        ),
        assd_mm=assd,
        hd95_mm=hd95,
        lesions=lesions,
        liver_dice=liver_dice,
    )


def _pooled(cases: Sequence[CaseResult], bins, attr: str, detected: str) -> dict:
    totals = {key: [0, 0] for key, _, _ in bins}
    for case in cases:
        for key, (hit, n) in counts_by_bin(case.lesions, bins, attr=attr, detected=detected).items():
            totals[key][0] += hit
            totals[key][1] += n
    return {
        key: {"detected": hit, "lesions": n, "sensitivity": hit / n if n else None}
        for key, (hit, n) in totals.items()
    }


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def aggregate(cases: Sequence[CaseResult]) -> dict:
    """Summary over cases (JSON-ready). Lesion sensitivities are pooled over all lesions.

    ``global_dice`` sums intersections and volumes over cases before dividing (1.0 when every case
    is empty on both sides); ``mean_dice`` is the plain mean of per-case Dice. Mean ASSD/HD95
    leave out the cases where they are undefined, and ``distance_undefined_cases`` counts those.
    """
    cases = list(cases)
    inter = sum(c.intersection_voxels for c in cases)
    vol = sum(c.gt_voxels + c.pred_voxels for c in cases)
    lesions = [les for c in cases for les in c.lesions]
    fps = [c.false_positives for c in cases]
    return {
        "n_cases": len(cases),
        "global_dice": (2.0 * inter / vol if vol else 1.0) if cases else None,
        "mean_dice": _mean([c.dice for c in cases]),
        "mean_liver_dice": _mean([c.liver_dice for c in cases]),
        "mean_assd_mm": _mean([c.assd_mm for c in cases]),
        "mean_hd95_mm": _mean([c.hd95_mm for c in cases]),
        "distance_undefined_cases": sum(c.assd_mm is None for c in cases),
        "n_lesions": len(lesions),
        "detected": sum(les.detected for les in lesions),
        "detected_iou50": sum(les.detected_iou50 for les in lesions),
        "sensitivity": _mean([float(les.detected) for les in lesions]),
        "sensitivity_iou50": _mean([float(les.detected_iou50) for les in lesions]),
        "false_positives": sum(fps),
        "false_positives_per_case": _mean(fps),
        "by_diameter": _pooled(cases, DIAMETER_BINS, "diameter_mm", "detected"),
        "by_radius": _pooled(cases, RADIUS_BINS, "radius_mm", "detected"),
        "iou50_by_diameter": _pooled(cases, DIAMETER_BINS, "diameter_mm", "detected_iou50"),
        "iou50_by_radius": _pooled(cases, RADIUS_BINS, "radius_mm", "detected_iou50"),
    }


def evaluate_cases(
    preds: Iterable,
    gts: Iterable,
    *,
    spacings: Iterable | None = None,
    case_ids: Iterable[str] | None = None,
    tumor_label: int = Label.TUMOR,
    tumour_label: int = UNSET,
) -> dict:
    """Evaluate matching lists of predictions and ground truths: ``{"cases": [...], "summary": {...}}``.

    ``spacings`` holds one spacing per case (default 1 mm); ``case_ids`` one name per case
    (default "0", "1", ...). The result is JSON-ready (``json.dumps`` works on it as it is).
    ``tumour_label`` is the deprecated spelling of ``tumor_label``.
    """
    tumor_label = renamed_keyword(tumor_label, tumour_label, new="tumor_label", old="tumour_label",
                                  default=Label.TUMOR)
    preds, gts = list(preds), list(gts)
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} ground truths")
    spacings = [None] * len(gts) if spacings is None else list(spacings)
    case_ids = [str(i) for i in range(len(gts))] if case_ids is None else list(case_ids)
    if not len(spacings) == len(case_ids) == len(gts):
        raise ValueError("spacings and case_ids must have one entry per case")
    results = [
        evaluate_case(p, g, spacing=s, tumor_label=tumor_label, case_id=c)
        for p, g, s, c in zip(preds, gts, spacings, case_ids)
    ]
    return {"cases": [r.to_dict() for r in results], "summary": aggregate(results)}
