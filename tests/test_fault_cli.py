"""Faults fixed by the layering commit (4681792), each pinned by a test that the code before it
(3551111) fails:

1. ``insert`` / ``synthesize`` whose outputs would overwrite an input are refused (status 2) and
   leave the inputs byte for byte (before: ``insert --out`` its own folder replaced the CT or mask;
   ``synthesize`` replaced its input manifest).
2. ``evaluate`` refuses a CT passed as a label map (before: scored it, every voxel of value 2 a
   "tumour").
3. The hidden temporary file of a killed ``insert`` is removed by the next ``insert`` there
   (before: left for ever).
4. ``synthesize`` resumes a variant whose CT was deleted (before: skipped on its lesions.json, and
   listed in the manifest with a missing file).
5. End to end: ``synthesize`` -> ``data check`` -> ``train`` on its manifest (before: synthesize
   wrote no manifest).
6. The ``tumour`` spellings still work, with a DeprecationWarning (before: no warning); giving both
   spellings is a TypeError.
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synth.io import save_nifti
from synth.phantom import make_phantom
from tumorsynth.cli import main

QUICK = ["--size", "small", "--count", "1"]


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with its SHA-256."""
    return {p.relative_to(folder).as_posix(): _digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def phantom():
    """A small phantom (64 x 56 x 40 voxels of 3 mm) with two tumours."""
    return make_phantom(shape=(64, 56, 40), spacing=(3, 3, 3), lesions=2, seed=0)


def _write_case(phantom, image: Path, label: Path, *, liver_only: bool = False) -> tuple[Path, Path]:
    labels = np.where(phantom.label > 0, 1, 0).astype(np.uint8) if liver_only else phantom.label
    save_nifti(np.asarray(phantom.volume), phantom.affine, image)
    save_nifti(np.asarray(labels, dtype=np.uint8), phantom.affine, label)
    return image, label


# --- 1. outputs that would overwrite inputs --------------------------------------------------


@pytest.mark.parametrize(("image_name", "mask_name", "overwritten"), [
    ("ct.nii.gz", "liver.nii.gz", "ct.nii.gz"),        # the CT has the output CT's name
    ("scan.nii.gz", "label.nii.gz", "label.nii.gz"),   # the mask has the output label's name
])
def test_insert_into_the_input_folder_is_refused_and_leaves_the_inputs(phantom, tmp_path, capsys, image_name,
                                                                       mask_name, overwritten):
    folder = tmp_path / "d"
    image, mask = _write_case(phantom, folder / image_name, folder / mask_name, liver_only=True)
    before = _snapshot(folder)
    status = main(["insert", "--image", str(image), "--mask", str(mask), "--out", str(folder), *QUICK,
                   "--seed", "0"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("tumorsynth: error:") and "overwrite the input" in err
    assert str(folder / overwritten) in err
    assert _snapshot(folder) == before  # byte for byte, and nothing added (no lesions.json, no preview)


def test_insert_refuses_the_same_file_spelt_another_way(phantom, tmp_path, capsys):
    folder = tmp_path / "d"
    _, mask = _write_case(phantom, folder / "ct.nii.gz", folder / "liver.nii.gz", liver_only=True)
    (folder / "sub").mkdir()
    before = _snapshot(folder)
    status = main(["insert", "--image", str(folder / "sub" / ".." / "ct.nii.gz"), "--mask", str(mask),
                   "--out", str(tmp_path / "d" / "."), *QUICK])
    assert status == 2 and "overwrite the input" in capsys.readouterr().err
    assert _snapshot(folder) == before


def test_synthesize_over_its_input_manifest_is_refused_and_leaves_it(phantom, tmp_path, capsys):
    folder = tmp_path / "S"
    _write_case(phantom, folder / "cases" / "a.nii.gz", folder / "cases" / "a_label.nii.gz")
    manifest = folder / "manifest.csv"
    manifest.write_text("case_id,image,label\na,cases/a.nii.gz,cases/a_label.nii.gz\n")
    before = _snapshot(folder)
    status = main(["synthesize", "--data", str(manifest), "--out", str(folder), "--variants", "1",
                   "--workers", "1", *QUICK])
    err = capsys.readouterr().err
    assert status == 2
    assert "overwrite the input" in err and str(manifest) in err
    assert _snapshot(folder) == before


# --- 2. a CT passed as a label map ---------------------------------------------------------


def test_evaluate_refuses_a_ct_as_prediction(phantom, tmp_path, capsys):
    ct, gt = _write_case(phantom, tmp_path / "ct.nii.gz", tmp_path / "liver.nii.gz")
    report = tmp_path / "report.json"
    status = main(["evaluate", "--pred", str(ct), "--gt", str(gt), "--json", str(report)])
    err = capsys.readouterr().err
    assert status == 2
    assert "tumorsynth: error:" in err and "Traceback" not in err
    assert "label values outside {0, 1, 2}" in err and "is it a CT image?" in err
    assert not report.exists()


def test_evaluate_case_refuses_a_ct(phantom):
    from train.metrics import evaluate_case

    with pytest.raises(ValueError, match=r"pred has label values outside \{0, 1, 2\}.*is it a CT image\?"):
        evaluate_case(phantom.volume, phantom.label, spacing=phantom.spacing)
    with pytest.raises(ValueError, match=r"gt has label values outside"):
        evaluate_case(phantom.label, phantom.volume, spacing=phantom.spacing)
    with pytest.raises(ValueError, match=r"is it a CT image\?"):  # a CT as floats, as get_fdata gives it
        evaluate_case(phantom.volume.astype(np.float32) + 0.25, phantom.label)


# --- 3. stale temporaries of a killed insert ------------------------------------------------


def test_insert_removes_the_temporary_file_a_killed_insert_left(phantom, tmp_path, capsys):
    image, mask = _write_case(phantom, tmp_path / "in" / "ct.nii.gz", tmp_path / "in" / "liver.nii.gz",
                              liver_only=True)
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".ct.nii.gz.0123456789ab.tmp.nii.gz", out / ".lesions.json.a1b2c3d4e5f6.tmp"]
    kept = [out / "notes.txt", out / ".hidden.nii.gz", out / ".ct.nii.gz.backup",
            out / ".ct.nii.gz.not-hex-at-all.tmp.nii.gz", out / "ct.nii.gz.0123456789ab.tmp.nii.gz"]
    for path in stale + kept:
        path.write_bytes(b"half a file")
    assert main(["insert", "--image", str(image), "--mask", str(mask), "--out", str(out), *QUICK,
                 "--seed", "0"]) == 0
    capsys.readouterr()
    assert not any(path.exists() for path in stale)
    assert all(path.read_bytes() == b"half a file" for path in kept)
    assert {p.name for p in out.iterdir()} == {p.name for p in kept} | {
        "ct.nii.gz", "label.nii.gz", "lesions.json", "preview.png"}


# --- 4. synthesize resumes a variant whose files were deleted --------------------------------


def _manifest_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_synthesize_rewrites_a_variant_whose_ct_was_deleted(phantom, tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "S"
    _write_case(phantom, data / "volume-1.nii.gz", data / "segmentation-1.nii.gz")
    argv = ["synthesize", "--data", str(data), "--out", str(out), "--variants", "2", "--workers", "1",
            *QUICK, "--seed", "3"]
    assert main(argv) == 0
    capsys.readouterr()
    deleted = out / "volume-1" / "variant-1" / "ct.nii.gz"
    first = _digest(deleted)
    deleted.unlink()

    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "1 variant(s) written, 1 skipped" in printed
    assert _digest(deleted) == first  # the same seed: the same variant again
    rows = _manifest_rows(out / "manifest.csv")
    assert [r["case_id"] for r in rows] == ["volume-1-variant-0", "volume-1-variant-1"]
    assert all((out / r["image"]).is_file() and (out / r["label"]).is_file() for r in rows)

    (out / "volume-1" / "variant-0" / "label.nii.gz").unlink()  # the label counts too
    assert main(argv) == 0
    assert "1 variant(s) written, 1 skipped" in capsys.readouterr().out
    assert len(_manifest_rows(out / "manifest.csv")) == 2


# --- 5. synthesize -> data check -> train -----------------------------------------------------


def _lits_folder(tmp_path: Path, phantom, shared_data: Path | None) -> Path:
    """A LiTS-named folder holding case 117: the real LiTS-117 (linked) when at hand, else the
    phantom under that name."""
    folder = tmp_path / "lits"
    folder.mkdir()
    names = ("volume-117.nii.gz", "segmentation-117.nii.gz")
    if shared_data is not None and all((shared_data / "lits117" / n).is_file() for n in names):
        for name in names:
            (folder / name).symlink_to(shared_data / "lits117" / name)
    else:
        _write_case(phantom, folder / names[0], folder / names[1])
    return folder


@pytest.fixture
def shared_data_or_none() -> Path | None:
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return path if path.is_dir() else None


def test_synthesize_check_and_train_end_to_end(phantom, shared_data_or_none, tmp_path, capsys, monkeypatch,
                                               one_torch_thread):
    monkeypatch.setenv("TUMORSYNTH_CACHE", str(tmp_path / "cache"))  # preprocessed arrays go here
    data, synthetic, run = _lits_folder(tmp_path, phantom, shared_data_or_none), tmp_path / "S", tmp_path / "R"
    assert main(["synthesize", "--data", str(data), "--out", str(synthetic), "--variants", "2",
                 "--workers", "1", *QUICK, "--seed", "0"]) == 0
    manifest = synthetic / "manifest.csv"
    assert [r["case_id"] for r in _manifest_rows(manifest)] == ["volume-117-variant-0", "volume-117-variant-1"]

    assert main(["data", "check", str(manifest)]) == 0
    assert "2 cases checked: 0 fatal" in capsys.readouterr().out

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"filters": [4, 8, 16], "batch_size": 1, "amp": False, "sw_overlap": 0.0}))
    assert main(["train", "--data", str(manifest), "--out", str(run), "--config", str(config), "--steps", "2",
                 "--patch", "16", "--device", "cpu", "--val-fraction", "0", "--test-fraction", "0",
                 "--quiet"]) == 0
    assert "trained 2 steps (2 training" in capsys.readouterr().out
    assert (run / "model.pt").is_file()


# --- 6. deprecated spellings ------------------------------------------------------------------


def _label_pair():
    gt = np.zeros((20, 20, 10), np.uint8)
    gt[2:18, 2:18, 1:9] = 1
    gt[5:9, 5:9, 3:6] = 2
    return gt.copy(), gt


def test_evaluate_case_tumour_label_warns_and_both_spellings_are_a_type_error():
    from train.metrics import evaluate_case, evaluate_cases

    pred, gt = _label_pair()
    with pytest.warns(DeprecationWarning, match="tumour_label is deprecated.*tumor_label"):
        old = evaluate_case(pred, gt, tumour_label=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = evaluate_case(pred, gt, tumor_label=2)
    assert old == new and old.n_lesions == 1 and old.dice == 1.0
    with pytest.warns(DeprecationWarning, match="tumour_label"):
        assert evaluate_cases([pred], [gt], tumour_label=2)["summary"]["n_lesions"] == 1

    for function, args in ((evaluate_case, (pred, gt)), (evaluate_cases, ([pred], [gt]))):
        for new_value in (2, 1):  # the same value as the default or not: both spellings is an error
            with pytest.raises(TypeError, match="not both"):
                function(*args, tumor_label=new_value, tumour_label=2)


def test_evaluate_command_tumour_label_option_warns(tmp_path, capsys):
    pred, gt = _label_pair()
    paths = []
    for name, array in (("pred", pred), ("gt", gt)):
        nib.save(nib.Nifti1Image(array, np.eye(4)), tmp_path / f"{name}.nii.gz")
        paths.append(str(tmp_path / f"{name}.nii.gz"))
    argv = ["evaluate", "--pred", paths[0], "--gt", paths[1], "--json"]
    with pytest.warns(DeprecationWarning, match="--tumour-label is deprecated.*--tumor-label"):
        assert main([*argv, str(tmp_path / "old.json"), "--tumour-label", "2"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main([*argv, str(tmp_path / "new.json"), "--tumor-label", "2"]) == 0
    capsys.readouterr()
    old, new = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("old", "new"))
    assert old == new and old["summary"]["detected"] == 1


def test_train_config_tumour_share_warns():
    from train.loop import TrainConfig

    with pytest.warns(DeprecationWarning, match="tumour_share"):
        config = TrainConfig.from_dict({"tumour_share": 0.3})
    assert config.tumor_share == 0.3
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="not both"):
        TrainConfig.from_dict({"tumour_share": 0.3, "tumor_share": 0.3})


def test_case_has_tumour_and_module_aliases_warn(phantom):
    import train.loop
    import train.metrics
    from synth.labels import Label
    from train.data import Case

    case = Case("p", phantom.volume.astype(np.float32), phantom.label, tuple(phantom.spacing), phantom.affine)
    with pytest.warns(DeprecationWarning, match="has_tumour"):
        assert case.has_tumour is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert case.has_tumor is True
    with pytest.warns(DeprecationWarning, match="tumour_dice"):
        assert train.loop.tumour_dice is train.loop.tumor_dice
    with pytest.warns(DeprecationWarning, match="TUMOUR_LABEL"):
        assert train.metrics.TUMOUR_LABEL == 2 == Label.TUMOR
    with pytest.raises(AttributeError):
        _ = train.loop.no_such_name
