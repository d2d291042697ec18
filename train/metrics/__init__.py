"""Lesion-wise evaluation of liver-tumour segmentations (numpy, scipy, cc3d).

Definitions (full text and the JSON schema in ``docs/evaluation.md``):

* Tumour: voxels ``== tumor_label`` (default 2, :class:`synth.labels.Label`) of the ground truth and
  of the prediction; a boolean array is taken as the tumour mask itself. ``spacing`` is mm per array axis.
* Lesions and predicted components: 26-connected components (``cc3d``, ``connectivity=26``).
* A GT lesion is ``detected`` when any predicted tumour voxel lies inside it, and
  ``detected_iou50`` (LiTS rule) when its IoU with the union of the predicted components that
  overlap it is > 0.5. Its ``dice`` is the Dice with that same union (0 when missed).
* Size: equivalent diameter ``(6 V / pi) ** (1/3)`` in mm of the lesion's volume V (voxel count
  times the voxel volume); radius is half of it. Bins: diameter < 10, [10, 20), >= 20 mm; radius
  [0,5), [5,10), [10,15), [15,20), >= 20 mm (lower bound inclusive).
* False positives: predicted components that overlap no GT lesion.
* Case Dice on the tumour masks; global Dice: intersections and volumes summed over cases.
* ASSD and HD95 in mm on surface voxels (see :mod:`train.metrics._surface`): ASSD pools both
  directions; HD95 is the larger directed 95th percentile. Same as MONAI's.

Empty-case rules:

* GT and prediction both empty: Dice 1.0, no lesions, 0 false positives, ASSD = HD95 = 0.0,
  every sensitivity None (no lesion to find).
* GT empty, prediction not: Dice 0.0, every predicted component is a false positive,
  sensitivities None, ASSD = HD95 = None (undefined).
* Prediction empty, GT not: Dice 0.0, every lesion missed (sensitivity 0.0 in each bin that holds
  a lesion, None in the others), ASSD = HD95 = None (undefined).
* A size bin with no GT lesion has sensitivity None, never 0.
* Undefined values are None, never NaN or inf, so the results are valid JSON; the summary's mean
  ASSD/HD95 leave them out and count them in ``distance_undefined_cases``.
"""

from synth.components import CONNECTIVITY, equivalent_diameter_mm

from ._case import CaseResult, aggregate, evaluate_case, evaluate_cases
from ._lesions import (
    DIAMETER_BINS,
    RADIUS_BINS,
    LesionResult,
    components,
    match_lesions,
)
from ._surface import assd_hd95, directed_distances, surface

__all__ = [
    "CONNECTIVITY",
    "DIAMETER_BINS",
    "RADIUS_BINS",
    "CaseResult",
    "LesionResult",
    "aggregate",
    "assd_hd95",
    "components",
    "directed_distances",
    "equivalent_diameter_mm",
    "evaluate_case",
    "evaluate_cases",
    "match_lesions",
    "surface",
]


def __getattr__(name: str):
    if name == "TUMOUR_LABEL":  # deprecated: the label values are defined once, in synth.labels
        from synth.deprecation import warn_renamed
        from synth.labels import Label

        warn_renamed("train.metrics.TUMOUR_LABEL", "synth.labels.Label.TUMOR")
        return Label.TUMOR
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
