"""Further hosts for the realism protocol: thick-slice versions of labelled cases, healthy scans.

A classifier that only ever sees lesions of one thin-slice scan says little about thick-slice
data, where every lesion edge is smeared over a 3-5 mm slice. :func:`thick_slice_case` makes such
a scan from a labelled one by averaging groups of axial slices, so its *real* lesions carry real
partial volume, and synthetic lesions can be inserted on the same thick grid. :func:`read_host`
reads a healthy scan (CT + liver mask) into which synthetic lesions are inserted and compared
with the real lesions of labelled cases.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..cases import Case, CaseFiles, find_cases, natural_key, nifti_stem, read_case
from ..labels import Label

__all__ = ["read_host", "slice_factor", "thick_slice_case"]

_IMAGE_WORDS = ("ct", "image", "volume", "img")


def slice_factor(spacing_z_mm: float, thick_mm: float) -> int:
    """How many axial slices of ``spacing_z_mm`` make one slice of about ``thick_mm`` (at least 2)."""
    if not thick_mm > spacing_z_mm:
        raise ValueError(f"thick slice of {thick_mm} mm must be thicker than the scan's {spacing_z_mm:.2f} mm "
                         f"slices; ask for at least {2 * spacing_z_mm:.1f} mm")
    return max(2, int(round(thick_mm / spacing_z_mm)))


def thick_slice_case(case: Case, *, thick_mm: float) -> Case:
    """A thick-slice version of a labelled case: groups of ``k`` axial slices averaged.

    Parameters
    ----------
    case : synth.cases.Case
        Labelled scan (labels 0/1/2, HU, spacing in mm).
    thick_mm : float
        Wanted slice thickness in mm; ``k = round(thick_mm / spacing_z)`` slices (at least 2) are
        averaged, so the new thickness is ``k * spacing_z`` (LiTS-117, 1.4 mm: 2.8 mm for 2.8).

    Returns
    -------
    Case
        The image is the mean HU of each group (float32), so lesion edges carry the partial volume
        a thick-slice scanner would record. A thick voxel is tumour where at least half its thin
        voxels were tumour, liver where at least half were liver or tumour and it is not tumour,
        background otherwise. Trailing slices that do not fill a group are dropped.
    """
    k = slice_factor(case.spacing[2], thick_mm)
    n = case.image.shape[2] // k
    if n < 4:
        raise ValueError(f"case {case.case_id!r}: {case.image.shape[2]} slices make only {n} slices of "
                         f"{k * case.spacing[2]:.2f} mm; ask for a thinner thick slice")
    shape = (*case.image.shape[:2], n, k)
    image = np.asarray(case.image[:, :, :n * k], dtype=np.float32).reshape(shape).mean(axis=3)
    thin = np.asarray(case.label[:, :, :n * k]).reshape(shape)
    tumour = (thin == Label.TUMOR).mean(axis=3) >= 0.5
    organ = (thin != Label.BACKGROUND).mean(axis=3) >= 0.5
    label = np.where(tumour, Label.TUMOR, np.where(organ, Label.LIVER, Label.BACKGROUND)).astype(np.uint8)
    affine = np.array(case.affine, dtype=np.float64)
    affine[:3, 2] *= k
    # The thick voxel's centre lies halfway through its group of thin slices.
    affine[:3, 3] += case.affine[:3, 2] * (k - 1) / 2.0
    spacing = (case.spacing[0], case.spacing[1], case.spacing[2] * k)
    return Case(f"{case.case_id} {spacing[2]:.1f} mm", image, label, spacing, affine, source=case.source,
                notes=(*case.notes, f"thick slice: {k} slices of {case.spacing[2]:.2f} mm averaged"))


def read_host(path: str | os.PathLike[str]) -> list[Case]:
    """Scans to insert into: the cases of a data set folder (:func:`synth.cases.find_cases`), or a
    folder with exactly one CT and one liver mask (the CT's name starts with ``ct``, ``image``,
    ``volume`` or ``img``; the other file is the mask, binary or 0/1/2)."""
    folder = Path(path)
    try:
        return [read_case(files) for files in find_cases(folder)]
    except ValueError as exc:
        if "no cases found" not in str(exc) or not folder.is_dir():
            raise
    niftis = sorted((p for p in folder.iterdir() if nifti_stem(p.name)), key=lambda p: natural_key(p.name))
    images = [p for p in niftis if (nifti_stem(p.name) or "").lower().startswith(_IMAGE_WORDS)]
    if len(niftis) != 2 or len(images) != 1:
        raise ValueError(f"{folder}: expected a data set folder or exactly one CT (ct*.nii.gz) and one liver "
                         f"mask NIfTI; found {[p.name for p in niftis]}")
    mask = next(p for p in niftis if p != images[0])
    return [read_case(CaseFiles(folder.name, images[0], mask))]
