"""The k-fold ablation on LiTS-117 (tiny settings): every lesion tested once, post-processing and
the true-liver evaluation beside the headline, competence figures and the verdict sentences."""

import json

import pytest

from train.ablation import run_ablation
from train.ablation.config import ConfigError, validate_config
from train.ablation.report import verdict_lines
from train.ablation.runner import EVAL_FILE, run_dir

TINY_KFOLD = {
    "name": "tiny-kfold",
    "data": {"source": "lits117-kfold", "preprocessing": {"target_spacing": [4.0, 4.0, 4.0], "crop_margin_mm": 4.0},
             "split": {"folds": 2, "gap_mm": 4.0}},
    "hosts": {"phantoms": 0, "training part": True},
    "arms": ["real", "real+heuristic"],
    "seeds": [0],
    "train": {"network": "unet2d", "patch_size": [32, 32, 3], "batch_size": 2, "steps": 2, "filters": [4, 4, 8, 8, 8],
              "optimizer": "adamw", "learning_rate": 0.001, "checkpoint_every": 2, "device": "cpu", "amp": False},
    "synthetic": {"probability": 0.5, "size": "small"},
    "postprocess": {"min_tumor_mm3": 65},
    "bootstrap": 50,
}


@pytest.fixture()
def lits117_config(shared_data):
    return dict(TINY_KFOLD, data=dict(TINY_KFOLD["data"], path=str(shared_data / "lits117")))


def test_kfold_ablation_tests_every_lesion_once(lits117_config, tmp_path, one_torch_thread):
    results = run_ablation(lits117_config, tmp_path, progress=False)
    folds = results["data"]["folds"]
    assert [f["fold"] for f in folds] == [0, 1]
    assert results["data"]["test"] == ["volume-117-fold0-test", "volume-117-fold1-test"]
    for arm in ("real", "real+heuristic"):
        for fold in (0, 1):
            evaluation = json.loads((run_dir(tmp_path, arm, 0, fold) / EVAL_FILE).read_text())
            assert {"cases", "cases_raw", "cases_true_liver"} <= set(evaluation)
            assert evaluation["fold"] == fold
    stats = results["stats"]
    assert stats["n_cases"] == 2 and stats["n_lesions"]["all"] >= 30  # the lesions of both slabs
    assert results["stats_raw"]["n_lesions"] == stats["n_lesions"]
    competence = results["competence"]["real"]
    assert set(competence) == {"cases", "cases_raw", "cases_true_liver"}
    assert 0.0 <= competence["cases_true_liver"]["liver_dice"] <= 1.0
    md = (tmp_path / "results.md").read_text()
    assert "**Verdict per size bin**" in md and "## Is the baseline competent?" in md

    # --reevaluate: the same models scored again with another post-processing, training kept.
    trained = {arm: results["runs"][arm]["0"]["train_s"] for arm in ("real", "real+heuristic")}
    strict = dict(lits117_config, postprocess={"min_tumor_mm3": 1e12})  # no component is this big
    again = run_ablation(strict, tmp_path, progress=False, reevaluate=True)
    assert again["reevaluated_finished_runs"] and len(again["skipped_finished_runs"]) == 4
    for arm, seconds in trained.items():
        assert again["runs"][arm]["0"]["train_s"] == seconds
        assert again["runs"][arm]["0"]["summary"]["false_positives"] == 0
        assert again["runs"][arm]["0"]["summary"]["detected"] == 0
        raw = again["runs"][arm]["0"]["evaluation"]["cases_raw"]
        assert raw == results["runs"][arm]["0"]["evaluation"]["cases_raw"]  # the same models
    evaluation = json.loads((run_dir(tmp_path, "real", 0, 0) / EVAL_FILE).read_text())
    assert evaluation["postprocess"]["min_tumor_mm3"] == 1e12
    assert "evaluated again from their saved models" in (tmp_path / "results.md").read_text()
    assert "restricted to the TRUE liver" in md and "axial slabs of one scan" in md


def test_kfold_config_errors_are_named(lits117_config):
    with pytest.raises(ConfigError, match="folds must be a whole number >= 2"):
        validate_config(dict(lits117_config, data=dict(lits117_config["data"], split={"folds": 1})))
    with pytest.raises(ConfigError, match=r"postprocess.min_tumor_mm3 must be a number >= 0"):
        validate_config(dict(lits117_config, postprocess={"min_tumor_mm3": -5}))
    with pytest.raises(ConfigError, match="unknown key"):
        validate_config(dict(lits117_config, postprocess={"min_tumour_mm3": 5}))


def test_too_many_folds_is_a_config_error_before_training(lits117_config, tmp_path):
    config = dict(lits117_config, data=dict(lits117_config["data"], split={"folds": 30, "gap_mm": 4.0}))
    with pytest.raises(ConfigError, match="too few"):
        run_ablation(config, tmp_path, progress=False)
    assert not (tmp_path / "runs").exists()


def _stats(low, high, n):
    entry = {"difference": (low + high) / 2, "low": low, "high": high}
    return {"baseline": "real", "n_lesions": {"all": n, "<10": n, "10-20": 0, ">=20": 2},
            "differences": {"real+heuristic": {"all": {"sensitivity": entry}, "<10": {"sensitivity": entry},
                                               "10-20": {"sensitivity": entry},
                                               ">=20": {"sensitivity": entry}}}}


@pytest.mark.parametrize("low, high, word", [(0.05, 0.2, "**shown**"), (-0.3, -0.1, "**reversed**"),
                                             (-0.1, 0.2, "**not shown**")])
def test_verdict_says_shown_not_shown_or_reversed(low, high, word):
    lines = verdict_lines(_stats(low, high, 30))
    assert word in lines[0] and "(n = 30)" in lines[0]
    assert "no test lesion in this bin" in lines[2]  # 10-20 mm: empty
    assert "an interval from only 2 lesions" in lines[3]


def test_gpu_sample_profile_runs_with_a_tiny_override(shared_data, tmp_path, one_torch_thread):
    from train.ablation.config import load_profile

    profile = load_profile("gpu-sample")
    assert profile["data"]["source"] == "lits117-kfold" and len(profile["seeds"]) == 3
    assert profile["train"]["network"] == "unet2d" and profile["train"]["amp"] is True
    tiny = dict(profile, seeds=[0],
                data=dict(profile["data"], path=str(shared_data / "lits117"), split={"folds": 2, "gap_mm": 4.0},
                          preprocessing={"target_spacing": [4.0, 4.0, 4.0], "crop_margin_mm": 4.0}),
                train=dict(profile["train"], patch_size=[32, 32, 5], batch_size=2, steps=2, filters=[4, 4, 8, 8, 8],
                           device="cpu", amp=False, num_workers=0, checkpoint_every=2),
                bootstrap=20)
    results = run_ablation(tiny, tmp_path, progress=False)
    assert results["name"] == "gpu-sample" and results["stats"]["n_cases"] == 2
    assert set(results["competence"]) == set(profile["arms"])


def test_an_all_zero_plot_says_so(tmp_path, monkeypatch):
    import matplotlib.axes

    from train.ablation.figures import plot_metric_by_bin

    said = []
    original = matplotlib.axes.Axes.text
    monkeypatch.setattr(matplotlib.axes.Axes, "text",
                        lambda self, x, y, s, *a, **k: said.append(s) or original(self, x, y, s, *a, **k))
    zero = {"mean": 0.0, "sd": None, "per_seed": [0.0]}
    stats = {"seeds": [0], "n_lesions": {"all": 3, "<10": 3, "10-20": 0, ">=20": 0},
             "arms": {arm: {b: {"sensitivity_iou50": dict(zero)} for b in ("all", "<10", "10-20", ">=20")}
                      for arm in ("real", "real+heuristic")}}
    plot_metric_by_bin(stats, "sensitivity_iou50", tmp_path / "zero.png")
    assert any("every value is 0" in s for s in said)
    said.clear()
    stats["arms"]["real"]["<10"]["sensitivity_iou50"]["mean"] = 0.5
    plot_metric_by_bin(stats, "sensitivity_iou50", tmp_path / "some.png")
    assert not any("every value is 0" in s for s in said)
