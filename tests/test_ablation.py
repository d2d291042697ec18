"""The ablation (train.ablation): configuration checks, paired bootstrap, report files, and an
end-to-end tiny run on phantom cases that is resumed without retraining."""

from __future__ import annotations

import json

import numpy as np
import pytest

from train.ablation import (
    ConfigError,
    load_profile,
    paired_bootstrap_ci,
    summarise,
    validate_config,
    write_report,
)


def minimal_config(**changes) -> dict:
    cfg = {
        "name": "test",
        "data": {"source": "lits117-axial"},
        "hosts": {"phantoms": 1},
        "arms": ["real", "real+heuristic"],
        "seeds": [0],
        "train": {},
        "synthetic": {"probability": 0.5},
        "bootstrap": 100,
    }
    cfg.update(changes)
    return cfg


# --- configuration ----------------------------------------------------------------------------


def test_valid_config_is_normalised_and_not_modified():
    raw = minimal_config()
    before = json.dumps(raw, sort_keys=True)
    cfg = validate_config(raw)
    assert json.dumps(raw, sort_keys=True) == before  # input untouched
    assert cfg["hosts"]["healthy cases"] is False and cfg["bootstrap"] == 100
    assert cfg["data"]["split"] == {} and cfg["synthetic"]["probability"] == 0.5


@pytest.mark.parametrize("profile", ["cpu-quick", "gpu"])
def test_bundled_profiles_are_valid(profile):
    cfg = validate_config(load_profile(profile))
    assert cfg["name"] == profile and "real" in cfg["arms"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"arms": ["real", "real+magic"]}, "unknown arm 'real+magic'"),
        ({"colour": "blue"}, "unknown key(s) ['colour']"),
        ({"data": {"source": "lits117-axial", "splitt": {}}}, "unknown key(s) ['splitt'] in \"data\""),
        ({"data": {"source": "lits117-axial", "split": {"val_fraction": 0.1}}},
         "unknown key(s) ['val_fraction'] in data.split"),
        ({"data": {"source": "folder"}}, "needs data.path"),
        ({"data": {"source": "dicom"}}, "data.source must be one of"),
        ({"arms": ["real", "real+diffusion"]}, "needs a diffusion model"),
        ({"arms": ["real", "real+diffusion"], "diffusion": {"model": "no/such/folder"}},
         "is not a folder"),
        ({"arms": ["real", "real+diffusion"], "diffusion": "some/folder"},
         "\"diffusion\" must be an object"),
        ({"train": {"augmentation": "torchio"}}, "train.augmentation is set by the ablation itself"),
        ({"arms": ["real", "real+diffusion"], "diffusion": {"model": 5}},
         "diffusion.model must be a folder path"),
        ({"arms": ["real+heuristic"]}, "must include 'real'"),
        ({"arms": ["real", "real"]}, "lists an arm twice"),
        ({"seeds": []}, "\"seeds\" must be a non-empty list"),
        ({"seeds": [0, -1]}, "non-negative integers"),
        ({"hosts": {}}, "gives no liver to put them in"),
        ({"hosts": {"phantoms": 0, "training part": True}, "arms": ["real", "synthetic-only"],
          "train": {"loss": "composite"}},
         "'synthetic-only' leaves the hosts' real tumours out of the loss"),
        ({"hosts": {"phantoms": 1, "healthy": True}}, "unknown key(s) ['healthy'] in \"hosts\""),
        ({"train": {"seed": 3}}, "train.seed is set by the ablation itself"),
        ({"synthetic": {"probability": 0.0}}, "synthetic.probability must be a number in (0, 1]"),
        ({"synthetic": {"probabilty": 0.5}}, "unknown key(s) ['probabilty'] in \"synthetic\""),
        ({"synthetic": {"centre": "middle"}}, "synthetic.centre must be \"lesion\""),
        ({"bootstrap": 5}, "\"bootstrap\" must be an integer >= 10"),
        ({"name": ""}, "\"name\" must be a non-empty string"),
    ],
)
def test_config_errors_name_the_problem(changes, message):
    with pytest.raises(ConfigError) as err:
        validate_config(minimal_config(**changes))
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_unknown_train_field_is_rejected():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['stepz'\]"):
        validate_config(minimal_config(train={"stepz": 10}))


def test_diffusion_arm_with_a_model_passes_validation(tmp_path):
    cfg = validate_config(minimal_config(arms=["real", "real+diffusion"],
                                         diffusion={"model": str(tmp_path)}))
    assert cfg["arms"] == ["real", "real+diffusion"]


def test_arms_set_the_trainer_switches(tmp_path):
    from train.ablation.runner import train_config

    cfg = validate_config(minimal_config(
        arms=["real", "real+heuristic+torchio", "real+diffusion"], diffusion={"model": str(tmp_path)},
        synthetic={"probability": 0.5, "centre": "shares"}))
    real = train_config(cfg, "real", 0)
    assert (real.synthetic_probability, real.augmentation, real.synthetic_method) == (0.0, "none", "heuristic")
    augmented = train_config(cfg, "real+heuristic+torchio", 1)
    assert augmented.augmentation == "torchio" and augmented.synthetic_probability == 0.5
    assert augmented.seed == 1 and augmented.synthetic_centre == "shares"
    diffusion = train_config(cfg, "real+diffusion", 0)
    assert diffusion.synthetic_method == "diffusion" and diffusion.synthetic_model == str(tmp_path)
    assert diffusion.augmentation == "none" and diffusion.synthetic_probability == 0.5


# --- paired bootstrap -------------------------------------------------------------------------


def test_bootstrap_ci_brackets_a_known_difference():
    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.1, size=(2, 400))
    arm = base + 0.2 + rng.normal(0.0, 0.05, size=base.shape)
    ci = paired_bootstrap_ci(arm, base, n_boot=500, seed=0)
    assert ci["difference"] == pytest.approx(0.2, abs=0.01)
    assert ci["low"] < 0.2 < ci["high"] and ci["low"] > 0.18 and ci["high"] < 0.22
    assert ci["n_units"] == 400


def test_bootstrap_ci_of_identical_arms_contains_zero():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 2, size=(3, 60)).astype(float)
    b = a.copy()
    b[:, :30] = rng.integers(0, 2, size=(3, 30))  # same arm, noisy: no true difference
    ci = paired_bootstrap_ci(a, a, n_boot=200, seed=0)
    assert ci["difference"] == ci["low"] == ci["high"] == 0.0
    noisy = paired_bootstrap_ci(rng.permuted(a, axis=1), a, n_boot=400, seed=0)
    assert noisy["low"] <= 0.0 <= noisy["high"]


def test_bootstrap_is_seeded_and_checks_shapes():
    rng = np.random.default_rng(3)
    a, b = rng.random((2, 50)), rng.random((2, 50))
    assert paired_bootstrap_ci(a, b, n_boot=300, seed=7) == paired_bootstrap_ci(a, b, n_boot=300, seed=7)
    assert paired_bootstrap_ci(a, b, n_boot=300, seed=7) != paired_bootstrap_ci(a, b, n_boot=300, seed=8)
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap_ci(a, b[:, :10])
    one = paired_bootstrap_ci([[1.0]], [[0.0]])
    assert one["difference"] == 1.0 and one["low"] is None  # one unit: no interval


# --- statistics and report from made-up results -------------------------------------------------


def fake_evaluation(detected: list[bool], diameters: list[float], *, fps: int = 1, dice: float = 0.6):
    lesions = [
        {"lesion_id": i + 1, "voxels": 10, "volume_mm3": 1.0, "diameter_mm": d, "radius_mm": d / 2,
         "detected": hit, "detected_iou50": hit and d >= 10, "iou": 0.6 if hit else 0.0,
         "dice": 0.7 if hit else 0.0, "matched_components": int(hit)}
        for i, (hit, d) in enumerate(zip(detected, diameters))
    ]
    case = {"case_id": "case-1", "dice": dice, "false_positives": fps, "lesions": lesions}
    return {"cases": [case], "summary": {"mean_dice": dice, "n_lesions": len(lesions),
                                         "detected": sum(detected)}}


DIAMETERS = [4.0, 6.0, 8.0, 9.0, 12.0, 15.0, 18.0, 25.0, 40.0]


def fake_runs():
    return {
        "real": {0: fake_evaluation([0, 0, 0, 1, 1, 0, 1, 1, 1], DIAMETERS),
                 1: fake_evaluation([0, 0, 1, 0, 1, 1, 1, 1, 1], DIAMETERS, fps=3)},
        "real+heuristic": {0: fake_evaluation([1, 0, 1, 1, 1, 1, 1, 1, 1], DIAMETERS, dice=0.7),
                           1: fake_evaluation([1, 1, 1, 0, 1, 1, 1, 1, 1], DIAMETERS, fps=2, dice=0.65)},
    }


def test_summarise_bins_means_and_differences():
    stats = summarise(fake_runs(), n_boot=200)
    assert stats["n_lesions"] == {"all": 9, "<10": 4, "10-20": 3, ">=20": 2}
    small = stats["arms"]["real"]["<10"]["sensitivity"]
    assert small["per_seed"] == [0.25, 0.25] and small["mean"] == 0.25 and small["sd"] == 0.0
    assert stats["arms"]["real+heuristic"]["<10"]["sensitivity"]["mean"] == 0.75
    assert stats["arms"]["real"]["all"]["false_positives_per_case"]["mean"] == 2.0
    diff = stats["differences"]["real+heuristic"]["<10"]["sensitivity"]
    assert diff["difference"] == pytest.approx(0.5)
    assert diff["low"] <= 0.5 <= diff["high"]
    assert "real" not in stats["differences"]
    json.dumps(stats, allow_nan=False)


def test_summarise_refuses_unpaired_runs():
    runs = fake_runs()
    runs["real+heuristic"][0] = fake_evaluation([1] * 8, DIAMETERS[:8])
    with pytest.raises(ValueError, match="same ground-truth lesions"):
        summarise(runs)


def test_report_files_from_made_up_results(tmp_path):
    from synth.phantom import make_phantom
    from train.data import Case

    stats = summarise(fake_runs(), n_boot=200)
    runs = {arm: {str(s): {"evaluation": ev, "summary": ev["summary"], "steps": 10, "train_s": 1.0}
                  for s, ev in by_seed.items()} for arm, by_seed in fake_runs().items()}
    results = {"name": "made-up", "config": {"name": "made-up", "train": {"steps": 10}, "bootstrap": 200},
               "stats": stats, "runs": runs, "timings": {"total_s": 12.0},
               "machine": {"summary": "test machine."}}
    # Overlays need images: a small phantom with lesions stands in for the test case.
    ph = make_phantom((64, 56, 24), (3.0, 3.0, 5.0), lesions=3, seed=0)
    case = Case("case-1", ph.volume.astype(np.float32), ph.label, ph.spacing, ph.affine)
    from train.metrics import components, evaluate_case

    lesion_ids, _ = components(ph.label == 2)
    pred = np.where(lesion_ids == 1, 1, ph.label).astype(np.uint8)  # lesion 1 missed, others found
    ev = evaluate_case(pred, ph.label, spacing=ph.spacing, case_id="case-1")
    assert [les.detected for les in ev.lesions].count(False) == 1
    runs["real"]["0"]["evaluation"] = {"cases": [ev.to_dict()]}
    paths = write_report(results, tmp_path / "report", overlay_cases={"case-1": case},
                         overlay_predictions={"real": {"case-1": pred}})
    md = paths["markdown"].read_text()
    assert "| <10 | 4 | real | 0.25 ± 0.00 |" in md
    assert "| <10 | 4 | real+heuristic | 0.75 ± 0.00 |" in md and "+0.50 [" in md
    assert "it is not evidence of a gain" in md
    data = json.loads(paths["json"].read_text())
    assert data["stats"]["n_lesions"]["all"] == 9
    assert set(data["figures"]) == {"sensitivity", "sensitivity_iou50", "lesion_dice", "overlays"}
    for png in paths["figures"].values():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    assert not list((tmp_path / "report").glob("*.tmp"))  # atomic writes leave no temp file


# --- end to end ---------------------------------------------------------------------------------


TINY = {
    "name": "tiny",
    "data": {"source": "lits117-axial",
             "preprocessing": {"target_spacing": [4.0, 4.0, 4.0], "crop_margin_mm": 8.0},
             "split": {"train_fraction": 0.5, "gap_mm": 4.0}},
    "hosts": {"phantoms": 1, "phantom shape mm": [240, 200, 160], "training part": True},
    "arms": ["real", "real+heuristic"],
    "seeds": [0],
    "train": {"patch_size": [24, 24, 24], "batch_size": 1, "steps": 3, "filters": [4, 8, 16],
              "checkpoint_every": 2, "device": "cpu", "amp": False},
    "synthetic": {"probability": 0.5, "size": "small"},
    "bootstrap": 50,
}


class Interrupted(Exception):
    pass


def test_tiny_ablation_end_to_end_resumes_and_skips_finished_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("monai")
    import train.data
    import train.loop
    from train.ablation import run_ablation
    from train.ablation.runner import EVAL_FILE, run_dir

    def offline(*args, **kwargs):
        raise train.data.FetchError("no network in this test")

    monkeypatch.setattr(train.data, "fetch_lits117", offline)  # -> the phantom stand-in
    out = tmp_path / "ablation"
    real_train = train.loop.train_model
    calls = []

    # 1. Interrupted: the first run stops after 2 of its 3 steps (checkpoint written).
    def interrupted(*args, **kwargs):
        real_train(*args, **dict(kwargs, stop_after=2))
        raise Interrupted

    monkeypatch.setattr(train.loop, "train_model", interrupted)
    with pytest.raises(Interrupted):
        run_ablation(TINY, out, progress=False)
    assert "PHANTOM case with phantom tumours" in capsys.readouterr().out
    assert (run_dir(out, "real", 0) / "checkpoint.pt").is_file()
    assert not (run_dir(out, "real", 0) / EVAL_FILE).exists()

    # 2. Rerun: the interrupted run resumes, the other starts fresh; the report is written.
    def recording(*args, **kwargs):
        calls.append((kwargs["out_dir"].parent.name, kwargs["resume"]))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(train.loop, "train_model", recording)
    results = run_ablation(TINY, out, progress=False)
    assert calls == [("real", True), ("real+heuristic", False)]
    assert results["data"]["fallback_to_phantom"] is True
    for arm in TINY["arms"]:
        ev = json.loads((run_dir(out, arm, 0) / EVAL_FILE).read_text())
        assert ev["steps"] == 3 and ev["cases"][0]["case_id"] == "phantom-tumours-test"
        assert (run_dir(out, arm, 0) / "model.pt").is_file()
    md = (out / "results.md").read_text()
    assert "| all |" in md and "| real+heuristic |" in md
    assert "offline: a phantom case with phantom tumours replaced LiTS-117" in md
    saved = json.loads((out / "results.json").read_text())
    assert saved["stats"]["n_lesions"]["all"] == results["stats"]["n_lesions"]["all"] > 0
    assert set(saved["figures"]) == {"sensitivity", "sensitivity_iou50", "lesion_dice", "overlays"}
    for name in saved["figures"].values():
        assert (out / name).stat().st_size > 2000

    # 3. A third call finds every eval.json and trains nothing.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train.loop, "train_model", no_training)
    again = run_ablation(TINY, out, progress=False)
    assert sorted(again["skipped_finished_runs"]) == ["real+heuristic/seed-0", "real/seed-0"]
    assert again["stats"] == saved["stats"]


def test_command_arguments_and_config_errors(tmp_path, capsys):
    import argparse

    from train.ablation.commands import DEFAULT_OUT, add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--profile", "cpu-quick"])
    assert args.out == DEFAULT_OUT and args.data is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--profile", "cpu-quick", "--config", "x.json"])  # one or the other
    with pytest.raises(SystemExit):
        parser.parse_args([])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(minimal_config(arms=["real", "real+magic"])))
    assert run(parser.parse_args(["--config", str(bad), "--out", str(tmp_path / "o")])) == 2
    assert "unknown arm 'real+magic'" in capsys.readouterr().err
    assert run(parser.parse_args(["--profile", "gpu"])) == 2  # the gpu profile needs --data
    assert "needs --data" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
