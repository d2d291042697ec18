"""Finding the CT cases of a data set on disk: LiTS folders, MSD Task03 folders, CSV manifests.

Only file names are looked at here; nothing is loaded. ``find_cases`` returns the image/label
pairs in a stable order (by case id) so that everything downstream is reproducible.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from synth.io import nifti_suffix

__all__ = ["CaseFiles", "find_cases"]

_LITS_VOLUME = re.compile(r"^volume-(\d+)\.nii(\.gz)?$")
_LITS_LABEL = re.compile(r"^segmentation-(\d+)\.nii(\.gz)?$")


@dataclass(frozen=True)
class CaseFiles:
    """One case on disk: its id, the CT image file and the label file (``None`` when unlabelled)."""

    case_id: str
    image: Path
    label: Path | None


def _nifti_stem(name: str) -> str | None:
    """The name without ``.nii``/``.nii.gz``, or None when it is not a NIfTI name."""
    try:
        return name[: -len(nifti_suffix(name))]
    except ValueError:
        return None


def _natural_key(case_id: str):
    """Sort ``lits-2`` before ``lits-10``: digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", case_id)]


def _unique_by_number(folder: Path, pattern: re.Pattern) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for entry in sorted(folder.iterdir()):
        match = pattern.match(entry.name)
        if not match or not entry.is_file():
            continue
        number = int(match.group(1))
        if number in found:
            raise ValueError(f"{folder}: case {number} appears twice ({found[number].name} and {entry.name}); "
                             f"keep one of .nii and .nii.gz")
        found[number] = entry
    return found


def _check_pairs(folder: Path, layout: str, firsts, seconds, first_alone: str, second_alone: str,
                 key=None) -> None:
    """Raise when a case has only one of its two files: ``first_alone``/``second_alone`` start the
    sentence listing the ids (at most 10, sorted by ``key``) found only among firsts/seconds."""
    parts = []
    for alone, ids in ((first_alone, set(firsts) - set(seconds)), (second_alone, set(seconds) - set(firsts))):
        if ids:
            parts.append(f"{alone}{sorted(ids, key=key)[:10]}")
    if parts:
        raise ValueError(f"{folder}: incomplete {layout} pairs: {'; '.join(parts)}")


def _find_lits(folder: Path) -> list[CaseFiles]:
    volumes = _unique_by_number(folder, _LITS_VOLUME)
    labels = _unique_by_number(folder, _LITS_LABEL)
    if not volumes and not labels:
        return []
    _check_pairs(folder, "LiTS", volumes, labels, "volume-N without segmentation-N for N = ",
                 "segmentation-N without volume-N for N = ")
    return [CaseFiles(f"lits-{n}", volumes[n], labels[n]) for n in sorted(volumes)]


def _nifti_files(folder: Path) -> dict[str, Path]:
    """NIfTI files of ``folder`` by stem, skipping hidden files (macOS ``._x.nii.gz`` litter)."""
    files: dict[str, Path] = {}
    if not folder.is_dir():
        return files
    for entry in sorted(folder.iterdir()):
        stem = _nifti_stem(entry.name)
        if stem is None or entry.name.startswith(".") or not entry.is_file():
            continue
        if stem in files:
            raise ValueError(f"{folder}: {stem} appears twice ({files[stem].name} and {entry.name})")
        files[stem] = entry
    return files


def _find_msd(folder: Path) -> list[CaseFiles]:
    images_dir, labels_dir = folder / "imagesTr", folder / "labelsTr"
    if not images_dir.is_dir():
        raise ValueError(f"{folder}: has dataset.json but no imagesTr/ folder (an MSD Task03 layout needs "
                         f"dataset.json, imagesTr/ and labelsTr/)")
    if not labels_dir.is_dir():
        raise ValueError(f"{folder}: has imagesTr/ but no labelsTr/ folder")
    try:
        json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder / 'dataset.json'}: cannot be read as JSON ({exc})") from exc
    images, labels = _nifti_files(images_dir), _nifti_files(labels_dir)
    # nnU-Net style names carry a channel suffix on the image only (liver_3_0000.nii.gz).
    images = {re.sub(r"_0000$", "", stem): path for stem, path in images.items()}
    _check_pairs(folder, "MSD", images, labels, "images without a label in labelsTr/: ",
                 "labels without an image in imagesTr/: ", key=_natural_key)
    return [CaseFiles(stem, images[stem], labels[stem]) for stem in sorted(images, key=_natural_key)]


def _find_manifest(path: Path) -> list[CaseFiles]:
    base = path.parent
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
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if not row.get("image"):
            raise ValueError(f"{path}, line {line}: empty 'image' entry")
        image = Path(os.path.expanduser(row["image"]))
        image = image if image.is_absolute() else base / image
        label = None
        if row.get("label"):
            label = Path(os.path.expanduser(row["label"]))
            label = label if label.is_absolute() else base / label
        for kind, file in (("image", image), ("label", label)):
            if file is not None and not file.is_file():
                raise ValueError(f"{path}, line {line}: {kind} file {file} does not exist")
        case_id = row.get("case_id") or _nifti_stem(image.name) or image.stem
        if case_id in seen:
            raise ValueError(f"{path}, line {line}: case id {case_id!r} already used on line {seen[case_id]}; "
                             f"give each row a distinct case_id")
        seen[case_id] = line
        cases.append(CaseFiles(case_id, image, label))
    return cases


def find_cases(path) -> list[CaseFiles]:
    """The cases of a data set, detected from its layout.

    Accepted layouts:

    * a LiTS folder: ``volume-N.nii[.gz]`` with ``segmentation-N.nii[.gz]``; ids ``"lits-N"``;
    * an MSD Task03 folder: ``dataset.json``, ``imagesTr/``, ``labelsTr/``; ids are the file stems;
    * a CSV manifest file with columns ``image,label[,case_id]``; relative paths are relative to
      the CSV's folder; an empty label means an unlabelled case; the id defaults to the image stem.

    LiTS cases are ordered by number, the others by id (numbers inside ids compare as numbers).

    Raises:
        ValueError: the path does not exist, no layout matches, or a pair is incomplete.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise ValueError(f"{path}: a single file must be a CSV manifest (image,label[,case_id])")
        return _find_manifest(path)
    if (path / "dataset.json").is_file():
        return _find_msd(path)
    cases = _find_lits(path)
    if cases:
        return cases
    raise ValueError(
        f"{path}: no cases found; expected a LiTS folder (volume-N.nii.gz + segmentation-N.nii.gz), an "
        f"MSD Task03 folder (dataset.json, imagesTr/, labelsTr/) or a CSV manifest (image,label[,case_id])"
    )
