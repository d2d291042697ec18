"""The ``+gate`` ablation arms: each fold's quality gate is trained on that fold's training part
only (no test lesion among its real lesions), written once under the run folder, reused on resume,
and handed to the trainer."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from train.ablation.config import ConfigError, arm_gated, parse_arm, validate_config

TINY_GATED = {
    "name": "tiny-gate",
    "data": {"source": "lits117-kfold", "preprocessing": {"target_spacing": [2.0, 2.0, 2.0], "crop_margin_mm": 4.0},
             "split": {"folds": 3, "gap_mm": 4.0}},
    "hosts": {"phantoms": 0, "training part": True},
    "arms": ["real", "real+heuristic+gate"],
    "seeds": [0],
    "train": {"network": "unet2d", "patch_size": [32, 32, 3], "batch_size": 2, "steps": 2, "filters": [4, 4, 8, 8, 8],
              "optimizer": "adamw", "learning_rate": 0.001, "checkpoint_every": 2, "device": "cpu", "amp": False},
    "synthetic": {"probability": 0.5, "size": "small"},
    "gate": {"per_real": 1, "max_real_per_case": 8},  # a quick gate: at most 8 real lesions per slab
    "bootstrap": 50,
}


def test_gate_suffix_is_parsed_and_limited_to_heuristic_arms():
    assert parse_arm("real+heuristic+gate") == ("real+heuristic", False)
    assert parse_arm("synthetic-only+gate+torchio") == ("synthetic-only", True)
    assert arm_gated("real+heuristic+gate+torchio") and not arm_gated("real+heuristic+torchio")
    with pytest.raises(ConfigError, match="'\\+gate' applies to the heuristic arms"):
        parse_arm("real+copy-paste+gate")
    with pytest.raises(ConfigError, match="unknown arm"):
        parse_arm("real+heuristic+torchio+gate")  # +gate comes before +torchio


@pytest.mark.parametrize("gate, message", [({"per_real": 0}, "gate.per_real"),
                                           ({"classifier": "svm"}, "gate.classifier"),
                                           ({"real_pass": 1.0}, "gate.real_pass"), ({"cap": 3}, "unknown key")])
def test_bad_gate_settings_are_named(gate, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(dict(TINY_GATED, gate=gate))
    with pytest.raises(ConfigError, match="train.synthetic_quality_gate is set by the ablation itself"):
        validate_config(dict(TINY_GATED, train=dict(TINY_GATED["train"], synthetic_quality_gate="g.json")))


@pytest.fixture(scope="module")
def folds(shared_data):
    from train.ablation.data import prepare_data

    cfg = validate_config(dict(TINY_GATED, data=dict(TINY_GATED["data"], path=str(shared_data / "lits117"))))
    return cfg, prepare_data(cfg, progress=False, say=lambda _: None)


def _world(case, center_mm) -> np.ndarray:
    voxel = np.asarray(center_mm) / np.asarray(case.spacing)
    return (case.affine @ np.append(voxel, 1.0))[:3]


def _z_extent(case) -> tuple[float, float]:
    ends = [float((case.affine @ np.array([0.0, 0.0, z, 1.0]))[2]) for z in (-0.5, case.image.shape[2] - 0.5)]
    return min(ends), max(ends)


def test_each_fold_gate_is_trained_on_training_lesions_only_and_reused(folds, tmp_path, monkeypatch):
    from synth.realism.compare import extract_real_lesions
    from synth.realism.gate import QualityGate
    from train.ablation import gate as gate_module
    from train.ablation.runner import train_config

    cfg, data = folds
    assert len(data) == 3
    for fold in data:
        path = gate_module.fold_gate(tmp_path, fold, cfg["gate"])
        assert path == tmp_path / "gates" / f"fold-{fold.fold}" / "gate.json"
        gate = QualityGate.load(path)
        train_ids = {case.case_id for case in fold.train}
        assert set(gate.info["cases"]) == train_ids
        lesions = gate.info["real_lesions"]
        assert gate.info["n_real"] == len(lesions) >= 5 and {les["case"] for les in lesions} <= train_ids
        # Every real lesion it saw lies outside the test slab, and none is one of the test slab's lesions.
        (test,) = fold.test
        low, high = _z_extent(test)
        centres = np.array([les["center_world_mm"] for les in lesions])
        assert np.all((centres[:, 2] < low) | (centres[:, 2] > high)), fold.fold
        test_centres = [_world(test, s.center_mm) for s in extract_real_lesions(
            test.image, test.label, test.spacing, exclude_border=False)]
        assert test_centres  # the check below compares something
        nearest = min(float(np.min(np.linalg.norm(centres - c, axis=1))) for c in test_centres)
        assert nearest > 1.0, (fold.fold, nearest)
        config = train_config(cfg, "real+heuristic+gate", 0, gate=path)
        assert config.synthetic_quality_gate == str(path) and config.synthetic_method == "heuristic"
        assert config.synthetic_probability == cfg["synthetic"]["probability"]
    # Resumed: the gate on disk is used as it is, never trained again.
    monkeypatch.setattr(gate_module, "train_fold_gate", lambda *a, **k: pytest.fail("trained again"))
    before = (tmp_path / "gates" / "fold-0" / "gate.json").read_bytes()
    assert gate_module.fold_gate(tmp_path, data[0], cfg["gate"]).read_bytes() == before
    # A gate of another fold found in this fold's place is refused: its lesions include this fold's test slab.
    gates = tmp_path / "gates"
    (gates / "fold-0" / "gate.json").write_bytes((gates / "fold-1" / "gate.json").read_bytes())
    with pytest.raises(ValueError, match="not on this fold's training cases"):
        gate_module.fold_gate(tmp_path, data[0], cfg["gate"])


def test_gated_arm_needs_its_gate_and_other_arms_get_none(folds):
    from train.ablation.runner import train_config

    cfg, _ = folds
    with pytest.raises(ValueError, match="needs its fold's quality gate"):
        train_config(cfg, "real+heuristic+gate", 0)
    assert train_config(cfg, "real+heuristic", 0).synthetic_quality_gate is None


def test_gated_ablation_runs_every_fold_with_its_own_gate_and_resumes(shared_data, tmp_path, one_torch_thread):
    from train.ablation import run_ablation
    from train.ablation.runner import EVAL_FILE, run_dir

    config = dict(TINY_GATED, data=dict(TINY_GATED["data"], path=str(shared_data / "lits117")))
    results = run_ablation(config, tmp_path, progress=False)
    gates = {fold: tmp_path / "gates" / f"fold-{fold}" / "gate.json" for fold in range(3)}
    for fold, path in gates.items():
        evaluation = json.loads((run_dir(tmp_path, "real+heuristic+gate", 0, fold) / EVAL_FILE).read_text())
        assert evaluation["train_config"]["synthetic_quality_gate"] == str(path)
        assert json.loads((run_dir(tmp_path, "real", 0, fold) / EVAL_FILE).read_text())[
            "train_config"]["synthetic_quality_gate"] is None
        summary = results["gates"][str(fold)]
        assert summary["path"] == f"gates/fold-{fold}/gate.json"  # relative to the output folder
        assert 0.0 < summary["threshold"] < 1.0 and summary["n_real"] >= 5
        assert "real_lesions" not in summary
    written = {fold: path.stat().st_mtime_ns for fold, path in gates.items()}
    again = run_ablation(config, tmp_path, progress=False)
    assert len(again["skipped_finished_runs"]) == 6
    assert {fold: path.stat().st_mtime_ns for fold, path in gates.items()} == written


def test_a_fold_without_enough_real_lesions_gets_a_clear_error(folds, tmp_path):
    from train.ablation.gate import fold_gate

    _, data = folds
    healthy = [dataclasses.replace(case, label=np.minimum(case.label, 1)) for case in data[0].train]
    with pytest.raises(ValueError, match="quality gate of fold 0 cannot be trained.*at least 5 real"):
        fold_gate(tmp_path, dataclasses.replace(data[0], train=healthy))
    assert not (tmp_path / "gates" / "fold-0" / "gate.json").exists()
