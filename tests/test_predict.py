"""tumorsynth predict: a model from a run folder segments scans of another size, spacing and
orientation; the labels come back on each scan's own grid, and evaluate scores them."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from synth.io import save_nifti
from train.loop import TrainConfig, train_model
from train.predict import find_model_file, predict_image
from tumorsynth.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run_folder(phantom_case, tmp_path_factory):
    """A tiny 2.5D model trained 2 steps on a 3 mm phantom (it records 3 mm as its spacing)."""
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(network="unet2d", patch_size=(32, 32, 3), batch_size=2, steps=2,
                         filters=(4, 4, 8, 8, 8), optimizer="adamw", device="cpu", amp=False)
    train_model(config, [phantom_case(0)], out_dir=out, progress=False)
    return out


def test_model_file_is_found_in_a_run_folder(run_folder, tmp_path):
    assert find_model_file(run_folder).name == "model.pt"
    with pytest.raises(ValueError, match="no model file"):
        find_model_file(tmp_path)


def test_predict_lits117_in_two_orientations_and_evaluate(run_folder, shared_data, tmp_path, capsys):
    lits = shared_data / "lits117"
    image = nib.load(lits / "volume-117.nii.gz")
    # The same scan stored flipped in x and y (LPS-like): another orientation, same anatomy.
    flipped = tmp_path / "flipped.nii.gz"
    data = np.asanyarray(image.dataobj)[::-1, ::-1].copy()
    affine = image.affine @ np.array([[-1, 0, 0, data.shape[0] - 1], [0, -1, 0, data.shape[1] - 1],
                                      [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    save_nifti(data, affine, flipped)
    assert main(["predict", "--model", str(run_folder), "--image", str(lits / "volume-117.nii.gz"),
                 "--out", str(tmp_path / "pred.nii.gz")]) == 0
    assert predict_image(run_folder, flipped, tmp_path / "pred_flipped.nii.gz") == tmp_path / "pred_flipped.nii.gz"
    pred = nib.load(tmp_path / "pred.nii.gz")
    pred_flipped = nib.load(tmp_path / "pred_flipped.nii.gz")
    assert pred.shape == image.shape and np.allclose(pred.affine, image.affine)
    assert np.allclose(pred_flipped.affine, affine)
    a, b = np.asanyarray(pred.dataobj), np.asanyarray(pred_flipped.dataobj)
    assert a.dtype == np.uint8 and set(np.unique(a)) <= {0, 1, 2}
    np.testing.assert_array_equal(a, b[::-1, ::-1])  # the same prediction, stored the input's way
    capsys.readouterr()
    report = tmp_path / "report.json"
    assert main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"),
                 "--gt", str(lits / "segmentation-117.nii.gz"), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["summary"]["n_lesions"] > 50


def test_predict_a_folder_with_known_livers(run_folder, shared_data, tmp_path):
    scans, livers = tmp_path / "scans", tmp_path / "livers"
    scans.mkdir(), livers.mkdir()
    totalseg = shared_data / "totalseg_example"
    (scans / "ts.nii.gz").symlink_to(totalseg / "ct.nii.gz")
    (livers / "ts.nii.gz").symlink_to(totalseg / "liver.nii.gz")
    assert main(["predict", "--model", str(run_folder), "--image", str(scans), "--out", str(tmp_path / "preds"),
                 "--liver", str(livers)]) == 0
    pred = nib.load(tmp_path / "preds" / "ts.nii.gz")
    ct, liver = nib.load(totalseg / "ct.nii.gz"), nib.load(totalseg / "liver.nii.gz")
    assert pred.shape == ct.shape
    labels = np.asanyarray(pred.dataobj)
    inside = np.asanyarray(liver.dataobj) > 0
    assert (labels[inside] >= 1).all() and (labels[~inside] == 0).all()  # the given liver is the liver


def test_predict_refuses_to_overwrite_its_input(run_folder, shared_data, tmp_path, capsys):
    image = tmp_path / "ct.nii.gz"
    image.symlink_to(shared_data / "lits117" / "volume-117.nii.gz")
    assert main(["predict", "--model", str(run_folder), "--image", str(image), "--out", str(image)]) == 2
    assert "overwrite the input" in capsys.readouterr().err



def _threshold_model(net, case, config, *, device="cpu"):
    """A stand-in for the network that labels by HU alone: 40-50 HU, a band inside the liver's own
    range, as tumour (many small components, most of them isodense), 0-200 HU otherwise as liver."""
    image = case.image
    return np.where((image > 40) & (image <= 50), 2, np.where((image > 0) & (image < 200), 1, 0)).astype(np.uint8)


def test_predict_post_processing_options_are_those_of_postprocess(run_folder, shared_data, tmp_path, monkeypatch):
    from train.loop import inference
    from train.postprocess import postprocess

    monkeypatch.setattr(inference, "predict_case", _threshold_model)
    totalseg = shared_data / "totalseg_example"
    common = ["predict", "--model", str(run_folder), "--image", str(totalseg / "ct.nii.gz"),
              "--liver", str(totalseg / "liver.nii.gz")]
    assert main([*common, "--out", str(tmp_path / "plain.nii.gz")]) == 0
    assert main([*common, "--out", str(tmp_path / "clean.nii.gz"), "--min-tumor-mm3", "200",
                 "--min-contrast-hu", "10"]) == 0
    plain = np.asanyarray(nib.load(tmp_path / "plain.nii.gz").dataobj)
    clean = np.asanyarray(nib.load(tmp_path / "clean.nii.gz").dataobj)
    ct = nib.load(totalseg / "ct.nii.gz")
    liver = np.asanyarray(nib.load(totalseg / "liver.nii.gz").dataobj) > 0
    expected = postprocess(plain, ct.header.get_zooms()[:3], liver=liver, min_tumor_mm3=200,
                           image=np.asanyarray(ct.dataobj).astype(np.float32), min_contrast_hu=10)
    np.testing.assert_array_equal(clean, expected)
    specks_only = postprocess(plain, ct.header.get_zooms()[:3], liver=liver, min_tumor_mm3=200)
    assert (clean == 2).sum() < (specks_only == 2).sum() < (plain == 2).sum()  # both rules acted
