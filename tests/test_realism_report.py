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
                             real_vs_real_repeats=1,
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
    assert "## Host: native" in text and "![gallery](gallery.png)" in text


def test_report_draws_a_gallery_per_host(lits117, tmp_path):
    case = ("volume-117", lits117.volume, lits117.label, lits117.spacing)
    summary = realism_report([case], out_dir=tmp_path, seed=1, per_real=1, max_real_per_case=8, n_boot=50,
                             real_vs_real_repeats=0, classifiers=("logistic",), thick_slice_mm=2.8,
                             progress=False)
    thick = [name for name in summary["hosts"] if name.startswith("thick")]
    assert thick, summary["hosts"].keys()
    assert summary["figures"][f"gallery {thick[0]}"] == "gallery_host1.png"
    assert (tmp_path / "gallery_host1.png").stat().st_size > 0


def test_cli_on_the_shared_data(shared_data, tmp_path, capsys):
    code = main(["--data", str(shared_data / "lits117"), "--out", str(tmp_path), "--seed", "2", "--per-real", "1",
                 "--max-real", "6", "--no-figures", "--quiet", "--classifier", "logistic",
                 "--synth-options", '{"phenotype": "hypodense"}'])
    assert code == 0
    assert "classifier logistic AUC" in capsys.readouterr().out
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


def test_cli_protocol_with_thick_slice_healthy_host_and_gate(shared_data, tmp_path, capsys):
    gate_path = tmp_path / "gate.json"
    code = main(["--data", str(shared_data / "lits117"), "--out", str(tmp_path), "--per-real", "1",
                 "--max-real", "10", "--no-figures", "--quiet", "--thick-slice", "2.8",
                 "--host", str(shared_data / "totalseg_example"), "--real-vs-real", "1", "--n-boot", "50",
                 "--save-gate", str(gate_path), "--gate-classifier", "logistic"])
    assert code == 0
    out = capsys.readouterr().out
    assert "real vs real" in out and "quality gate written" in out
    written = json.loads((tmp_path / "realism.json").read_text())
    assert written["settings"]["part"] == "report" and written["settings"]["match"] == "diameter"
    assert set(written["hosts"]) == {"native", "thick 2.8 mm", "healthy: totalseg_example"}
    for host, analysis in written["hosts"].items():
        assert set(analysis["classifiers"]) == {"logistic", "boosting"}, host
        assert set(analysis["real_vs_real"]) == {"logistic", "boosting"}, host
        by_bin = analysis["classifiers"]["boosting"]["all features"]["counts_per_size_bin"]
        assert sum(n["real"] for n in by_bin.values()) == analysis["counts"]["real"]
    assert written["hosts"]["healthy: totalseg_example"]["phase_note"]
    assert written["hosts"]["healthy: totalseg_example"]["classifiers"]["logistic"]["all features"]["folds"] \
        == "random stratified"
    from synth.realism.gate import QualityGate

    gate = QualityGate.load(gate_path)
    assert gate.info["trained_on"] == "tune part" and 0.0 <= gate.threshold <= 1.0
    text = (tmp_path / "realism.md").read_text()
    assert "## Host: thick 2.8 mm" in text and "Noise floor" in text and "## Quality gate" in text


def test_report_parts_hold_disjoint_real_lesions(lits117, tmp_path):
    case = ("volume-117", lits117.volume, lits117.label, lits117.spacing)
    counts = {}
    for part in ("tune", "report", "all"):
        summary = realism_report([case], out_dir=tmp_path / part, part=part, per_real=1, n_boot=50,
                                 classifiers=("logistic",), real_vs_real_repeats=0, figures_on=False,
                                 progress=False)
        counts[part] = summary["counts"]["real"]
    assert counts["tune"] > 10 and counts["report"] > 10
    assert counts["tune"] + counts["report"] == counts["all"]
    with pytest.raises(ValueError, match="part"):
        realism_report([case], out_dir=tmp_path, part="test")


def test_cli_refuses_a_thick_slice_thinner_than_the_scan(shared_data, tmp_path, capsys):
    assert main(["--data", str(shared_data / "lits117"), "--out", str(tmp_path), "--quiet", "--no-figures",
                 "--thick-slice", "1.0"]) == 2
    assert "thicker than the scan's 1.40 mm" in capsys.readouterr().err
    assert main(["--data", str(shared_data / "lits117"), "--out", str(tmp_path), "--quiet",
                 "--host", str(tmp_path)]) == 2
    assert "--host" in capsys.readouterr().err
