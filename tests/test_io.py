"""Tests for synth.io: NIfTI loading with reorientation, space checks, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synth import io as sio
from synth.io import check_same_space, load_nifti, save_nifti, write_json_atomic

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real CT cases not found at {DATA} (../shared/data)"
)


def _write_raw(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """Write a file with plain nibabel (not the code under test)."""
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.int64])
def test_round_trip_keeps_dtype_affine_values(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    array = rng.integers(-100, 100, size=(5, 6, 7)).astype(dtype) if dtype != np.uint8 else (
        rng.integers(0, 3, size=(5, 6, 7)).astype(np.uint8)
    )
    affine = np.array(
        [[0.7, 0, 0, -10.5], [0, 0.8, 0, 20.25], [0, 0, 2.5, -3.0], [0, 0, 0, 1]]
    )
    out = save_nifti(array, affine, tmp_path / "sub" / "dir" / f"img{suffix}")
    assert out.is_file()
    vol = load_nifti(out)
    assert vol.array.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(vol.array, array)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    assert vol.spacing == pytest.approx((0.7, 0.8, 2.5), abs=1e-6)
    hdr = nib.load(out).header
    assert int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 1
    assert _leftovers(out.parent) == []


def test_gz_suffix_is_really_gzip(tmp_path):
    out = save_nifti(np.zeros((2, 2, 2), np.int16), np.eye(4), tmp_path / "a.nii.gz")
    assert out.read_bytes()[:2] == b"\x1f\x8b"


def test_lps_flipped_file_is_reoriented_to_ras(tmp_path):
    # Stored LPS (x and y flipped) with anisotropic voxels; voxel value encodes its RAS position.
    nx, ny, nz = 4, 5, 3
    sx, sy, sz = 0.8, 0.6, 2.5
    ras = np.arange(nx * ny * nz, dtype=np.int16).reshape(nx, ny, nz)
    stored = ras[::-1, ::-1, :].copy()
    lps_affine = np.array(
        [[-sx, 0, 0, (nx - 1) * sx], [0, -sy, 0, (ny - 1) * sy], [0, 0, sz, 0], [0, 0, 0, 1]]
    )
    path = _write_raw(stored, lps_affine, tmp_path / "lps.nii.gz")
    assert nib.aff2axcodes(nib.load(path).affine) == ("L", "P", "S")

    vol = load_nifti(path)
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
    np.testing.assert_array_equal(vol.array, ras)
    assert vol.spacing == pytest.approx((sx, sy, sz), abs=1e-6)
    # The same voxel sits at the same world position in both orientations.
    np.testing.assert_allclose(vol.affine @ [1, 2, 1, 1], lps_affine @ [nx - 2, ny - 3, 1, 1])


def test_permuted_axes_are_reoriented_with_their_spacing(tmp_path):
    # Stored (Z, X, Y): the axial axis first, as some exporters write.
    ras = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    stored = np.transpose(ras, (2, 0, 1)).copy()
    affine = np.array([[0, 0.7, 0, 0], [0, 0, 0.9, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
    vol = load_nifti(_write_raw(stored, affine, tmp_path / "zxy.nii"))
    np.testing.assert_array_equal(vol.array, ras)
    assert vol.spacing == pytest.approx((0.7, 0.9, 3.0), abs=1e-6)


def test_4d_with_singleton_axis_is_squeezed(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1)
    vol = load_nifti(_write_raw(data, np.eye(4), tmp_path / "four.nii.gz"))
    assert vol.array.shape == (2, 3, 4)


def test_scaled_file_gives_float(tmp_path):
    img = nib.Nifti1Image(np.arange(8, dtype=np.int16).reshape(2, 2, 2), np.eye(4))
    img.header.set_slope_inter(2.0, -1.0)
    nib.save(img, tmp_path / "scaled.nii")
    vol = load_nifti(tmp_path / "scaled.nii")
    assert vol.array.dtype.kind == "f"
    np.testing.assert_allclose(vol.array.ravel(), np.arange(8) * 2.0 - 1.0)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_nifti(tmp_path / "absent.nii.gz")


def test_not_nifti(tmp_path):
    path = tmp_path / "notes.nii.gz"
    path.write_text("this is not an image")
    with pytest.raises(ValueError, match="NIfTI"):
        load_nifti(path)


def test_2d_image_is_refused(tmp_path):
    path = _write_raw(np.zeros((8, 9), np.int16), np.eye(4), tmp_path / "flat.nii.gz")
    with pytest.raises(ValueError, match="3-D"):
        load_nifti(path)


def test_4d_with_several_volumes_is_refused(tmp_path):
    path = _write_raw(np.zeros((3, 3, 3, 2), np.int16), np.eye(4), tmp_path / "time.nii.gz")
    with pytest.raises(ValueError, match=r"3-D.*\(3, 3, 3, 2\)"):
        load_nifti(path)


def test_zero_spacing_is_refused(tmp_path):
    # nibabel refuses to build such an image from an affine, so set the sform in the header.
    header = nib.Nifti1Header()
    header.set_sform(np.diag([1.0, 0.0, 2.0, 1.0]), code=1)
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), np.int16), None, header), tmp_path / "z.nii")
    with pytest.raises(ValueError, match="spacing must be positive"):
        load_nifti(tmp_path / "z.nii")


def test_check_same_space_accepts_matching(tmp_path):
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    a = load_nifti(_write_raw(np.zeros((4, 5, 6), np.int16), affine, tmp_path / "a.nii"))
    b = load_nifti(_write_raw(np.zeros((4, 5, 6), np.uint8), affine, tmp_path / "b.nii"))
    check_same_space(a, b)


def test_check_same_space_shape_mismatch(tmp_path):
    a = load_nifti(_write_raw(np.zeros((4, 5, 6), np.int16), np.eye(4), tmp_path / "a.nii"))
    b = load_nifti(_write_raw(np.zeros((4, 5, 7), np.uint8), np.eye(4), tmp_path / "b.nii"))
    with pytest.raises(ValueError, match=r"shape mismatch.*\(4, 5, 6\).*\(4, 5, 7\)"):
        check_same_space(a, b)


def test_check_same_space_inconsistent_affines(tmp_path):
    a = load_nifti(_write_raw(np.zeros((4, 5, 6), np.int16), np.eye(4), tmp_path / "a.nii"))
    shifted = np.eye(4)
    shifted[:3, 3] = [0.0, 0.5, 0.0]
    b = load_nifti(_write_raw(np.zeros((4, 5, 6), np.uint8), shifted, tmp_path / "b.nii"))
    with pytest.raises(ValueError, match=r"inconsistent affines.*0\.5 mm"):
        check_same_space(a, b)
    check_same_space(a, b, atol_mm=0.6)


def test_check_same_space_spacing_difference_measured_at_far_corner(tmp_path):
    a = load_nifti(_write_raw(np.zeros((11, 2, 2), np.int16), np.eye(4), tmp_path / "a.nii"))
    b = load_nifti(
        _write_raw(np.zeros((11, 2, 2), np.uint8), np.diag([1.1, 1, 1, 1]), tmp_path / "b.nii")
    )
    # Voxel 10 along x: 10 mm vs 11 mm.
    with pytest.raises(ValueError, match=r"up to 1 mm apart"):
        check_same_space(a, b)


def test_lps_and_ras_copies_of_one_grid_are_the_same_space(tmp_path):
    ras_affine = np.diag([0.8, 0.6, 2.5, 1.0])
    data = np.zeros((4, 5, 3), np.int16)
    a = load_nifti(_write_raw(data, ras_affine, tmp_path / "ras.nii"))
    flip = ras_affine.copy()
    flip[0, 0], flip[0, 3] = -0.8, 3 * 0.8  # same grid, x stored the other way round
    b = load_nifti(_write_raw(data[::-1].copy(), flip, tmp_path / "las.nii"))
    check_same_space(a, b)


def test_save_unsupported_dtype_leaves_existing_file_intact(tmp_path):
    target = save_nifti(np.ones((2, 2, 2), np.int16), np.eye(4), tmp_path / "keep.nii.gz")
    before = target.read_bytes()
    with pytest.raises(TypeError, match="float16"):
        save_nifti(np.ones((2, 2, 2), np.float16), np.eye(4), target)
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_save_failure_mid_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = save_nifti(np.ones((2, 2, 2), np.int16), np.eye(4), tmp_path / "keep.nii.gz")
    before = target.read_bytes()

    def half_write_then_fail(img, filename):
        Path(filename).write_bytes(b"\x1f\x8b partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(sio.nib, "save", half_write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_nifti(np.zeros((2, 2, 2), np.int16), np.eye(4), target)
    with pytest.raises(OSError, match="disk full"):
        save_nifti(np.zeros((2, 2, 2), np.int16), np.eye(4), tmp_path / "new.nii.gz")
    assert target.read_bytes() == before
    assert not (tmp_path / "new.nii.gz").exists()
    assert _leftovers(tmp_path) == []


def test_save_refuses_non_nifti_name(tmp_path):
    with pytest.raises(ValueError, match="not a NIfTI file name"):
        save_nifti(np.zeros((2, 2, 2), np.int16), np.eye(4), tmp_path / "img.mha")


def test_write_json_atomic(tmp_path):
    path = write_json_atomic(
        {"n": np.int64(3), "x": np.float32(1.5), "v": np.arange(3), "p": tmp_path},
        tmp_path / "deep" / "out.json",
    )
    text = path.read_text()
    assert json.loads(text) == {"n": 3, "x": 1.5, "v": [0, 1, 2], "p": str(tmp_path)}
    assert '\n  "n": 3' in text  # indent 2
    assert _leftovers(path.parent) == []


def test_write_json_atomic_failure_keeps_old_file(tmp_path):
    path = write_json_atomic({"ok": True}, tmp_path / "out.json")
    with pytest.raises(ValueError):
        write_json_atomic({"bad": float("nan")}, path)  # strict JSON has no NaN
    with pytest.raises(TypeError):
        write_json_atomic({"bad": object()}, path)
    assert json.loads(path.read_text()) == {"ok": True}
    assert _leftovers(tmp_path) == []


@needs_data
@pytest.mark.parametrize(
    ("image", "mask", "spacing", "shape"),
    [
        ("totalseg_example/ct.nii.gz", "totalseg_example/liver.nii.gz", 3.0, (122, 101, 112)),
        ("lits117/volume-117.nii.gz", "lits117/segmentation-117.nii.gz", 1.4, (128, 128, 128)),
    ],
)
def test_real_cases_load(image, mask, spacing, shape):
    ct = load_nifti(DATA / image)
    seg = load_nifti(DATA / mask)
    assert ct.array.shape == shape
    assert ct.array.dtype == np.int16
    assert seg.array.dtype == np.uint8
    assert ct.spacing == pytest.approx((spacing,) * 3, abs=1e-5)
    assert nib.aff2axcodes(ct.affine) == ("R", "A", "S")
    check_same_space(ct, seg)
    assert set(np.unique(seg.array)) <= {0, 1, 2}
    # HU, not raw scanner values: air near -1000, liver parenchyma tens of HU.
    assert -2100 <= ct.array.min() <= -900
    assert 0 < np.median(ct.array[seg.array == 1]) < 200
