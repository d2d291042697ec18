"""Checks on a case's files before training: broken headers and image/label mismatches.

Each problem is a sentence a user can act on. Fatal problems (shape mismatch, labels outside
{0, 1, 2}, NaN in the image, unreadable files) stop preprocessing; the others (a broken or
disagreeing header) are warnings: preprocessing carries on with the header's spacing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth.cases import CaseFiles
from synth.io import read_nifti_image
from synth.validation import affine_disagreement_mm, check_label_values, check_volume

__all__ = ["CaseProblem", "find_problems", "check_case", "AFFINE_TOLERANCE_MM"]

# Image and label affines may differ by float rounding; more than a millimetre is a real mismatch.
AFFINE_TOLERANCE_MM = 1.0


@dataclass(frozen=True)
class CaseProblem:
    """One problem of a case: the sentence to show and whether it stops preprocessing."""

    message: str
    fatal: bool


def header_spacing(img) -> tuple[float, float, float]:
    """Voxel size in mm from the header's pixdim (what nibabel's ``get_zooms`` returns)."""
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    zooms += [1.0] * (3 - len(zooms))  # a 2-D image: 1 mm along the missing axes
    return zooms[0], zooms[1], zooms[2]


def affine_is_broken(affine) -> str | None:
    """Why an affine carries no real geometry ("the identity matrix", ...), or None when fine."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        return "not a finite 4x4 matrix"
    if np.allclose(affine, np.eye(4)):
        return "the identity matrix"
    columns = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if np.any(columns < 1e-6) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        return "singular (a zero or repeated column)"
    return None


def _load(path, kind: str, case_id: str, problems: list[CaseProblem]):
    """The nibabel image and voxel data of ``path``; ``(None, None)`` and a fatal problem naming
    the file when it cannot be read (truncated or corrupt gzip, not NIfTI)."""
    try:
        return read_nifti_image(path)
    except (FileNotFoundError, ValueError) as exc:  # the message names the file
        problems.append(CaseProblem(f"case {case_id}: the {kind} file is unreadable: {exc}.", True))
        return None, None


def header_problems(case_id: str, image_img, label_img, *, spacing_given: bool = False) -> list[CaseProblem]:
    """Problems visible in the headers alone: broken affines, shape mismatch, disagreeing affines.

    ``spacing_given``: the caller knows the true spacing, so a broken affine is never fatal.
    """
    problems: list[CaseProblem] = []
    broken = {}
    for kind, img in (("image", image_img), ("label", label_img)):
        if img is None:
            continue
        if len(img.shape) < 3 or (len(img.shape) > 3 and any(n != 1 for n in img.shape[3:])):
            problems.append(CaseProblem(f"case {case_id}: the {kind} is not a 3-D volume "
                                        f"(shape {tuple(img.shape)}).", True))
        reason = affine_is_broken(img.affine)
        broken[kind] = reason
        if reason is None:
            continue
        spacing = header_spacing(img)
        usable = spacing_given or all(np.isfinite(s) and s > 0 for s in spacing)
        known = " (LiTS volumes 28-47 are known to carry identity affines)" if reason == "the identity matrix" else ""
        if spacing_given:
            tail = "the spacing given by hand is used and the orientation is taken as stored"
        elif usable:
            tail = (f"the header's spacing {tuple(round(s, 4) for s in spacing)} mm is used and the orientation "
                    f"is taken as stored; give the true spacing if you know it")
        else:
            tail = "the header's spacing is not positive either, so the case cannot be resampled; give its spacing"
        problems.append(CaseProblem(f"case {case_id}: the {kind}'s affine is {reason}, so the header gives "
                                    f"no real orientation or position{known}; {tail}.", not usable))
    if image_img is not None and label_img is not None:
        shape_i, shape_l = tuple(image_img.shape[:3]), tuple(label_img.shape[:3])
        if shape_i != shape_l:
            problems.append(CaseProblem(f"case {case_id}: image shape {shape_i} and label shape {shape_l} "
                                        f"differ; the label was not drawn on this image's voxel grid.", True))
        elif broken.get("image") is None and broken.get("label") is None:
            distance = affine_disagreement_mm(shape_i, image_img.affine, label_img.affine)
            if not distance <= AFFINE_TOLERANCE_MM:
                problems.append(CaseProblem(
                    f"case {case_id}: the image and label affines place the same voxel up to "
                    f"{distance:.3g} mm apart (more than {AFFINE_TOLERANCE_MM:g} mm); each is reoriented "
                    f"with its own header, check that they really belong together.", False))
    return problems


def array_problems(case_id: str, image: np.ndarray | None, label: np.ndarray | None) -> list[CaseProblem]:
    """Problems in the voxel values, found by the synthesiser's own checks
    (:func:`synth.validation.check_volume`, :func:`synth.validation.check_label_values`): NaN,
    infinite or implausible HU in the image, label values other than 0, 1, 2. All are fatal."""
    problems: list[CaseProblem] = []
    for name, values, check in (("image", image, check_volume), ("label", label, check_label_values)):
        if values is None:
            continue
        try:
            check(values)
        except (TypeError, ValueError) as exc:
            problems.append(CaseProblem(f"case {case_id}: the {name} is unusable: {exc}.", True))
    return problems


def find_problems(files: CaseFiles) -> list[CaseProblem]:
    """All problems of a case's files, fatal or not (empty when the case is fine)."""
    problems: list[CaseProblem] = []
    image_img, image = _load(files.image, "image", files.case_id, problems)
    label_img, label = (_load(files.label, "label", files.case_id, problems) if files.label is not None
                        else (None, None))
    problems += header_problems(files.case_id, image_img, label_img)
    if any(p.fatal for p in problems):
        return problems  # the voxel values are not worth checking
    return problems + array_problems(files.case_id, image, label)


def check_case(files: CaseFiles) -> list[str]:
    """The problems of a case as sentences; empty when the case is fine.

    Flags: an identity or zero affine (LiTS volumes 28-47 carry identity affines), image/label
    shape mismatch, image and label affines that disagree by more than 1 mm, label values outside
    {0, 1, 2}, NaN in the image, unreadable files. ``find_problems`` also says which are fatal.
    """
    return [p.message for p in find_problems(files)]
