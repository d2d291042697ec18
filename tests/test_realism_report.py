"""synth.realism.report and ``tumorsynth realism`` on a small LiTS-117 run."""

from __future__ import annotations

import json

import pytest

from synth.cases import read_cases
from synth.realism.report import realism_report
from tumorsynth.cli import main as tumorsynth_main


def main(argv):
    return tumorsynth_main(["realism", *argv])


def test_report_writes_its_files(lits117, tmp_path):
    case = ("volume-117", lits117.volume, lits117.label, lits117.spacing)
    summary = realism_report([case], out_dir=tmp_path, seed=1, per_real=1, max_real_per_case=10, n_boot=200,
                             progress=False)
    for name in ("realism.json", "realism.md", "histograms.png", "gallery.png", "gallery_labelled.png", "roc.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    written = json.loads((tmp_path / "realism.json").read_text())
    assert written["counts"]["real"] == summary["counts"]["real"] == 10
    assert written["counts"]["synthetic"] + written["counts"]["insertions_failed"] == 10
    auc = written["classifier"]["all features"]["auc"]
    low, high = written["classifier"]["all features"]["ci95"]
    assert 0.0 <= low <= auc <= high <= 1.0
    assert written["classifier"]["all features"]["folds"] == "by spatial slab"
    assert "contrast_hu" in written["distances"]["all"]
    text = (tmp_path / "realism.md").read_text()
    assert "## Real-vs-synthetic classifier" in text and "![gallery](gallery.png)" in text


def test_cli_on_the_shared_data(shared_data, tmp_path, capsys):
    code = main(["--data", str(shared_data / "lits117"), "--out", str(tmp_path), "--seed", "2", "--per-real", "1",
                 "--max-real", "6", "--no-figures", "--quiet", "--synth-options", '{"phenotype": "hypodense"}'])
    assert code == 0
    assert "classifier AUC" in capsys.readouterr().out
    written = json.loads((tmp_path / "realism.json").read_text())
    assert written["settings"]["synth_options"] == {"phenotype": "hypodense"}
    assert set(written["synthetic_by_phenotype"]) == {"hypodense"}
    assert not list(tmp_path.glob("*.png"))


def test_cli_refuses_a_folder_without_cases(tmp_path, capsys):
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "no cases found" in capsys.readouterr().err
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "out"), "--synth-options", "[1]"]) == 2


def test_read_cases_reads_lits_pairs(shared_data):
    cases = read_cases(shared_data)
    assert [c.case_id for c in cases] == ["volume-117"]
    assert cases[0].image.shape == cases[0].label.shape and set(cases[0].label.ravel()) <= {0, 1, 2}
    with pytest.raises(ValueError, match="no cases found"):
        read_cases(shared_data / "totalseg_example")


def test_tumorsynth_realism_forwards_to_the_report(tmp_path, capsys):
    assert tumorsynth_main(["realism", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "realism" in capsys.readouterr().err
