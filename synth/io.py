"""NIfTI input and output, spacing and orientation checks, atomic writes.

Every volume that enters tumorsynth goes through :func:`load_nifti`, which reorients it to the
closest canonical RAS+ orientation, so arrays are ``(X, Y, Z)`` with the third axis axial and the
spacing (mm) is read from the affine. Every file tumorsynth writes goes through an atomic write
(temporary file in the same folder, then ``os.replace``): an interrupted run never leaves a
truncated ``.nii.gz`` or ``.json`` that a later, resumed run would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .validation import affine_disagreement_mm, check_spacing

__all__ = [
    "NiftiVolume",
    "load_nifti",
    "read_nifti_image",
    "read_image_data",
    "check_same_space",
    "save_nifti",
    "write_json_atomic",
    "atomic_output_path",
    "spacing_from_affine",
    "nifti_suffix",
    "remove_stale_temporaries",
]

_NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class NiftiVolume:
    """A 3-D NIfTI volume reoriented to closest canonical RAS+.

    Attributes:
        array: voxel data, shape ``(X, Y, Z)``, in the file's stored dtype (float when the header
            carries a non-trivial scl_slope / scl_inter, as nibabel applies them).
        spacing: voxel size along X, Y, Z in mm, from the affine's column norms.
        affine: 4x4 voxel-to-world (mm) matrix of ``array`` (after reorientation).
        path: the file it was read from.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    path: Path

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


def nifti_suffix(path: str | os.PathLike) -> str:
    """Return ``".nii.gz"`` or ``".nii"`` for a NIfTI path; raise ValueError for anything else."""
    name = Path(path).name.lower()
    for suffix in _NIFTI_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix
    raise ValueError(f"{path}: not a NIfTI file name (expected .nii or .nii.gz)")


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along the three array axes: the norms of the affine's first 3 columns."""
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    sx, sy, sz = (float(v) for v in np.sqrt((columns**2).sum(axis=0)))
    return sx, sy, sz


def _check_spacing(spacing: tuple[float, ...], affine: np.ndarray, path: Path) -> None:
    if not np.all(np.isfinite(affine)):
        raise ValueError(f"{path}: affine has non-finite entries:\n{affine}")
    try:
        check_spacing(spacing, name="voxel spacing")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc} (from the affine's columns)") from None


def _squeeze_to_3d(array: np.ndarray, path: Path) -> np.ndarray:
    """Drop trailing singleton axes (4-D ``(X, Y, Z, 1)`` exports); refuse anything not 3-D."""
    if array.ndim > 3 and all(n == 1 for n in array.shape[3:]):
        array = array.reshape(array.shape[:3])
    if array.ndim != 3:
        raise ValueError(
            f"{path}: expected a 3-D volume, got shape {tuple(array.shape)} ({array.ndim}-D)"
        )
    return array


# What reading a damaged file raises: gzip stream cut short (EOFError), bad deflate data
# (zlib.error), bad CRC or header (gzip.BadGzipFile, an OSError), an uncompressed file shorter than
# its header says (OSError), or a header nibabel cannot parse (ImageFileError).
_READ_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, OSError, nib.filebasedimages.ImageFileError)
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def _unreadable(path: str | os.PathLike, exc: BaseException) -> ValueError:
    """The one error for a NIfTI file that cannot be read, naming the file and what to do."""
    if isinstance(exc, _GZIP_ERRORS):
        what = "truncated or corrupt gzip"
    elif isinstance(exc, nib.filebasedimages.ImageFileError):
        what = "not a NIfTI file, or a truncated or corrupt one"
    else:
        what = "truncated or corrupt file"
    detail = " ".join(str(exc).split())  # nibabel's messages span lines
    return ValueError(f"{path}: cannot read this NIfTI file ({what}: {type(exc).__name__}: "
                      f"{detail}); re-export or re-download it")


def read_nifti_image(path: str | os.PathLike) -> tuple[Any, np.ndarray]:
    """Read a NIfTI file: its nibabel image and its voxel data, both fully read.

    nibabel reads lazily: ``nib.load`` parses the header only, and a truncated or corrupt
    ``.nii.gz`` fails later, wherever the data is first touched, with a bare ``EOFError`` or
    ``zlib.error``. Here the data is read at once, so every such failure is one ``ValueError``
    naming the file. Every place that reads a NIfTI file goes through this function.

    Returns:
        ``(image, data)``: the nibabel image (header and affine as stored, not reoriented) and its
        voxel data as an in-memory array (the stored dtype, or float when the header has a
        scaling slope / intercept).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read (truncated, corrupt, or not an image nibabel knows).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        # mmap=False: read into memory so no file handle or read-only memmap outlives the call.
        img = nib.load(path, mmap=False)
    except Exception as exc:  # nibabel raises several types (ImageFileError, gzip/EOF errors)
        raise _unreadable(path, exc) from exc
    return img, read_image_data(img, path)


def read_image_data(img, path: str | os.PathLike | None = None) -> np.ndarray:
    """The voxel data of a nibabel image (``np.asanyarray(img.dataobj)``), read now.

    For images from ``nib.load``, which read their file only here: a truncated or corrupt file is
    a ``ValueError`` naming it (``path``, else the image's own file name).
    """
    try:
        return np.asanyarray(img.dataobj)
    except _READ_ERRORS as exc:
        if path is None:
            get_filename = getattr(img, "get_filename", None)
            path = (get_filename() if get_filename else None) or "a nibabel image"
        raise _unreadable(path, exc) from exc


def load_nifti(path: str | os.PathLike) -> NiftiVolume:
    """Load a 3-D NIfTI file reoriented to closest canonical RAS+.

    The stored dtype is kept (int16 CT stays int16, uint8 labels stay uint8); when the header has a
    scaling slope/intercept, nibabel applies it and the array is float.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not a NIfTI file, truncated or corrupt (see :func:`read_nifti_image`), not 3-D
            (a 4-D file with a singleton 4th axis is squeezed), or spacing that is not positive
            and finite.
    """
    path = Path(path)
    img, array = read_nifti_image(path)
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(f"{path}: not a NIfTI image (nibabel read it as {type(img).__name__})")
    if len(img.shape) < 3:
        raise ValueError(f"{path}: expected a 3-D volume, got shape {tuple(img.shape)}")
    # Check the stored affine before reorienting: a zero or NaN column makes reorientation fail
    # with an obscure nibabel error instead of naming the real problem.
    _check_spacing(spacing_from_affine(img.affine), img.affine, path)
    affine = np.array(img.affine, dtype=np.float64)
    try:
        # nib.as_closest_canonical's rule, applied to the array already read.
        ornt = nib.orientations.io_orientation(affine)
        if not np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
            array = nib.orientations.apply_orientation(array, ornt)
            affine = affine.dot(nib.orientations.inv_ornt_aff(ornt, img.shape))
    except Exception as exc:
        raise ValueError(f"{path}: cannot reorient to RAS ({exc})") from exc
    array = _squeeze_to_3d(array, path)
    # Reorientation returns flipped views (negative strides); downstream code and torch want
    # plain C-contiguous arrays.
    array = np.ascontiguousarray(array)
    spacing = spacing_from_affine(affine)
    _check_spacing(spacing, affine, path)
    return NiftiVolume(array=array, spacing=spacing, affine=affine, path=path)


def check_same_space(a: NiftiVolume, b: NiftiVolume, *, atol_mm: float = 1e-3) -> None:
    """Raise ValueError unless ``a`` and ``b`` share one voxel grid.

    The affines are compared by where they put the grid's corner voxels in world space: an affine
    map's largest displacement over a box is reached at a corner, so this is the largest distance
    (mm) by which any voxel of ``a`` and the same voxel of ``b`` disagree.

    Args:
        atol_mm: tolerance in mm on that distance.
    """
    if a.array.shape != b.array.shape:
        raise ValueError(
            f"shape mismatch: {a.path} has shape {tuple(a.array.shape)}, "
            f"{b.path} has shape {tuple(b.array.shape)}"
        )
    max_diff_mm = affine_disagreement_mm(a.array.shape, a.affine, b.affine)
    if not max_diff_mm <= atol_mm:  # also catches NaN
        raise ValueError(
            f"inconsistent affines: {a.path} and {b.path} place voxels up to "
            f"{max_diff_mm:.4g} mm apart (tolerance {atol_mm:g} mm); "
            f"spacings {tuple(round(s, 4) for s in a.spacing)} vs "
            f"{tuple(round(s, 4) for s in b.spacing)} mm"
        )


@contextlib.contextmanager
def atomic_output_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds.

    The temporary file lives in the same folder (``os.replace`` is atomic only within one file
    system) and is removed if the block raises, so ``path`` is either the old file or the complete
    new one. Parent folders are created. ``suffix`` is appended to the temporary name for writers
    that choose a format from the extension (nibabel: ``.nii.gz`` means gzip).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# The name atomic_output_path gives its temporary files: .NAME.<hex digits>.tmp[SUFFIX]
_TEMPORARY_NAME = re.compile(r"^\..+\.[0-9a-f]{6,32}\.tmp(\..*)?$")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a killed earlier write left in ``folder``; return them.

    Only names of :func:`atomic_output_path`'s own pattern are touched. Call it on a folder this
    process is about to write, before writing (a concurrent writer's temporaries would go too).
    """
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for path in folder.iterdir():
            if _TEMPORARY_NAME.match(path.name) and path.is_file():
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


def _fsync_file(path: Path) -> None:
    """Flush a written file to disk so the rename never exposes an empty file after a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _nifti_image(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    array = np.asanyarray(array)
    if array.ndim != 3:
        raise ValueError(f"save_nifti expects a 3-D array, got shape {tuple(array.shape)}")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"save_nifti expects a finite 4x4 affine, got:\n{affine}")
    try:
        # dtype= pins the on-disk type to the array's (nibabel otherwise refuses int64 and may
        # pick another type); no scaling is applied.
        img = nib.Nifti1Image(array, affine, dtype=array.dtype)
    except nib.spatialimages.HeaderDataError as exc:
        raise TypeError(f"cannot store dtype {array.dtype} in NIfTI: {exc}") from exc
    # Code 1 (scanner) for both: viewers differ in which one they read.
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def save_nifti(array: np.ndarray, affine: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``array`` with ``affine`` to ``path`` (``.nii`` or ``.nii.gz``) atomically.

    The dtype is kept as is (no scaling); qform and sform are both set to ``affine`` with code 1.
    Parent folders are created. On any error no partial file is left and an existing ``path`` is
    untouched.

    Raises:
        ValueError: not a NIfTI file name, not 3-D, or a bad affine.
        TypeError: a dtype NIfTI cannot store (bool, float16, object, ...).
    """
    path = Path(path)
    suffix = nifti_suffix(path)
    img = _nifti_image(array, affine)  # validate before touching the file system
    with atomic_output_path(path, suffix=suffix) as tmp:
        nib.save(img, tmp)
    return path


def _json_default(value: Any) -> Any:
    """Convert numpy scalars/arrays and paths, which the json module does not know."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable")


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as JSON (indent 2, strict: no NaN/Infinity) to ``path`` atomically.

    The text is built before any file is opened, so an unserialisable object leaves no trace.
    """
    path = Path(path)
    text = json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n"
    with atomic_output_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
