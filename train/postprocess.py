"""Post-processing of predicted label maps: tumour only inside the liver, no specks.

>>> from train.postprocess import postprocess
>>> cleaned = postprocess(prediction, spacing=(1.4, 1.4, 1.4), min_tumor_mm3=50.0)  # doctest: +SKIP

Two rules, each optional, applied in this order:

1. **Liver restriction.** Tumour grows inside the liver, so predicted tumour outside it is a false
   positive. The liver is the prediction's own largest 26-connected liver-or-tumour component
   (``largest_liver=True``), or a given mask (``liver=``, e.g. the true liver, reported as such);
   predicted tumour farther than ``liver_margin_mm`` from it becomes background, and so does
   predicted liver outside it.
2. **Specks.** Tumour components below ``min_tumor_mm3`` (26-connected, volume in mm^3) become
   liver: at a few voxels, a prediction is more often noise than a lesion. 65 mm^3 is a 5 mm sphere.

Both are evaluated with and without in the ablation report (docs/ablation.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from synth.components import lesion_components
from synth.labels import Label
from synth.validation import check_spacing

__all__ = ["postprocess"]


def _near(mask: np.ndarray, spacing: Sequence[float], margin_mm: float) -> np.ndarray:
    """Voxels within ``margin_mm`` of ``mask`` (the mask itself included)."""
    if margin_mm <= 0 or not mask.any():
        return mask
    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= margin_mm


def postprocess(prediction: np.ndarray, spacing: Sequence[float], *, largest_liver: bool = True,
                liver: np.ndarray | None = None, liver_margin_mm: float = 2.0,
                min_tumor_mm3: float = 0.0) -> np.ndarray:
    """A cleaned copy of a predicted 0/1/2 label map (see the module docstring).

    Args:
        prediction: uint8 label map, :class:`synth.labels.Label` values.
        spacing: voxel size in mm.
        largest_liver: restrict to the prediction's largest liver component (ignored when
            ``liver`` is given).
        liver: a boolean liver mask of the same shape to restrict to instead (e.g. the true liver).
        liver_margin_mm: tumour this close to the liver is kept (its edge may bulge out of it).
        min_tumor_mm3: smaller tumour components become liver; 0 keeps them all.
    """
    prediction = np.asarray(prediction)
    spacing = check_spacing(spacing)
    if min_tumor_mm3 < 0 or liver_margin_mm < 0:
        raise ValueError(f"min_tumor_mm3 and liver_margin_mm must be >= 0; got {min_tumor_mm3}, {liver_margin_mm}")
    out = prediction.astype(np.uint8, copy=True)
    region = None
    if liver is not None:
        liver = np.asarray(liver, dtype=bool)
        if liver.shape != out.shape:
            raise ValueError(f"liver mask shape {liver.shape} differs from the prediction's {out.shape}")
        region = liver
    elif largest_liver:
        components, count = lesion_components(out >= Label.LIVER)
        if count:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            region = components == int(np.argmax(sizes))
    if region is not None:
        out[~region & (out == Label.LIVER)] = Label.BACKGROUND
        out[~_near(region, spacing, liver_margin_mm) & (out == Label.TUMOR)] = Label.BACKGROUND
        if liver is not None:  # a given liver is the liver
            out[region & (out == Label.BACKGROUND)] = Label.LIVER
    if min_tumor_mm3 > 0:
        components, count = lesion_components(out == Label.TUMOR)
        if count:
            volume_mm3 = np.bincount(components.ravel()) * float(np.prod(spacing))
            small = np.nonzero(volume_mm3 < min_tumor_mm3)[0]
            out[np.isin(components, small[small > 0])] = Label.LIVER
    return out
