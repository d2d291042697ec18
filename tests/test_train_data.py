"""train.data: finding cases, checks, preprocessing and its cache, splits, hosts, MRC, the sample fetch."""

from __future__ import annotations

import argparse
import hashlib
import socket
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from train.data import (
    Case,
    CaseFiles,
    FetchError,
    Preprocessing,
    Split,
    check_case,
    commands,
    crop_to_liver,
    fetch_lits117,
    find_cases,
    find_problems,
    healthy_hosts,
    load_cases,
    phantom_hosts,
    preprocess_case,
    read_mrc,
    resample,
    split_axial,
    split_cases,
)
from train.data.fetch import LITS117_WHEEL

SPACING = (1.0, 1.0, 2.0)
SHAPE = (24, 20, 12)
LIVER_BOX = (slice(6, 18), slice(5, 15), slice(3, 9))  # voxels; 12 x 10 x 12 mm... in mm: 12, 10, 12


# --- helpers ----------------------------------------------------------------------------------


def _arrays(tumour: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.normal(-100.0, 20.0, SHAPE).astype(np.int16)
    label = np.zeros(SHAPE, np.uint8)
    label[LIVER_BOX] = 1
    image[LIVER_BOX] = 110
    if tumour:
        label[10:13, 8:11, 5:7] = 2
        image[10:13, 8:11, 5:7] = 50
    return image, label


def _write(path: Path, array: np.ndarray, affine=None) -> Path:
    affine = np.diag([*SPACING, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def _lits_folder(root: Path, numbers=(1,), tumour=True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        image, label = _arrays(tumour, seed=n)
        _write(root / f"volume-{n}.nii.gz", image)
        _write(root / f"segmentation-{n}.nii.gz", label)
    return root


def _case(tmp_path, name="case", image=None, label=None, image_affine=None, label_affine=None) -> CaseFiles:
    default_image, default_label = _arrays()
    image = default_image if image is None else image
    label = default_label if label is None else label
    return CaseFiles(name, _write(tmp_path / f"{name}_img.nii.gz", image, image_affine),
                     _write(tmp_path / f"{name}_lab.nii.gz", label, label_affine))


def test_import_stays_light():
    code = ("import sys, train.data; "
            "print(sorted(m for m in ('torch', 'monai', 'diffusers', 'torchio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- find_cases ---------------------------------------------------------------------------------


def test_find_cases_lits_folder_in_numeric_order(tmp_path):
    folder = _lits_folder(tmp_path / "lits", numbers=(10, 2, 1))
    cases = find_cases(folder)
    assert [c.case_id for c in cases] == ["volume-1", "volume-2", "volume-10"]
    assert cases[2].image.name == "volume-10.nii.gz" and cases[2].label.name == "segmentation-10.nii.gz"


def test_find_cases_lits_incomplete_pair_is_named(tmp_path):
    folder = _lits_folder(tmp_path / "lits", numbers=(1, 3))
    (folder / "segmentation-3.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"incomplete LiTS pairs.*volume-3"):
        find_cases(folder)


def test_find_cases_empty_or_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="no cases found"):
        find_cases(tmp_path)
    with pytest.raises(ValueError, match="no such file"):
        find_cases(tmp_path / "absent")


def test_find_cases_msd_folder(tmp_path):
    root = tmp_path / "Task03_Liver"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text('{"name": "Liver"}')
    for n in (0, 11, 2):
        image, label = _arrays(seed=n)
        _write(root / "imagesTr" / f"liver_{n}.nii.gz", image)
        _write(root / "labelsTr" / f"liver_{n}.nii.gz", label)
    (root / "imagesTr" / "._liver_0.nii.gz").write_bytes(b"resource fork litter")
    cases = find_cases(root)
    assert [c.case_id for c in cases] == ["liver_0", "liver_2", "liver_11"]
    (root / "labelsTr" / "liver_2.nii.gz").unlink()
    with pytest.raises(ValueError, match="liver_2"):
        find_cases(root)


def test_find_cases_csv_manifest(tmp_path):
    folder = _lits_folder(tmp_path / "data", numbers=(1, 2))
    manifest = tmp_path / "cases.csv"
    manifest.write_text("image,label,case_id\n"
                        "data/volume-1.nii.gz,data/segmentation-1.nii.gz,first\n"
                        f"{folder / 'volume-2.nii.gz'},,\n")
    cases = find_cases(manifest)
    assert [c.case_id for c in cases] == ["first", "volume-2"]
    assert cases[0].image == tmp_path / "data" / "volume-1.nii.gz"
    assert cases[1].label is None

    manifest.write_text("image,label\ndata/volume-9.nii.gz,data/segmentation-1.nii.gz\n")
    with pytest.raises(ValueError, match="line 2: image file .*volume-9"):
        find_cases(manifest)
    manifest.write_text("scan,mask\na,b\n")
    with pytest.raises(ValueError, match="'image' column"):
        find_cases(manifest)


# --- check_case -----------------------------------------------------------------------------------


def test_check_case_passes_a_good_case(tmp_path):
    assert check_case(_case(tmp_path)) == []


def test_check_case_flags_identity_affine(tmp_path):
    problems = check_case(_case(tmp_path, image_affine=np.eye(4), label_affine=np.eye(4)))
    assert len(problems) == 2  # image and label
    assert "identity" in problems[0] and "28-47" in problems[0]


def test_check_case_flags_zero_affine_and_uses_the_header_spacing(tmp_path):
    image, label = _arrays()
    header = nib.Nifti1Header()  # a header-only image: nibabel refuses a zero affine argument
    header.set_data_dtype(image.dtype)
    header.set_data_shape(image.shape)
    header.set_zooms(SPACING)
    header.set_sform(np.zeros((4, 4)), code=1)
    header.set_qform(None, code=0)
    nib.save(nib.Nifti1Image(image, None, header=header), str(tmp_path / "zero.nii.gz"))
    files = CaseFiles("zero", tmp_path / "zero.nii.gz", _write(tmp_path / "lab.nii.gz", label))
    problems = find_problems(files)
    assert len(problems) == 1 and not problems[0].fatal
    assert "singular" in problems[0].message and "(1.0, 1.0, 2.0) mm is used" in problems[0].message
    with pytest.warns(UserWarning, match="singular"):
        case = preprocess_case(files, Preprocessing(target_spacing=None, crop_margin_mm=None))
    assert case.spacing == SPACING and np.array_equal(case.image, image.astype(np.float32))


def test_check_case_flags_shape_mismatch_bad_labels_nan_and_disagreeing_affines(tmp_path):
    image, label = _arrays()
    problems = find_problems(_case(tmp_path, "shape", label=label[:, :, :-1]))
    assert [p.fatal for p in problems] == [True] and "shape" in problems[0].message

    bad = label.copy()
    bad[0, 0, 0] = 5
    problems = check_case(_case(tmp_path, "labels", label=bad))
    assert len(problems) == 1 and "outside {0, 1, 2}" in problems[0] and "5" in problems[0]

    nan_image = image.astype(np.float32)
    nan_image[1, 2, 3] = np.nan
    problems = check_case(_case(tmp_path, "nan", image=nan_image))
    assert len(problems) == 1 and "1 NaN" in problems[0]

    shifted = np.diag([*SPACING, 1.0])
    shifted[0, 3] = 5.0
    problems = find_problems(_case(tmp_path, "shifted", label_affine=shifted))
    assert len(problems) == 1 and not problems[0].fatal and "5 mm apart" in problems[0].message


# --- preprocessing --------------------------------------------------------------------------------


def _world_centre(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    centre = np.argwhere(mask).mean(axis=0)
    return affine[:3, :3] @ centre + affine[:3, 3]


def test_preprocess_resamples_to_target_spacing(tmp_path):
    files = _case(tmp_path)
    settings = Preprocessing(target_spacing=(1.5, 1.5, 1.5), crop_margin_mm=None)
    case = preprocess_case(files, settings)
    assert case.spacing == (1.5, 1.5, 1.5)
    assert np.allclose(np.sqrt((case.affine[:3, :3] ** 2).sum(axis=0)), 1.5)
    extent_before = np.array(SHAPE) * np.array(SPACING)
    extent_after = np.array(case.image.shape) * 1.5
    assert np.all(np.abs(extent_after - extent_before) <= 1.5)
    assert case.image.dtype == np.float32 and case.label.dtype == np.uint8
    assert set(np.unique(case.label).tolist()) == {0, 1, 2}
    # The liver stays where it was in world coordinates (within half a new voxel).
    _, label = _arrays()
    assert np.allclose(_world_centre(case.label > 0, case.affine),
                       _world_centre(label > 0, np.diag([*SPACING, 1.0])), atol=0.75)
    # Liver volume in mL is kept approximately.
    assert abs((case.label > 0).sum() * 1.5**3 - (label > 0).sum() * 2.0) < 0.2 * (label > 0).sum() * 2.0


def test_preprocess_reorients_lps_file_to_the_same_ras_array(tmp_path):
    image, label = _arrays()
    ras = CaseFiles("ras", _write(tmp_path / "ras_i.nii.gz", image), _write(tmp_path / "ras_l.nii.gz", label))
    # The same scan stored with x and y flipped (LPS order): flipped arrays, negative axes.
    lps_affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
    lps_affine[:3, 3] = [(SHAPE[0] - 1) * SPACING[0], (SHAPE[1] - 1) * SPACING[1], 0.0]
    lps = CaseFiles("lps", _write(tmp_path / "lps_i.nii.gz", image[::-1, ::-1].copy(), lps_affine),
                    _write(tmp_path / "lps_l.nii.gz", label[::-1, ::-1].copy(), lps_affine))
    settings = Preprocessing(target_spacing=None, crop_margin_mm=None)
    a, b = preprocess_case(ras, settings), preprocess_case(lps, settings)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert np.allclose(a.affine, b.affine)
    assert np.array_equal(b.image, image.astype(np.float32))


def test_preprocess_trusts_each_header_float_labels_and_permuted_axes(tmp_path):
    image, label = _arrays()
    settings = Preprocessing(target_spacing=None, crop_margin_mm=None)
    # Label stored as float (common in LiTS) with x flipped and its own matching header.
    flip_affine = np.diag([-SPACING[0], SPACING[1], SPACING[2], 1.0])
    flip_affine[0, 3] = (SHAPE[0] - 1) * SPACING[0]
    files = CaseFiles("mixed", _write(tmp_path / "i.nii.gz", image),
                      _write(tmp_path / "l.nii.gz", label[::-1].astype(np.float32), flip_affine))
    with pytest.warns(UserWarning, match="23 mm apart"):  # voxel (0, y, z) is 23 mm away in the two
        case = preprocess_case(files, settings)
    assert case.label.dtype == np.uint8 and np.array_equal(case.label, label)
    # Axes stored as (Z, X, Y): reorientation brings them back to (X, Y, Z).
    perm = np.zeros((4, 4))
    perm[0, 1], perm[1, 2], perm[2, 0], perm[3, 3] = SPACING[0], SPACING[1], SPACING[2], 1.0
    zxy = CaseFiles("zxy", _write(tmp_path / "pi.nii.gz", image.transpose(2, 0, 1).copy(), perm),
                    _write(tmp_path / "pl.nii.gz", label.transpose(2, 0, 1).copy(), perm))
    case = preprocess_case(zxy, settings)
    assert np.array_equal(case.image, image.astype(np.float32)) and case.spacing == SPACING


def test_spacing_override_replaces_a_broken_header_spacing(tmp_path):
    image, label = _arrays()
    header = nib.Nifti1Header()
    header.set_data_dtype(image.dtype)
    header.set_data_shape(image.shape)
    header.set_sform(np.zeros((4, 4)), code=1)
    header.set_qform(None, code=0)
    header["pixdim"][1:4] = 0.0  # nibabel reads a zero pixdim as 1 mm (and logs it)
    nib.save(nib.Nifti1Image(image, None, header=header), str(tmp_path / "nospacing.nii.gz"))
    files = CaseFiles("nospacing", tmp_path / "nospacing.nii.gz", _write(tmp_path / "lab.nii.gz", label))
    assert [p.fatal for p in find_problems(files)] == [False]
    with pytest.warns(UserWarning, match="given by hand"):
        case = preprocess_case(files, Preprocessing(target_spacing=None), spacing_override=(0.8, 0.8, 3.0))
    assert case.spacing == (0.8, 0.8, 3.0)
    with pytest.raises(ValueError, match="spacing_override"):
        preprocess_case(files, spacing_override=(1.0, -1.0, 1.0))


def test_preprocess_crops_around_the_liver_with_the_margin(tmp_path):
    case = preprocess_case(_case(tmp_path), Preprocessing(target_spacing=None, crop_margin_mm=3.0))
    # margin 3 mm = 3 voxels in x, y (1 mm) and 2 slices in z (2 mm, rounded up); clipped at 0.
    expected = tuple(min(s.stop + m, n) - max(s.start - m, 0) for s, m, n in zip(LIVER_BOX, (3, 3, 2), SHAPE))
    assert case.image.shape == expected
    assert np.allclose(case.affine[:3, 3], [3.0, 2.0, 2.0])  # first kept voxel (3, 2, 1) in mm
    liver = np.argwhere(case.label > 0)
    assert liver.min(axis=0).tolist() == [3, 3, 2]


def test_preprocess_leaves_inputs_alone(tmp_path):
    files = _case(tmp_path)
    before = {p: p.read_bytes() for p in (files.image, files.label)}
    preprocess_case(files)
    assert all(p.read_bytes() == data for p, data in before.items())
    image, label = _arrays()
    image = image.astype(np.float32)
    image.setflags(write=False)
    label.setflags(write=False)  # any write to them raises
    cropped = crop_to_liver(image, label, np.diag([*SPACING, 1.0]), 2.0)
    resampled = resample(image, label, np.diag([*SPACING, 1.0]), (2.0, 2.0, 2.0))
    assert cropped[0].flags.writeable and resampled[0].shape == (12, 10, 12)


def test_preprocess_warns_on_identity_affine_and_refuses_fatal_problems(tmp_path):
    files = _case(tmp_path, "lits-30", image_affine=np.eye(4), label_affine=np.eye(4))
    with pytest.warns(UserWarning, match="identity"):
        case = preprocess_case(files, Preprocessing(target_spacing=None, crop_margin_mm=None))
    assert case.spacing == (1.0, 1.0, 1.0) and any("identity" in n for n in case.notes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = preprocess_case(files, Preprocessing(target_spacing=None, crop_margin_mm=None),
                                spacing_override=(0.8, 0.8, 2.5))
    assert fixed.spacing == (0.8, 0.8, 2.5)

    _, label = _arrays()
    bad = label.copy()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match="case badlab cannot be preprocessed.*outside"):
        preprocess_case(_case(tmp_path, "badlab", label=bad))
    with pytest.raises(ValueError, match="case short cannot be preprocessed.*shape"):
        preprocess_case(_case(tmp_path, "short", label=label[:-1]))


def test_preprocess_unlabelled_case_is_kept_whole(tmp_path):
    image, _ = _arrays()
    files = CaseFiles("nolabel", _write(tmp_path / "i.nii.gz", image), None)
    case = preprocess_case(files, Preprocessing(target_spacing=None))
    assert case.image.shape == SHAPE and not case.label.any()
    assert any("no liver label" in n for n in case.notes)


def test_cache_returns_identical_arrays_without_reading_the_files(tmp_path, monkeypatch):
    files = _case(tmp_path)
    settings = Preprocessing()
    cache = tmp_path / "cache"
    first = preprocess_case(files, settings, cache_dir=cache, notes=("hello",))
    stored = list((cache / settings.key()).glob("*.npz"))
    assert len(stored) == 1 and not list((cache / settings.key()).glob(".*"))  # no temp file left

    def no_load(*args, **kwargs):
        raise AssertionError("the cache hit read a NIfTI file")

    monkeypatch.setattr(nib, "load", no_load)
    second = preprocess_case(files, settings, cache_dir=cache, notes=("hello",))
    monkeypatch.undo()
    for name in ("image", "label", "affine"):
        a, b = getattr(first, name), getattr(second, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert first.spacing == second.spacing and first.notes == second.notes

    other = Preprocessing(target_spacing=(2.0, 2.0, 2.0))
    assert other.key() != settings.key()
    assert Preprocessing(crop_margin_mm=5.0).key() != settings.key()
    assert Preprocessing().key() == settings.key()
    third = preprocess_case(files, other, cache_dir=cache)
    assert third.spacing == (2.0, 2.0, 2.0) and (cache / other.key()).is_dir()

    stored[0].write_bytes(b"half a file")  # a damaged entry is rebuilt, not trusted
    rebuilt = preprocess_case(files, settings, cache_dir=cache, notes=("hello",))
    assert np.array_equal(rebuilt.image, first.image) and np.load(stored[0])["image"].shape == first.image.shape


def test_cache_misses_when_the_file_changes(tmp_path):
    files = _case(tmp_path)
    cache = tmp_path / "cache"
    preprocess_case(files, cache_dir=cache)
    image, label = _arrays()
    label[LIVER_BOX] = 0
    label[1:4, 1:4, 1:4] = 1
    _write(files.label, label)
    again = preprocess_case(files, cache_dir=cache)
    assert again.image.shape != preprocess_case(_case(tmp_path, "fresh")).image.shape
    assert len(list(cache.rglob("*.npz"))) == 2


def test_preprocessing_settings_are_checked():
    with pytest.raises(ValueError, match="target_spacing"):
        Preprocessing(target_spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="crop_margin_mm"):
        Preprocessing(crop_margin_mm=-1)


def test_load_cases_preprocesses_a_folder(tmp_path):
    cases = load_cases(_lits_folder(tmp_path / "lits", numbers=(1, 2)), progress=False)
    assert [c.case_id for c in cases] == ["volume-1", "volume-2"] and all(isinstance(c, Case) for c in cases)


# --- splits ---------------------------------------------------------------------------------------


def test_split_cases_deterministic_disjoint_complete_and_seeded():
    ids = [f"c{i}" for i in range(10)]
    split = split_cases(ids, seed=0)
    # Pinned: the same split in any process, on any platform.
    assert split == Split(train=("c0", "c1", "c3", "c5", "c7", "c8", "c9"), val=("c2",), test=("c4", "c6"))
    assert split_cases(list(reversed(ids)), seed=0) == split
    parts = split.train + split.val + split.test
    assert sorted(parts) == sorted(ids) and len(set(parts)) == len(ids)
    assert split_cases(ids, seed=1) != split
    assert len({split_cases(ids, seed=s) for s in range(5)}) > 1


def test_split_cases_keeps_one_for_training_and_checks_arguments():
    assert split_cases(["a"]).train == ("a",)
    small = split_cases(["a", "b"], val_fraction=0.5, test_fraction=0.45)
    assert len(small.train) == 1 and len(small.val) + len(small.test) == 1
    with pytest.raises(ValueError, match="duplicate"):
        split_cases(["a", "a"])
    with pytest.raises(ValueError, match="below 1"):
        split_cases(["a", "b"], val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="at least one"):
        split_cases([])


def _tumour_case() -> Case:
    image, label = _arrays()
    label[10:13, 8:11, 3:9] = 2  # a tumour crossing every possible cut inside the liver
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-5.0, 3.0, 7.0]
    return Case("toy", image.astype(np.float32), label, SPACING, affine, source="test")


def test_split_axial_gap_and_labels():
    case = _tumour_case()
    image_before, label_before = case.image.copy(), case.label.copy()
    train, test = split_axial(case, train_fraction=0.5, gap_mm=3.0)
    assert (train.case_id, test.case_id) == ("toy-train", "toy-test")
    cut, gap = 6, 2  # 3 mm at 2 mm slices rounds up to 2 slices
    assert train.image.shape[2] == cut and test.image.shape[2] == SHAPE[2] - cut - gap
    assert np.array_equal(train.label, case.label[:, :, :cut])
    assert np.array_equal(test.label, case.label[:, :, cut + gap:])
    # World positions: the test part's first slice is where it was in the whole case.
    assert np.allclose(test.affine[:3, 3], case.affine[:3, :3] @ [0, 0, cut + gap] + case.affine[:3, 3])
    z_train_top = (train.affine @ [0, 0, train.image.shape[2] - 1, 1])[2]
    z_test_bottom = (test.affine @ [0, 0, 0, 1])[2]
    assert z_test_bottom - z_train_top >= 3.0  # the gap in mm between the nearest voxel centres
    assert "split" in test.notes[-1] and "crossing it: 1" in test.notes[-1]
    assert np.array_equal(case.image, image_before) and np.array_equal(case.label, label_before)
    with pytest.raises(ValueError, match="too few"):
        split_axial(case, train_fraction=0.95, gap_mm=4.0)


# --- hosts ----------------------------------------------------------------------------------------


def test_healthy_hosts_keeps_tumour_free_livers():
    sick = _tumour_case()
    healthy = Case("h", sick.image, np.where(sick.label == 2, 1, sick.label).astype(np.uint8), SPACING, sick.affine)
    empty = Case("e", sick.image, np.zeros_like(sick.label), SPACING, sick.affine)
    assert [c.case_id for c in healthy_hosts([sick, healthy, empty])] == ["h"]


def test_phantom_hosts_have_livers_at_the_spacing():
    hosts = phantom_hosts(2, spacing=(3.0, 3.0, 4.0), seed=5)
    assert [h.case_id for h in hosts] == ["phantom-0", "phantom-1"]
    for host in hosts:
        assert host.spacing == (3.0, 3.0, 4.0) and host.source == "phantom"
        assert np.allclose(np.sqrt((host.affine[:3, :3] ** 2).sum(axis=0)), (3.0, 3.0, 4.0))
        assert host.image.dtype == np.float32 and not host.has_tumor
        liver_ml = (host.label > 0).sum() * 36.0 / 1000.0
        assert 500 < liver_ml < 3000
        # Cropped with a 10 mm margin: the liver lies within 4 voxels (3 mm) / 3 slices (4 mm) of each edge.
        idx = np.argwhere(host.label > 0)
        assert idx.min(axis=0).max() <= 4 and (np.array(host.label.shape) - 1 - idx.max(axis=0)).max() <= 4
    assert not np.array_equal(hosts[0].label.shape, hosts[1].label.shape) or not np.array_equal(
        hosts[0].image, hosts[1].image)
    again = phantom_hosts(1, spacing=(3.0, 3.0, 4.0), seed=5)[0]
    assert np.array_equal(again.image, hosts[0].image)
    with pytest.raises(ValueError, match="count"):
        phantom_hosts(-1)


# --- MRC ------------------------------------------------------------------------------------------


def _mrc_bytes(xyz: np.ndarray, mode: int, *, byte_order="<", axis_map=(1, 2, 3), extended=b"") -> bytes:
    """An MRC2014 file of the (X, Y, Z) array, written from the standard's header layout."""
    crs = xyz.transpose([a - 1 for a in axis_map])  # columns, rows, sections
    nc, nr, ns = crs.shape
    words = np.zeros(56, dtype=f"{byte_order}i4")
    words[0:3] = (nc, nr, ns)
    words[3] = mode
    words[7:10] = (nc, nr, ns)
    words[16:19] = axis_map
    words[23] = len(extended)
    header = bytearray(words.tobytes() + bytes(1024 - 224))
    header[208:212] = b"MAP "
    header[212:216] = b"\x44\x44\x00\x00" if byte_order == "<" else b"\x11\x11\x00\x00"
    dtype = {0: "i1", 1: "i2", 2: "f4", 6: "u2"}[mode]
    data = np.ascontiguousarray(crs.transpose(2, 1, 0)).astype(f"{byte_order}{dtype}").tobytes()
    return bytes(header) + extended + data


@pytest.mark.parametrize("mode,dtype", [(0, np.int8), (1, np.int16), (2, np.float32), (6, np.uint16)])
def test_read_mrc_modes(mode, dtype):
    xyz = (np.arange(4 * 3 * 2).reshape(4, 3, 2) * (1.5 if mode == 2 else 1)).astype(dtype)
    volume = read_mrc(_mrc_bytes(xyz, mode))
    assert volume.array.dtype == np.dtype(dtype) and np.array_equal(volume.array, xyz)
    assert volume.mode == mode and volume.voxel_size is None


def test_read_mrc_big_endian_extended_header_and_axis_map():
    xyz = np.arange(5 * 3 * 2, dtype=np.int16).reshape(5, 3, 2) - 7
    data = _mrc_bytes(xyz, 1, byte_order=">", axis_map=(3, 1, 2), extended=b"x" * 80)
    assert np.array_equal(read_mrc(data).array, xyz)


def test_read_mrc_refuses_broken_files():
    good = _mrc_bytes(np.zeros((2, 2, 2), np.int16), 1)
    with pytest.raises(ValueError, match="truncated"):
        read_mrc(good[:-3], name="short.mrc")
    with pytest.raises(ValueError, match="mode 4"):
        read_mrc(good[:12] + np.int32(4).tobytes() + good[16:])
    with pytest.raises(ValueError, match="shorter than"):
        read_mrc(b"abc")


# --- fetch_lits117 --------------------------------------------------------------------------------


def _shared_lits(shared_data):
    folder = shared_data / "lits117"
    arrays = {}
    for name in ("volume-117.nii.gz", "segmentation-117.nii.gz"):
        if not (folder / name).is_file():
            pytest.skip(f"real LiTS-117 missing: {folder / name}")
        arrays[name] = np.asanyarray(nib.load(str(folder / name)).dataobj)
    return arrays


@pytest.fixture(scope="module")
def fake_wheel(shared_data, tmp_path_factory):
    """A zip laid out like the wheel, its MRC files made from the shared LiTS-117 NIfTIs."""
    arrays = _shared_lits(shared_data)
    path = tmp_path_factory.mktemp("wheel") / "liver_ct_segmentation_package-1.6.0-py2.py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("liver_ct_segmentation_package/data/img_117.mrc",
                         _mrc_bytes(arrays["volume-117.nii.gz"].astype(np.float32), 2))
        archive.writestr("liver_ct_segmentation_package/data/lab_117.mrc",
                         _mrc_bytes(arrays["segmentation-117.nii.gz"].astype(np.uint16), 6))
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), arrays


def _assert_matches_shared(folder: Path, arrays) -> None:
    for name, expected in arrays.items():
        img = nib.load(str(folder / name))
        assert np.array_equal(np.asanyarray(img.dataobj), expected) and img.get_data_dtype() == expected.dtype
        assert np.allclose(img.affine, np.diag([1.4, 1.4, 1.4, 1.0]))
        assert b"approximate" in img.header["descrip"].tobytes()
    readme = (folder / "README.txt").read_text()
    assert "CC BY-SA 4.0" in readme and "APPROXIMATE" in readme


def test_fetch_lits117_from_a_wheel_file(fake_wheel, tmp_path):
    wheel, digest, arrays = fake_wheel
    folder = fetch_lits117(tmp_path / "cache", wheel=wheel, progress=False, sha256=digest)
    assert folder == tmp_path / "cache" / "lits117"
    _assert_matches_shared(folder, arrays)
    assert sorted(p.name for p in folder.iterdir()) == ["README.txt", "segmentation-117.nii.gz",
                                                        "volume-117.nii.gz"]
    case = preprocess_case(find_cases(folder)[0])
    assert any("approximate" in note for note in case.notes)  # the reports repeat it
    # A second call finds the files: no wheel is read (this one does not exist) and nothing downloaded.
    assert fetch_lits117(tmp_path / "cache", wheel=tmp_path / "gone.whl", progress=False) == folder


def test_fetch_command_prints_the_folder(fake_wheel, tmp_path, capsys):
    wheel, digest, _ = fake_wheel
    fetch_lits117(tmp_path, wheel=wheel, progress=False, sha256=digest)
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    assert commands.run(parser.parse_args(["fetch", "lits117", "--cache", str(tmp_path)])) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "lits117")


def test_fetch_lits117_refuses_a_wrong_checksum_or_broken_wheel(fake_wheel, tmp_path, capsys):
    wheel, _, _ = fake_wheel
    with pytest.raises(FetchError, match="SHA-256 .* does not match"):
        fetch_lits117(tmp_path, wheel=wheel, progress=False)
    assert not (tmp_path / "lits117" / "volume-117.nii.gz").exists()
    broken = tmp_path / "broken.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(FetchError, match="not a readable wheel"):
        fetch_lits117(tmp_path, wheel=broken, progress=False,
                      sha256=hashlib.sha256(b"not a zip").hexdigest())
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    assert commands.run(parser.parse_args(["fetch", "lits117", "--cache", str(tmp_path),
                                           "--wheel", str(wheel)])) == 1
    assert "does not match" in capsys.readouterr().err


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def test_fetch_lits117_real_download(shared_data, tmp_path):
    if not _pypi_reachable():
        pytest.skip(f"PyPI (pypi.org:443) is unreachable: cannot download {LITS117_WHEEL}")
    arrays = _shared_lits(shared_data)
    try:
        folder = fetch_lits117(tmp_path, progress=False)
    except FetchError as exc:
        if "offline" in str(exc):
            pytest.skip(f"pip could not download {LITS117_WHEEL}: {exc}")
        raise
    _assert_matches_shared(folder, arrays)


# --- data check command ---------------------------------------------------------------------------


def test_data_check_command(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    folder = _lits_folder(tmp_path / "good", numbers=(1, 2))
    assert commands.run(parser.parse_args(["check", str(folder)])) == 0
    assert "2 cases checked: 0 fatal" in capsys.readouterr().out

    _, label = _arrays()
    _write(folder / "segmentation-2.nii.gz", label[:, :, :-2])
    _write(folder / "volume-1.nii.gz", _arrays()[0], np.eye(4))
    assert commands.run(parser.parse_args(["check", str(folder)])) == 1
    out = capsys.readouterr().out
    assert "ERROR: case volume-2" in out and "shape" in out and "warning: case volume-1" in out

    assert commands.run(parser.parse_args(["check", str(tmp_path / "empty")])) == 1


# --- real cases -----------------------------------------------------------------------------------


def test_preprocess_real_lits117(shared_data, tmp_path):
    cases = find_cases(shared_data / "lits117")
    assert [c.case_id for c in cases] == ["volume-117"] and check_case(cases[0]) == []
    case = preprocess_case(cases[0], cache_dir=tmp_path)
    assert case.spacing == (1.5, 1.5, 2.0) and case.has_tumor
    # 128 voxels of 1.4 mm = 179.2 mm; the liver fills the box, so the crop keeps it all.
    assert case.image.shape == (119, 119, 90)
    assert -1100 < case.image.min() and case.image.max() < 3100
    train, test = split_axial(case)
    assert train.has_tumor and test.has_tumor and healthy_hosts([case, train, test]) == []


def test_preprocess_real_totalseg_via_manifest(shared_data, tmp_path):
    folder = shared_data / "totalseg_example"
    if not (folder / "ct.nii.gz").is_file():
        pytest.skip(f"real case missing: {folder / 'ct.nii.gz'}")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"image,label,case_id\n{folder / 'ct.nii.gz'},{folder / 'liver.nii.gz'},totalseg\n")
    (case,) = load_cases(manifest, progress=False)
    assert case.spacing == (1.5, 1.5, 2.0) and not case.has_tumor and (case.label == 1).any()
    liver_ml = (case.label > 0).sum() * 1.5 * 1.5 * 2.0 / 1000
    assert 0.9 < liver_ml / 1120 < 1.1  # the shared README: 1.12 L
    assert [c.case_id for c in healthy_hosts([case])] == ["totalseg"]
