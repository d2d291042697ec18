"""Finding the cases of a data set folder for ``synthesize``.

Three layouts are recognised, in this order: MSD (``imagesTr/`` + ``labelsTr/``), ``images/`` +
``masks/`` (pairs under identical file names), and LiTS naming (``volume-N`` with
``segmentation-N`` in the same folder, at any depth). Cases come back in natural order
(``case-2`` before ``case-10``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError, warn

_NIFTI_NAME = re.compile(r"^(?P<stem>[^.].*?)\.nii(\.gz)?$")  # hidden files (._x.nii.gz) excluded
_LITS_VOLUME = re.compile(r"^volume-(?P<n>\d+)\.nii(\.gz)?$")


@dataclass(frozen=True)
class Case:
    """One input case: a name (used as its output folder), its CT and its mask."""

    name: str
    image: Path
    mask: Path


def natural_key(name: str) -> list[Any]:
    """Sort key that puts case-2 before case-10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _first_names(names: list[str]) -> str:
    return f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"


def _nifti_files(folder: Path) -> dict[str, Path]:
    """NIfTI files directly in ``folder`` by file name (hidden files skipped)."""
    return {
        p.name: p for p in sorted(folder.iterdir()) if p.is_file() and _NIFTI_NAME.match(p.name)
    }


def _paired_folder_cases(images_dir: Path, masks_dir: Path) -> list[Case]:
    """Cases from two folders holding images and masks under identical file names."""
    images, masks = _nifti_files(images_dir), _nifti_files(masks_dir)
    unpaired = sorted(set(images) - set(masks))
    if unpaired:
        warn(f"{len(unpaired)} image(s) in {images_dir} have no mask in {masks_dir}, skipped: "
             f"{_first_names(unpaired)}")
    names = sorted(set(images) & set(masks), key=natural_key)
    return [Case(_NIFTI_NAME.match(n)["stem"], images[n], masks[n]) for n in names]


def _lits_cases(root: Path) -> list[Case]:
    """LiTS naming: volume-N.nii[.gz] with segmentation-N.nii[.gz] in the same folder (any depth,
    as LiTS ships in 'Training Batch 1/2' folders)."""
    cases: dict[str, Case] = {}
    missing = []
    for volume in sorted(root.rglob("volume-*.nii*")):
        match = _LITS_VOLUME.match(volume.name)
        if not match or not volume.is_file():
            continue
        n = match["n"]
        masks = [volume.with_name(f"segmentation-{n}{ext}") for ext in (".nii.gz", ".nii")]
        mask = next((m for m in masks if m.is_file()), None)
        if mask is None:
            missing.append(volume.name)
            continue
        name = f"volume-{n}"
        if name in cases:
            raise UsageError(f"case {name} found twice: {cases[name].image} and {volume}")
        cases[name] = Case(name, volume, mask)
    if missing:
        warn(f"{len(missing)} LiTS volume(s) without segmentation-N, skipped: "
             f"{_first_names(missing)}")
    return [cases[k] for k in sorted(cases, key=natural_key)]


def discover_cases(data_dir: Path) -> list[Case]:
    """Find the cases in ``data_dir``: MSD (imagesTr/ + labelsTr/), images/ + masks/, or LiTS.

    Raises UsageError when the folder is missing or no layout matches.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UsageError(f"--data {data_dir}: no such folder")
    for images, masks in (("imagesTr", "labelsTr"), ("images", "masks")):
        if (data_dir / images).is_dir() and (data_dir / masks).is_dir():
            cases = _paired_folder_cases(data_dir / images, data_dir / masks)
            if not cases:
                raise UsageError(
                    f"{data_dir}: {images}/ and {masks}/ hold no NIfTI files with identical names"
                )
            return cases
    cases = _lits_cases(data_dir)
    if not cases:
        raise UsageError(
            f"{data_dir}: no cases found; expected LiTS naming (volume-N.nii[.gz] with "
            f"segmentation-N.nii[.gz]), imagesTr/ + labelsTr/ (MSD), or images/ + masks/ with "
            f"identical file names"
        )
    return cases
