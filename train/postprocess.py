"""Post-processing of predicted label maps: tumour only inside the liver, no specks, no isodense
"lesions".

>>> from train.postprocess import postprocess
>>> cleaned = postprocess(prediction, spacing=(1.4, 1.4, 1.4), liver_opening_mm=3.0,
...                       min_tumor_mm3=65.0, image=ct, min_contrast_hu=10.0)  # doctest: +SKIP

Three rules, each optional, applied in this order:

1. **Liver restriction.** Tumour grows inside the liver, so a predicted tumour component that
   stays farther than ``liver_margin_mm`` from it is a false positive and becomes background
   (a component that comes this close is kept whole: a lesion may bulge out of the liver).
   Predicted liver outside it becomes background too. The liver is a given mask (``liver=``, e.g.
   the true liver, reported as such) or, with ``largest_liver=True``, the prediction's own
   largest 26-connected liver-or-tumour component. A model that mistakes a look-alike tissue
   for liver (the vertebral bodies, on a slab it has seen little spine in) often joins it to the
   liver by a thin bridge, so the largest component is taken after a morphological opening of
   ``liver_opening_mm`` (which cuts bridges thinner than twice that) and then grown back, inside
   the prediction, by the same distance.
2. **Specks.** Tumour components below ``min_tumor_mm3`` (26-connected, volume in mm^3) become
   liver: at a few voxels, a prediction is more often noise than a lesion. 65 mm^3 is a 5 mm sphere.
3. **Isodense components.** With the CT (``image=``, HU), a tumour component whose median HU
   differs by less than ``min_contrast_hu`` from the median of the predicted liver around it (a
   shell of ``SHELL_MM``) becomes liver: a lesion with no contrast to its liver cannot be seen,
   and no reader would have annotated it. The test is two-sided, so hyperdense lesions stay.

Each is evaluated with and without in the ablation report (docs/ablation.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from synth.components import lesion_components
from synth.labels import Label
from synth.validation import check_spacing

__all__ = ["SETTINGS", "SHELL_MM", "describe_postprocess", "postprocess"]

# The liver around a tumour component that its contrast is measured against: about two voxels at
# LiTS' spacing, far enough to leave the component's blurred edge out.
SHELL_MM = 3.0


def _within(mask: np.ndarray, spacing: Sequence[float], distance_mm: float) -> np.ndarray:
    """Voxels within ``distance_mm`` of ``mask`` (the mask itself included)."""
    if distance_mm <= 0 or not mask.any():
        return mask
    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= distance_mm


def _largest(mask: np.ndarray) -> np.ndarray | None:
    components, count = lesion_components(mask)
    if not count:
        return None
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def _own_liver(prediction: np.ndarray, spacing: Sequence[float], opening_mm: float) -> np.ndarray | None:
    """The prediction's largest liver-or-tumour component, after an opening of ``opening_mm``."""
    organ = prediction >= Label.LIVER
    if opening_mm <= 0:
        return _largest(organ)
    # Erosion by distance, in mm, so that the opening is the same ball on any voxel size. Outside
    # the field of view counts as background: a bridge along the scan's edge is cut too.
    depth = ndimage.distance_transform_edt(np.pad(organ, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    core = _largest(depth > opening_mm)
    if core is None:  # nothing thicker than the opening: keep the plain largest component
        return _largest(organ)
    return _within(core, spacing, opening_mm) & organ


def _isodense(components: np.ndarray, out: np.ndarray, image: np.ndarray, spacing: Sequence[float],
              min_contrast_hu: float) -> list[int]:
    """Labels of the tumour ``components`` of ``out`` with less than ``min_contrast_hu`` of contrast
    to the predicted liver around them."""
    pad = np.ceil(SHELL_MM / np.asarray(spacing)).astype(int)
    flat = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        # The component's bounding box, grown by the shell, keeps the distance maps small.
        box = tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(box, pad, out.shape))
        mine = components[box] == index
        shell = _within(mine, spacing, SHELL_MM) & ~mine & (out[box] == Label.LIVER)
        if not shell.any():  # no liver around it to compare with: keep it
            continue
        contrast = float(np.median(image[box][mine])) - float(np.median(image[box][shell]))
        if abs(contrast) < min_contrast_hu:
            flat.append(index)
    return flat


def postprocess(prediction: np.ndarray, spacing: Sequence[float], *, largest_liver: bool = True,
                liver: np.ndarray | None = None, liver_margin_mm: float = 2.0, liver_opening_mm: float = 0.0,
                min_tumor_mm3: float = 0.0, image: np.ndarray | None = None,
                min_contrast_hu: float = 0.0) -> np.ndarray:
    """A cleaned copy of a predicted 0/1/2 label map (see the module docstring).

    Args:
        prediction: uint8 label map, :class:`synth.labels.Label` values.
        spacing: voxel size in mm.
        largest_liver: restrict to the prediction's largest liver component (ignored when
            ``liver`` is given).
        liver: a boolean liver mask of the same shape to restrict to instead (e.g. the true liver).
        liver_margin_mm: a tumour component this close to the liver is kept (its edge may bulge
            out of it).
        liver_opening_mm: radius of the opening applied before the largest liver component is
            taken (0: none); bridges thinner than twice this are cut.
        min_tumor_mm3: smaller tumour components become liver; 0 keeps them all.
        image: the CT in HU on the same grid; needed by ``min_contrast_hu``.
        min_contrast_hu: tumour components whose median differs from their surrounding liver's
            by less than this become liver; 0 keeps them all.
    """
    prediction = np.asarray(prediction)
    spacing = check_spacing(spacing)
    settings = {"min_tumor_mm3": min_tumor_mm3, "liver_margin_mm": liver_margin_mm,
                "liver_opening_mm": liver_opening_mm, "min_contrast_hu": min_contrast_hu}
    negative = {key: value for key, value in settings.items() if not value >= 0}
    if negative:
        raise ValueError(f"post-processing settings must be >= 0; got {negative}")
    if min_contrast_hu > 0:
        if image is None:
            raise ValueError("min_contrast_hu needs the CT: pass image= (HU, the prediction's grid)")
        image = np.asarray(image)
        if image.shape != prediction.shape:
            raise ValueError(f"image shape {image.shape} differs from the prediction's {prediction.shape}")
    out = prediction.astype(np.uint8, copy=True)
    region = None
    if liver is not None:
        liver = np.asarray(liver, dtype=bool)
        if liver.shape != out.shape:
            raise ValueError(f"liver mask shape {liver.shape} differs from the prediction's {out.shape}")
        region = liver
    elif largest_liver:
        region = _own_liver(out, spacing, liver_opening_mm)
    if region is not None:
        near = _within(region, spacing, liver_margin_mm)
        components, _ = lesion_components(out == Label.TUMOR)
        touching = np.unique(components[near & (components > 0)])
        out[(components > 0) & ~np.isin(components, touching)] = Label.BACKGROUND
        out[~region & (out == Label.LIVER)] = Label.BACKGROUND
        if liver is not None:  # a given liver is the liver
            out[region & (out == Label.BACKGROUND)] = Label.LIVER
    if min_tumor_mm3 > 0:
        components, count = lesion_components(out == Label.TUMOR)
        if count:
            volume_mm3 = np.bincount(components.ravel()) * float(np.prod(spacing))
            small = np.nonzero(volume_mm3 < min_tumor_mm3)[0]
            out[np.isin(components, small[small > 0])] = Label.LIVER
    if min_contrast_hu > 0:
        assert image is not None  # checked above
        components, _ = lesion_components(out == Label.TUMOR)
        out[np.isin(components, _isodense(components, out, image, spacing, min_contrast_hu))] = Label.LIVER
    return out


# The rules' settings and their defaults (postprocess's keyword arguments other than the arrays):
# what an ablation configuration's "postprocess" section may set.
SETTINGS = {name: parameter.default for name, parameter in inspect.signature(postprocess).parameters.items()
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("liver", "image")}


def describe_postprocess(**settings) -> str:
    """One sentence on what :func:`postprocess` does with these :data:`SETTINGS`, for reports."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown post-processing setting(s) {unknown}; known: {sorted(SETTINGS)}")
    s = {**SETTINGS, **settings}
    rules = []
    if s["largest_liver"]:
        opening = f" (after a {s['liver_opening_mm']:g} mm opening)" if s["liver_opening_mm"] > 0 else ""
        rules.append(f"tumour only within {s['liver_margin_mm']:g} mm of the model's largest liver component"
                     f"{opening}, or of the true liver where said")
    if s["min_tumor_mm3"] > 0:
        rules.append(f"tumour components below {s['min_tumor_mm3']:g} mm^3 dropped")
    if s["min_contrast_hu"] > 0:
        rules.append(f"components with less than {s['min_contrast_hu']:g} HU of contrast to the liver around them "
                     "dropped")
    return "; ".join(rules) + "." if rules else "none."
