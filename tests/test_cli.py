"""Tests for the tumorsynth command line (insert, demo, synthesize) and the lesion preview."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from synth.cases import find_cases
from synth.dataset import variant_seed
from synth.io import load_nifti, save_nifti
from synth.options import parse_count, parse_size
from tumorsynth import cli

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
TOTALSEG = DATA / "totalseg_example"
LITS = DATA / "lits117"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real CT cases not found at {DATA} (../shared/data)"
)
# Small, quick insertions: the CLI is under test here, not the synthesiser.
QUICK = ["--size", "small", "--count", "2"]


def _read(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


# --- argument parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("tiny", "tiny"), ("MIX", "mix"), ("5,12", (5.0, 12.0)), (" 3.5, 3.5 ", (3.5, 3.5))],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["huge", "5", "5,", "a,b", "12,5", "0,5", "1,2,3", "nan,3"])
def test_parse_size_rejects(text):
    with pytest.raises(Exception, match="size"):
        parse_size(text)


@pytest.mark.parametrize(("text", "expected"), [("3", 3), ("0", 0), ("1,4", (1, 4))])
def test_parse_count(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize("text", ["-1", "4,1", "two", "1.5", "1,2,3"])
def test_parse_count_rejects(text):
    with pytest.raises(Exception, match="count"):
        parse_count(text)


def test_variant_seed_is_the_same_in_another_process():
    here = [variant_seed(7, "volume-12", k) for k in range(3)]
    assert len(set(here)) == 3 and all(0 <= s < 2**63 for s in here)
    code = (
        "from synth.dataset import variant_seed; "
        "print([variant_seed(7, 'volume-12', k) for k in range(3)])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}  # str hashes differ; the seeds must not
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == str(here)


# --- insert ----------------------------------------------------------------------------------


@needs_data
def test_insert_on_real_case_writes_four_files(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["insert", "--image", str(TOTALSEG / "ct.nii.gz"),
            "--mask", str(TOTALSEG / "liver.nii.gz")]
    assert cli.main([*argv, "--out", str(out), *QUICK, "--seed", "3"]) == 0
    for name in ("ct.nii.gz", "label.nii.gz", "lesions.json", "preview.png"):
        assert (out / name).is_file(), name
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left

    source = nib.load(TOTALSEG / "ct.nii.gz")
    ct_img, label_img = nib.load(out / "ct.nii.gz"), nib.load(out / "label.nii.gz")
    assert ct_img.get_data_dtype() == np.int16
    assert label_img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(ct_img.affine, source.affine, atol=1e-4)
    np.testing.assert_allclose(label_img.affine, source.affine, atol=1e-4)
    label = _read(out / "label.nii.gz")
    assert set(np.unique(label)) <= {0, 1, 2}

    report = json.loads((out / "lesions.json").read_text())
    assert report["seed"] == 3 and report["size"] == "small" and report["count"] == 2
    assert report["spacing_mm"] == pytest.approx([3.0, 3.0, 3.0])
    assert report["window_hu"] == [-60, 190]
    lesions = report["lesions"]
    assert len(lesions) == 2
    # The source liver has no tumour, so every tumour component is an inserted lesion.
    _, n_components = ndimage.label(label == 2)
    assert 1 <= n_components <= len(lesions)
    for lesion in lesions:
        box = tuple(slice(a, b) for a, b in lesion["bbox"])
        assert (label[box] == 2).any()
        expected = source.affine @ [*lesion["center_voxel"], 1]
        assert lesion["center_world_mm"] == pytest.approx(expected[:3].tolist(), abs=1e-3)
    # The image changed only where lesions were inserted.
    changed = _read(out / "ct.nii.gz") != np.asanyarray(source.dataobj)
    inside_boxes = np.zeros_like(changed)
    for lesion in lesions:
        inside_boxes[tuple(slice(a, b) for a, b in lesion["bbox"])] = True
    assert changed.any() and not (changed & ~inside_boxes).any()

    printed = capsys.readouterr().out
    assert printed.count("lesion ") >= 2 and "lesion 2:" in printed
    assert str(out / "lesions.json") in printed


@needs_data
def test_insert_same_seed_same_output(tmp_path):
    argv = ["insert", "--image", str(TOTALSEG / "ct.nii.gz"),
            "--mask", str(TOTALSEG / "liver.nii.gz")]
    for name in ("a", "b"):
        assert cli.main([*argv, "--out", str(tmp_path / name), *QUICK, "--seed", "11"]) == 0
    for name in ("ct.nii.gz", "label.nii.gz"):
        np.testing.assert_array_equal(_read(tmp_path / "a" / name), _read(tmp_path / "b" / name))


# --- bad input -------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize(
    ("extra", "mask", "message"),
    [
        ([], LITS / "segmentation-117.nii.gz", "shape mismatch"),
        ([], TOTALSEG / "absent.nii.gz", "no such file"),
        (["--size", "huge"], TOTALSEG / "liver.nii.gz", "--size"),
        (["--count", "many"], TOTALSEG / "liver.nii.gz", "--count"),
        (["--phenotype", "glowing"], TOTALSEG / "liver.nii.gz", "phenotype"),
    ],
)
def test_bad_input_exits_2_with_message(tmp_path, capsys, extra, mask, message):
    argv = ["insert", "--image", str(TOTALSEG / "ct.nii.gz"), "--mask", str(mask)]
    assert cli.main([*argv, "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o" / "lesions.json").exists()


@needs_data
def test_bad_input_exit_status_from_a_real_process(tmp_path):
    argv = [sys.executable, "-m", "tumorsynth", "insert", "--image", str(TOTALSEG / "ct.nii.gz"),
            "--mask", str(LITS / "segmentation-117.nii.gz"), "--out", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("tumorsynth: error: shape mismatch")
    assert "(122, 101, 112)" in done.stderr and "(128, 128, 128)" in done.stderr


def test_not_nifti_mask_exits_2(tmp_path, capsys):
    image = save_nifti(np.zeros((8, 8, 8), np.int16), np.eye(4), tmp_path / "ct.nii.gz")
    bogus = tmp_path / "mask.nii.gz"
    bogus.write_text("not an image")
    assert cli.main(["insert", "--image", str(image), "--mask", str(bogus), "--out",
                     str(tmp_path / "o")]) == 2
    assert "NIfTI" in capsys.readouterr().err


# --- demo ------------------------------------------------------------------------------------


def test_demo_runs_the_insert_path(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--size", "small"]) == 0
    for name in ("phantom_ct.nii.gz", "phantom_liver.nii.gz", "ct.nii.gz", "label.nii.gz",
                 "lesions.json", "preview.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "lesions.json").read_text())
    assert len(report["lesions"]) == 3 and report["count"] == 3 and report["seed"] == 0
    assert report["image"] == str((out / "phantom_ct.nii.gz").resolve())
    assert nib.load(out / "ct.nii.gz").get_data_dtype() == nib.load(
        out / "phantom_ct.nii.gz").get_data_dtype()
    assert set(np.unique(_read(out / "label.nii.gz"))) <= {0, 1, 2}
    assert str(out / "preview.png") in capsys.readouterr().out


# --- synthesize ------------------------------------------------------------------------------


def _lits_folder(root: Path) -> Path:
    """Two small LiTS-named cases cut from the real LiTS case (48^3 voxels each)."""
    ct, seg = load_nifti(LITS / "volume-117.nii.gz"), load_nifti(LITS / "segmentation-117.nii.gz")
    for number, start in ((3, (20, 30, 40)), (12, (60, 50, 40))):
        box = tuple(slice(s, s + 48) for s in start)
        affine = ct.affine.copy()
        affine[:3, 3] += affine[:3, :3] @ np.array(start, dtype=float)  # same world position
        save_nifti(ct.array[box], affine, root / f"volume-{number}.nii.gz")
        suffix = ".nii" if number == 12 else ".nii.gz"  # both extensions occur in LiTS copies
        save_nifti(seg.array[box], affine, root / f"segmentation-{number}{suffix}")
    return root


def _synthesize(data: Path, out: Path, workers: int, *extra: str) -> int:
    argv = ["synthesize", "--data", str(data), "--out", str(out), "--variants", "2",
            "--workers", str(workers), "--size", "small", "--count", "1,2", "--seed", "5"]
    return cli.main([*argv, *extra])


def _variant_files(out: Path) -> list[Path]:
    return sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())


@needs_data
def test_synthesize_parallel_resume_and_reproducible(tmp_path, capsys):
    data = _lits_folder(tmp_path / "lits")
    out = tmp_path / "out"
    assert _synthesize(data, out, 2) == 0
    expected = {Path("manifest.csv")} | {
        Path(case) / f"variant-{k}" / name
        for case in ("volume-3", "volume-12") for k in (0, 1)
        for name in ("ct.nii.gz", "label.nii.gz", "lesions.json")
    }
    assert set(_variant_files(out)) == expected  # nothing else, no temporaries

    with open(out / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["source_case"], r["variant"]) for r in rows] == [
        ("volume-3", "0"), ("volume-3", "1"), ("volume-12", "0"), ("volume-12", "1")]
    for row in rows:
        report = json.loads((out / row["image"]).with_name("lesions.json").read_text())
        assert int(row["n_lesions"]) == len(report["lesions"]) and 1 <= len(report["lesions"]) <= 2
        assert row["case_id"] == f"{row['source_case']}-variant-{row['variant']}"
        assert report["case"] == row["source_case"] and report["variant"] == int(row["variant"])
        assert report["seed"] == variant_seed(5, row["source_case"], int(row["variant"]))
        label = _read(out / row["label"])
        assert label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1, 2}
        assert _read(out / row["image"]).dtype == np.int16
    seeds = {json.loads((out / r["image"]).with_name("lesions.json").read_text())["seed"]
             for r in rows}
    assert len(seeds) == 4
    capsys.readouterr()

    # Resume: complete variants are left alone; an unfinished one (no lesions.json, a temporary
    # file from a killed run) is redone, with the same result.
    unfinished = out / "volume-12" / "variant-1"
    before = _read(unfinished / "ct.nii.gz")
    (unfinished / "lesions.json").unlink()
    (unfinished / ".label.nii.gz.0123abcd.tmp.nii.gz").write_bytes(b"partial")
    stamps = {p: (out / p).stat().st_mtime_ns for p in _variant_files(out)
              if p.suffix != ".csv" and p.parent != unfinished.relative_to(out)}
    assert _synthesize(data, out, 2) == 0
    assert "1 variant(s) written, 3 skipped" in capsys.readouterr().out
    assert stamps == {p: (out / p).stat().st_mtime_ns for p in stamps}
    assert set(_variant_files(out)) == expected
    np.testing.assert_array_equal(_read(unfinished / "ct.nii.gz"), before)
    assert _synthesize(data, out, 2) == 0
    assert "0 variant(s) written, 4 skipped" in capsys.readouterr().out

    # Same seed, in-process instead of two worker processes: identical outputs.
    again = tmp_path / "again"
    assert _synthesize(data, again, 1) == 0
    for row in rows:
        for key in ("image", "label"):
            np.testing.assert_array_equal(_read(out / row[key]), _read(again / row[key]))
        lesions = [json.loads((d / row["image"]).with_name("lesions.json").read_text())["lesions"]
                   for d in (out, again)]
        assert lesions[0] == lesions[1]


@needs_data
def test_synthesize_reports_failed_case_and_continues(tmp_path, capsys):
    data = _lits_folder(tmp_path / "lits")
    # A third case whose mask does not match its image.
    save_nifti(np.zeros((10, 10, 10), np.int16), np.eye(4), data / "volume-7.nii.gz")
    save_nifti(np.ones((10, 10, 9), np.uint8), np.eye(4), data / "segmentation-7.nii.gz")
    out = tmp_path / "out"
    assert _synthesize(data, out, 1) == 1
    captured = capsys.readouterr()
    assert "case volume-7 failed" in captured.err and "shape mismatch" in captured.err
    assert "4 variant(s) written, 0 skipped (already complete), 2 failed" in captured.out
    assert not (out / "volume-7" / "variant-0" / "lesions.json").exists()
    with open(out / "manifest.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 4


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_discover_msd_layout(tmp_path):
    _touch(*(tmp_path / d / n for d in ("imagesTr", "labelsTr")
             for n in ("liver_10.nii.gz", "liver_2.nii.gz")),
           tmp_path / "imagesTr" / "._liver_2.nii.gz", tmp_path / "imagesTr" / "liver_5.nii.gz")
    with pytest.raises(ValueError, match=r"incomplete MSD pairs: images without a file in labelsTr/: liver_5"):
        find_cases(tmp_path)
    (tmp_path / "imagesTr" / "liver_5.nii.gz").unlink()
    cases = find_cases(tmp_path)
    assert [c.case_id for c in cases] == ["liver_2", "liver_10"]
    assert cases[0].image == tmp_path / "imagesTr" / "liver_2.nii.gz"
    assert cases[0].label == tmp_path / "labelsTr" / "liver_2.nii.gz"


def test_discover_images_masks_layout(tmp_path):
    _touch(tmp_path / "images" / "a.nii", tmp_path / "masks" / "a.nii")
    assert [(c.case_id, c.label.name) for c in find_cases(tmp_path)] == [("a", "a.nii")]


def test_discover_lits_in_batch_folders(tmp_path):
    _touch(tmp_path / "Training Batch 1" / "volume-0.nii",
           tmp_path / "Training Batch 1" / "segmentation-0.nii",
           tmp_path / "Training Batch 2" / "volume-100.nii.gz",
           tmp_path / "Training Batch 2" / "segmentation-100.nii.gz",
           tmp_path / "Training Batch 2" / "volume-101.nii.gz")  # no segmentation: named
    with pytest.raises(ValueError, match="volume-N without segmentation-N: volume-101"):
        find_cases(tmp_path)
    (tmp_path / "Training Batch 2" / "volume-101.nii.gz").unlink()
    assert [c.case_id for c in find_cases(tmp_path)] == ["volume-0", "volume-100"]


def test_discover_nothing_is_a_clear_error(tmp_path, capsys):
    _touch(tmp_path / "scan.nii.gz")
    with pytest.raises(ValueError, match="no cases found.*LiTS.*imagesTr"):
        find_cases(tmp_path)
    assert cli.main(["synthesize", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                     "--variants", "1"]) == 2
    assert "no cases found" in capsys.readouterr().err


# --- preview ---------------------------------------------------------------------------------


def _fake_lesions(n: int, centre=(20, 20, 10)) -> list[SimpleNamespace]:
    return [SimpleNamespace(index=i + 1, center_voxel=centre, diameter_mm=6.0 + i,
                            phenotype="hypodense", size_class="small") for i in range(n)]


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_preview_caps_rows_and_writes_atomically(tmp_path, monkeypatch):
    from synth import preview

    monkeypatch.setattr(preview, "MAX_PREVIEW_ROWS", 2)  # the cap, without drawing 8 rows
    volume = np.full((40, 40, 20), 60, np.int16)
    label = np.zeros(volume.shape, np.uint8)
    label[5:35, 5:35, 2:18] = 1
    label[18:23, 18:23, 8:12] = 2
    spacing = (0.8, 0.8, 2.5)
    sizes = {}
    for n in (1, 2, 3):
        path = preview.save_lesion_preview(volume, label, _fake_lesions(n), spacing,
                                           tmp_path / f"{n}.png")
        assert path == tmp_path / f"{n}.png"
        sizes[n] = _png_size(path)
    assert sizes[2][1] > sizes[1][1] and sizes[3] == sizes[2]  # rows capped
    _png_size(preview.save_overview(volume, label, spacing, tmp_path / "overview.png"))
    _png_size(preview.save_lesion_preview(volume, label, [], spacing, tmp_path / "none.png"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert preview.window_caption((-60, 190)) == "window [-60, 190] HU (W 250 / L 65)"


def test_preview_refuses_mismatched_arrays(tmp_path):
    from synth.preview import save_lesion_preview

    with pytest.raises(ValueError, match="one shape"):
        save_lesion_preview(np.zeros((4, 4, 4)), np.zeros((4, 4, 5), np.uint8), _fake_lesions(1),
                            (1, 1, 1), tmp_path / "x.png")
    assert not list(tmp_path.iterdir())
