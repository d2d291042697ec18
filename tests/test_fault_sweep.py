"""Faults found in a sweep, each reproduced as a user meets it: damaged NIfTI files, damaged
training checkpoints, broken diffusion models, absurd CT values, 0/255 label maps."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synth.io import load_nifti, save_nifti

# --- 1. a truncated or corrupt NIfTI file is one ValueError naming it ----------------------------

UNREADABLE = "cannot read this NIfTI file"


def _nifti_pair(folder: Path, suffix: str = ".nii.gz") -> tuple[Path, Path]:
    """A small LiTS-style image/label pair (liver block, int16 CT) in ``folder``."""
    rng = np.random.default_rng(0)
    image = rng.integers(-100, 200, (24, 20, 16)).astype(np.int16)
    label = np.zeros(image.shape, np.uint8)
    label[6:18, 5:15, 4:12] = 1
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    return (save_nifti(image, affine, folder / f"volume-1{suffix}"),
            save_nifti(label, affine, folder / f"segmentation-1{suffix}"))


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_middle(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("suffix, damage, words", [
    (".nii.gz", _truncate, "truncated or corrupt gzip: EOFError"),
    (".nii.gz", _corrupt_middle, "truncated or corrupt gzip"),
    (".nii", _truncate, "truncated or corrupt file: OSError"),
])
def test_damaged_nifti_load_nifti_names_the_file(tmp_path, suffix, damage, words):
    image, _ = _nifti_pair(tmp_path, suffix)
    damage(image)
    with pytest.raises(ValueError) as info:
        load_nifti(image)
    message = str(info.value)
    assert message.startswith(f"{image}: {UNREADABLE} ({words}")
    assert message.endswith("re-export or re-download it")


@pytest.mark.parametrize("which", ["image", "label"])
def test_truncated_nifti_preprocess_names_the_file(tmp_path, which):
    from train.data import CaseFiles, preprocess_case

    image, label = _nifti_pair(tmp_path)
    damaged = _truncate(image if which == "image" else label)
    # Half of the small label file cuts its header too: nibabel then cannot tell the file type.
    with pytest.raises(ValueError, match=rf"^case lits-1 cannot be preprocessed: {re.escape(str(damaged))}: "
                                         rf"{UNREADABLE} \(.*; re-export or re-download it$"):
        preprocess_case(CaseFiles("lits-1", image, label))


def test_truncated_nifti_is_a_fatal_case_problem_naming_the_file(tmp_path):
    from train.data import CaseFiles, find_problems

    image, label = _nifti_pair(tmp_path)
    _truncate(image)
    problems = find_problems(CaseFiles("lits-1", image, label))
    assert len(problems) == 1 and problems[0].fatal
    assert problems[0].message.startswith(f"case lits-1: the image file is unreadable: {image}: {UNREADABLE} "
                                          f"(truncated or corrupt gzip: EOFError")


def test_truncated_nifti_image_given_to_insert_tumor_names_the_file(tmp_path):
    from synth import insert_tumor

    image, label = _nifti_pair(tmp_path)
    _truncate(image)
    with pytest.raises(ValueError, match=rf"{re.escape(str(image))}: {UNREADABLE} \(truncated or corrupt gzip"):
        insert_tumor(nib.load(image), nib.load(label), seed=0)
