"""Copy-paste synthesis: the lesion bank (build, statistics, atomic writes, load errors) and the
insertion of banked real lesions into LiTS-117 and into the healthy 3 mm TotalSegmentator liver."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from scipy import ndimage

from synth import insert_tumor, prepare_host
from synth.cases import Case
from synth.components import equivalent_diameter_mm, lesion_components
from synth.copy_paste import INDEX_NAME, LesionBank, build_bank
from synth.copy_paste import bank as bank_module
from synth.heuristic.size import SIZE_CLASSES
from synth.labels import Label

MIN_DIAMETER_MM = 3.0
# Measured contrast errors (docs/copy_paste.md): median within 1 HU, at most 2 HU on the 1.4 mm
# grid; a lesion of a few voxels adds the noise of its mean (3 standard errors here).
CONTRAST_BIAS_HU = 4.0


def _case(real) -> Case:
    return Case("lits117", np.asarray(real.volume), np.asarray(real.label), real.spacing, real.volume_image.affine)


@pytest.fixture(scope="module")
def bank_dir(lits117, tmp_path_factory):
    return build_bank([_case(lits117)], tmp_path_factory.mktemp("bank") / "lits117")


@pytest.fixture(scope="module")
def bank(bank_dir):
    return LesionBank.load(bank_dir)


def _expected_lesions(label, spacing):
    """Components of label 2 of at least 3 mm that do not touch the scan's border."""
    parts, count = lesion_components(label == Label.TUMOR)
    sizes = np.bincount(parts.ravel())
    kept = []
    for index, box in enumerate(ndimage.find_objects(parts), start=1):
        touches = any(b.start == 0 or b.stop == n for b, n in zip(box, label.shape))
        if not touches and equivalent_diameter_mm(sizes[index] * np.prod(spacing)) >= MIN_DIAMETER_MM:
            kept.append(index)
    return kept


# --- building ---------------------------------------------------------------------------------


def test_bank_holds_every_real_lesion_with_its_statistics(lits117, bank_dir, bank):
    index = json.loads((bank_dir / INDEX_NAME).read_text())
    expected = _expected_lesions(np.asarray(lits117.label), lits117.spacing)
    assert len(bank) == len(index["lesions"]) == len(expected) > 40
    assert sorted(p.name for p in bank_dir.iterdir()) == sorted([INDEX_NAME] + [f for e in index["lesions"]
                                                                               for f in e["files"]])
    volume, label = np.asarray(lits117.volume), np.asarray(lits117.label)
    for entry, lesion in zip(index["lesions"], bank.lesions):
        box = tuple(slice(a, b) for a, b in entry["crop_box"])
        # The crop is the scan's own HU, and the lesion one tumour component of it.
        np.testing.assert_array_equal(lesion.volume, volume[box].astype(np.float32))
        assert (label[box][lesion.lesion] == Label.TUMOR).all()
        np.testing.assert_array_equal(lesion.liver, label[box] == Label.LIVER)
        count = int(lesion.lesion.sum())
        assert entry["voxel_count"] == count
        assert entry["diameter_mm"] == pytest.approx(equivalent_diameter_mm(count * np.prod(lits117.spacing)), abs=1e-3)
        low, high = SIZE_CLASSES[entry["size_class"]]
        assert entry["size_class"] == "tiny" or low <= entry["diameter_mm"] < high
        assert entry["liver_hu"] == pytest.approx(np.median(lesion.volume[lesion.liver]), abs=0.01)
        assert entry["lesion_mean_hu"] == pytest.approx(lesion.volume[lesion.lesion].mean(), abs=0.01)
        assert entry["contrast_hu"] == pytest.approx(entry["lesion_mean_hu"] - entry["liver_hu"], abs=0.02)
        centroid = (np.argwhere(lesion.lesion).mean(axis=0) + [b.start for b in box]) * np.asarray(lits117.spacing)
        np.testing.assert_allclose(entry["centroid_mm"], centroid, atol=1e-3)
    # Real LiTS-117 tumours are hypodense in portal-venous CT.
    assert np.median([e["contrast_hu"] for e in index["lesions"]]) < -20


def test_nifti_bank_holds_the_same_lesions(lits117, bank, tmp_path):
    small = Case("lits117", np.asarray(lits117.volume)[:, :, 40:80], np.asarray(lits117.label)[:, :, 40:80],
                 lits117.spacing, np.eye(4))
    npz = LesionBank.load(build_bank([small], tmp_path / "npz"))
    nifti = LesionBank.load(build_bank([small], tmp_path / "nifti", file_format="nifti"))
    assert len(npz) == len(nifti) > 5
    for a, b in zip(npz.lesions, nifti.lesions):
        np.testing.assert_array_equal(a.volume, b.volume)
        np.testing.assert_array_equal(a.lesion, b.lesion)
        np.testing.assert_array_equal(a.liver, b.liver)
        np.testing.assert_allclose(a.spacing, b.spacing, rtol=1e-6)


def test_build_is_atomic(lits117, tmp_path, monkeypatch):
    out = tmp_path / "bank"
    written = []

    def failing(folder, payload, file_format):
        if len(written) == 3:
            raise OSError("disk full")
        written.append(payload["id"])
        return real_write(folder, payload, file_format)

    real_write = bank_module._write_lesion
    monkeypatch.setattr(bank_module, "_write_lesion", failing)
    with pytest.raises(OSError, match="disk full"):
        build_bank([_case(lits117)], out)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no bank, no temporary folder left


def test_build_refuses_a_folder_that_holds_files(lits117, tmp_path):
    out = tmp_path / "bank"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="already exists and is not an empty folder"):
        build_bank([_case(lits117)], out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_data_without_tumours_is_an_error_naming_the_cases(totalseg_example, tmp_path):
    healthy = [Case(f"healthy-{i}", np.asarray(totalseg_example.volume), np.asarray(totalseg_example.label),
                    totalseg_example.spacing, np.eye(4)) for i in range(2)]
    with pytest.raises(ValueError, match=r"no tumour \(label 2\) in any case: healthy-0, healthy-1"):
        build_bank(healthy, tmp_path / "bank")
    assert not (tmp_path / "bank").exists()


def test_labels_other_than_0_1_2_are_an_error_naming_the_values(lits117, tmp_path):
    label = np.asarray(lits117.label).copy()
    label[0, 0, 0] = 7
    case = Case("odd", np.asarray(lits117.volume), label, lits117.spacing, np.eye(4))
    message = r"case 'odd' label map has label values outside \{0, 1, 2\}: found 0, 1, 2, 7"
    with pytest.raises(ValueError, match=message):
        build_bank([case], tmp_path / "bank")


# --- loading ----------------------------------------------------------------------------------


@pytest.fixture()
def bank_copy(bank_dir, tmp_path):
    import shutil

    return shutil.copytree(bank_dir, tmp_path / "copy")


def test_an_empty_folder_is_not_a_bank(tmp_path):
    with pytest.raises(ValueError, match=f"lesion bank {tmp_path} is empty: it is not a lesion bank"):
        LesionBank.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        LesionBank.load(tmp_path / "absent")


def test_a_missing_index_is_named(bank_copy):
    (bank_copy / INDEX_NAME).unlink()
    with pytest.raises(ValueError, match=f"holds no {INDEX_NAME}"):
        LesionBank.load(bank_copy)


def test_a_broken_index_is_named(bank_copy):
    (bank_copy / INDEX_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=f"{INDEX_NAME}: not a valid bank index"):
        LesionBank.load(bank_copy)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_a_damaged_lesion_file_is_named(bank_copy, damage):
    index = json.loads((bank_copy / INDEX_NAME).read_text())
    victim = bank_copy / index["lesions"][7]["files"][0]
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        victim.write_bytes(os.urandom(len(data)))
    else:
        victim.unlink()
    with pytest.raises(ValueError, match=victim.name):
        LesionBank.load(bank_copy)


# --- insertion --------------------------------------------------------------------------------


def _check_insertion(case, bank, size, seed):
    volume, label = np.asarray(case.volume), np.asarray(case.label)
    before = (volume.copy(), label.copy())
    ct, out = insert_tumor(volume, label, spacing=case.spacing, size=size, count=1, seed=seed,
                           method="copy-paste", bank=bank)
    host = prepare_host(volume, label, spacing=case.spacing)
    result = host.insert(size=size, count=1, seed=seed, method="copy-paste", bank=bank)
    # Reproducible with a seed, through insert_tumor and HostScan.insert alike; inputs unchanged.
    np.testing.assert_array_equal(ct, result.volume)
    np.testing.assert_array_equal(out, result.label)
    np.testing.assert_array_equal(volume, before[0])
    np.testing.assert_array_equal(label, before[1])
    record = result.lesions[0]
    new = (out == Label.TUMOR) & (label != Label.TUMOR)
    # New tumour voxels only inside the former tumour-free liver, exactly the recorded lesion.
    assert new.any() and (label[new] == Label.LIVER).all()
    assert int(new.sum()) == record.voxel_count
    assert (out[label == Label.BACKGROUND] == Label.BACKGROUND).all()
    low, high = SIZE_CLASSES[size]
    assert low <= record.diameter_mm <= high
    assert record.phenotype == "copy-paste"
    donor = next(d for d in bank.lesions if d.lesion_id == record.donor)
    # The donor's contrast to its liver is kept, now relative to the host's liver.
    contrast = float(ct[new].astype(np.float64).mean()) - host.stats.median_hu
    tolerance = CONTRAST_BIAS_HU + 3.0 * host.stats.noise_hu / np.sqrt(record.voxel_count)
    assert contrast == pytest.approx(donor.contrast_hu, abs=tolerance)
    # Outside the lesion's change box nothing moved.
    outside = np.ones(ct.shape, bool)
    outside[tuple(slice(a, b) for a, b in record.bbox)] = False
    np.testing.assert_array_equal(ct[outside], volume[outside])
    return record


@pytest.mark.parametrize("size, seed", [("small", 0), ("medium", 1), ("medium", 2)])
def test_insertion_into_lits117(lits117, bank, size, seed):
    _check_insertion(lits117, bank, size, seed)


def test_pasted_noise_matches_the_host(totalseg_example, bank):
    """The donor's noise is neither halved by interpolation nor added to the host's: inside a large
    pasted lesion the voxel-to-voxel noise is the host liver's (measured the same way)."""
    from synth.copy_paste.bank import noise_hu_of

    volume, label = np.asarray(totalseg_example.volume), np.asarray(totalseg_example.label)
    host = prepare_host(volume, label, spacing=totalseg_example.spacing)
    levels = []
    for seed in range(3):
        result = host.insert(size=(25.0, 35.0), count=1, seed=seed, method="copy-paste", bank=bank)
        core = ndimage.binary_erosion(result.label == Label.TUMOR)
        levels.append(noise_hu_of(result.volume, core))
    assert np.median(levels) == pytest.approx(host.stats.noise_hu, rel=0.25)


@pytest.mark.parametrize("size, seed", [("small", 3), ("medium", 4), ("large", 5)])
def test_insertion_into_the_healthy_3mm_liver(totalseg_example, bank_dir, size, seed):
    _check_insertion(totalseg_example, LesionBank.load(bank_dir), size, seed)


def test_donor_size_is_matched_and_rescaled_within_limits(bank):
    from synth.copy_paste import MAX_SCALE

    rng = np.random.default_rng(0)
    for diameter in (6.0, 12.0, 30.0):
        donor = bank.donor_for(diameter, rng, max_scale=MAX_SCALE)
        assert 1 / MAX_SCALE <= diameter / donor.diameter_mm <= MAX_SCALE
    # Within the factor, donors of the requested class come first: a 9.5 mm small lesion from a
    # small donor, though medium donors of 10-14 mm are as near.
    small = [bank.donor_for(9.5, rng, max_scale=MAX_SCALE, size_range=(5.0, 10.0)) for _ in range(20)]
    assert all(5.0 <= donor.diameter_mm <= 10.0 for donor in small)
    assert any(10.0 < d <= 9.5 * MAX_SCALE for d in bank.diameters_mm)
    # Beyond the bank's largest lesion the nearest donor (the largest) is scaled up.
    assert bank.donor_for(80.0, rng, max_scale=MAX_SCALE).diameter_mm == bank.diameters_mm.max()


def test_a_path_and_a_loaded_bank_give_the_same_lesions(lits117, bank_dir, bank):
    case = dict(spacing=lits117.spacing, size="small", count=2, seed=11, method="copy-paste")
    by_path = insert_tumor(np.asarray(lits117.volume), np.asarray(lits117.label), bank=str(bank_dir), **case)
    loaded = insert_tumor(np.asarray(lits117.volume), np.asarray(lits117.label), bank=bank, **case)
    for a, b in zip(by_path, loaded):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("options, message", [
    (dict(method="copy-paste"), "needs bank="),
    (dict(bank="somewhere"), "bank only applies to method='copy-paste'"),
    (dict(method="copy-paste", bank="nowhere", model="m"), "only apply to method='diffusion'"),
    (dict(method="copy-paste", bank="/nonexistent/bank"), "no such folder"),
])
def test_bad_copy_paste_options_are_named(host, options, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        insert_tumor(host.volume, host.label, spacing=host.spacing, seed=0, **options)


def test_cli_builds_a_bank_and_inserts_from_it(shared_data, tmp_path, capsys):
    from tumorsynth.cli import main

    bank_dir = tmp_path / "bank"
    assert main(["bank", "build", "--data", str(shared_data / "lits117"), "--out", str(bank_dir)]) == 0
    assert "lesion bank" in capsys.readouterr().out
    assert main(["bank", "build", "--data", str(shared_data / "lits117"), "--out", str(bank_dir)]) == 2
    assert "already exists" in capsys.readouterr().err
    ts = shared_data / "totalseg_example"
    out = tmp_path / "inserted"
    assert main(["insert", "--image", str(ts / "ct.nii.gz"), "--mask", str(ts / "liver.nii.gz"), "--out", str(out),
                 "--method", "copy-paste", "--bank", str(bank_dir), "--size", "medium", "--count", "2",
                 "--seed", "0"]) == 0
    report = json.loads((out / "lesions.json").read_text())
    assert report["method"] == "copy-paste" and len(report["lesions"]) == 2
    assert all(lesion["phenotype"] == "copy-paste" and lesion["donor"].startswith("volume-117-lesion")
               for lesion in report["lesions"])
    assert main(["insert", "--image", str(ts / "ct.nii.gz"), "--mask", str(ts / "liver.nii.gz"),
                 "--out", str(tmp_path / "x"), "--method", "copy-paste"]) == 2
    assert "needs --bank" in capsys.readouterr().err


def test_synthesize_builds_a_copy_paste_data_set(shared_data, bank_dir, tmp_path, capsys):
    from tumorsynth.cli import main

    out = tmp_path / "variants"
    assert main(["synthesize", "--data", str(shared_data / "lits117"), "--out", str(out), "--variants", "2",
                 "--workers", "1", "--engine", "processes", "--method", "copy-paste", "--bank", str(bank_dir),
                 "--size", "small", "--count", "1", "--seed", "0"]) == 0
    reports = sorted(out.glob("*/variant-*/lesions.json"))
    assert len(reports) == 2
    donors = [json.loads(path.read_text())["lesions"][0]["donor"] for path in reports]
    assert all(donor.startswith("lits117-lesion") for donor in donors)  # the bank's ids
    capsys.readouterr()
