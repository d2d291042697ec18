"""The examples on real data: the insert example on LiTS-117 reports a size class that finds no room
instead of crashing, and the TorchIO and MONAI examples pick LiTS-117 from the user cache (where
``tumorsynth data fetch lits117`` puts it), else ../shared/data, else the phantom, and say which."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train.data import cached_lits117, fetch_lits117

ROOT = Path(__file__).resolve().parents[1]
LITS_FILES = ("volume-117.nii.gz", "segmentation-117.nii.gz")


def _fake_fetched_sample(cache: Path, lits117_folder: Path) -> Path:
    """``cache/lits117`` in the layout fetch_lits117 leaves: the two NIfTI files (symlinks to the
    real ones) and README.txt."""
    folder = cache / "lits117"
    folder.mkdir(parents=True)
    for name in LITS_FILES:
        (folder / name).symlink_to(lits117_folder / name)
    (folder / "README.txt").write_text("LiTS case 117, a small real sample for tumorsynth\n")
    return folder


# --- insert_into_nifti on LiTS-117 -----------------------------------------------------------


def test_insert_example_on_lits117_reports_the_class_that_does_not_fit_and_writes_the_others(
        shared_data, tmp_path):
    lits = shared_data / "lits117"
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "insert_into_nifti.py"), "--image", str(lits / LITS_FILES[0]),
         "--mask", str(lits / LITS_FILES[1]), "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    assert "Traceback" not in done.stderr, done.stderr
    # LiTS-117's liver holds ~70 tumours: a 20-50 mm lesion finds no room beside them.
    assert done.returncode == 1, done.stdout + done.stderr
    large = [line for line in done.stdout.splitlines() if line.startswith("large")]
    assert len(large) == 1 and "not placed" in large[0] and "could not place" in large[0]
    assert "3 of 4 size classes written" in done.stdout and "not placed: large" in done.stdout
    for size in ("tiny", "small", "medium"):
        assert all((out / size / name).is_file() for name in ("ct.nii.gz", "label.nii.gz", "lesions.json",
                                                              "preview.png"))
    assert not (out / "large").exists()


def test_insert_example_summary_names_the_unplaced_class(tmp_path, load_example, monkeypatch):
    """In process, on the quick phantom: a class whose insertion fails maps to its reason."""
    import synth

    example = load_example("insert_into_nifti")
    real_insert = synth.HostScan.insert

    def insert(self, **options):
        if options["size"] == "medium":
            raise synth.LesionPlacementError("no room for a medium lesion (test)")
        return real_insert(self, **options)

    monkeypatch.setattr(synth.HostScan, "insert", insert)
    summary = example.main(["--out", str(tmp_path), "--quick"])
    assert summary["medium"] == "no room for a medium lesion (test)"
    assert isinstance(summary["small"], list) and (tmp_path / "small" / "ct.nii.gz").is_file()
    assert not (tmp_path / "medium").exists()


# --- cached_lits117 ----------------------------------------------------------------------------


def test_cached_lits117_finds_a_fetched_sample_and_never_downloads(shared_data, tmp_path, monkeypatch):
    from train.data import fetch

    def no_download(folder):
        raise AssertionError("cached_lits117 / a complete cache must not download")

    monkeypatch.setattr(fetch, "_download_wheel", no_download)
    monkeypatch.setenv("TUMORSYNTH_CACHE", str(tmp_path / "cache"))
    assert cached_lits117() is None
    assert cached_lits117(tmp_path / "elsewhere") is None
    assert not (tmp_path / "cache").exists()  # looking creates nothing

    folder = _fake_fetched_sample(tmp_path / "cache", shared_data / "lits117")
    assert cached_lits117() == folder
    assert cached_lits117(tmp_path / "cache") == folder
    assert fetch_lits117() == folder  # the same place fetch uses; found, so nothing downloaded

    (folder / "README.txt").unlink()  # an interrupted fetch is not a fetched sample
    assert cached_lits117() is None


# --- the TorchIO and MONAI examples' data ---------------------------------------------------


def _args(**overrides) -> argparse.Namespace:
    values = {"image": None, "label": None, "data": "lits117", "quick": True}
    return argparse.Namespace(**{**values, **overrides})


def _chosen(example_name: str, example, args, tmp_path) -> list[Path | None]:
    """The image files the example's data chooser picks (None: an image made in memory)."""
    if example_name == "torchio_pipeline":
        return [subject.ct.path and Path(subject.ct.path) for subject in example.load_subjects(args)]
    folder = tmp_path / "phantoms"
    folder.mkdir(exist_ok=True)
    return [Path(item["image"]) for item in example.data_dicts(args, folder)]


EXAMPLES = ["torchio_pipeline", pytest.param("monai_pipeline", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("monai") is None, reason="MONAI not installed"))]


@pytest.mark.parametrize("name", EXAMPLES)
def test_pipeline_example_uses_the_sample_fetched_into_the_user_cache(name, shared_data, tmp_path,
                                                                      monkeypatch, capsys, load_example):
    pytest.importorskip("torchio")
    cache = tmp_path / "cache"
    folder = _fake_fetched_sample(cache, shared_data / "lits117")
    monkeypatch.setenv("TUMORSYNTH_CACHE", str(cache))
    example = load_example(name)
    assert example.find_lits117() == folder  # before ../shared/data, which is present too

    images = _chosen(name, example, _args(quick=False), tmp_path)
    assert images == [folder / "volume-117.nii.gz"]
    out = capsys.readouterr().out
    assert f"data: LiTS-117 from {folder}" in out


@pytest.mark.parametrize("name", EXAMPLES)
def test_pipeline_example_falls_back_to_shared_data_then_the_phantom(name, shared_data, tmp_path,
                                                                     monkeypatch, capsys, load_example):
    pytest.importorskip("torchio")
    monkeypatch.setenv("TUMORSYNTH_CACHE", str(tmp_path / "empty-cache"))
    example = load_example(name)
    shared = shared_data / "lits117"
    assert example.SHARED_LITS117 == shared  # ../shared/data beside the project
    assert _chosen(name, example, _args(quick=False), tmp_path) == [shared / "volume-117.nii.gz"]
    assert f"data: LiTS-117 from {shared}" in capsys.readouterr().out

    monkeypatch.setattr(example, "SHARED_LITS117", tmp_path / "no-shared-data" / "lits117")
    assert example.find_lits117() is None
    images = _chosen(name, example, _args(), tmp_path)
    assert len(images) == 1 and "volume-117" not in str(images[0])
    out = capsys.readouterr().out
    assert "data: the phantom" in out and "tumorsynth data fetch lits117" in out

    # Asked for the phantom: the phantom, whatever data is at hand.
    _fake_fetched_sample(tmp_path / "cache", shared)
    monkeypatch.setenv("TUMORSYNTH_CACHE", str(tmp_path / "cache"))
    images = _chosen(name, example, _args(data="phantom"), tmp_path)
    assert "volume-117" not in str(images[0])
    assert capsys.readouterr().out.strip().endswith("data: the phantom")
