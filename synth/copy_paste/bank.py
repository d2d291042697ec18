"""A lesion bank: the real tumours of labelled cases, each cut out with a margin of its liver.

A bank is a folder: one file per lesion (``.npz`` by default: the CT crop in HU, the lesion's
mask, the crop's tumour-free liver mask and the spacing in mm; or two NIfTI files, the CT crop and
a mask with 1 liver and 2 lesion) and ``index.json``, which lists every lesion with its statistics.
Lesions are the 26-connected components of label 2, cut exactly as the realism report cuts real
lesions (:func:`synth.realism.compare.extract_real_lesions`), so both see the same lesions.

Loading reads and checks every file at once: a bank that loads is whole, and a missing, truncated
or corrupt file is a ``ValueError`` naming it, never a lesion silently skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np

from ..cases import Case, read_cases
from ..labels import Label
from ..validation import check_label_values, check_spacing

__all__ = ["BANK_FORMATS", "INDEX_NAME", "BankLesion", "LesionBank", "build_bank", "cached_bank"]

INDEX_NAME = "index.json"
BANK_VERSION = 1
BANK_FORMATS = ("npz", "nifti")
# The donor's liver level is the median of the tumour-free liver in its crop (the parenchyma the
# lesion is seen against); with fewer liver voxels than this, the whole case's liver median is used.
_MIN_LOCAL_LIVER_VOXELS = 200
_ENTRY_KEYS = {"id", "files", "case", "diameter_mm", "liver_hu", "contrast_hu", "noise_hu"}

TypeBankFormat = Literal["npz", "nifti"]
TypeCases = Union[str, "os.PathLike[str]", Sequence[Case]]


@dataclass(frozen=True)
class BankLesion:
    """One real lesion of a bank, as a crop of its scan.

    ``volume`` is the CT crop in HU (float32), ``lesion`` the lesion's voxels, ``liver`` the
    crop's tumour-free liver (other tumours and background are neither), ``spacing`` in mm.
    The statistics are those of ``index.json``: ``liver_hu`` is the donor liver's level (median HU)
    and ``contrast_hu`` the lesion's mean HU minus it; ``noise_hu`` the crop's voxel-to-voxel noise
    (robust SD, HU) in the liver and lesion, measured as :class:`synth.host.HostScan` measures a host's.
    """

    lesion_id: str
    case: str
    volume: np.ndarray
    lesion: np.ndarray
    liver: np.ndarray
    spacing: tuple[float, float, float]
    diameter_mm: float
    liver_hu: float
    contrast_hu: float
    noise_hu: float

    @property
    def centroid_mm(self) -> np.ndarray:
        """The lesion's centroid in the crop, in mm from the crop's first voxel centre."""
        return np.argwhere(self.lesion).mean(axis=0) * np.asarray(self.spacing)


class LesionBank:
    """A loaded lesion bank: its lesions and their index entries (see :meth:`load`)."""

    def __init__(self, lesions: Sequence[BankLesion], index: dict, path: Path | None = None):
        if not lesions:
            raise ValueError("a lesion bank needs at least one lesion")
        self.lesions = tuple(lesions)
        self.index = index
        self.path = path
        self.diameters_mm = np.array([lesion.diameter_mm for lesion in self.lesions])
        # Arrays that insertions derive from a donor, kept with the bank (which a process loads
        # once) so that they are computed once per donor, not once per call.
        self.derived: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.lesions)

    def __repr__(self) -> str:
        low, high = self.diameters_mm.min(), self.diameters_mm.max()
        return f"LesionBank({len(self)} lesions, {low:.1f}-{high:.1f} mm, path={str(self.path)!r})"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LesionBank:
        """Read a bank folder written by :func:`build_bank`, checking every file.

        Raises
        ------
        FileNotFoundError
            ``path`` does not exist.
        ValueError
            ``path`` is not a bank (no ``index.json``: an empty or another folder), the index is
            not valid, or a lesion file is missing, truncated or corrupt; the message names it.
        """
        folder = Path(path)
        if not folder.exists():
            raise FileNotFoundError(f"lesion bank {folder}: no such folder (build one with "
                                    f"'tumorsynth bank build --data DIR --out {folder}')")
        if not folder.is_dir():
            raise ValueError(f"lesion bank {folder} is a file, not a bank folder")
        index_path = folder / INDEX_NAME
        if not index_path.is_file():
            what = "is empty" if not any(folder.iterdir()) else f"holds no {INDEX_NAME}"
            raise ValueError(f"lesion bank {folder} {what}: it is not a lesion bank (build one with "
                             f"'tumorsynth bank build --data DIR --out {folder}')")
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{index_path}: not a valid bank index ({exc}); rebuild the bank") from None
        entries = index.get("lesions") if isinstance(index, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{index_path}: the index lists no lesions (a 'lesions' list is needed); "
                             f"rebuild the bank")
        file_format = index.get("format")
        if file_format not in BANK_FORMATS:
            raise ValueError(f"{index_path}: unknown bank format {file_format!r}; expected one of {BANK_FORMATS}")
        lesions = [_read_lesion(folder, entry, file_format, index_path) for entry in entries]
        return cls(lesions, index, folder.resolve())

    def donor_for(self, diameter_mm: float, rng: np.random.Generator, *, max_scale: float,
                  size_range: tuple[float, float] | None = None) -> BankLesion:
        """A random donor for a lesion of ``diameter_mm``.

        Preferred: donors within a factor ``max_scale`` of it whose own diameter lies in
        ``size_range`` (mm; the requested size class or range), so a small lesion comes from a small
        one; then any donor within the factor; else the donor nearest in size (by ratio).
        """
        ratio = np.abs(np.log(diameter_mm / self.diameters_mm))
        near = ratio <= np.log(max_scale)
        if size_range is not None:
            low, high = size_range
            in_range = near & (self.diameters_mm >= low) & (self.diameters_mm <= high)
            if in_range.any():
                near = in_range
        candidates = np.flatnonzero(near)
        if candidates.size == 0:
            return self.lesions[int(np.argmin(ratio))]
        return self.lesions[int(candidates[rng.integers(candidates.size)])]


_LOADED: dict[tuple, LesionBank] = {}


def cached_bank(bank: LesionBank | str | os.PathLike[str]) -> LesionBank:
    """``LesionBank.load`` with a per-process cache keyed by folder and file times, so repeated
    insertions (a data loader, the data set builder) read the bank once."""
    if isinstance(bank, LesionBank):
        return bank
    if bank is None:
        raise ValueError("method='copy-paste' needs bank=: a lesion bank folder (tumorsynth bank build) or a "
                         "loaded synth.copy_paste.LesionBank")
    if not isinstance(bank, (str, os.PathLike)):
        raise TypeError(f"bank must be a folder path or a LesionBank; got {type(bank).__name__}")
    folder = Path(bank).resolve()
    try:
        key = (str(folder), *(p.stat().st_mtime_ns for p in sorted(folder.iterdir()) if p.is_file()))
    except (FileNotFoundError, NotADirectoryError):
        return LesionBank.load(folder)  # raises the clear error
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = LesionBank.load(folder)
    return _LOADED[key]


def _read_lesion(folder: Path, entry: Any, file_format: str, index_path: Path) -> BankLesion:
    if not isinstance(entry, dict):
        raise ValueError(f"{index_path}: a lesion entry is not an object: {entry!r}; rebuild the bank")
    missing = sorted(_ENTRY_KEYS - set(entry))
    if missing:
        raise ValueError(f"{index_path}: lesion {entry.get('id', '?')!r} lacks {missing} (a bank from another "
                         f"version?); rebuild the bank")
    paths = [folder / name for name in entry["files"]]
    for path in paths:
        if not path.is_file():
            raise ValueError(f"lesion bank {folder}: lesion file {path.name} listed in {INDEX_NAME} is missing")
    if file_format == "npz":
        volume, lesion, liver, spacing = _read_npz(paths[0])
    else:
        volume, lesion, liver, spacing = _read_nifti_pair(paths[0], paths[1])
    if not lesion.any():
        raise ValueError(f"{paths[0]}: the lesion mask is empty; rebuild the bank")
    return BankLesion(lesion_id=str(entry["id"]), case=str(entry["case"]), volume=volume, lesion=lesion,
                      liver=liver, spacing=spacing, diameter_mm=float(entry["diameter_mm"]),
                      liver_hu=float(entry["liver_hu"]), contrast_hu=float(entry["contrast_hu"]),
                      noise_hu=float(entry["noise_hu"]))


def _read_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in ("ct", "lesion", "liver", "spacing")}
    except KeyError as exc:
        raise ValueError(f"{path}: lesion file lacks the array {exc}; rebuild the bank") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read this lesion file, truncated or corrupt "
                         f"({type(exc).__name__}: {exc}); rebuild the bank") from None
    volume, lesion, liver = arrays["ct"], arrays["lesion"], arrays["liver"]
    if volume.ndim != 3 or lesion.shape != volume.shape or liver.shape != volume.shape:
        raise ValueError(f"{path}: ct, lesion and liver must be 3-D arrays of one shape; got {volume.shape}, "
                         f"{lesion.shape}, {liver.shape}")
    try:
        spacing = check_spacing(tuple(float(s) for s in arrays["spacing"]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return volume.astype(np.float32), lesion.astype(bool), liver.astype(bool), spacing


def _read_nifti_pair(ct_path: Path, mask_path: Path):
    from ..io import read_nifti_image, spacing_from_affine

    ct_image, volume = read_nifti_image(ct_path)
    _, mask = read_nifti_image(mask_path)
    if volume.ndim != 3 or mask.shape != volume.shape:
        raise ValueError(f"{ct_path}, {mask_path}: a 3-D CT crop and a mask of one shape are needed; got "
                         f"{volume.shape} and {mask.shape}")
    spacing = check_spacing(spacing_from_affine(ct_image.affine))
    return (np.asarray(volume, dtype=np.float32), np.asarray(mask == Label.TUMOR),
            np.asarray(mask == Label.LIVER), spacing)


# --- building -----------------------------------------------------------------------------------


def build_bank(
    cases: TypeCases,
    out: str | os.PathLike[str],
    *,
    margin_mm: float = 8.0,
    min_diameter_mm: float = 3.0,
    exclude_border: bool = True,
    file_format: TypeBankFormat = "npz",
) -> Path:
    """Cut every real tumour of labelled cases into a new bank folder ``out``.

    Parameters
    ----------
    cases : folder or manifest path, or a sequence of :class:`synth.cases.Case`
        Labelled CT (0 background, 1 liver, 2 tumour) in HU; a path is read with
        :func:`synth.cases.read_cases` (LiTS, MSD Task03, images/ + masks/ or a CSV manifest).
    out : folder
        Must not exist, or be empty. Written atomically: the bank is built in a temporary folder
        beside it and renamed, so ``out`` is either absent or a whole bank.
    margin_mm : float
        Liver kept around each lesion's box, in mm (the edge and the surrounding parenchyma).
    min_diameter_mm : float
        Lesions of a smaller equivalent diameter (mm) are skipped: a few voxels hold no shape.
    exclude_border : bool
        Skip lesions that touch the scan's border: their shape is cut off.
    file_format : ``"npz"`` or ``"nifti"``
        One ``.npz`` per lesion (``ct`` HU float32 or int16, ``lesion``, ``liver``, ``spacing``),
        or ``<id>.ct.nii.gz`` and ``<id>.mask.nii.gz`` (1 liver, 2 lesion) per lesion.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ValueError
        A label map with values other than 0/1/2 (the message names the values and the case), no
        tumour in any case (the message names them), no lesion left after the size and border
        rules, or ``out`` is not empty.
    """
    from ..realism.compare import extract_real_lesions  # the realism report's cut, shared

    if file_format not in BANK_FORMATS:
        raise ValueError(f"file_format must be one of {BANK_FORMATS}; got {file_format!r}")
    if not (np.isfinite(margin_mm) and margin_mm >= 0):
        raise ValueError(f"margin_mm must be a number of mm >= 0; got {margin_mm!r}")
    if not (np.isfinite(min_diameter_mm) and min_diameter_mm >= 0):
        raise ValueError(f"min_diameter_mm must be a number of mm >= 0; got {min_diameter_mm!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder; choose a new bank folder or remove it")
    case_list = _as_cases(cases)
    without = [case.case_id for case in case_list if not (case.label == Label.TUMOR).any()]
    if len(without) == len(case_list):
        raise ValueError(f"no tumour (label 2) in any case: {_listed(without)}; a bank needs labelled tumours")

    entries, payloads = [], []
    for case in case_list:
        if case.case_id in without:
            continue
        liver_voxels = case.image[case.label == Label.LIVER]
        case_liver_hu = float(np.median(liver_voxels)) if liver_voxels.size else float("nan")
        samples = extract_real_lesions(case.image, case.label, case.spacing, case=case.case_id,
                                       min_diameter_mm=min_diameter_mm, exclude_border=exclude_border,
                                       margin_mm=margin_mm)
        for number, sample in enumerate(samples, start=1):
            lesion_id = f"{case.case_id}-lesion{number:03d}"
            entry, payload = _describe(lesion_id, sample, case, case_liver_hu)
            entries.append(entry)
            payloads.append(payload)
    if not entries:
        where = " away from the scan border" if exclude_border else ""
        raise ValueError(f"no lesion of at least {min_diameter_mm:g} mm{where} in "
                         f"{_listed([c.case_id for c in case_list])}; lower min_diameter_mm or allow border lesions")
    index = {"version": BANK_VERSION, "format": file_format, "margin_mm": float(margin_mm),
             "min_diameter_mm": float(min_diameter_mm), "exclude_border": bool(exclude_border),
             "cases": [c.case_id for c in case_list], "cases_without_tumour": without, "lesions": entries}
    _write_atomically(out, index, payloads, file_format)
    return out


def _as_cases(cases: TypeCases) -> list[Case]:
    if isinstance(cases, (str, os.PathLike)):
        case_list = read_cases(cases)  # read_case names the file and its label values
        if not case_list:
            raise ValueError(f"{cases}: no labelled case found")
        return case_list
    case_list = list(cases)
    if not case_list:
        raise ValueError("cases is empty: give labelled cases or their folder")
    for case in case_list:
        for name in ("case_id", "image", "label", "spacing"):
            if not hasattr(case, name):
                raise TypeError(f"cases must be synth.cases.Case objects (case_id, image, label, spacing); "
                                f"got {type(case).__name__}")
        check_label_values(case.label, name=f"case {case.case_id!r} label map")
    return case_list


def _listed(ids: Iterable[str]) -> str:
    ids = list(ids)
    return ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def _describe(lesion_id: str, sample, case, case_liver_hu: float) -> tuple[dict, dict]:
    """The index entry and the arrays of one lesion."""
    volume = sample.volume
    local_liver = volume[sample.liver]
    liver_hu = float(np.median(local_liver)) if local_liver.size >= _MIN_LOCAL_LIVER_VOXELS else case_liver_hu
    lesion_hu = float(volume[sample.lesion].mean())
    centroid = np.argwhere(sample.lesion).mean(axis=0)
    # Where the crop lies in its case (voxels): the centroid in the case minus the one in the crop.
    start = np.rint(np.asarray(sample.center_mm) / np.asarray(sample.spacing) - centroid).astype(int)
    entry = {
        "id": lesion_id,
        "case": case.case_id,
        "diameter_mm": round(sample.diameter_mm, 3),
        "size_class": sample.size_class,
        "voxel_count": int(np.count_nonzero(sample.lesion)),
        "liver_hu": round(liver_hu, 2),
        "liver_hu_source": "crop" if local_liver.size >= _MIN_LOCAL_LIVER_VOXELS else "case",
        "lesion_mean_hu": round(lesion_hu, 2),
        "contrast_hu": round(lesion_hu - liver_hu, 2),
        "noise_hu": round(noise_hu_of(volume, sample.lesion | sample.liver), 2),
        "centroid_mm": [round(float(c), 3) for c in sample.center_mm],
        "crop_box": [[int(a), int(a + n)] for a, n in zip(start, volume.shape)],
        "crop_centroid_voxel": [round(float(c), 3) for c in centroid],
        "spacing_mm": list(sample.spacing),
    }
    # Integer CT is stored as int16 (exact, half the size); anything else as float32.
    source = np.asarray(case.image)
    stored = volume.astype(np.int16) if np.can_cast(source.dtype, np.int16) else volume.astype(np.float32)
    payload = {"id": lesion_id, "ct": stored, "lesion": sample.lesion, "liver": sample.liver,
               "spacing": np.asarray(sample.spacing, dtype=np.float64)}
    return entry, payload


def noise_hu_of(volume: np.ndarray, tissue: np.ndarray) -> float:
    """Robust SD (HU) of the voxel-to-voxel noise: differences of neighbours along the first axis
    with both in ``tissue``, as the host's noise is measured (:class:`synth.host.HostScan`)."""
    both = tissue[1:] & tissue[:-1]
    diffs = (volume[1:].astype(np.float64) - volume[:-1])[both]
    if diffs.size < 2:
        return 0.0  # unknown
    return 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / np.sqrt(2.0)


def _write_atomically(out: Path, index: dict, payloads: list[dict], file_format: str) -> None:
    """Write every file into a temporary folder beside ``out``, then rename it to ``out``."""
    from ..io import write_json_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.tmp")
    tmp.mkdir()
    try:
        for entry, payload in zip(index["lesions"], payloads):
            entry["files"] = _write_lesion(tmp, payload, file_format)
        write_json_atomic(index, tmp / INDEX_NAME)
        if out.exists():
            out.rmdir()  # empty (checked above); rename cannot replace a folder on every system
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_lesion(folder: Path, payload: dict, file_format: str) -> list[str]:
    name = payload["id"]
    if file_format == "npz":
        with open(folder / f"{name}.npz", "wb") as handle:
            np.savez_compressed(handle, ct=payload["ct"], lesion=payload["lesion"].astype(np.uint8),
                                liver=payload["liver"].astype(np.uint8), spacing=payload["spacing"])
        return [f"{name}.npz"]
    from ..io import save_nifti

    affine = np.diag([*payload["spacing"], 1.0])
    mask = np.where(payload["lesion"], np.uint8(Label.TUMOR),
                    np.where(payload["liver"], np.uint8(Label.LIVER), np.uint8(0))).astype(np.uint8)
    save_nifti(payload["ct"], affine, folder / f"{name}.ct.nii.gz")
    save_nifti(mask, affine, folder / f"{name}.mask.nii.gz")
    return [f"{name}.ct.nii.gz", f"{name}.mask.nii.gz"]
