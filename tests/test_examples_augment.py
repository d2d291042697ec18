"""The TorchIO and MONAI pipeline examples run in their quick mode and give what they promise."""

import json

import pytest


def test_torchio_pipeline_quick_replays_and_yields_tumour_patches(tmp_path, load_example):
    summary = load_example("torchio_pipeline").main(["--quick", "--out", str(tmp_path)])
    assert summary == json.loads((tmp_path / "torchio_pipeline.json").read_text())
    assert summary["steps"][0] == "LiverCrop" and summary["steps"][-1] == "HUWindow"
    assert "TumorInsertion" in summary["steps"]
    assert summary["augmented_shape"] == [40, 40, 20]  # the crop for 32 x 32 x 16 patches
    assert summary["replay_max_abs_difference"] <= 1e-5 and summary["replay_labels_equal"]
    assert summary["patches"] == 4 and summary["patch_shapes"] == [[1, 32, 32, 16]]
    assert 0.0 <= summary["ct_range"][0] <= summary["ct_range"][1] <= 1.0
    assert summary["label_values"] == [0, 1, 2]
    # The phantom has no tumours: tumour patches come from the insertion and the sampler.
    assert summary["patches_with_tumor"] >= 2


def test_monai_pipeline_quick_is_reproducible_and_inserts(tmp_path, load_example):
    pytest.importorskip("monai")
    summary = load_example("monai_pipeline").main(["--quick", "--out", str(tmp_path)])
    assert summary == json.loads((tmp_path / "monai_pipeline.json").read_text())
    assert summary["same_seed_same_patches"]
    assert summary["patches"] == 4 and summary["patch_shape"] == [32, 32, 16]
    assert 0.0 <= summary["ct_range"][0] <= summary["ct_range"][1] <= 1.0
    assert set(summary["label_values"]) <= {0, 1, 2} and 2 in summary["label_values"]
    assert summary["tumor_voxels"] > 0 and summary["patches_with_tumor"] >= 1
