"""The one case model and finder: where a data set's cases are on disk, and a case in memory.

>>> from synth.cases import find_cases, read_case
>>> files = find_cases("LiTS/")                 # doctest: +SKIP
>>> case = read_case(files[0])                  # doctest: +SKIP

Layouts :func:`find_cases` recognises, in this order:

* a CSV manifest file with columns ``image,label[,case_id]`` (more columns are allowed;
  ``source_case``, which ``synthesize`` writes, is kept in :attr:`CaseFiles.source_case`); relative
  paths are relative to the CSV's folder, an empty label is an unlabelled case, the id defaults
  to the image's file stem. ``synthesize`` writes its data set's manifest in this format
  (:func:`write_manifest`), so its output can be trained on as it is.
* an MSD Task03 / nnU-Net folder: ``imagesTr/`` + ``labelsTr/`` (and ``dataset.json``, read
  when present); ids are the file stems, without nnU-Net's channel suffix ``_0000``.
* an ``images/`` + ``masks/`` folder pair with identical file names.
* a LiTS folder: ``volume-N.nii[.gz]`` with ``segmentation-N.nii[.gz]`` beside it, at any depth
  (LiTS ships in ``Training Batch 1`` and ``2``); ids are the stems, ``volume-N``.

Only file names are looked at here; :func:`read_case` loads one case. Cases come back in natural
order (``volume-2`` before ``volume-10``) so that everything downstream is reproducible.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .labels import Label

__all__ = ["Case", "CaseFiles", "find_cases", "natural_key", "read_case", "read_cases", "write_manifest"]

MANIFEST_COLUMNS = ("case_id", "image", "label")
_LITS_VOLUME = re.compile(r"^volume-(?P<n>\d+)\.nii(\.gz)?$")
_LITS_LABEL = re.compile(r"^segmentation-(?P<n>\d+)\.nii(\.gz)?$")


@dataclass(frozen=True)
class CaseFiles:
    """One case on disk: its id, the CT image file and the label file (``None`` when unlabelled).

    ``source_case`` is the id of the real case a synthetic variant was made from (the
    ``source_case`` column of a manifest that ``synthesize`` writes); ``None`` for a real case.
    """

    case_id: str
    image: Path
    label: Path | None
    source_case: str | None = None

    def require_label(self) -> Path:
        """The label file; ValueError for an unlabelled case (an empty label in a manifest)."""
        if self.label is None:
            raise ValueError(f"case {self.case_id!r} has no label file; a labelled case is needed")
        return self.label


@dataclass(frozen=True)
class Case:
    """A CT case in memory.

    Attributes:
        case_id: a stable name (``"volume-117"``, ``"phantom-3"``, a file stem).
        image: Hounsfield units, ``(X, Y, Z)`` in RAS (closest canonical), axis 2 axial.
        label: uint8, same shape: :class:`synth.labels.Label` values (0 background, 1 liver,
            2 tumour).
        spacing: voxel size in mm along the three axes, all positive.
        affine: the 4x4 voxel-to-world matrix of ``image``.
        source: where it came from (a file path, ``"phantom"``), for reports only.
        notes: free-form facts a report should repeat (``"spacing approximate"``).
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    source: str = ""
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        from .validation import check_spacing

        if self.image.shape != self.label.shape:
            raise ValueError(
                f"case {self.case_id!r}: image shape {self.image.shape} != label shape {self.label.shape}"
            )
        if self.image.ndim != 3:
            raise ValueError(f"case {self.case_id!r}: expected a 3D image, got shape {self.image.shape}")
        try:
            check_spacing(self.spacing)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"case {self.case_id!r}: {exc}") from None

    @property
    def has_tumor(self) -> bool:
        """Whether any voxel is labelled tumour."""
        return bool((self.label == Label.TUMOR).any())

    @property
    def has_tumour(self) -> bool:
        """Deprecated spelling of :attr:`has_tumor` (removed in the next release)."""
        from .deprecation import warn_renamed

        warn_renamed("Case.has_tumour", "Case.has_tumor")
        return self.has_tumor


def natural_key(name: str) -> list[tuple[int, int, str]]:
    """Sort key that puts ``volume-2`` before ``volume-10``: digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def nifti_stem(name: str) -> str | None:
    """A NIfTI file name without ``.nii``/``.nii.gz``; None for other names and for hidden ones
    (macOS ``._x.nii.gz`` litter)."""
    from .io import nifti_suffix

    if name.startswith("."):
        return None
    try:
        return name[: -len(nifti_suffix(name))]
    except ValueError:
        return None


def _listed(ids: Iterable[str]) -> str:
    ids = sorted(ids, key=natural_key)
    return f"{', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}"


def _check_pairs(folder: Path, layout: str, images: dict[str, Path], labels: dict[str, Path],
                 image_alone: str, label_alone: str) -> None:
    """Raise when a case has only one of its two files, naming (up to 10 of) the ids."""
    parts = []
    for alone, ids in ((image_alone, set(images) - set(labels)), (label_alone, set(labels) - set(images))):
        if ids:
            parts.append(f"{alone}{_listed(ids)}")
    if parts:
        raise ValueError(f"{folder}: incomplete {layout} pairs: {'; '.join(parts)}")


def _nifti_files(folder: Path) -> dict[str, Path]:
    """NIfTI files directly in ``folder`` by stem, skipping hidden files (macOS ``._x.nii.gz``)."""
    files: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        stem = nifti_stem(entry.name)
        if stem is None or not entry.is_file():
            continue
        if stem in files:
            raise ValueError(f"{folder}: {stem} appears twice ({files[stem].name} and {entry.name}); "
                             f"keep one of .nii and .nii.gz")
        files[stem] = entry
    return files


def _paired_folders(folder: Path, images_dir: str, labels_dir: str, layout: str) -> list[CaseFiles]:
    images = _nifti_files(folder / images_dir)
    if layout == "MSD":  # nnU-Net names carry a channel suffix on the image only (liver_3_0000)
        images = {re.sub(r"_0000$", "", stem): path for stem, path in images.items()}
    labels = _nifti_files(folder / labels_dir)
    if not images and not labels:
        raise ValueError(f"{folder}: {images_dir}/ and {labels_dir}/ hold no NIfTI files")
    _check_pairs(folder, layout, images, labels, f"images without a file in {labels_dir}/: ",
                 f"files in {labels_dir}/ without an image in {images_dir}/: ")
    return [CaseFiles(stem, images[stem], labels[stem]) for stem in sorted(images, key=natural_key)]


def _find_lits(folder: Path) -> list[CaseFiles]:
    volumes: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.nii*")):
        for pattern, found in ((_LITS_VOLUME, volumes), (_LITS_LABEL, labels)):
            match = pattern.match(path.name)
            if match and path.is_file():
                case_id = f"volume-{int(match['n'])}"
                if case_id in found:
                    raise ValueError(f"{folder}: LiTS case {match['n']} appears twice ({found[case_id]} and "
                                     f"{path}); keep one")
                found[case_id] = path
    _check_pairs(folder, "LiTS", volumes, labels, "volume-N without segmentation-N: ",
                 "segmentation-N without volume-N: ")
    return [CaseFiles(case_id, volumes[case_id], labels[case_id]) for case_id in sorted(volumes, key=natural_key)]


def _manifest_path(base: Path, text: str) -> Path:
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else base / path


def _find_manifest(path: Path) -> list[CaseFiles]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = [(c or "").strip() for c in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: cannot be read as a CSV manifest ({exc})") from exc
    if not rows:
        raise ValueError(f"{path}: the manifest has no rows (expected a header image,label[,case_id] "
                         f"and one row per case)")
    if "image" not in columns:
        raise ValueError(f"{path}: the manifest needs an 'image' column (and 'label', optionally "
                         f"'case_id'); found columns {columns}")
    cases: list[CaseFiles] = []
    seen: dict[str, int] = {}
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if isinstance(v, str) or v is None}
        if not row.get("image"):
            raise ValueError(f"{path}, line {line}: empty 'image' entry")
        image = _manifest_path(path.parent, row["image"])
        label = _manifest_path(path.parent, row["label"]) if row.get("label") else None
        for kind, file in (("image", image), ("label", label)):
            if file is not None and not file.is_file():
                raise ValueError(f"{path}, line {line}: {kind} file {file} does not exist")
        case_id = row.get("case_id") or nifti_stem(image.name) or image.stem
        if case_id in seen:
            raise ValueError(f"{path}, line {line}: case id {case_id!r} already used on line {seen[case_id]}; "
                             f"give each row a distinct case_id")
        seen[case_id] = line
        cases.append(CaseFiles(case_id, image, label, source_case=row.get("source_case") or None))
    return cases


def find_cases(path: str | os.PathLike[str]) -> list[CaseFiles]:
    """The cases of a data set, detected from its layout (see the module docstring).

    Raises:
        ValueError: the path does not exist, no layout matches, or a pair is incomplete (the
            message names the files).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise ValueError(f"{path}: a single file must be a CSV manifest (image,label[,case_id])")
        return _find_manifest(path)
    if (path / "dataset.json").is_file():
        try:
            json.loads((path / "dataset.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path / 'dataset.json'}: cannot be read as JSON ({exc})") from exc
        if not (path / "imagesTr").is_dir() or not (path / "labelsTr").is_dir():
            raise ValueError(f"{path}: has dataset.json but not both imagesTr/ and labelsTr/ (an MSD Task03 "
                             f"layout needs dataset.json, imagesTr/ and labelsTr/)")
    for images, labels, layout in (("imagesTr", "labelsTr", "MSD"), ("images", "masks", "images/masks")):
        if (path / images).is_dir() and (path / labels).is_dir():
            return _paired_folders(path, images, labels, layout)
    cases = _find_lits(path)
    if cases:
        return cases
    raise ValueError(
        f"{path}: no cases found; expected a LiTS folder (volume-N.nii.gz + segmentation-N.nii.gz), an "
        f"MSD Task03 folder (imagesTr/ + labelsTr/), images/ + masks/ with identical file names, or a "
        f"CSV manifest (image,label[,case_id])"
    )


def read_case(files: CaseFiles) -> Case:
    """Load a labelled case as it is stored (reoriented to RAS, not resampled).

    Raises:
        ValueError: the case has no label file, a file cannot be read, image and label do not
            share one grid, or the label values are not 0/1/2 with some liver.
    """
    from .io import check_same_space, load_nifti
    from .validation import check_label_map

    image, label = load_nifti(files.image), load_nifti(files.require_label())
    check_same_space(image, label)
    try:
        labels = check_label_map(label.array, image.shape)
    except ValueError as exc:
        raise ValueError(f"{files.label}: {exc}") from None
    return Case(files.case_id, image.array, labels, image.spacing, image.affine, source=str(files.image))


def read_cases(path: str | os.PathLike[str], *, limit: int | None = None) -> list[Case]:
    """The labelled cases of a data set (:func:`find_cases`), each read by :func:`read_case`;
    at most ``limit`` of them, in the finder's order."""
    return [read_case(files) for files in find_cases(path)[:limit]]


def write_manifest(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]],
                   columns: Sequence[str] = MANIFEST_COLUMNS) -> Path:
    """Write a CSV manifest that :func:`find_cases` reads: one row per case, atomically.

    ``rows`` are dicts with at least ``case_id``, ``image`` and ``label`` (paths relative to the
    manifest's folder, or absolute); ``columns`` lists the columns in order (the first three
    must be :data:`MANIFEST_COLUMNS`; more, such as ``variant``, are kept for people).
    """
    from .io import atomic_output_path

    if tuple(columns[:3]) != MANIFEST_COLUMNS:
        raise ValueError(f"a manifest starts with the columns {MANIFEST_COLUMNS}; got {tuple(columns)}")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: row.get(column, "") for column in columns})
    path = Path(path)
    with atomic_output_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return path
