"""A data set in nnU-Net v2's raw layout, with folds that keep a case's synthetic variants together.

>>> from synth.nnunet_export import export_nnunet
>>> export_nnunet(["LiTS/", "synthetic/manifest.csv"], "nnUNet_raw", 101, "LiverSynth")  # doctest: +SKIP

writes ``nnUNet_raw/Dataset101_LiverSynth/``::

    imagesTr/<case>_0000.nii.gz     the CT (nnU-Net's channel 0, named "CT" so that it normalises
                                    with its CT scheme)
    labelsTr/<case>.nii.gz          0 background, 1 liver, 2 tumour
    dataset.json                    channel_names, labels, numTraining, file_ending
    splits_final.json               folds over real cases: a synthetic variant (a manifest row with
                                    a ``source_case``) is in the fold of the case it was made from

nnU-Net reads the splits from its preprocessed folder; ``nnUNetv2_plan_and_preprocess`` copies a
``splits_final.json`` it finds in the raw data set there (nnU-Net 2.5 and later). Without it
nnU-Net would draw its own folds over all case names, and a validation case could have its
synthetic twin in the training set.

Files whose names already end in ``.nii.gz`` are linked (symbolic links to the absolute source
path; nothing is copied) unless ``copy=True``; ``.nii`` files are gzip-compressed copies, since one
data set has one file ending. nnunetv2 itself is not needed here.

The data set is assembled in a hidden temporary folder beside its final place and renamed into
place at the end, so an interrupted export leaves no half data set. Exporting again with the same
inputs and settings finds the same content and leaves it alone; a folder with the same dataset id
and other content (or another name) is refused, never overwritten.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cases import CaseFiles, find_cases, natural_key
from .labels import Label

__all__ = [
    "CHANNEL_SUFFIX",
    "FILE_ENDING",
    "ExportCase",
    "check_dataset_id",
    "check_dataset_name",
    "check_target_free",
    "dataset_folder_name",
    "dataset_json",
    "export_cases",
    "export_nnunet",
    "find_export_cases",
    "find_dataset_folders",
    "fold_splits",
]

FILE_ENDING = ".nii.gz"
CHANNEL_SUFFIX = "_0000"  # nnU-Net's name for an image's channel 0
CHANNEL_NAME = "CT"  # nnU-Net picks its CT normalisation (global clipping and z-score) for this name
DEFAULT_FOLDS = 5
# The folds' seed is its own (not a synthesis seed): data sets exported from the same real cases
# share their folds, so models trained on them are validated on the same cases.
DEFAULT_FOLD_SEED = 0
# nnU-Net writes a dataset's id with three digits ("Dataset%03d") and reads it back from them.
MAX_DATASET_ID = 999
# Letters, digits, '-' and '_': the name becomes part of folder names and of nnU-Net's command
# lines, and nnU-Net separates a dataset's id from its name at the first '_'.
_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SPLITS_NAME = "splits_final.json"
DATASET_JSON = "dataset.json"
# Largest distance (mm) at which an image and its label map may place a voxel apart.
GRID_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class ExportCase:
    """One training case of the exported data set.

    Attributes:
        case_id: nnU-Net's case identifier (file names ``<case_id>_0000.nii.gz``, ``<case_id>.nii.gz``).
        image: the source CT file.
        label: the source label file.
        group: the real case it belongs to (itself, or the case a synthetic variant was made
            from); a group never straddles two folds.
    """

    case_id: str
    image: Path
    label: Path
    group: str


def check_dataset_name(name: str) -> str:
    """Return ``name`` if nnU-Net can use it as a dataset name, else raise ValueError naming it."""
    if not isinstance(name, str) or not _DATASET_NAME.match(name):
        raise ValueError(f"dataset name {name!r} is not usable by nnU-Net: use letters, digits, '-' and '_' "
                         f"only, starting with a letter or digit (e.g. LiverSynth)")
    return name


def check_dataset_id(dataset_id: int) -> int:
    """Return ``dataset_id`` if it is a whole number in 1..999 (nnU-Net's three digits), else raise."""
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 1 <= dataset_id <= MAX_DATASET_ID:
        raise ValueError(f"dataset id {dataset_id!r} must be a whole number from 1 to {MAX_DATASET_ID} "
                         f"(nnU-Net names data sets Dataset001 to Dataset999)")
    return dataset_id


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset<NNN>_<name>``, the folder nnU-Net looks up by id."""
    return f"Dataset{check_dataset_id(dataset_id):03d}_{check_dataset_name(name)}"


def find_dataset_folders(raw_dir: str | os.PathLike[str], dataset_id: int) -> list[Path]:
    """The folders in ``raw_dir`` that nnU-Net would take for ``dataset_id`` (any name)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        return []
    prefix = f"Dataset{check_dataset_id(dataset_id):03d}_"
    return sorted(p for p in raw_dir.iterdir() if p.is_dir() and p.name.startswith(prefix))


def check_target_free(raw_dir: str | os.PathLike[str], dataset_id: int, name: str) -> None:
    """Raise ValueError when another data set name already holds ``dataset_id`` in ``raw_dir``.

    The same name is allowed here; whether its content is the same is decided when exporting.
    """
    wanted = dataset_folder_name(dataset_id, name)
    others = [p for p in find_dataset_folders(raw_dir, dataset_id) if p.name != wanted]
    if others:
        raise ValueError(f"dataset id {dataset_id} is already used by {others[0]}; choose another --dataset-id "
                         f"(nnU-Net finds data sets by id, so two names cannot share one) or remove that folder")


def export_cases(files: Sequence[CaseFiles], source: str | os.PathLike[str] = "") -> list[ExportCase]:
    """The cases of one data set as exported cases: a case from a manifest that ``synthesize``
    wrote is grouped with its ``source_case``, every other case is its own group.

    Raises:
        ValueError: an unlabelled case, or a case id nnU-Net cannot use as a file name.
    """
    cases = []
    for case in files:
        if not _CASE_ID.match(case.case_id):
            raise ValueError(f"{source or case.image}: case id {case.case_id!r} cannot be an nnU-Net file name: use "
                             f"letters, digits, '.', '-' and '_' (rename the file, or give a case_id column in a "
                             f"manifest)")
        cases.append(ExportCase(case.case_id, case.image, case.require_label(), case.source_case or case.case_id))
    return cases


def find_export_cases(sources: Sequence[str | os.PathLike[str]]) -> list[ExportCase]:
    """The cases of one or more data sets (:func:`synth.cases.find_cases`), as exported cases
    (:func:`export_cases`).

    Raises:
        ValueError: no sources, a source without cases, a case that :func:`export_cases` refuses,
            a case id that two sources share, or a variant whose real case is not among the sources.
    """
    if not sources:
        raise ValueError("no data given: name a folder of cases or a manifest")
    cases: list[ExportCase] = []
    seen: dict[str, Path] = {}
    for source in sources:
        for case in export_cases(find_cases(source), source):
            if case.case_id in seen:
                raise ValueError(f"case id {case.case_id!r} appears twice ({seen[case.case_id]} and {case.image}); "
                                 f"case ids must be unique across --data")
            seen[case.case_id] = case.image
            cases.append(case)
    real = {case.case_id for case in cases if case.group == case.case_id}
    orphans = sorted({case.group for case in cases if case.group not in real}, key=natural_key)
    if orphans:
        raise ValueError(f"synthetic variants of {', '.join(orphans[:5])} are given without their real case; add "
                         f"the folder of the real cases with another --data, so that each case's variants stay in "
                         f"its fold")
    return cases


def check_case_files(case: ExportCase) -> None:
    """Raise ValueError unless the case is a usable host: a 3-D image and a label map of 0/1/2 on
    the same grid, with some liver (label 1) for tumours to go into.

    Only the label's voxels are read; of the image, its header.
    """
    import nibabel as nib

    from .io import read_nifti_image
    from .validation import affine_disagreement_mm, check_label_values

    try:
        image: Any = nib.load(case.image)  # the header now, the voxels never
    except Exception as exc:  # nibabel raises several types for unreadable headers
        raise ValueError(f"{case.image}: cannot read this NIfTI header ({type(exc).__name__}: {exc})") from exc
    label_image, labels = read_nifti_image(case.label)
    if len(image.shape) != 3:
        raise ValueError(f"{case.image}: expected a 3-D CT, got shape {tuple(image.shape)}")
    if tuple(label_image.shape) != tuple(image.shape):
        raise ValueError(f"case {case.case_id!r}: label shape {tuple(label_image.shape)} ({case.label}) differs from "
                         f"image shape {tuple(image.shape)} ({case.image})")
    distance_mm = affine_disagreement_mm(image.shape, image.affine, label_image.affine)
    if not distance_mm <= GRID_TOLERANCE_MM:
        raise ValueError(f"case {case.case_id!r}: {case.image} and {case.label} place the same voxel up to "
                         f"{distance_mm:.4g} mm apart; resample the label onto the image or fix its header")
    check_label_values(labels, name=str(case.label))
    if not (labels == Label.LIVER).any():
        raise ValueError(f"case {case.case_id!r} has no liver voxel (label {int(Label.LIVER)}) in {case.label}, so it "
                         f"cannot host synthetic tumours; label its liver or leave the case out")


def dataset_json(name: str, n_training: int) -> dict[str, Any]:
    """nnU-Net v2's ``dataset.json`` for a CT data set of ``n_training`` cases."""
    return {
        "name": check_dataset_name(name),
        "description": "CT with liver and liver tumour labels, exported by tumorsynth",
        "channel_names": {"0": CHANNEL_NAME},
        "labels": {label.name.lower(): int(label) for label in Label},
        "numTraining": int(n_training),
        "file_ending": FILE_ENDING,
    }


def fold_splits(cases: Sequence[ExportCase], folds: int = DEFAULT_FOLDS,
                seed: int = DEFAULT_FOLD_SEED) -> list[dict[str, list[str]]]:
    """nnU-Net's ``splits_final.json`` content: ``folds`` train/val splits over the case groups.

    The groups (real cases) are sorted, shuffled with ``numpy.random.default_rng`` seeded by
    ``seed``, and dealt to the folds in turn. A fold validates on the real cases of its groups
    only, and trains on every case (real and synthetic) of the other groups: the synthetic twins of
    a validation case are in neither list, so validation scores real scans of unseen patients.
    The result depends only on the case ids, their groups and the seed.

    Raises:
        ValueError: fewer groups than folds, or fewer than 2 folds.
    """
    from .seeding import rng_for

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be a whole number >= 2, got {folds!r}")
    groups = sorted({case.group for case in cases}, key=natural_key)
    if len(groups) < folds:
        raise ValueError(f"{folds} folds need at least {folds} real cases, found {len(groups)} "
                         f"({', '.join(groups[:5])}); ask for at most {max(2, len(groups))} folds, or add cases")
    order = rng_for(seed, "nnunet-folds").permutation(len(groups))
    fold_of = {groups[index]: position % folds for position, index in enumerate(order)}
    splits = []
    for fold in range(folds):
        val = sorted((c.case_id for c in cases if fold_of[c.group] == fold and c.case_id == c.group),
                     key=natural_key)
        train = sorted((c.case_id for c in cases if fold_of[c.group] != fold), key=natural_key)
        splits.append({"train": train, "val": val})
    return splits


def _targets(case: ExportCase) -> dict[str, Path]:
    """Relative output name -> source file, for the image and the label of one case."""
    return {f"imagesTr/{case.case_id}{CHANNEL_SUFFIX}{FILE_ENDING}": case.image,
            f"labelsTr/{case.case_id}{FILE_ENDING}": case.label}


def _links(source: Path, copy: bool) -> bool:
    return not copy and source.name.lower().endswith(FILE_ENDING)


def _write_file(source: Path, target: Path, copy: bool) -> None:
    if _links(source, copy):
        os.symlink(source.resolve(), target)
    elif source.name.lower().endswith(FILE_ENDING):
        shutil.copyfile(source, target)
    else:  # .nii: a gzip stream of the same bytes is the .nii.gz file
        with open(source, "rb") as read, gzip.open(target, "wb") as write:
            shutil.copyfileobj(read, write)


def _same_file(existing: Path, source: Path, copy: bool) -> bool:
    """Whether ``existing`` is what :func:`_write_file` would write for ``source``."""
    if _links(source, copy):
        return existing.is_symlink() and Path(os.readlink(existing)) == source.resolve()
    if existing.is_symlink() or not existing.is_file():
        return False
    if source.name.lower().endswith(FILE_ENDING):
        import filecmp

        return filecmp.cmp(existing, source, shallow=False)
    with gzip.open(existing, "rb") as read:
        return read.read() == source.read_bytes()


def _differences(folder: Path, files: dict[str, Path], texts: dict[str, str], copy: bool) -> list[str]:
    """What differs between an existing data set folder and the one that would be written."""
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
    differences = [f"{name} would be added" for name in sorted((set(files) | set(texts)) - present)]
    differences += [f"{name} is not part of this export" for name in sorted(present - set(files) - set(texts))]
    for name, text in texts.items():
        if name in present and (folder / name).read_text(encoding="utf-8") != text:
            differences.append(f"{name} differs")
    for name, source in files.items():
        if name in present and not _same_file(folder / name, source, copy):
            differences.append(f"{name} differs from {source}")
    return differences


def export_nnunet(sources: Sequence[str | os.PathLike[str]], raw_dir: str | os.PathLike[str], dataset_id: int,
                  name: str, *, folds: int = DEFAULT_FOLDS, seed: int = DEFAULT_FOLD_SEED, copy: bool = False,
                  progress: bool = True) -> tuple[Path, bool]:
    """Write (or find already written) the nnU-Net v2 raw data set of the cases in ``sources``.

    Args:
        sources: folders of cases or CSV manifests (:func:`synth.cases.find_cases`), e.g. the real
            cases and the ``manifest.csv`` of ``synthesize``.
        raw_dir: nnU-Net's raw data folder (``$nnUNet_raw``); ``Dataset<NNN>_<name>`` goes in it.
        dataset_id: 1..999.
        name: letters, digits, '-' and '_'.
        folds: number of cross-validation folds in ``splits_final.json``.
        seed: seed of the fold assignment.
        copy: copy ``.nii.gz`` files instead of linking them.
        progress: show a progress bar while checking and writing cases.

    Returns:
        ``(folder, written)``: the data set folder, and False when an identical one was already there.

    Raises:
        ValueError: bad name or id, another data set holds the id, the folder exists with other
            content, or bad cases (see :func:`find_export_cases`, :func:`check_case_files`).
    """
    from tqdm.auto import tqdm

    raw_dir = Path(raw_dir)
    folder = raw_dir / dataset_folder_name(dataset_id, name)  # checks name and id before anything else
    check_target_free(raw_dir, dataset_id, name)
    cases = find_export_cases(sources)
    splits = fold_splits(cases, folds, seed)
    for case in tqdm(cases, desc="check cases", unit="case", disable=not progress):
        check_case_files(case)
    files = {target: source for case in cases for target, source in _targets(case).items()}
    texts = {DATASET_JSON: json.dumps(dataset_json(name, len(cases)), indent=2) + "\n",
             SPLITS_NAME: json.dumps(splits, indent=2) + "\n"}
    if folder.exists():
        differences = _differences(folder, files, texts, copy)
        if differences:
            shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
            raise ValueError(f"{folder} already exists with other content ({shown}); nothing was written. Choose "
                             f"another --dataset-id, or remove that folder to export again")
        return folder, False
    raw_dir.mkdir(parents=True, exist_ok=True)
    tmp = raw_dir / f".{folder.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        for sub in ("imagesTr", "labelsTr"):
            (tmp / sub).mkdir(parents=True)
        for target, source in tqdm(files.items(), desc="export nnU-Net", unit="file", disable=not progress):
            _write_file(source, tmp / target, copy)
        for file_name, text in texts.items():
            (tmp / file_name).write_text(text, encoding="utf-8")
        os.rename(tmp, folder)  # fails, leaving nothing half-written, if the folder appeared meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder, True
