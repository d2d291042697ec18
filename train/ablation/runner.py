"""Run an ablation: every arm x seed is trained, predicts the test cases and is evaluated
lesion-wise; then the statistics and the report. Resumable at run granularity and inside a run.

Folder layout under ``out_dir``::

    runs/<arm>/seed-<s>/[fold-<k>/]   the trainer's files (checkpoint.pt, model.pt, logs) plus
                             eval.json (lesion-wise evaluation of the test cases, timings) and
                             predictions.npz (the post-processed label maps, uint8, per test case id)
    results.json, results.md, *.png

Every test case is evaluated three ways: post-processed with the model's own liver (the headline,
``cases``), as predicted (``cases_raw``), and restricted to the true liver (``cases_true_liver``,
labelled as such in the report). With k folds, a run is one fold; the folds' test cases together
make one evaluation per arm and seed, so the lesions are paired across folds.

A run whose ``eval.json`` exists is finished and skipped; any other run is continued from its
checkpoint (``train_model(resume=True)``), so an interrupted ablation loses at most
``checkpoint_every`` steps.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from synth.io import atomic_output_path, write_json_atomic

from .bank import fold_bank
from .config import arm_gated, load_config, parse_arm
from .data import AblationData, prepare_data
from .gate import fold_gate, fold_gate_path, gate_summary
from .report import write_report
from .stats import summarise

EVAL_FILE = "eval.json"
PREDICTIONS_FILE = "predictions.npz"


VARIANTS = ("cases", "cases_raw", "cases_true_liver")  # headline first


def run_dir(out_dir, arm: str, seed: int, fold: int | None = None) -> Path:
    """Folder of one run: ``runs/<arm>/seed-<seed>``, plus ``fold-<k>`` with k folds."""
    folder = Path(out_dir) / "runs" / arm / f"seed-{seed}"
    return folder if fold is None else folder / f"fold-{fold}"


def train_config(cfg: dict, arm: str, seed: int, *, bank=None, gate=None):
    """The TrainConfig of one run: ``cfg["train"]`` plus the seed and the arm's synthetic share;
    ``bank`` is the fold's lesion bank folder of a ``real+copy-paste`` arm, ``gate`` the fold's
    quality gate file of a ``+gate`` arm."""
    from train.loop import TrainConfig

    base, torchio = parse_arm(arm)
    fields = dict(cfg["train"], seed=seed, augmentation="torchio" if torchio else "none")
    synthetic = cfg["synthetic"]
    if "size" in synthetic:
        fields["synthetic_size"] = synthetic["size"]
    if "count" in synthetic:
        fields["synthetic_count"] = synthetic["count"]
    if "centre" in synthetic:
        fields["synthetic_centre"] = synthetic["centre"]
    fields["synthetic_probability"] = {"real": 0.0, "real+heuristic": synthetic["probability"],
                                       "real+diffusion": synthetic["probability"],
                                       "real+copy-paste": synthetic["probability"],
                                       "synthetic-only": 1.0}[base]
    if base == "synthetic-only":
        fields["host_tumors"] = "ignore"
    if base == "real+diffusion":
        fields["synthetic_method"] = "diffusion"
        fields["synthetic_model"] = str(cfg["diffusion"]["model"])
    if base == "real+copy-paste":
        if bank is None:
            raise ValueError(f"arm {arm!r} needs its fold's lesion bank (train.ablation.bank.fold_bank)")
        fields["synthetic_method"] = "copy-paste"
        fields["synthetic_bank"] = str(bank)
    if arm_gated(arm):
        if gate is None:
            raise ValueError(f"arm {arm!r} needs its fold's quality gate (train.ablation.gate.fold_gate)")
        fields["synthetic_quality_gate"] = str(gate)
    return TrainConfig.from_dict(fields)


def arm_inputs(arm: str, data: AblationData) -> tuple[list, list]:
    """(training cases, hosts) of an arm."""
    base, _ = parse_arm(arm)
    if base == "real":
        return data.train, []
    if base in ("real+heuristic", "real+diffusion", "real+copy-paste"):
        return data.train, data.heuristic_hosts
    if base == "synthetic-only":  # the same livers; their real tumours are left out of the loss
        if not data.heuristic_hosts:
            raise ValueError("arm 'synthetic-only' needs hosts (phantoms, healthy cases or the training part)")
        return [], data.heuristic_hosts
    raise ValueError(f"unknown arm {arm!r}")


def _save_predictions(path: Path, predictions: dict) -> None:
    # The suffix keeps numpy from appending ".npz" to the temporary name.
    with atomic_output_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **predictions)


def load_predictions(path) -> dict:
    """``{case_id: uint8 label map}`` saved by a run."""
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _evaluate(cfg: dict, data: AblationData, model_path: Path) -> tuple[dict, dict]:
    """Predict the fold's test cases with a saved model and evaluate them three ways
    (:data:`VARIANTS`); returns ``(predictions, evaluation fields)``."""
    from train.loop import load_model, predict_case
    from train.metrics import aggregate, evaluate_case
    from train.postprocess import postprocess

    t0 = time.perf_counter()
    model, model_config = load_model(model_path)
    n_params = int(sum(p.numel() for p in model.parameters()))
    post = cfg["postprocess"]
    predictions: dict = {}
    results: dict[str, list] = {variant: [] for variant in VARIANTS}
    for case in data.test:
        raw = predict_case(model, case, model_config)
        variants = {
            "cases_raw": raw,
            "cases": postprocess(raw, case.spacing, image=case.image, **post),
            "cases_true_liver": postprocess(raw, case.spacing, image=case.image, **{**post, "liver": case.label >= 1}),
        }
        predictions[case.case_id] = variants["cases"]
        for variant, prediction in variants.items():
            results[variant].append(evaluate_case(prediction, case.label, spacing=case.spacing,
                                                  case_id=case.case_id))
    fields = {
        "model_parameters": n_params,
        "eval_s": time.perf_counter() - t0,
        "postprocess": dict(post),
        **{variant: [r.to_dict() for r in results[variant]] for variant in VARIANTS},
        "summary": aggregate(results["cases"]),
    }
    return predictions, fields


def run_one(cfg: dict, arm: str, seed: int, data: AblationData, out_dir, *,
            progress: bool = True) -> dict:
    """Train (or resume), predict and evaluate one arm x seed; returns its eval dict."""
    from train.loop import train_model

    folder = run_dir(out_dir, arm, seed, data.fold)
    # The fold's bank holds the training part's lesions only: never a test lesion.
    bank = fold_bank(out_dir, data) if parse_arm(arm)[0] == "real+copy-paste" else None
    # Likewise the fold's quality gate: trained on the training part's lesions only.
    gate = fold_gate(out_dir, data, cfg.get("gate")) if arm_gated(arm) else None
    config = train_config(cfg, arm, seed, bank=bank, gate=gate)
    train_cases, hosts = arm_inputs(arm, data)
    t0 = time.perf_counter()
    # Resume only an interrupted run; a fresh folder starts a new one.
    resume = (folder / "checkpoint.pt").is_file()
    result = train_model(config, train_cases, val_cases=data.val, hosts=hosts, out_dir=folder,
                         resume=resume, progress=progress)
    train_s = time.perf_counter() - t0
    if result.steps < config.steps:
        raise RuntimeError(f"run {arm} seed {seed} stopped at step {result.steps} of {config.steps}")

    predictions, fields = _evaluate(cfg, data, result.model_path)
    _save_predictions(folder / PREDICTIONS_FILE, predictions)
    evaluation = {
        "arm": arm,
        "seed": seed,
        "steps": result.steps,
        "model": result.model_path.name,
        "train_s": train_s,
        "train_config": config.to_dict(),
        "fold": data.fold,
        **fields,
    }
    # Written last: its presence marks the run as finished.
    write_json_atomic(evaluation, folder / EVAL_FILE)
    return evaluation


def reevaluate_run(cfg: dict, arm: str, seed: int, data: AblationData, out_dir) -> dict:
    """Evaluate a finished run again from its saved model, with ``cfg``'s post-processing (after
    a change of it); its training record (steps, time, settings) is kept. Returns its eval dict."""
    folder = run_dir(out_dir, arm, seed, data.fold)
    evaluation = json.loads((folder / EVAL_FILE).read_text("utf-8"))
    predictions, fields = _evaluate(cfg, data, folder / evaluation["model"])
    _save_predictions(folder / PREDICTIONS_FILE, predictions)
    evaluation.update(fields)
    write_json_atomic(evaluation, folder / EVAL_FILE)
    return evaluation


def combine_folds(evaluations: list[dict]) -> dict:
    """One evaluation of an arm and seed from its folds' evaluations: their test cases together
    (case ids differ between folds, so the lesions stay paired across arms), times summed."""
    from train.metrics import CaseResult, LesionResult, aggregate

    if len(evaluations) == 1:
        return evaluations[0]
    combined = dict(evaluations[0])
    for variant in VARIANTS:
        combined[variant] = [case for ev in evaluations for case in ev[variant]]
    for key in ("steps", "train_s", "eval_s"):
        combined[key] = sum(ev[key] for ev in evaluations)
    combined["fold"] = None
    combined["folds"] = len(evaluations)
    results = [CaseResult(**{**case, "spacing": tuple(case["spacing"]),
                             "lesions": [LesionResult(**lesion) for lesion in case["lesions"]]})
               for case in combined["cases"]]
    combined["summary"] = aggregate(results)
    return combined


def competence(by_seed: dict, variant: str = "cases") -> dict:
    """The baseline-competence figures of one arm (mean over seeds): mean liver Dice of the test
    cases, global tumour Dice, false-positive components per test case, and detection (any
    overlap) of the lesions >= 10 mm. A model that misses these measures nothing (docs/ablation.md)."""
    figures: dict[str, list[float]] = {"liver_dice": [], "tumor_dice": [], "false_positives_per_case": [],
                                       "detection_10mm": []}
    for evaluation in by_seed.values():
        cases = evaluation[variant]
        livers = [c["liver_dice"] for c in cases if c.get("liver_dice") is not None]
        inter = sum(c["intersection_voxels"] for c in cases)
        volume = sum(c["gt_voxels"] + c["pred_voxels"] for c in cases)
        large = [les["detected"] for c in cases for les in c["lesions"] if les["diameter_mm"] >= 10.0]
        figures["liver_dice"].append(float(np.mean(livers)) if livers else float("nan"))
        figures["tumor_dice"].append(2.0 * inter / volume if volume else 1.0)
        figures["false_positives_per_case"].append(float(np.mean([c["false_positives"] for c in cases])))
        figures["detection_10mm"].append(float(np.mean(large)) if large else float("nan"))
    return {name: float(np.mean(values)) for name, values in figures.items()}


def _describe(folds: list[AblationData]) -> dict:
    """The report's description of the data: the single split's, or every fold's."""
    if len(folds) == 1:
        return folds[0].describe()
    described = [data.describe() for data in folds]
    return {
        "summary": " ".join(d["summary"] for d in described),
        "notes": list(dict.fromkeys(note for d in described for note in d["notes"])),
        "fallback_to_phantom": folds[0].fallback,
        "folds": described,
        "train": [case for d in described for case in d["train"]],
        "val": [case for d in described for case in d["val"]],
        "test": [case for d in described for case in d["test"]],
        "heuristic_hosts": sorted({case for d in described for case in d["heuristic_hosts"]}),
        "test_shapes": {k: v for d in described for k, v in d["test_shapes"].items()},
        "spacing_mm": {k: v for d in described for k, v in d["spacing_mm"].items()},
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Where the ablation ran, for the report."""
    import torch

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({_cpu_name()})"
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    info["summary"] = (f"{device}, {info['cpu_count']} CPU core(s) visible, torch {info['torch']} "
                       f"with {info['torch_threads']} thread(s), Python {info['python']}.")
    return info


def run_ablation(config, out_dir, *, progress: bool = True, data_path=None, reevaluate: bool = False,
                 say=print) -> dict:
    """Run (or finish) an ablation and write its report.

    Args:
        config: a configuration dict, a JSON file, or a bundled profile name ("cpu-quick", "gpu").
        out_dir: the output folder (created); rerunning with the same folder skips finished runs.
        progress: tqdm progress bars.
        data_path: overrides ``data.path`` (the data folder).
        reevaluate: finished runs are evaluated again from their saved models (with the
            configuration's post-processing) instead of being read back; their training is kept.
        say: where plain messages go (the offline fallback notice), default ``print``.

    Returns:
        the results dict also written to ``results.json``, with ``report`` holding the paths of
        ``results.md``, ``results.json`` and the figures.
    """
    from tqdm.auto import tqdm

    cfg = load_config(config)
    if data_path is not None:
        cfg["data"]["path"] = str(data_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    t0 = time.perf_counter()
    folds = prepare_data(cfg, progress=progress, say=say)
    data_s = time.perf_counter() - t0

    per_fold: dict = {arm: {seed: [] for seed in cfg["seeds"]} for arm in cfg["arms"]}
    # A seed's arms together, fold by fold: an interrupted ablation has comparable runs done.
    jobs = [(arm, seed, data) for seed in cfg["seeds"] for data in folds for arm in cfg["arms"]]
    skipped = []
    bar = tqdm(jobs, desc="ablation runs", unit="run", disable=not progress)
    for arm, seed, data in bar:
        where = f"{arm}/seed-{seed}" + ("" if data.fold is None else f"/fold-{data.fold}")
        bar.set_postfix_str(where)
        done = run_dir(out_dir, arm, seed, data.fold) / EVAL_FILE
        if done.is_file():
            per_fold[arm][seed].append(reevaluate_run(cfg, arm, seed, data, out_dir) if reevaluate
                                       else json.loads(done.read_text("utf-8")))
            skipped.append(where)
            continue
        per_fold[arm][seed].append(run_one(cfg, arm, seed, data, out_dir, progress=progress))
    bar.close()
    runs = {arm: {seed: combine_folds(evals) for seed, evals in by_seed.items()}
            for arm, by_seed in per_fold.items()}

    t0 = time.perf_counter()
    stats = summarise(runs, baseline="real", n_boot=cfg["bootstrap"], seed=0)
    beside = {variant: summarise({arm: {s: {"cases": ev[variant]} for s, ev in by_seed.items()}
                                  for arm, by_seed in runs.items()},
                                 baseline="real", n_boot=cfg["bootstrap"], seed=0)
              for variant in VARIANTS[1:]}
    first_seed = cfg["seeds"][0]
    overlay_predictions = {arm: {key: value for data in folds for key, value in load_predictions(
                               run_dir(out_dir, arm, first_seed, data.fold) / PREDICTIONS_FILE).items()}
                           for arm in cfg["arms"]}
    test_cases = [case for data in folds for case in data.test]
    results = {
        "name": cfg["name"],
        "config": cfg,
        "data": _describe(folds),
        "machine": machine_info(),
        "model_parameters": runs["real"][first_seed].get("model_parameters"),
        "stats": stats,
        "stats_raw": beside["cases_raw"],
        "stats_true_liver": beside["cases_true_liver"],
        "competence": {arm: {variant: competence(runs[arm], variant) for variant in VARIANTS}
                       for arm in runs},
        "runs": {
            arm: {str(seed): {
                "steps": ev["steps"], "train_s": ev["train_s"], "eval_s": ev["eval_s"],
                "summary": ev["summary"], "evaluation": {variant: ev[variant] for variant in VARIANTS},
            } for seed, ev in by_seed.items()}
            for arm, by_seed in runs.items()
        },
        "skipped_finished_runs": skipped,
        "reevaluated_finished_runs": reevaluate,
    }
    if any(arm_gated(arm) for arm in cfg["arms"]):
        results["gates"] = {str(data.fold): gate_summary(fold_gate_path(out_dir, data), out_dir) for data in folds}
    results["timings"] = {
        "data_s": data_s,
        "train_s": sum(ev["train_s"] for by_seed in runs.values() for ev in by_seed.values()),
        "eval_s": sum(ev["eval_s"] for by_seed in runs.values() for ev in by_seed.values()),
        "total_s": None,  # filled just below, after the report is drawn
    }
    cases = {c.case_id: c for c in test_cases}
    paths = write_report(results, out_dir, overlay_cases=cases, overlay_predictions=overlay_predictions)
    results["figures"] = {k: v.name for k, v in paths["figures"].items()}
    results["timings"]["report_s"] = time.perf_counter() - t0
    results["timings"]["total_s"] = time.perf_counter() - started
    # Rewrite the JSON and Markdown with the final wall time (the figures do not show it).
    paths = write_report(results, out_dir, draw_figures=False)
    results["report"] = {k: str(v) if not isinstance(v, dict) else {a: str(b) for a, b in v.items()}
                         for k, v in paths.items()}
    return results
