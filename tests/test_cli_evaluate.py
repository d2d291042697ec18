"""``tumorsynth evaluate`` on NIfTI files and folders."""

import json

import nibabel as nib
import numpy as np

from tumorsynth.cli import main


def write(path, array, spacing=(1.0, 1.0, 2.0)):
    nib.save(nib.Nifti1Image(array.astype(np.uint8), np.diag([*spacing, 1.0])), path)


def two_lesion_case():
    gt = np.zeros((40, 40, 20), np.uint8)
    gt[5:35, 5:35, 2:18] = 1
    gt[8:14, 8:14, 4:8] = 2  # 6 x 6 x 8 mm: detected below
    gt[24:30, 24:30, 10:14] = 2  # missed
    pred = gt.copy()
    pred[24:30, 24:30, 10:14] = 1
    pred[18:20, 8:10, 14:15] = 2  # a false positive
    return pred, gt


def test_evaluate_files_writes_the_documented_schema(tmp_path, capsys):
    pred, gt = two_lesion_case()
    write(tmp_path / "pred.nii.gz", pred)
    write(tmp_path / "gt.nii.gz", gt)
    out = tmp_path / "report.json"
    assert main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"), "--gt", str(tmp_path / "gt.nii.gz"),
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    (case,) = report["cases"]
    assert case["false_positives"] == 1
    assert sorted(lesion["detected"] for lesion in case["lesions"]) == [False, True]
    assert all({"diameter_mm", "detected", "detected_iou50", "dice"} <= set(les) for les in case["lesions"])
    assert 0.0 < case["dice"] < 1.0
    assert report["summary"]["n_lesions"] == 2 and report["summary"]["detected"] == 1
    assert "1/2 lesions detected" in capsys.readouterr().out


def test_evaluate_folders_pairs_by_name_and_rejects_mismatched_grids(tmp_path):
    pred, gt = two_lesion_case()
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    for name in ("a", "b"):
        write(tmp_path / "pred" / f"{name}.nii.gz", gt)  # perfect predictions
        write(tmp_path / "gt" / f"{name}.nii.gz", gt)
    out = tmp_path / "report.json"
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())["summary"]
    assert summary["n_cases"] == 2 and summary["global_dice"] == 1.0 and summary["false_positives"] == 0

    write(tmp_path / "pred" / "a.nii.gz", gt, spacing=(1.0, 1.0, 3.0))
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                 "--json", str(tmp_path / "bad.json")]) == 2
    assert not (tmp_path / "bad.json").exists()
