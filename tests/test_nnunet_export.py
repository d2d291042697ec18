"""``tumorsynth export nnunet`` and ``synthesize --nnunet-raw``: nnU-Net v2 raw data sets from real CT
(LiTS-117 and TotalSegmentator's example) and their synthetic variants.

Only the integrity check needs nnunetv2 (extra ``nnunet``); the export itself runs on the core install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from synth.io import load_nifti, save_nifti
from synth.nnunet_export import export_nnunet, fold_splits
from tumorsynth import cli

QUICK = ["--size", "small", "--count", "1"]


@pytest.fixture
def real_cases(tmp_path, shared_data) -> Path:
    """Two real cases as images/ + masks/ (links to ../shared/data): lits117 (liver and tumours) and
    totalseg (a healthy liver)."""
    root = tmp_path / "real"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    pairs = {"lits117": ("lits117/volume-117.nii.gz", "lits117/segmentation-117.nii.gz"),
             "totalseg": ("totalseg_example/ct.nii.gz", "totalseg_example/liver.nii.gz")}
    for case, (image, label) in pairs.items():
        (root / "images" / f"{case}.nii.gz").symlink_to(shared_data / image)
        (root / "masks" / f"{case}.nii.gz").symlink_to(shared_data / label)
    return root


@pytest.fixture
def synthetic(tmp_path, real_cases) -> Path:
    """synthesize's output: two variants of each real case, with its manifest.csv."""
    out = tmp_path / "synthetic"
    assert cli.main(["synthesize", "--data", str(real_cases), "--out", str(out), "--variants", "2",
                     "--workers", "1", *QUICK]) == 0
    return out


def _export(*data: Path, out: Path, dataset_id: int | str = 42, name: str = "LiverSynth",
            extra: tuple[str, ...] = ("--folds", "2")) -> int:
    args = ["export", "nnunet", "--out", str(out), "--dataset-id", str(dataset_id), f"--name={name}", *extra]
    for folder in data:
        args += ["--data", str(folder)]
    return cli.main(args)


def test_export_writes_nnunet_layout_with_variants_kept_in_their_fold(tmp_path, real_cases, synthetic):
    raw = tmp_path / "nnUNet_raw"
    assert _export(real_cases, synthetic / "manifest.csv", out=raw) == 0
    folder = raw / "Dataset042_LiverSynth"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "CT"}
    assert dataset["labels"] == {"background": 0, "liver": 1, "tumor": 2}
    assert dataset["file_ending"] == ".nii.gz" and dataset["numTraining"] == 6
    cases = ["lits117", "totalseg"] + [f"{c}-variant-{v}" for c in ("lits117", "totalseg") for v in (0, 1)]
    for case in cases:
        image, label = folder / "imagesTr" / f"{case}_0000.nii.gz", folder / "labelsTr" / f"{case}.nii.gz"
        assert image.is_symlink() and label.is_symlink()  # .nii.gz inputs are linked, not copied
        assert load_nifti(image).shape == load_nifti(label).shape
    assert os.readlink(folder / "imagesTr" / "lits117_0000.nii.gz") == str((real_cases / "images" / "lits117.nii.gz")
                                                                           .resolve())
    splits = json.loads((folder / "splits_final.json").read_text())
    assert len(splits) == 2
    for split in splits:
        # Validation sees real cases only; a validation case's variants are not trained on either.
        assert all("variant" not in case for case in split["val"])
        for real in split["val"]:
            assert not [case for case in split["train"] if case.startswith(real)]
        assert sorted(split["val"] + [c for c in split["train"] if "variant" not in c]) == ["lits117", "totalseg"]
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_exported_data_set_passes_nnunets_integrity_check(tmp_path, real_cases, synthetic):
    verify = pytest.importorskip("nnunetv2.experiment_planning.verify_dataset_integrity",
                                 reason="nnunetv2 (extra 'nnunet') is not installed")
    raw = tmp_path / "nnUNet_raw"
    assert _export(real_cases, synthetic / "manifest.csv", out=raw, extra=("--folds", "2", "--copy")) == 0
    folder = raw / "Dataset042_LiverSynth"
    assert not (folder / "imagesTr" / "lits117_0000.nii.gz").is_symlink()  # --copy
    verify.verify_dataset_integrity(str(folder), 1)  # raises on a bad data set


def test_synthesize_writes_the_same_layout(tmp_path, real_cases, capsys):
    raw, out = tmp_path / "nnUNet_raw", tmp_path / "synthetic"
    argv = ["synthesize", "--data", str(real_cases), "--out", str(out), "--variants", "2", "--workers", "1",
            *QUICK, "--nnunet-raw", str(raw), "--nnunet-id", "42", "--nnunet-name", "LiverSynth", "--nnunet-folds", "2"]
    assert cli.main(argv) == 0
    folder = raw / "Dataset042_LiverSynth"
    assert "6 cases" in capsys.readouterr().out
    # export nnunet from the same inputs finds the very same data set and leaves it alone.
    assert _export(real_cases, out / "manifest.csv", out=raw) == 0
    assert "already there with the same content" in capsys.readouterr().out
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 6


def test_existing_dataset_id_with_other_content_is_refused(tmp_path, real_cases, synthetic, capsys):
    raw = tmp_path / "nnUNet_raw"
    assert _export(real_cases, out=raw) == 0
    before = sorted(p.relative_to(raw) for p in raw.rglob("*"))
    assert _export(real_cases, synthetic / "manifest.csv", out=raw) == 2
    assert "already exists with other content" in capsys.readouterr().err
    assert _export(real_cases, out=raw, name="Other") == 2
    assert "dataset id 42 is already used by" in capsys.readouterr().err
    assert sorted(p.relative_to(raw) for p in raw.rglob("*")) == before


@pytest.mark.parametrize("name", ["bad name", "Liver/Synth", "-x", "Lebertumör", ""])
def test_bad_dataset_name_fails_before_anything_is_written(tmp_path, real_cases, capsys, name):
    raw = tmp_path / "nnUNet_raw"
    assert _export(real_cases, out=raw, name=name) == 2
    assert "letters, digits, '-' and '_'" in capsys.readouterr().err
    assert not raw.exists()


@pytest.mark.parametrize("dataset_id", ["0", "1000", "x"])
def test_bad_dataset_id_is_refused(tmp_path, real_cases, capsys, dataset_id):
    assert _export(real_cases, out=tmp_path / "raw", dataset_id=dataset_id) == 2
    assert "dataset id" in capsys.readouterr().err
    assert not (tmp_path / "raw").exists()


def test_case_without_liver_cannot_be_a_host(tmp_path, real_cases, capsys):
    labels = load_nifti(real_cases / "masks" / "totalseg.nii.gz")
    (real_cases / "masks" / "totalseg.nii.gz").unlink()
    save_nifti(np.zeros(labels.shape, np.uint8), labels.affine, real_cases / "masks" / "totalseg.nii.gz")
    assert _export(real_cases, out=tmp_path / "raw") == 2
    err = capsys.readouterr().err
    assert "case 'totalseg' has no liver voxel (label 1)" in err and "cannot host synthetic tumours" in err
    assert not (tmp_path / "raw").exists()


def test_variants_without_their_real_case_are_refused(tmp_path, synthetic, capsys):
    assert _export(synthetic / "manifest.csv", out=tmp_path / "raw") == 2
    assert "without their real case" in capsys.readouterr().err


def test_too_few_cases_for_the_folds_is_a_clear_error(tmp_path, real_cases, capsys):
    assert _export(real_cases, out=tmp_path / "raw", extra=("--folds", "5")) == 2
    assert "5 folds need at least 5 real cases, found 2" in capsys.readouterr().err


def test_fold_splits_depend_on_the_seed_only():
    from synth.nnunet_export import ExportCase

    cases = [ExportCase(f"c{i}", Path("i"), Path("l"), f"c{i}") for i in range(10)]
    cases += [ExportCase(f"c{i}-variant-0", Path("i"), Path("l"), f"c{i}") for i in range(10)]
    first = fold_splits(cases, 5, seed=3)
    assert fold_splits(list(reversed(cases)), 5, seed=3) == first
    assert fold_splits(cases, 5, seed=4) != first
    assert sorted(c for split in first for c in split["val"]) == sorted(f"c{i}" for i in range(10))
    for split in first:
        trained_groups = {c.split("-")[0] for c in split["train"]}
        assert not trained_groups & set(split["val"])


def test_export_is_atomic_when_interrupted(tmp_path, real_cases, monkeypatch):
    import synth.nnunet_export as export

    calls = []

    def fail_on_third(source, target, copy):
        calls.append(target)
        if len(calls) == 3:
            raise KeyboardInterrupt
        target.symlink_to(source)

    monkeypatch.setattr(export, "_write_file", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        export_nnunet([real_cases], tmp_path / "raw", 42, "LiverSynth", folds=2, progress=False)
    assert list((tmp_path / "raw").iterdir()) == []


def test_export_and_help_do_not_import_nnunetv2():
    code = ("import sys, synth, augment, synth.nnunet_export, synth.commands, train.nnunet.commands\n"
            "from tumorsynth import cli\n"
            "for argv in (['--help'], ['export', 'nnunet', '--help'], ['nnunet', 'install-trainer', '--help']):\n"
            "    try:\n"
            "        cli.main(argv)\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nnunetv2', 'batchgeneratorsv2')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_install_trainer_command_installs_refuses_and_uninstalls(tmp_path, monkeypatch, capsys):
    from train.nnunet import install

    monkeypatch.setattr(install, "trainer_folder", lambda: tmp_path)
    module = tmp_path / "nnUNetTrainerTumorSynth.py"
    assert cli.main(["nnunet", "install-trainer", "--probability", "0.3", "--size", "small"]) == 0
    assert "tumor_probability = 0.3" in module.read_text() and "tumor_size = 'small'" in module.read_text()
    assert "nnUNetv2_train DATASET 3d_fullres FOLD -tr nnUNetTrainerTumorSynth" in capsys.readouterr().out
    assert cli.main(["nnunet", "install-trainer", "--probability", "0.9"]) == 2
    assert "give --force" in capsys.readouterr().err
    assert "tumor_probability = 0.3" in module.read_text()
    assert cli.main(["nnunet", "install-trainer", "--probability", "1.5"]) == 2
    assert cli.main(["nnunet", "install-trainer", "--uninstall"]) == 0
    assert not module.exists()


def test_install_trainer_without_nnunetv2_says_how_to_install_it(monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "nnunetv2" else real_find_spec(name, *args))
    assert cli.main(["nnunet", "install-trainer"]) == 2
    assert "pip install 'tumorsynth[nnunet]'" in capsys.readouterr().err
