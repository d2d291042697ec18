"""Preprocessing a case for training: reorient to RAS, crop around the liver, resample, cache.

Order of work: reorient (closest canonical RAS, as nibabel does), crop to the liver's bounding box
plus a margin on the native grid, then resample the crop to the target spacing. Cropping first
keeps resampling cheap: a LiTS volume is mostly body and air around the liver.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth._arrays import bounding_slices
from synth.cases import Case, CaseFiles, find_cases
from synth.io import read_nifti_image, spacing_from_affine
from synth.validation import check_spacing

from .cache import file_fingerprint, load_arrays, safe_name, save_arrays, stable_hash
from .checks import CaseProblem, affine_is_broken, array_problems, header_problems, header_spacing

__all__ = ["Preprocessing", "preprocess_case", "load_cases", "crop_to_liver", "resample"]

# Bump when the preprocessing code changes what it produces: old cache entries then miss.
_PREPROCESSING_VERSION = 2


@dataclass(frozen=True)
class Preprocessing:
    """Preprocessing settings.

    Attributes:
        target_spacing: voxel size in mm along (X, Y, Z) after resampling; None keeps the native grid.
        crop_margin_mm: margin in mm kept around the liver's (label > 0) bounding box; None keeps
            the whole field of view.
    """

    target_spacing: tuple[float, float, float] | None = (1.5, 1.5, 2.0)
    crop_margin_mm: float | None = 10.0

    def __post_init__(self):
        if self.target_spacing is not None:
            try:
                spacing = check_spacing(self.target_spacing, name="target_spacing")
            except TypeError as exc:
                raise ValueError(f"{exc} (or None)") from None
            object.__setattr__(self, "target_spacing", spacing)
        if self.crop_margin_mm is not None:
            margin = float(self.crop_margin_mm)
            if not math.isfinite(margin) or margin < 0:
                raise ValueError(f"crop_margin_mm must be >= 0 mm or None, got {self.crop_margin_mm!r}")
            object.__setattr__(self, "crop_margin_mm", margin)

    def key(self) -> str:
        """A short hash of the settings (and the preprocessing version), stable across processes."""
        return stable_hash({"version": _PREPROCESSING_VERSION, "target_spacing": self.target_spacing,
                            "crop_margin_mm": self.crop_margin_mm})


# --- geometry ---------------------------------------------------------------------------------


def _reorient(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``array`` and ``affine`` turned to the closest canonical RAS of ``affine``."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    out = nib.orientations.apply_orientation(array, ornt)  # a view: cropping copies only what it keeps
    new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, array.shape)
    return out, new_affine


def crop_to_liver(image: np.ndarray, label: np.ndarray, affine: np.ndarray, margin_mm: float):
    """Crop to the bounding box of ``label > 0`` plus ``margin_mm`` on each side (clipped to the
    volume). Returns (image, label, affine, cropped); unchanged (cropped False) without liver."""
    box = bounding_slices(label > 0)
    if box is None:
        return image, label, affine, False
    spacing = spacing_from_affine(affine)
    slices, start = [], []
    for axis, found in enumerate(box):
        pad = int(math.ceil(margin_mm / spacing[axis] - 1e-9))
        lo, hi = max(found.start - pad, 0), min(found.stop + pad, label.shape[axis])
        slices.append(slice(lo, hi))
        start.append(lo)
    new_affine = affine.copy()
    new_affine[:3, 3] = affine[:3, :3] @ np.asarray(start, dtype=np.float64) + affine[:3, 3]
    region = tuple(slices)
    return image[region].copy(), label[region].copy(), new_affine, True


def resample(image: np.ndarray, label: np.ndarray | None, affine: np.ndarray, target_spacing):
    """Resample to ``target_spacing`` mm: the image linearly, the label (if any) by nearest neighbour.

    The new grid starts at the old grid's outer edge and has ``round(n * old / new)`` voxels per axis,
    so the physical extent is kept within one voxel and the spacing is exactly the target.
    Returns (image float32, label uint8, affine).
    """
    from scipy import ndimage

    old = np.asarray(spacing_from_affine(affine))
    new = np.asarray(target_spacing, dtype=np.float64)
    if np.allclose(old, new, rtol=1e-6, atol=0):
        return image, label, affine
    shape = tuple(max(1, int(round(n * o / t))) for n, o, t in zip(image.shape, old, new))
    scale = new / old  # old voxel index per new voxel index
    offset = -0.5 + 0.5 * scale  # new voxel 0's centre, in old voxel indices (edges aligned)
    out_image = ndimage.affine_transform(image.astype(np.float32, copy=False), scale, offset=offset,
                                         output_shape=shape, output=np.float32, order=1, mode="nearest")
    out_label = None if label is None else ndimage.affine_transform(
        label, scale, offset=offset, output_shape=shape, output=np.uint8, order=0, mode="nearest")
    step = np.eye(4)
    step[:3, :3] = np.diag(scale)
    step[:3, 3] = offset
    return out_image, out_label, affine @ step


# --- preprocessing ------------------------------------------------------------------------------


def _refuse(case_id: str, problems: list[CaseProblem]) -> None:
    fatal = [p.message for p in problems if p.fatal]
    if fatal:
        raise ValueError(f"case {case_id} cannot be preprocessed: " + " ".join(fatal))


def _check_override(case_id: str, spacing_override) -> np.ndarray | None:
    if spacing_override is None:
        return None
    try:
        return np.asarray(check_spacing(spacing_override, name="spacing_override"), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"case {case_id}: {exc}") from None


def _header_note(img) -> str | None:
    """The header's description when it warns that the geometry is approximate (the fetched
    LiTS-117 sample does), so that reports repeat it."""
    text = img.header.get("descrip", b"")
    text = (text.tobytes() if hasattr(text, "tobytes") else bytes(text)).split(b"\0")[0]
    text = text.decode("ascii", "replace").strip()
    return f"header says: {text}" if "approximate" in text.lower() else None


def _load_native(files: CaseFiles, spacing_override, problems: list[CaseProblem], notes: list[str]):
    """Image and label (uint8) in closest canonical RAS on the native grid, and their affine.

    Both files are read whole first (:func:`synth.io.read_nifti_image`), so a truncated or corrupt
    file is refused naming it. The arrays may be views of the loaded data (flipped by
    reorientation); the image keeps its stored type, so the float32 copy is made only after
    cropping.
    """
    case_id = files.case_id
    override = _check_override(case_id, spacing_override)
    try:
        image_img, image = read_nifti_image(files.image)
        label_img, label = read_nifti_image(files.label) if files.label is not None else (None, None)
    except (FileNotFoundError, ValueError) as exc:  # names the file: missing, truncated, corrupt
        raise ValueError(f"case {case_id} cannot be preprocessed: {exc}") from exc
    problems += header_problems(case_id, image_img, label_img, spacing_given=override is not None)
    _refuse(case_id, problems)
    note = _header_note(image_img)
    if note and override is None:
        notes.append(note)
    image = image.reshape(image.shape[:3])
    label = label.reshape(label.shape[:3]) if label is not None else None
    problems += array_problems(case_id, image, label)
    _refuse(case_id, problems)

    if label is None:
        label = np.zeros(image.shape, np.uint8)
    else:
        label = (np.rint(label) if label.dtype.kind == "f" else label).astype(np.uint8, copy=False)
    if affine_is_broken(image_img.affine) is not None:
        # No usable geometry: keep the stored orientation and build a plain diagonal affine.
        spacing = override if override is not None else header_spacing(image_img)
        return image, label, np.diag([*map(float, spacing), 1.0])
    image_affine = np.asarray(image_img.affine, dtype=np.float64)
    image, affine = _reorient(image, image_affine)
    label_affine = image_affine
    if label_img is not None and affine_is_broken(label_img.affine) is None:
        label_affine = np.asarray(label_img.affine, dtype=np.float64)  # trust the label's own header
    label, _ = _reorient(label, label_affine)
    if label.shape != image.shape:
        raise ValueError(f"case {case_id} cannot be preprocessed: after reorienting to RAS the image has "
                         f"shape {image.shape} and the label {label.shape}; their headers disagree on "
                         f"the axis order")
    if override is not None:
        affine = affine.copy()
        affine[:3, :3] = affine[:3, :3] / np.asarray(spacing_from_affine(affine)) * override
    return image, label, affine


def _cache_path(files: CaseFiles, settings: Preprocessing, cache_dir, spacing_override) -> Path:
    override = None if spacing_override is None else [float(s) for s in spacing_override]
    fingerprint = file_fingerprint(files.image, files.label, extra=[files.case_id, override])
    return Path(cache_dir) / settings.key() / f"{safe_name(files.case_id)}-{fingerprint}.npz"


def _from_cache(path: Path, files: CaseFiles, notes) -> Case | None:
    arrays = load_arrays(path)
    if arrays is None or not {"image", "label", "affine", "meta"} <= set(arrays):
        return None
    meta = json.loads(str(arrays["meta"]))
    for message in meta["warnings"]:
        warnings.warn(message, stacklevel=3)
    return Case(case_id=files.case_id, image=arrays["image"], label=arrays["label"],
                spacing=tuple(meta["spacing"]), affine=arrays["affine"], source=str(files.image),
                notes=tuple(meta["notes"]) + tuple(notes))


def preprocess_case(files: CaseFiles, settings: Preprocessing = Preprocessing(), *,
                    cache_dir: Path | None = None, spacing_override=None, notes=()) -> Case:
    """Load a case and make it ready for training.

    Steps: nibabel load; reorientation to closest canonical RAS (``nib.as_closest_canonical``'s
    rule); crop to the liver's (label > 0) bounding box plus ``settings.crop_margin_mm``; resample
    to ``settings.target_spacing`` mm (image linear, label nearest neighbour; the physical extent
    is kept within a voxel and the affine updated). The image comes back float32 HU, the label
    uint8 (0/1/2; all zeros for an unlabelled case, which is then not cropped).

    Args:
        files: the case's files (see ``find_cases``).
        settings: the preprocessing settings.
        cache_dir: when given, the result is kept in ``cache_dir/<settings.key()>/`` as an ``.npz``
            keyed also by the files' size and modification time; a later call returns identical
            arrays without reading the NIfTI files.
        spacing_override: the true voxel size in mm along the RAS (X, Y, Z) axes, for files whose
            header is wrong (it replaces the header's spacing, the orientation is kept).
        notes: extra facts appended to the case's notes.

    Raises:
        ValueError: naming the case, for fatal problems (unreadable file, image/label shape
            mismatch, labels outside {0, 1, 2}, NaN in the image).

    Warns:
        UserWarning: for a broken header (identity or zero affine, disagreeing image and label
            affines); the header's spacing is used and the warning is kept in the case's notes.
    """
    notes = tuple(notes)
    cache_path = None
    if cache_dir is not None:
        cache_path = _cache_path(files, settings, cache_dir, spacing_override)
        cached = _from_cache(cache_path, files, notes)
        if cached is not None:
            return cached

    problems: list[CaseProblem] = []
    header_notes: list[str] = []
    image, label, affine = _load_native(files, spacing_override, problems, header_notes)
    messages = [p.message for p in problems]  # only non-fatal ones are left
    for message in messages:
        warnings.warn(message, stacklevel=2)
    own_notes = list(messages) + header_notes
    if spacing_override is not None:
        own_notes.append(f"spacing set by hand to {tuple(float(s) for s in spacing_override)} mm")
    if settings.crop_margin_mm is not None:
        image, label, affine, cropped = crop_to_liver(image, label, affine, settings.crop_margin_mm)
        if not cropped:
            own_notes.append("no liver label: the whole field of view is kept")
    if settings.target_spacing is not None:
        image, label, affine = resample(image, label, affine, settings.target_spacing)
    # Always a fresh array: never a view of nibabel's memory map of the file.
    image = np.array(image, dtype=np.float32, order="C")
    label = np.array(label, dtype=np.uint8, order="C")
    spacing = spacing_from_affine(affine)
    if settings.target_spacing is not None:
        spacing = settings.target_spacing  # exact, not the float round trip through the affine

    if cache_path is not None:
        meta = {"spacing": list(spacing), "notes": own_notes, "warnings": messages}
        save_arrays(cache_path, image=image, label=label, affine=affine, meta=np.array(json.dumps(meta)))
    return Case(case_id=files.case_id, image=image, label=label, spacing=spacing, affine=affine,
                source=str(files.image), notes=tuple(own_notes) + notes)


def load_cases(path, settings: Preprocessing = Preprocessing(), *, cache_dir: Path | None = None,
               progress: bool = True, skip_broken: bool = False) -> list[Case]:
    """Find (``find_cases``) and preprocess (``preprocess_case``) every case of a data set.

    Args:
        skip_broken: skip a case with a fatal problem (with a warning) instead of raising.
    """
    from tqdm.auto import tqdm

    cases = []
    for files in tqdm(find_cases(path), desc="preprocessing cases", unit="case", disable=not progress):
        try:
            cases.append(preprocess_case(files, settings, cache_dir=cache_dir))
        except ValueError as exc:
            if not skip_broken:
                raise
            warnings.warn(f"skipped: {exc}", stacklevel=2)
    return cases
