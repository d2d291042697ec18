"""The examples run in their quick mode and write what they promise."""

import json

import nibabel as nib
import numpy as np


def test_insert_into_nifti_quick_writes_cases_in_the_requested_classes(tmp_path, load_example):
    summary = load_example("insert_into_nifti").main(["--out", str(tmp_path), "--quick"])
    assert set(summary) == {"small", "medium"}
    for size, (low, high) in {"small": (5, 10), "medium": (10, 20)}.items():
        folder = tmp_path / size
        label = np.asanyarray(nib.load(folder / "label.nii.gz").dataobj)
        records = json.loads((folder / "lesions.json").read_text())
        assert 1 <= len(records) <= 3
        assert all(low <= r["diameter_mm"] < high for r in records)
        assert np.count_nonzero(label == 2) >= sum(r["voxel_count"] for r in records)
        assert (folder / "preview.png").stat().st_size > 10_000
